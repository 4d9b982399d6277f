import { createHash } from "node:crypto";
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import { ensureLlamaBuild, ensureLlamaSource } from "../native/llama-build.js";
import { IterAlignError } from "../spec/errors.js";
import type { ModelRef, TrainProgress } from "../spec/trainer.js";
import { fingerprintFile } from "../util/file-fingerprint.js";
import { runProcess } from "./command-process.js";
import { runPython, trlScriptPath } from "./python-env.js";
import type { TrlTrainerOptions } from "./trl-options.js";
import type { TrlRunResult } from "./trl-trainer.js";

/** The server side of the target, as the hand-off needs it. */
export interface HandoffTarget {
  readonly provider: string;
  /** openai-compatible: the entry's base URLs (each replica gets the adapter). */
  readonly baseUrls?: readonly string[];
  /** openai-compatible: the API key (sent as a bearer token; never logged). */
  readonly apiKey?: string;
}

/** Files the hand-off writes under the iteration's `train/` folder. */
export const HANDOFF_FILES = {
  adapter: "adapter.gguf",
  merged: "model.gguf",
  log: "trl/handoff.log",
} as const;

export interface HandoffInput {
  readonly options: TrlTrainerOptions;
  readonly run: TrlRunResult;
  readonly iteration: number;
  /** The config's target (iteration 0's model). */
  readonly base: ModelRef;
  /** The model this iteration red-teamed. */
  readonly current: ModelRef;
  /** The Hugging Face weights training started from (id or folder). */
  readonly hfBase: string;
  readonly outDir: string;
  readonly python: string;
  readonly cacheDir: string;
  readonly target: HandoffTarget;
  readonly signal: AbortSignal;
  readonly onProgress: (progress: TrainProgress) => void;
}

/**
 * Makes the trained adapter (or model) the target of the next iteration:
 * - `handoffCommand`: the user's command does it (any server); the target is then the name it was given;
 * - `llama-cpp` target: the adapter becomes a GGUF LoRA (llama.cpp's `convert_lora_to_gguf.py`) loaded on top of
 *   the base GGUF, or, with `handoff: merged`, a new GGUF (`llama-export-lora`, then `llama-quantize` for q8_0);
 *   a fully fine-tuned model is converted with `convert_hf_to_gguf.py`;
 * - `openai-compatible` target (vLLM): the adapter is loaded into every replica with vLLM's runtime LoRA API
 *   (`POST /v1/load_lora_adapter`) under a new name, checked in `/v1/models`, and targeted from then on.
 */
export async function handOff(input: HandoffInput): Promise<{ model: ModelRef; description: Record<string, unknown> }> {
  const o = input.options;
  const name = o.vllm.name
    .replaceAll("{base}", input.base.model.split("/").pop() ?? input.base.model)
    .replaceAll("{iteration}", String(input.iteration).padStart(3, "0"));
  if (o.handoffCommand) return runHandoffCommand(input, name);
  if (input.target.provider === "llama-cpp") return handOffToLlamaCpp(input);
  if (input.target.provider === "openai-compatible") {
    if (!o.vllm.load) {
      throw new IterAlignError("CONFIG_INVALID", "train.trl: an openai-compatible target needs vllm.load (a vLLM server) or a handoffCommand to serve the trained adapter");
    }
    if (o.mode === "full") {
      throw new IterAlignError("CONFIG_INVALID", "train.trl: a fully fine-tuned model cannot be loaded into a running vLLM server; use mode lora, or a handoffCommand that restarts the server on it");
    }
    return loadIntoVllm(input, name);
  }
  throw new IterAlignError("CONFIG_INVALID", `train.trl: a ${input.target.provider} target cannot serve a trained adapter; use a llama-cpp or openai-compatible (vLLM) target, or a handoffCommand`);
}

