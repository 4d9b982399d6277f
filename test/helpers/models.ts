import { fixtureModelPath, type FixtureModelName } from "../../src/gguf/fixture-models.js";
import { LlamaCppModel, type LlamaCppModelOptions } from "../../src/providers/llama-cpp/llama-cpp-model.js";

/** Loads a generated fixture model with settings suited to a 2-core test machine. */
export function loadFixtureModel(
  name: FixtureModelName,
  options: Partial<LlamaCppModelOptions> = {},
): Promise<LlamaCppModel> {
  return LlamaCppModel.load({
    model: fixtureModelPath(name),
    maxThreads: 1,
    contextSize: 1024,
    sequences: 4,
    ...options,
  });
}
