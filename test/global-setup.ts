import { ensureFixtureModels } from "../src/gguf/fixture-models.js";

/** Generates the tiny random-weight models the engine tests use, when missing. */
export default function setup(): void {
  ensureFixtureModels(["tiny-qwen2", "tiny-llama", "tiny-guard"], { log: (l) => process.stderr.write(`fixtures: ${l}\n`) });
}
