/**
 * The IterAlign loop's stages as pure async functions `(inputs, deps) => outputs`: no I/O, store or clock
 * inside (the pipeline adds those). Re-exports only.
 */
export * from "./stage-item.js";
export * from "./ids.js";
export * from "./red-team.js";
export * from "./judge.js";
export * from "./propose.js";
export * from "./self-correct.js";
export * from "./gate.js";
export * from "./export.js";
export * from "./efficacy.js";
