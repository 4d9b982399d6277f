import { trlVenvPython, trlVenvReady } from "../../src/train/python-env.js";

/**
 * The trl trainer's Python environment, made by `npm run setup:trl` (the README's test command runs it before the
 * tests). Tests of the trl trainer run real TRL in it; without it they fail with this message instead of skipping.
 */
export function trlPython(): string {
  if (!trlVenvReady()) throw new Error("the trl trainer's Python environment is missing: run `npm run setup:trl` (iteralign setup trl) first");
  return trlVenvPython();
}
