import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import { ConfigError, loadConfig, parseConfig, type LoadedConfig } from "../config/load-config.js";

/** The config file commands read when `--config` is not given. */
export const DEFAULT_CONFIG = "iteralign.yaml";

/** True for a model reference that names a GGUF file or a downloadable model (not a config entry or role). */
export function isModelFileRef(value: string, cwd: string = process.cwd()): boolean {
  if (/^(hf:|huggingface:|https?:\/\/)/i.test(value)) return true;
  return value.toLowerCase().endsWith(".gguf") || existsSync(path.resolve(cwd, value));
}

/**
 * The config a command that takes a model uses: the config file when there is one; otherwise, when the command was
 * given a GGUF path or an `hf:` URI and no `--config`, a config of that model alone (every role bound to it, the
 * default engine settings, outputs under the working directory). So `iteralign eval --model ./m.gguf ...` works in
 * any directory.
 */
export function configOrModel(configFile: string, model: string | undefined, cwd: string = process.cwd()): LoadedConfig {
  const explicit = configFile !== DEFAULT_CONFIG;
  if (explicit || existsSync(path.resolve(cwd, configFile)) || model === undefined || !isModelFileRef(model, cwd)) {
    try {
      return loadConfig(path.resolve(cwd, configFile));
    } catch (err) {
      if (err instanceof ConfigError && err.code === "CONFIG_NOT_FOUND" && !explicit && model !== undefined) {
        throw new ConfigError(err.problems.length > 0 ? path.resolve(cwd, configFile) : configFile, [
          `config file not found, and --model ${model} is not a GGUF file or hf: URI (give one, or create a config with 'iteralign init')`,
        ], "CONFIG_NOT_FOUND");
      }
      throw err;
    }
  }
  const ref = /^(hf:|huggingface:|https?:\/\/)/i.test(model) ? model : path.resolve(cwd, model);
  const raw = { models: { model: { provider: "llama-cpp", model: ref } }, roles: { target: "model", oracle: "model" } };
  return {
    config: parseConfig(raw, `(--model ${model})`),
    file: `(--model ${model})`,
    baseDir: cwd,
    hash: createHash("sha256").update(JSON.stringify(raw)).digest("hex"),
  };
}
