import { createHash } from "node:crypto";
import { IterAlignError } from "../spec/errors.js";
import { sha256Hex } from "../util/canonical-json.js";
import type { RedTeamPrompt } from "./red-team-prompt.js";

/** The two sides of a split: prompts used to align the model, and prompts kept back to measure it. */
export type SplitName = "train" | "heldout";

/** Options for {@link splitPrompts}. */
export interface SplitOptions {
  /** Share of distinct prompts assigned to `heldout`, in [0, 1]. Default 0.2. */
  heldoutFraction?: number;
  /** Integer mixed into the hash; a different seed gives an independent split. Default 0. */
  seed?: number;
}

/** Per-dataset prompt counts on each side (after removing duplicates). */
export interface SplitCounts {
  train: number;
  heldout: number;
}

/** What a split contained: enough to record in a run and to check a later split is the same one. */
export interface SplitManifest {
  seed: number;
  heldoutFraction: number;
  /** Counts per dataset name. */
  counts: Record<string, SplitCounts>;
  /** Prompts dropped because their normalized text was already seen. */
  duplicatesDropped: number;
  /** sha256 of the train ids, in order, joined by "\n". */
  trainIdsSha256: string;
  /** sha256 of the heldout ids, in order, joined by "\n". */
  heldoutIdsSha256: string;
}

/** Result of {@link splitPrompts}. */
export interface PromptSplit {
  train: RedTeamPrompt[];
  heldout: RedTeamPrompt[];
  manifest: SplitManifest;
}

/** Defaults for {@link SplitOptions}. */
export const DEFAULT_HELDOUT_FRACTION = 0.2;
/** Default split seed. */
export const DEFAULT_SPLIT_SEED = 0;

/**
 * The form of a prompt's text that decides its split and what counts as a duplicate: lower-cased,
 * runs of whitespace collapsed to one space, trimmed. Case and spacing variants of one request are the
 * same request, and letting one sit in train and the other in heldout would leak the test set.
 */
export function normalizePromptText(text: string): string {
  return text.toLowerCase().replace(/\s+/g, " ").trim();
}

/**
 * The side one prompt text falls on. It depends only on the seed, the fraction and the normalized
 * text (sha256 of `${seed}:${normalizedText}`, first 48 bits read as a number in [0, 1), heldout when below the fraction), never on
 * the order of prompts or on which other datasets are loaded, so adding a dataset to a run cannot
 * move an existing prompt from train to heldout.
 */
export function assignSplit(text: string, options: SplitOptions = {}): SplitName {
  const { seed, heldoutFraction } = validateOptions(options);
  return splitOfNormalized(normalizePromptText(text), seed, heldoutFraction);
}

/**
 * Splits prompts into `train` and `heldout` deterministically (see {@link assignSplit}), keeping input
 * order within each side. Prompts whose normalized text was seen before are dropped (the first one
 * wins); since equal normalized texts always fall on the same side, no prompt can appear on both
 * sides even when two datasets share it.
 */
export function splitPrompts(prompts: readonly RedTeamPrompt[], options: SplitOptions = {}): PromptSplit {
  const { seed, heldoutFraction } = validateOptions(options);
  const train: RedTeamPrompt[] = [];
  const heldout: RedTeamPrompt[] = [];
  const counts: Record<string, SplitCounts> = {};
  const seen = new Set<string>();
  let duplicatesDropped = 0;
  for (const prompt of prompts) {
    const normalized = normalizePromptText(prompt.text);
    if (seen.has(normalized)) {
      duplicatesDropped++;
      continue;
    }
    seen.add(normalized);
    const side = splitOfNormalized(normalized, seed, heldoutFraction);
    (side === "train" ? train : heldout).push(prompt);
    const datasetCounts = counts[prompt.dataset] ?? { train: 0, heldout: 0 };
    datasetCounts[side]++;
    counts[prompt.dataset] = datasetCounts;
  }
  return {
    train,
    heldout,
    manifest: {
      seed,
      heldoutFraction,
      counts,
      duplicatesDropped,
      trainIdsSha256: sha256Hex(train.map((p) => p.id).join("\n")),
      heldoutIdsSha256: sha256Hex(heldout.map((p) => p.id).join("\n")),
    },
  };
}

function splitOfNormalized(normalized: string, seed: number, heldoutFraction: number): SplitName {
  const digest = createHash("sha256").update(`${seed}:${normalized}`, "utf8").digest();
  // 48 bits (the first 12 hex digits) are exact in a double and far finer than any fraction used.
  const value = digest.readUIntBE(0, 6) / 2 ** 48;
  return value < heldoutFraction ? "heldout" : "train";
}

function validateOptions(options: SplitOptions): Required<SplitOptions> {
  const heldoutFraction = options.heldoutFraction ?? DEFAULT_HELDOUT_FRACTION;
  const seed = options.seed ?? DEFAULT_SPLIT_SEED;
  if (!Number.isFinite(heldoutFraction) || heldoutFraction < 0 || heldoutFraction > 1) {
    throw new IterAlignError("USAGE", `heldoutFraction must be a number in [0, 1], got ${heldoutFraction}`);
  }
  if (!Number.isSafeInteger(seed)) throw new IterAlignError("USAGE", `split seed must be an integer, got ${seed}`);
  return { heldoutFraction, seed };
}
