import { expect } from "vitest";
import { IterAlignError } from "../../src/spec/errors.js";

/** Awaits a promise (or calls and awaits a function) that must reject with an IterAlignError; returns it. */
export async function caught(promise: Promise<unknown> | (() => Promise<unknown>)): Promise<IterAlignError> {
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (err) {
    expect(err).toBeInstanceOf(IterAlignError);
    return err as IterAlignError;
  }
  throw new Error("expected an error");
}
