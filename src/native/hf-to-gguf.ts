import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { IterAlignError } from "../spec/errors.js";
import { fingerprintFile } from "../util/file-fingerprint.js";
import { ensureLlamaSource } from "./llama-build.js";
import { defaultCacheDir } from "./llama-bundle.js";
import { defaultPython, runPython } from "./python-runtime.js";

/** Whether `dir` is a Hugging Face model folder (a `config.json` beside the weights). */
export function isHfModelFolder(dir: string): boolean {
  try {
    return statSync(dir).isDirectory() && existsSync(path.join(dir, "config.json"));
  } catch {
    return false;
  }
}

/** Identifies a folder's weights and tokenizer: its JSON files whole, its weight files by size and sampled bytes. */
async function folderKey(dir: string): Promise<string> {
  const hash = createHash("sha256");
  for (const name of readdirSync(dir).sort()) {
    const file = path.join(dir, name);
    if (!statSync(file).isFile()) continue;
    if (/\.(json|model|txt|jinja)$/.test(name)) hash.update(`${name}\0`).update(readFileSync(file)).update("\0");
    else if (/\.(safetensors|bin)$/.test(name)) hash.update(`${name}\0${await fingerprintFile(file)}\0`);
  }
  return hash.digest("hex");
}

/**
 * The GGUF of a Hugging Face model folder, made once with llama.cpp's `convert_hf_to_gguf.py` (from the source
 * node-llama-cpp ships; `--outtype auto` keeps the weights' own precision) and kept in the cache
 * (`<cache>/hf-gguf/<key>/model.gguf`, keyed by the folder's contents). Runs with the `iteralign setup trl`
 * environment (or python3), which has what the script imports (torch, numpy, safetensors, transformers).
 */
export async function hfFolderToGguf(dir: string, options: { cacheDir?: string; python?: string; onLine?: (line: string) => void } = {}): Promise<string> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const key = (await folderKey(dir)).slice(0, 16);
  const out = path.join(cacheDir, "hf-gguf", key, "model.gguf");
  if (existsSync(out)) return out;
  mkdirSync(path.dirname(out), { recursive: true });
  const src = await ensureLlamaSource({ cacheDir, ...(options.onLine ? { onLine: options.onLine } : {}) });
  const python = options.python ?? defaultPython(cacheDir);
  options.onLine?.(`converting ${dir} to GGUF with convert_hf_to_gguf.py (once)`);
  const tmp = `${out}.tmp`;
  rmSync(tmp, { force: true });
  let result: { code: number | null; stdout: string; stderr: string };
  try {
    result = await runPython(python, [path.join(src, "convert_hf_to_gguf.py"), dir, "--outfile", tmp, "--outtype", "auto"]);
  } catch (err) {
    throw new IterAlignError("MODEL_LOAD_FAILED", `cannot run ${python} to convert ${dir} to GGUF (run \`iteralign setup trl\` for a Python environment)`, { cause: err });
  }
  if (result.code !== 0 || !existsSync(tmp)) {
    rmSync(tmp, { force: true });
    const tail = result.stderr.trim().split("\n").slice(-3).join(" | ");
    throw new IterAlignError("MODEL_LOAD_FAILED", `convert_hf_to_gguf.py could not convert ${dir}: ${tail}`, { details: { path: dir } });
  }
  renameSync(tmp, out);
  return out;
}
