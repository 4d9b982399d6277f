import type { LanguageModel } from "../../spec/language-model.js";
import type { Price } from "../model-config-fields.js";
import { callCost } from "../pricing.js";
import { interceptCalls } from "./wrap.js";

/** Options for {@link withPricing}. */
export interface PricingOptions {
  readonly price: Price;
  /** Calls are answered by a batch job (the batch discount applies). */
  readonly batch?: boolean;
}

/**
 * Adds `costUsd` to every result that reports usage: its token usage at the model's price. Placed below the
 * cache, so the cost is stored with the answer and a cached answer still says what it cost to make.
 */
export function withPricing(model: LanguageModel, options: PricingOptions): LanguageModel {
  return interceptCalls(model, async (call) => {
    const result = await call.invoke();
    if (!("usage" in result) || "costUsd" in result) return result;
    return { ...result, costUsd: callCost(result.usage, options.price, { batch: options.batch ?? false }) };
  });
}