async function handOffToLlamaCpp(input: HandoffInput): Promise<{ model: ModelRef; description: Record<string, unknown> }> {
  const o = input.options;
  const src = await ensureLlamaSource({ cacheDir: input.cacheDir, onLine: (line) => input.onProgress({ type: "log", line }) });
  if (o.mode === "full") {
    const out = path.join(input.outDir, HANDOFF_FILES.merged);
    const outtype = o.mergedType === "q8_0" ? "q8_0" : input.run.precision === "fp32" ? "f32" : "f16";
    await convert(input, path.join(src, "convert_hf_to_gguf.py"), [input.run.output, "--outfile", `${out}.tmp`, "--outtype", outtype], out);
    return { model: { provider: "llama-cpp", model: out }, description: { kind: "full model", gguf: out, outtype } };
  }
  const adapter = path.join(input.outDir, HANDOFF_FILES.adapter);
  await convert(input, path.join(src, "convert_lora_to_gguf.py"), ["--base", input.hfBase, "--outfile", `${adapter}.tmp`, "--outtype", "f32", input.run.output], adapter);
  if (o.handoff === "adapter") {
    return { model: { provider: "llama-cpp", model: input.base.model, adapters: [adapter] }, description: { kind: "lora adapter", adapter, base: input.base.model } };
  }
  const tools = o.mergedType === "q8_0" ? (["llama-export-lora", "llama-quantize"] as const) : (["llama-export-lora"] as const);
  const build = await ensureLlamaBuild({ targets: tools, cacheDir: input.cacheDir, onLine: (line) => input.onProgress({ type: "log", line }) });
  const merged = path.join(input.outDir, HANDOFF_FILES.merged);
  const exportLora = build.binaries["llama-export-lora"] as string;
  const mergedTmp = `${merged}.merge.tmp`;
  await runTool(input, exportLora, ["-m", input.base.model, "--lora", adapter, "-o", mergedTmp], "llama-export-lora");
  if (o.mergedType === "q8_0") {
    await runTool(input, build.binaries["llama-quantize"] as string, ["--allow-requantize", mergedTmp, `${merged}.tmp`, "q8_0"], "llama-quantize");
    rmSync(mergedTmp, { force: true });
  } else {
    renameSync(mergedTmp, `${merged}.tmp`);
  }
  renameSync(`${merged}.tmp`, merged);
  return { model: { provider: "llama-cpp", model: merged }, description: { kind: "merged", gguf: merged, adapter, base: input.base.model, type: o.mergedType } };
}

/** Runs one of llama.cpp's conversion scripts with the training interpreter; `out` appears only when it succeeded. */
async function convert(input: HandoffInput, script: string, args: readonly string[], out: string): Promise<void> {
  await runTool(input, input.python, [script, ...args], path.basename(script));
  renameSync(`${out}.tmp`, out);
}

async function runTool(input: HandoffInput, file: string, args: readonly string[], label: string): Promise<void> {
  const tail: string[] = [];
  const exit = await runProcess({
    file,
    args,
    cwd: input.outDir,
    env: { ...process.env, PYTHONUNBUFFERED: "1" },
    signal: input.signal,
    killGraceMs: 5_000,
    label,
    onLine: (line) => {
      tail.push(line);
      if (tail.length > 20) tail.shift();
    },
  });
  if (exit.code !== 0) {
    throw new IterAlignError("TRAINING_FAILED", `${label} failed (exit ${String(exit.code ?? exit.signal)}): ${tail.slice(-5).join(" | ")}`, { details: { kind: "handoff" } });
  }
}

async function runHandoffCommand(input: HandoffInput, name: string): Promise<{ model: ModelRef; description: Record<string, unknown> }> {
  const [file, ...args] = input.options.handoffCommand as [string, ...string[]];
  const tail: string[] = [];
  const exit = await runProcess({
    file,
    args,
    cwd: input.outDir,
    env: {
      ...process.env,
      ITERALIGN_ADAPTER: input.run.output,
      ITERALIGN_MODEL_NAME: name,
      ITERALIGN_ITERATION: String(input.iteration),
      ITERALIGN_BASE_URL: (input.target.baseUrls ?? [])[0] ?? "",
      ITERALIGN_OUTPUT_HASH: input.run.outputHash,
    },
    signal: input.signal,
    killGraceMs: 10_000,
    label: "train.trl.handoffCommand",
    onLine: (line) => {
      tail.push(line);
      if (tail.length > 20) tail.shift();
      input.onProgress({ type: "log", line: `handoff: ${line}` });
    },
  });
  if (exit.code !== 0) {
    throw new IterAlignError("TRAINING_FAILED", `train.trl.handoffCommand failed (exit ${String(exit.code ?? exit.signal)}): ${tail.slice(-5).join(" | ")}`, { details: { kind: "handoff" } });
  }
  return {
    model: { provider: input.target.provider, model: name, revision: input.run.outputHash },
    description: { kind: "command", command: input.options.handoffCommand, name },
  };
}

/** `http://host:8000/v1` → `http://host:8000`: vLLM's LoRA endpoints sit under `/v1` of the server root. */
export function serverRoot(baseUrl: string): string {
  return baseUrl.replace(/\/+$/, "").replace(/\/v1$/, "");
}

