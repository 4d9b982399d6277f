/**
 * Every prompt text the IterAlign stages send, as small functions that build `ChatMessage[]`. Written for
 * iteralign in our own words. Re-exports only.
 */
export * from "./target.js";
export * from "./judge.js";
export * from "./propose.js";
export * from "./self-correct.js";
