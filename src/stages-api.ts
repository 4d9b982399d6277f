/**
 * `iteralign/stages`: the IterAlign loop's stages as pure async functions (no store, clock or file I/O inside)
 * and every prompt text they send.
 *
 * @packageDocumentation
 */
export * from "./stages/index.js";
export * from "./prompts/index.js";
