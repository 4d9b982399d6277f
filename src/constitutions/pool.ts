import { z } from "zod";
import { sha256Hex } from "../util/canonical-json.js";
import { IterAlignError } from "../spec/errors.js";
import { PrincipleSchema, type Principle, type ProposedConstitution } from "../spec/records.js";

/**
 * The constitution pool: every principle the run knows (seeded, user-given or discovered by the
 * oracle), with versions and provenance. The paper keeps each batch's constitutions separately and
 * never merges them; we merge near-duplicates across iterations so the prompt the target sees stays
 * short and each principle accumulates the failures that motivated it.
 *
 * The pool is an immutable value: every operation returns a new pool plus a change log, so a stage
 * can store both, and replaying the same inputs yields byte-identical snapshots.
 */

/** Title and text of a principle, as seed files and users give them. */
export interface PrincipleInput {
  readonly title: string;
  readonly text: string;
}

/** A proposal prepared for merging: its would-be id and its evidence, deduplicated and sorted. */
export interface ProposedPrinciple extends PrincipleInput {
  readonly id: string;
  readonly evidence: readonly string[];
}

/** Plain-data form of a pool (what the run store keeps and the renderers read). */
export interface PoolSnapshot {
  principles: Principle[];
}

/**
 * Scores `query` against each candidate: one number in [0, 1] per candidate, in order (1 = same).
 * Batched so an embedder can embed every uncached text in one call.
 */
export type SimilarityFn = (query: string, candidates: readonly string[], options?: { signal?: AbortSignal }) => Promise<readonly number[]>;

/** What a merge confirmer answers. */
export interface ConfirmResult {
  /** True when the two principles ask for the same behaviour and should become one. */
  readonly same: boolean;
  /** Title and text covering both; when absent the existing wording is kept. */
  readonly merged?: PrincipleInput;
  /** Why the confirmer could not decide (then `same` is false); recorded in the change log. */
  readonly error?: string;
}

/** Decides whether a proposal restates an existing principle (usually by asking the oracle). */
export type ConfirmMergeFn = (existing: Principle, proposed: ProposedPrinciple, options?: { signal?: AbortSignal }) => Promise<ConfirmResult>;

/** What one pool operation changed. Every list is in processing order. */
export interface PoolChanges {
  /** Ids of principles that are new in the pool. */
  added: string[];
  /** Proposals folded into an existing principle (which got a new version). */
  merged: { into: string; from: string }[];
  /**
   * Inputs identical to a principle already known (same id, or an id merged earlier): no oracle call
   * was needed; their evidence was added and nothing else changed.
   */
  duplicates: string[];
  /** Ids of principles that were retired. */
  retired: string[];
  /** Why each retired principle was retired (the Principle record has no field for it). */
  reasons: { id: string; reason: string }[];
  /** Merge confirmations that failed; the proposal was then added as a new principle. */
  errors: { proposed: string; message: string }[];
}

/** A new pool and what changed to get there. */
export interface PoolUpdate {
  readonly pool: ConstitutionPool;
  readonly changes: PoolChanges;
}

/** Options for {@link ConstitutionPool.mergeProposals}. */
export interface MergeProposalsOptions {
  /** Iteration the proposals come from; becomes `firstIteration` of new principles. */
  readonly iteration: number;
  readonly similarity: SimilarityFn;
  readonly confirm: ConfirmMergeFn;
  /** Similarity in [0, 1] from which `confirm` is asked; below it a proposal is always new. */
  readonly threshold: number;
  readonly signal?: AbortSignal;
}

/** Options for {@link ConstitutionPool.addSeeds} and {@link ConstitutionPool.addUser}. */
export interface AddPrinciplesOptions {
  /** Iteration the principles enter at (default 0: before the first iteration). */
  readonly iteration?: number;
}

const PoolSnapshotSchema = z.object({ principles: z.array(PrincipleSchema) });

/**
 * Deterministic principle id: `p-` and the first 12 hex digits of the SHA-256 of the normalized title
 * and text. Normalizing (NFC, trimmed, whitespace collapsed, lower-cased) makes trivially different
 * spellings of one principle collide on purpose, so they are recognised as duplicates for free.
 */
export function principleId(title: string, text: string): string {
  // Normalized parts contain no newline, so joining on one cannot make two pairs hash alike.
  return `p-${sha256Hex(`${normalize(title)}\n${normalize(text)}`).slice(0, 12)}`;
}

/** The text similarity functions compare for a principle: its title and its text on separate lines. */
export function comparisonText(principle: PrincipleInput): string {
  return `${principle.title}\n${principle.text}`;
}

/** An immutable set of principles in insertion order; see the module comment. */
export class ConstitutionPool {
  private constructor(private readonly items: readonly Principle[]) {}

  /** A pool with no principles. */
  static empty(): ConstitutionPool {
    return new ConstitutionPool([]);
  }

