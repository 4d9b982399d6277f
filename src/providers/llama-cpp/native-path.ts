import { availableParallelism } from "node:os";
import { findLlamaBuild, type LlamaTool } from "../../native/llama-build.js";
import { IterAlignError } from "../../spec/errors.js";

/** Which path a model's work takes: `native` (one of iteralign's programs), `engine` (node-llama-cpp), `auto`. */
export type NativeMode = "auto" | "native" | "engine";

/** True when `tool` is built from the current source; false also when that cannot be checked (no git). */
export function nativeToolBuilt(tool: LlamaTool): boolean {
  try {
    return findLlamaBuild([tool]) !== undefined;
  } catch {
    return false;
  }
}

/** The built binary of one of iteralign's programs, or BUILD_FAILED saying how to build it (`what`: `native scorer`). */
export function nativeBinary(tool: LlamaTool, what: string): string {
  const binary = findLlamaBuild([tool])?.binaries[tool];
  if (!binary) {
    throw new IterAlignError(
      "BUILD_FAILED",
      `the ${what} is not built (or is older than its source): run \`iteralign setup ${tool}\` (from a checkout: \`npm run build:llama -- ${tool}\`)`,
    );
  }
  return binary;
}

/** The model and context settings iteralign's native programs share. */
export interface NativeEngineOptions {
  /** The GGUF file to load (the same file the engine path uses). */
  readonly modelFile: string;
  /** GGUF LoRA adapters applied to the model at scale 1 (`--lora`). */
  readonly adapters?: readonly string[];
  /** KV cells of each sequence. */
  readonly contextSize: number;
  /** CPU threads; 0 means all cores, as node-llama-cpp's maxThreads. */
  readonly threads: number;
  readonly sequences: number;
  /** Tokens per decode batch. Default 512, as node-llama-cpp. */
  readonly batchSize?: number;
  /** How long to wait for the model to load, in ms. Default 120 000. */
  readonly startTimeoutMs?: number;
}

/** The command-line arguments of those settings (`sequences` raised to the program's minimum). */
export function nativeEngineArgs(options: NativeEngineOptions, minSequences: number): string[] {
  return [
    "--model", options.modelFile,
    ...(options.adapters ?? []).flatMap((file) => ["--lora", file]),
    "--ctx", String(options.contextSize),
    "--threads", String(options.threads > 0 ? options.threads : availableParallelism()),
    "--seqs", String(Math.max(minSequences, options.sequences)),
    "--batch", String(options.batchSize ?? 512),
  ];
}

/**
 * One model's choice between a native program and the engine path, and the program, started on first use. `auto`
 * picks native when the program is built and falls back to the engine for good if it cannot start (an unsupported
 * model, a binary built for another machine); `native` reports those failures, and the next call tries again.
 */
export class NativePath<S extends { close(): Promise<void> }> {
  private resolved: "native" | "engine" | undefined;
  private service: Promise<S> | undefined;
  private closed = false;

  constructor(
    private readonly mode: NativeMode,
    private readonly tool: LlamaTool,
    private readonly start: () => Promise<S>,
    /** `the native scorer for <model file>`, for messages. */
    private readonly name: string,
  ) {}

  /** The path in use; the first read looks for the program's binary. */
  get path(): "native" | "engine" {
    if (this.resolved === undefined) {
      if (this.mode === "auto") this.resolved = nativeToolBuilt(this.tool) ? "native" : "engine";
      else this.resolved = this.mode;
    }
    return this.resolved;
  }

  /** The running program, or undefined when the engine path should do the work (auto mode after a failed start). */
  async get(): Promise<S | undefined> {
    if (this.closed) throw new IterAlignError("USAGE", `${this.name} is closed`);
    const starting = (this.service ??= this.start());
    try {
      return await starting;
    } catch (err) {
      if (this.mode !== "auto") {
        // The next call tries again (after e.g. `npm run build:llama`), unless another call already did.
        if (this.service === starting) this.service = undefined;
        throw err;
      }
      this.resolved = "engine";
      return undefined;
    }
  }

  /** Stops the program if one was started. */
  async close(): Promise<void> {
    this.closed = true;
    const service = this.service;
    this.service = undefined;
    if (service) await service.then((s) => s.close()).catch(() => undefined);
  }
}
