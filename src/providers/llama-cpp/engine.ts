import { access, constants, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  getLlama,
  LlamaLogLevel,
  resolveModelFile,
  type Llama,
  type LlamaModel,
} from "node-llama-cpp";
import { IterAlignError } from "../../spec/errors.js";
import { defaultCacheDir } from "../../native/llama-bundle.js";
import { governThreads } from "./thread-governor.js";
import { fingerprintFile } from "../../util/file-fingerprint.js";
import { hfFolderToGguf, isHfModelFolder } from "../../native/hf-to-gguf.js";

export { fingerprintFile };

/** How the engine uses the hardware. */
export interface EngineOptions {
  /** `false` (CPU, the default here) or `"auto"` to let node-llama-cpp pick CUDA/Vulkan/Metal. */
  readonly gpu?: false | "auto";
  /** Upper bound on CPU threads for all evaluation in this process. Default: {@link defaultEngineThreads}; 0 = no limit. */
  readonly maxThreads?: number;
}

const llamas = new Map<string, Promise<Llama>>();

/**
 * The CPU threads the engine uses when none are configured: the cores this process may run on.
 * node-llama-cpp's own default is at least 4 threads, and on a machine with fewer cores ggml's worker threads
 * then spin against each other: generation on 2 cores was measured ~25x slower with 4 threads than with 2.
 */
export function defaultEngineThreads(): number {
  return Math.max(1, os.availableParallelism());
}

/** `maxThreads` as the engine applies it: the configured value, or {@link defaultEngineThreads}. */
export function engineThreads(options: EngineOptions): number {
  return options.maxThreads ?? defaultEngineThreads();
}

/** One llama.cpp binding per process and GPU setting; node-llama-cpp loads its native addon once. */
export function getEngine(options: EngineOptions = {}): Promise<Llama> {
  const maxThreads = engineThreads(options);
  // With no thread count configured on the CPU, the budget follows the cores other processes leave free.
  const governed = options.maxThreads === undefined && (options.gpu ?? false) === false;
  const key = JSON.stringify([options.gpu ?? false, maxThreads, governed]);
  let llama = llamas.get(key);
  if (!llama) {
    llama = getLlama({
      gpu: options.gpu ?? false,
      build: "never",
      logLevel: LlamaLogLevel.error,
      maxThreads,
    }).then((engine) => {
      if (governed) governThreads(engine, maxThreads);
      return engine;
    }).catch((err: unknown) => {
      llamas.delete(key);
      throw new IterAlignError("MODEL_LOAD_FAILED", `cannot start the llama.cpp engine: ${errorText(err)}`, {
        cause: err,
      });
    });
    llamas.set(key, llama);
  }
  return llama;
}

/** True for model references node-llama-cpp downloads (hf:, https:). */
export function isRemoteModelRef(ref: string): boolean {
  return /^(hf:|huggingface:|https?:\/\/)/i.test(ref);
}

/** Directory downloaded models are kept in: $ITERALIGN_MODELS_DIR or <cache>/models. */
export function modelsDir(): string {
  return process.env.ITERALIGN_MODELS_DIR ?? path.join(defaultCacheDir(), "models");
}

/** How long a model download may wait: for the first byte, and between bytes. */
export interface DownloadTimeouts {
  /** Until the server starts sending the file (resolving, connecting, headers). Default 30 000 ms. */
  readonly connectTimeoutMs?: number;
  /** Longest pause between received bytes once the download runs. Default 60 000 ms. */
  readonly idleTimeoutMs?: number;
}

/**
 * Resolves a model reference to a local GGUF file. Paths are checked for existence and readability;
 * `hf:` URIs and URLs are downloaded once by node-llama-cpp's resolver into the models directory, under a
 * watchdog: a server that never answers, or stops sending, fails with TIMEOUT instead of hanging the run.
 */
export async function resolveModelPath(
  ref: string,
  options: { baseDir?: string; onProgress?: (done: number, total: number) => void; signal?: AbortSignal; timeouts?: DownloadTimeouts } = {},
): Promise<string> {
  if (isRemoteModelRef(ref)) return downloadModel(ref, options);
  const file = path.resolve(options.baseDir ?? process.cwd(), ref);
  if (isHfModelFolder(file)) {
    // A Hugging Face model folder: its GGUF, made once and cached.
    return hfFolderToGguf(file);
  }
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new IterAlignError("MODEL_NOT_FOUND", `model path ${file} is not a file`, { details: { path: file } });
    await access(file, constants.R_OK);
  } catch (err) {
    if (err instanceof IterAlignError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new IterAlignError(
      "MODEL_NOT_FOUND",
      code === "EACCES" ? `model file ${file} is not readable (permission denied)` : `model file ${file} does not exist`,
      { cause: err, details: { path: file } },
    );
  }
  return file;
}