  /** Rebuilds a pool from a stored snapshot, validating it (DATA_INVALID on a bad one). */
  static fromSnapshot(snapshot: unknown): ConstitutionPool {
    const parsed = PoolSnapshotSchema.safeParse(snapshot);
    if (!parsed.success) {
      throw new IterAlignError("DATA_INVALID", `invalid constitution pool snapshot: ${z.prettifyError(parsed.error)}`, { cause: parsed.error });
    }
    const seen = new Set<string>();
    for (const principle of parsed.data.principles) {
      if (seen.has(principle.id)) throw new IterAlignError("DATA_INVALID", `invalid constitution pool snapshot: duplicate id ${principle.id}`);
      seen.add(principle.id);
    }
    return new ConstitutionPool(parsed.data.principles.map(copyPrinciple));
  }

  /** Number of principles, active and retired. */
  get size(): number {
    return this.items.length;
  }

  /** Copies of all principles, in insertion order. */
  principles(): Principle[] {
    return this.items.map(copyPrinciple);
  }

  /** Copies of the active principles, in insertion order: what the target is shown. */
  active(): Principle[] {
    return this.items.filter((p) => p.status === "active").map(copyPrinciple);
  }

  /** A copy of the principle with this id, if any. */
  get(id: string): Principle | undefined {
    const found = this.items.find((p) => p.id === id);
    return found === undefined ? undefined : copyPrinciple(found);
  }

  /** Plain data for storing and rendering; safe to mutate. */
  snapshot(): PoolSnapshot {
    return { principles: this.principles() };
  }

  /** Adds principles from seed files (`source: "seed"`). Known ones are reported as duplicates. */
  addSeeds(seeds: readonly PrincipleInput[], options: AddPrinciplesOptions = {}): PoolUpdate {
    return this.addInputs(seeds, "seed", options.iteration ?? 0);
  }

  /** Adds principles the user wrote (`source: "user"`). Known ones are reported as duplicates. */
  addUser(principles: readonly PrincipleInput[], options: AddPrinciplesOptions = {}): PoolUpdate {
    return this.addInputs(principles, "user", options.iteration ?? 0);
  }

  /**
   * Merges the oracle's proposals, one at a time in order, so a proposal can merge into one added
   * earlier in the same batch. For each: an exact duplicate only adds evidence; otherwise the most
   * similar active principle (ties: the earliest) is offered to `confirm` when its similarity reaches
   * the threshold, and a confirmed match is rewritten as a new version; anything else is added as a
   * new `discovered` principle. A failed confirmation counts as "not the same" and is logged in
   * `changes.errors`, because losing a proposal is worse than keeping a near-duplicate. Aborts and
   * similarity failures propagate: without scores no decision can be made.
   */
  async mergeProposals(proposals: readonly ProposedConstitution[], options: MergeProposalsOptions): Promise<PoolUpdate> {
    const { threshold, signal } = options;
    if (!(threshold >= 0 && threshold <= 1)) throw new IterAlignError("USAGE", `merge threshold must be in [0, 1], got ${threshold}`);
    checkIteration(options.iteration);
    const items = this.items.map(copyPrinciple);
    const changes = emptyChanges();
    for (const proposal of proposals) {
      signal?.throwIfAborted();
      const proposed = prepareProposal(proposal);
      const known = findKnown(items, proposed.id);
      if (known >= 0) {
        items[known] = withEvidence(at(items, known), proposed.evidence);
        changes.duplicates.push(proposed.id);
        continue;
      }
      const match = await mostSimilarActive(items, proposed, options);
      let decision: ConfirmResult = { same: false };
      if (match !== null && match.score >= threshold) {
        decision = await confirmSafely(options.confirm, copyPrinciple(at(items, match.index)), proposed, signal);
        if (decision.error !== undefined) changes.errors.push({ proposed: proposed.id, message: decision.error });
      }
      if (decision.same && match !== null) {
        const existing = at(items, match.index);
        items[match.index] = mergeInto(existing, proposed, decision.merged);
        changes.merged.push({ into: existing.id, from: proposed.id });
      } else {
        items.push(newPrinciple(proposed, "discovered", options.iteration));
        changes.added.push(proposed.id);
      }
    }
    return { pool: new ConstitutionPool(items), changes };
  }

  /**
   * Retires a principle: it stays in the pool (for provenance and diffs) but is no longer shown to
   * the target. The version is unchanged because the wording is. Retiring a retired one is a no-op.
   */
  retire(id: string, reason: string): PoolUpdate {
    const index = this.items.findIndex((p) => p.id === id);
    if (index < 0) throw new IterAlignError("USAGE", `cannot retire ${id}: no such principle in the pool`, { details: { id } });
    const changes = emptyChanges();
    const current = at(this.items, index);
    if (current.status === "retired") return { pool: this, changes };
    const items = this.items.map(copyPrinciple);
    items[index] = { ...copyPrinciple(current), status: "retired" };
    changes.retired.push(id);
    changes.reasons.push({ id, reason });
    return { pool: new ConstitutionPool(items), changes };
  }

