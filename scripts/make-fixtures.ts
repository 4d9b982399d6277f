/**
 * Writes the random-weight GGUF models used by tests and benchmarks under test/fixtures/models/.
 * Usage: npm run fixtures [-- --tier test|bench|all] [--force]
 */
import { ensureFixtureModels, FIXTURE_MODELS, type FixtureModelName } from "../src/gguf/fixture-models.js";

const args = process.argv.slice(2);
const tierIndex = args.indexOf("--tier");
const tier = tierIndex >= 0 ? args[tierIndex + 1] : "all";
const names = (Object.keys(FIXTURE_MODELS) as FixtureModelName[]).filter(
  (n) => tier === "all" || FIXTURE_MODELS[n].tier === tier,
);
ensureFixtureModels(names, { force: args.includes("--force"), log: (l) => process.stdout.write(`${l}\n`) });