async function downloadModel(
  ref: string,
  options: { onProgress?: (done: number, total: number) => void; signal?: AbortSignal; timeouts?: DownloadTimeouts },
): Promise<string> {
  const connectMs = options.timeouts?.connectTimeoutMs ?? 30_000;
  const idleMs = options.timeouts?.idleTimeoutMs ?? 60_000;
  const watchdog = new AbortController();
  const onAbort = (): void => watchdog.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  let receiving = false;
  let lastBytes = -1;
  let lastChange = Date.now();
  let stalled: ((error: IterAlignError) => void) | undefined;
  const stall = new Promise<never>((_, reject) => {
    stalled = reject;
  });
  const timer = setInterval(() => {
    const limit = receiving ? idleMs : connectMs;
    if (Date.now() - lastChange <= limit) return;
    const error = new IterAlignError(
      "TIMEOUT",
      receiving
        ? `downloading ${ref}: no data for ${idleMs} ms after ${lastBytes} bytes; the server stopped sending (retry later, or download the GGUF elsewhere and give its path)`
        : `downloading ${ref}: the server did not start sending within ${connectMs} ms (check the network and the URI, or download the GGUF elsewhere and give its path)`,
      { retryable: true, details: { ref, bytes: Math.max(0, lastBytes), connectTimeoutMs: connectMs, idleTimeoutMs: idleMs } },
    );
    watchdog.abort(error);
    stalled?.(error);
  }, Math.max(50, Math.min(1000, Math.floor(Math.min(connectMs, idleMs) / 4))));
  timer.unref();
  try {
    return await Promise.race([
      resolveModelFile(ref, {
        directory: modelsDir(),
        download: "auto",
        cli: false,
        signal: watchdog.signal,
        onProgress: (s: { totalSize: number; downloadedSize: number }) => {
          if (s.downloadedSize !== lastBytes) {
            receiving = receiving || s.downloadedSize > 0;
            lastBytes = s.downloadedSize;
            lastChange = Date.now();
          }
          options.onProgress?.(s.downloadedSize, s.totalSize);
        },
      }),
      stall,
    ]);
  } catch (err) {
    if (err instanceof IterAlignError) throw err;
    if (options.signal?.aborted) throw new IterAlignError("ABORTED", `download of ${ref} aborted`, { cause: err });
    const text = errorText(err);
    const offline = /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|fetch failed|network|getaddrinfo/i.test(text);
    throw new IterAlignError(
      "MODEL_DOWNLOAD_FAILED",
      offline
        ? `cannot download ${ref}: no network connection to the model hub (${text}). Download the GGUF elsewhere and set the model to its local path, e.g. 'model: ./models/model.gguf'.`
        : `cannot resolve ${ref}: ${text}. Check the URI (hf:<user>/<repo>:<quant> or hf:<user>/<repo>/<file>.gguf), or use a local GGUF path.`,
      { cause: err, details: { ref } },
    );
  } finally {
    clearInterval(timer);
    options.signal?.removeEventListener("abort", onAbort);
    stall.catch(() => undefined);
  }
}


interface LoadedEntry {
  readonly model: Promise<LlamaModel>;
  refs: number;
}

const loaded = new Map<string, LoadedEntry>();

/**
 * Loads a GGUF once per process and engine setting; roles naming the same file share it.
 * Call the returned `release` when done; the model is disposed when its last user releases it.
 */
export async function acquireModel(
  file: string,
  engine: EngineOptions = {},
): Promise<{ model: LlamaModel; release: () => Promise<void> }> {
  const key = JSON.stringify([file, engine.gpu ?? false, engineThreads(engine)]);
  let entry = loaded.get(key);
  if (!entry) {
    const model = (async () => {
      const llama = await getEngine(engine);
      try {
        return await llama.loadModel({ modelPath: file, gpuLayers: engine.gpu ? "auto" : 0 });
      } catch (err) {
        throw new IterAlignError("MODEL_LOAD_FAILED", `cannot load model ${file}: ${errorText(err)}`, {
          cause: err,
          details: { path: file },
        });
      }
    })();
    entry = { model, refs: 0 };
    loaded.set(key, entry);
    model.catch(() => loaded.delete(key));
  }
  entry.refs++;
  const current = entry;
  let model: LlamaModel;
  try {
    model = await current.model;
  } catch (err) {
    current.refs--;
    throw err;
  }
  let released = false;
  return {
    model,
    release: async () => {
      if (released) return;
      released = true;
      current.refs--;
      if (current.refs === 0 && loaded.get(key) === current) {
        loaded.delete(key);
        await model.dispose();
      }
    },
  };
}

/** Number of distinct model files loaded in this process (for tests and diagnostics). */
export function loadedModelCount(): number {
  return loaded.size;
}

import { errorText } from "../../util/error-text.js";
export { errorText };