  private addInputs(inputs: readonly PrincipleInput[], source: "seed" | "user", iteration: number): PoolUpdate {
    checkIteration(iteration);
    const items = this.items.map(copyPrinciple);
    const changes = emptyChanges();
    inputs.forEach((input, index) => {
      const title = input.title.trim();
      const text = input.text.trim();
      if (title === "" || text === "") {
        throw new IterAlignError("USAGE", `${source} principle ${index + 1}: title and text must both be non-empty`, { details: { index } });
      }
      const id = principleId(title, text);
      if (findKnown(items, id) >= 0) {
        changes.duplicates.push(id);
        return;
      }
      items.push(newPrinciple({ id, title, text, evidence: [] }, source, iteration));
      changes.added.push(id);
    });
    return { pool: new ConstitutionPool(items), changes };
  }
}

/** Caught here rather than when a stored snapshot fails to parse, far from the caller that erred. */
function checkIteration(iteration: number): void {
  if (!Number.isInteger(iteration) || iteration < 0) throw new IterAlignError("USAGE", `iteration must be a non-negative integer, got ${iteration}`);
}

function normalize(text: string): string {
  return text.normalize("NFC").trim().replace(/\s+/g, " ").toLowerCase();
}

function emptyChanges(): PoolChanges {
  return { added: [], merged: [], duplicates: [], retired: [], reasons: [], errors: [] };
}

function copyPrinciple(p: Principle): Principle {
  return { ...p, evidence: [...p.evidence], mergedFrom: [...p.mergedFrom] };
}

/** Index access for positions known to exist (keeps noUncheckedIndexedAccess honest without `!`). */
function at(items: readonly Principle[], index: number): Principle {
  const item = items[index];
  if (item === undefined) throw new RangeError(`constitution pool: no principle at ${index}`);
  return item;
}

/** Code-unit order, not locale order: the same on every machine. */
function sortedUnique(values: Iterable<string>): string[] {
  return [...new Set(values)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function prepareProposal(proposal: ProposedConstitution): ProposedPrinciple {
  const title = proposal.title.trim();
  const text = proposal.principle.trim();
  return { id: principleId(title, text), title, text, evidence: sortedUnique(proposal.failureIds) };
}

/** A principle that has this id, or absorbed a proposal with it: re-proposing it needs no oracle call. */
function findKnown(items: readonly Principle[], id: string): number {
  return items.findIndex((p) => p.id === id || p.mergedFrom.includes(id));
}

function withEvidence(principle: Principle, evidence: readonly string[]): Principle {
  return { ...copyPrinciple(principle), evidence: sortedUnique([...principle.evidence, ...evidence]) };
}

function newPrinciple(proposed: ProposedPrinciple, source: Principle["source"], iteration: number): Principle {
  return {
    id: proposed.id,
    version: 1,
    title: proposed.title,
    text: proposed.text,
    source,
    firstIteration: iteration,
    evidence: [...proposed.evidence],
    mergedFrom: [],
    status: "active",
  };
}

function mergeInto(existing: Principle, proposed: ProposedPrinciple, merged: PrincipleInput | undefined): Principle {
  // An empty rewrite would erase the principle; keep the old wording for whichever part is empty.
  const title = merged?.title.trim() || existing.title;
  const text = merged?.text.trim() || existing.text;
  return {
    ...withEvidence(existing, proposed.evidence),
    version: existing.version + 1,
    title,
    text,
    mergedFrom: [...existing.mergedFrom, proposed.id],
  };
}

async function mostSimilarActive(
  items: readonly Principle[],
  proposed: ProposedPrinciple,
  options: MergeProposalsOptions,
): Promise<{ index: number; score: number } | null> {
  const candidates = items.flatMap((p, index) => (p.status === "active" ? [index] : []));
  if (candidates.length === 0) return null;
  const scores = await options.similarity(
    comparisonText(proposed),
    candidates.map((index) => comparisonText(at(items, index))),
    { signal: options.signal },
  );
  if (scores.length !== candidates.length) {
    throw new RangeError(`similarity function returned ${scores.length} scores for ${candidates.length} candidates`);
  }
  let best = { index: -1, score: -1 };
  for (const [i, score] of scores.entries()) {
    if (!(score >= 0 && score <= 1)) throw new RangeError(`similarity function returned ${score}; scores must be in [0, 1]`);
    // Strictly greater: on a tie the earlier principle wins, which keeps merges deterministic.
    if (score > best.score) best = { index: candidates[i] ?? -1, score };
  }
  return best;
}

async function confirmSafely(
  confirm: ConfirmMergeFn,
  existing: Principle,
  proposed: ProposedPrinciple,
  signal: AbortSignal | undefined,
): Promise<ConfirmResult> {
  try {
    const result = await confirm(existing, proposed, { signal });
    return result.error !== undefined ? { same: false, error: result.error } : result;
  } catch (error) {
    if (signal?.aborted || (error instanceof IterAlignError && error.code === "ABORTED")) throw error;
    return { same: false, error: describeError(error) };
  }
}

/** One line for the change log: the code when there is one, so failures can be grouped. */
export function describeError(error: unknown): string {
  if (error instanceof IterAlignError) return `${error.code}: ${error.message}`;
  if (error instanceof Error) return error.message;
  return String(error);
}
