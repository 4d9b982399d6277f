import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { IterAlignError } from "../spec/errors.js";
import type { TokenUsage } from "../spec/language-model.js";
import { PriceSchema, type Price } from "./model-config-fields.js";

/**
 * Dollar accounting: a price per model (per million input, cached-input, cache-write and output tokens, and a
 * batch discount), the cost of a call from its token usage, and the table of list prices iteralign ships.
 *
 * The built-in prices are the providers' public list prices as of 2025-11, for the models the docs name; they
 * change, so a run's config or a pricing file (`pricing.file`) overrides them, and every cost iteralign reports
 * says which price it used. Local models (llama-cpp) cost nothing.
 */

/** Prices by model name; a name also matches longer ids that start with it followed by `-` (dated snapshots). */
export type PriceTable = Readonly<Record<string, Price>>;

/** List prices as of 2025-11 (USD per million tokens). */
export const BUILTIN_PRICES: PriceTable = {
  "gpt-4o": { input: 2.5, cachedInput: 1.25, output: 10, batchDiscount: 0.5 },
  "gpt-4o-mini": { input: 0.15, cachedInput: 0.075, output: 0.6, batchDiscount: 0.5 },
  "gpt-4.1": { input: 2, cachedInput: 0.5, output: 8, batchDiscount: 0.5 },
  "gpt-4.1-mini": { input: 0.4, cachedInput: 0.1, output: 1.6, batchDiscount: 0.5 },
  "gpt-4.1-nano": { input: 0.1, cachedInput: 0.025, output: 0.4, batchDiscount: 0.5 },
  "gpt-5": { input: 1.25, cachedInput: 0.125, output: 10, batchDiscount: 0.5 },
  "gpt-5-mini": { input: 0.25, cachedInput: 0.025, output: 2, batchDiscount: 0.5 },
  "o4-mini": { input: 1.1, cachedInput: 0.275, output: 4.4, batchDiscount: 0.5 },
  "claude-opus-4-1": { input: 15, cachedInput: 1.5, cacheWrite: 18.75, output: 75, batchDiscount: 0.5 },
  "claude-sonnet-4-5": { input: 3, cachedInput: 0.3, cacheWrite: 3.75, output: 15, batchDiscount: 0.5 },
  "claude-sonnet-4": { input: 3, cachedInput: 0.3, cacheWrite: 3.75, output: 15, batchDiscount: 0.5 },
  "claude-haiku-4-5": { input: 1, cachedInput: 0.1, cacheWrite: 1.25, output: 5, batchDiscount: 0.5 },
  "claude-3-5-haiku": { input: 0.8, cachedInput: 0.08, cacheWrite: 1, output: 4, batchDiscount: 0.5 },
};

const PriceFileSchema = z.union([z.object({ models: z.record(z.string(), PriceSchema) }).strict(), z.record(z.string(), PriceSchema)]);

/** Reads a pricing file: YAML or JSON, `{models: {<name>: price}}` or `{<name>: price}`. */
export function loadPriceFile(file: string): PriceTable {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new IterAlignError("CONFIG_INVALID", `pricing file ${file} cannot be read: ${(err as Error).message}`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = /\.json$/i.test(file) ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new IterAlignError("CONFIG_INVALID", `pricing file ${file} is not valid ${/\.json$/i.test(file) ? "JSON" : "YAML"}: ${(err as Error).message}`, { cause: err });
  }
  const parsed = PriceFileSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "(top level)"}: ${i.message}`).join("; ");
    throw new IterAlignError("CONFIG_INVALID", `pricing file ${file}: ${problems}`);
  }
  const data = parsed.data;
  return "models" in data && typeof data.models === "object" && !("input" in (data.models as object)) ? (data.models as PriceTable) : (data as PriceTable);
}

/** The price of `model`: the entry's own, else the longest matching name of the file's table, else the built-in one. */
export function priceFor(model: string, options: { own?: Price | undefined; table?: PriceTable | undefined } = {}): { price: Price; source: string } | undefined {
  if (options.own) return { price: options.own, source: "config" };
  const match = (table: PriceTable): Price | undefined => {
    const names = Object.keys(table).filter((name) => model === name || model.startsWith(`${name}-`) || model.endsWith(`/${name}`));
    names.sort((a, b) => b.length - a.length);
    return names[0] === undefined ? undefined : table[names[0]];
  };
  const fromFile = options.table ? match(options.table) : undefined;
  if (fromFile) return { price: fromFile, source: "pricing file" };
  const builtin = match(BUILTIN_PRICES);
  return builtin ? { price: builtin, source: "built-in list prices (2025-11)" } : undefined;
}

/** Dollars one call cost: uncached prompt, cached prompt, cache writes and output tokens, with the batch discount. */
export function callCost(usage: TokenUsage, price: Price, options: { batch?: boolean } = {}): number {
  const cached = usage.cachedPromptTokens ?? 0;
  const written = usage.cacheWritePromptTokens ?? 0;
  const plain = Math.max(0, usage.promptTokens - cached - written);
  const dollars =
    (plain * price.input + cached * (price.cachedInput ?? price.input) + written * (price.cacheWrite ?? price.input) + usage.completionTokens * price.output) / 1e6;
  return options.batch ? dollars * (1 - (price.batchDiscount ?? 0)) : dollars;
}