async function vllmPost(input: HandoffInput, root: string, endpoint: string, body: Record<string, unknown>): Promise<{ status: number; text: string }> {
  let response: Response;
  try {
    response = await fetch(`${root}/v1/${endpoint}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(input.target.apiKey ? { authorization: `Bearer ${input.target.apiKey}` } : {}) },
      body: JSON.stringify(body),
      signal: input.signal,
    });
  } catch (err) {
    throw new IterAlignError("HTTP_UNREACHABLE", `vLLM ${root}: POST /v1/${endpoint} failed (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
  return { status: response.status, text: await response.text() };
}

async function loadIntoVllm(input: HandoffInput, name: string): Promise<{ model: ModelRef; description: Record<string, unknown> }> {
  const o = input.options;
  const urls = input.target.baseUrls ?? [];
  if (urls.length === 0) throw new IterAlignError("CONFIG_INVALID", "train.trl: the openai-compatible target has no baseUrl to load the adapter into");
  const lora_path = (o.vllm.adapterPath ?? "{adapter}")
    .replaceAll("{adapter}", input.run.output)
    .replaceAll("{iteration}", String(input.iteration).padStart(3, "0"))
    .replaceAll("{name}", name);
  for (const url of urls) {
    const root = serverRoot(url);
    let answer = await vllmPost(input, root, "load_lora_adapter", { lora_name: name, lora_path });
    if (answer.status === 400 && /already (been )?loaded/i.test(answer.text)) {
      // A resumed hand-off: the name is ours (one per iteration); load it again so the server holds these weights.
      await vllmPost(input, root, "unload_lora_adapter", { lora_name: name });
      answer = await vllmPost(input, root, "load_lora_adapter", { lora_name: name, lora_path });
    }
    if (answer.status === 404) {
      throw new IterAlignError(
        "TRAINING_FAILED",
        `vLLM ${root} has no /v1/load_lora_adapter: start it with --enable-lora --max-lora-rank ${o.lora.rank} and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (docs/training.md)`,
        { details: { kind: "handoff" } },
      );
    }
    if (answer.status < 200 || answer.status >= 300) {
      throw new IterAlignError("TRAINING_FAILED", `vLLM ${root} refused to load adapter ${name} from ${lora_path} (HTTP ${answer.status}): ${answer.text.slice(0, 500)}`, {
        details: { kind: "handoff", status: answer.status },
      });
    }
    await expectServed(input, root, name);
    input.onProgress({ type: "status", message: `vLLM ${root} serves adapter ${name}` });
  }
  const previous = input.current.model;
  const unloaded: string[] = [];
  if (o.vllm.unloadPrevious && previous !== input.base.model && previous !== name) {
    for (const url of urls) {
      const answer = await vllmPost(input, serverRoot(url), "unload_lora_adapter", { lora_name: previous });
      if (answer.status >= 200 && answer.status < 300) unloaded.push(`${serverRoot(url)}:${previous}`);
      else input.onProgress({ type: "log", line: `vLLM ${serverRoot(url)}: unloading ${previous} answered HTTP ${answer.status}` });
    }
  }
  return {
    model: { provider: "openai-compatible", model: name, revision: input.run.outputHash },
    description: { kind: "vllm runtime lora", name, lora_path, servers: urls.map(serverRoot), unloaded },
  };
}

/** The adapter must be listed by `/v1/models` (vLLM lists loaded adapters with their path as `root`). */
async function expectServed(input: HandoffInput, root: string, name: string): Promise<void> {
  const response = await fetch(`${root}/v1/models`, { headers: input.target.apiKey ? { authorization: `Bearer ${input.target.apiKey}` } : {}, signal: input.signal });
  if (!response.ok) return; // a server without the listing: the load's success is all we can check
  const body = (await response.json()) as { data?: Array<{ id?: unknown }> };
  if (!(body.data ?? []).some((m) => m.id === name)) {
    throw new IterAlignError("TRAINING_FAILED", `vLLM ${root} accepted adapter ${name} but does not list it in /v1/models`, { details: { kind: "handoff" } });
  }
}

/**
 * A Hugging Face folder with the weights of a GGUF model (dequantized by transformers' GGUF reader), made once
 * per GGUF content and kept in the cache (`<cache>/trl-hf/<fingerprint>`).
 */
export async function ggufToHf(
  gguf: string,
  options: {
    python: string;
    cacheDir: string;
    signal: AbortSignal;
    status: (message: string) => void;
    /** The copy's weight type: float32 (default), or the 16-bit type a trainer computes in (half the file and load memory). */
    dtype?: "float32" | "bfloat16" | "float16";
  },
): Promise<string> {
  const fingerprint = await fingerprintFile(gguf);
  const dtype = options.dtype ?? "float32";
  const key = createHash("sha256").update(fingerprint).digest("hex").slice(0, 16);
  const dir = path.join(options.cacheDir, "trl-hf", dtype === "float32" ? key : `${key}-${dtype}`);
  if (existsSync(path.join(dir, "config.json"))) return dir;
  mkdirSync(path.dirname(dir), { recursive: true });
  options.status(`making a Hugging Face copy of ${path.basename(gguf)} for training (once${dtype === "float32" ? "" : `, ${dtype}`})`);
  const out = await runPython(options.python, [trlScriptPath(), "gguf-to-hf", gguf, dir, ...(dtype === "float32" ? [] : [dtype])]);
  if (out.code !== 0 || !existsSync(path.join(dir, "config.json"))) {
    const why = out.stdout.split("\n").find((l) => l.includes('"error"')) ?? out.stderr.trim().split("\n").slice(-3).join(" | ");
    throw new IterAlignError(
      "TRAINING_FAILED",
      `cannot read ${gguf} into a Hugging Face model (${why}); set train.trl.baseModel to the model's Hugging Face id or folder`,
      { details: { kind: "input" } },
    );
  }
  return dir;
}
