/**
 * The process side of the native trainer (`native/iteralign-finetune`): spawning it, its JSON-lines events,
 * and turning its exit into a result or a typed error that says what went wrong.
 */
import { spawn } from "node:child_process";
import { z } from "zod";
import { IterAlignError } from "../spec/errors.js";

const StartEvent = z.object({
  event: z.literal("start"),
  examples: z.number().int(),
  totalSteps: z.number().int(),
  epochs: z.number().int(),
  ctx: z.number().int(),
  answerTokensPerEpoch: z.number().int(),
  modelParameters: z.number(),
  trainableParameters: z.number(),
});
const ConvertEvent = z.object({ event: z.literal("convert"), from: z.array(z.string()), to: z.string(), seconds: z.number() });
const StepEvent = z.object({
  event: z.literal("step"),
  step: z.number().int(),
  totalSteps: z.number().int(),
  epoch: z.number().int(),
  /** Index (0-based) of the example trained in this step, in the training file's order. */
  example: z.number().int(),
  /** Mean negative log-likelihood of the example's answer tokens, before this step's update; null if not finite. */
  loss: z.number().nullable(),
  lr: z.number(),
  tokens: z.number().int(),
  answerTokens: z.number().int(),
  tokensPerSecond: z.number(),
  seconds: z.number(),
});
const EpochEvent = z.object({ event: z.literal("epoch"), epoch: z.number().int(), loss: z.number().nullable(), trainedTokens: z.number().int() });
const DoneEvent = z.object({
  event: z.literal("done"),
  out: z.string(),
  seconds: z.number(),
  steps: z.number().int().optional(),
  trainedTokens: z.number().int().optional(),
  tokens: z.number().int().optional(),
  tokensPerSecond: z.number().optional(),
});
const ErrorEvent = z.object({ event: z.literal("error"), kind: z.string(), message: z.string() });

const FinetuneEventSchema = z.discriminatedUnion("event", [StartEvent, ConvertEvent, StepEvent, EpochEvent, DoneEvent, ErrorEvent]);

/** One line of the native trainer's output. */
export type FinetuneEvent = z.infer<typeof FinetuneEventSchema>;
export type FinetuneDone = z.infer<typeof DoneEvent>;

export interface FinetuneRunOptions {
  readonly binary: string;
  readonly args: readonly string[];
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: FinetuneEvent) => void;
  /** Every line the process writes, stdout and stderr alike (for the training log). */
  readonly onLine?: (line: string) => void;
}

/** Exit statuses of iteralign-finetune (see its source header). */
const EXIT_USAGE = 2;
const EXIT_DIVERGED = 3;
const EXIT_MEMORY = 4;
const STDERR_LINES = 20;
const OUT_OF_MEMORY = /failed to allocate|out of memory|cannot allocate|bad_alloc|ggml_backend_cpu_buffer_type_alloc_buffer/i;

/**
 * Runs iteralign-finetune to completion. Resolves with its `done` event; rejects with TRAINING_FAILED (details:
 * `kind` = diverged, memory, input or internal) or ABORTED (the signal fired: the process is killed).
 */
export function runFinetune(options: FinetuneRunOptions): Promise<FinetuneDone> {
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(new IterAlignError("ABORTED", "training aborted before it started"));
      return;
    }
    const child = spawn(options.binary, options.args, { stdio: ["ignore", "pipe", "pipe"] });
    const stderrTail: string[] = [];
    let done: FinetuneDone | undefined;
    let reported: z.infer<typeof ErrorEvent> | undefined;
    let aborted = false;
    const onAbort = (): void => {
      aborted = true;
      child.kill("SIGKILL");
    };
    options.signal?.addEventListener("abort", onAbort, { once: true });

    const stdout = lines((line) => {
      options.onLine?.(line);
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        return; // not protocol: kept in the log only
      }
      const parsed = FinetuneEventSchema.safeParse(value);
      if (!parsed.success) return;
      if (parsed.data.event === "done") done = parsed.data;
      if (parsed.data.event === "error") reported = parsed.data;
      options.onEvent?.(parsed.data);
    });
    const stderr = lines((line) => {
      options.onLine?.(line);
      stderrTail.push(line);
      if (stderrTail.length > STDERR_LINES) stderrTail.shift();
    });
    child.stdout.setEncoding("utf8").on("data", stdout.push);
    child.stderr.setEncoding("utf8").on("data", stderr.push);
    child.on("error", (err) => {
      options.signal?.removeEventListener("abort", onAbort);
      reject(new IterAlignError("TRAINING_FAILED", `cannot run ${options.binary}: ${err.message}`, { cause: err, details: { kind: "internal" } }));
    });
    child.on("close", (code, signal) => {
      stdout.flush();
      stderr.flush();
      options.signal?.removeEventListener("abort", onAbort);
      if (aborted) {
        reject(new IterAlignError("ABORTED", "training aborted (the trainer process was killed)"));
        return;
      }
      if (code === 0 && done) {
        resolve(done);
        return;
      }
      reject(failure({ code, signal, reported, stderrTail }));
    });
  });
}

function failure(exit: {
  code: number | null;
  signal: NodeJS.Signals | null;
  reported: { kind: string; message: string } | undefined;
  stderrTail: readonly string[];
}): IterAlignError {
  const tail = exit.stderrTail.length > 0 ? `\nlast stderr lines:\n${exit.stderrTail.join("\n")}` : "";
  const how = exit.signal
    ? `was killed by ${exit.signal}${exit.signal === "SIGKILL" ? ", on Linux usually the kernel's out-of-memory killer" : ""}`
    : `exited with status ${String(exit.code)}`;
  const said = exit.reported ? `: ${exit.reported.message}` : "";
  if (exit.code === EXIT_DIVERGED) {
    return new IterAlignError("TRAINING_FAILED", `training diverged${said}. Lower the learning rate; the previous model is kept.`, {
      details: { kind: "diverged" },
    });
  }
  const memory =
    exit.code === EXIT_MEMORY || exit.signal === "SIGKILL" || exit.stderrTail.some((l) => OUT_OF_MEMORY.test(l));
  if (memory) {
    return new IterAlignError(
      "TRAINING_FAILED",
      `training ran out of memory (the trainer ${how}${said}). Full F32 fine-tuning needs about 16 bytes per parameter plus activations; lower contextLength or use a smaller model. The previous model is kept.${tail}`,
      { details: { kind: "memory" } },
    );
  }
  if (exit.code === EXIT_USAGE) {
    return new IterAlignError("TRAINING_FAILED", `the native trainer rejected its input${said}${tail}`, { details: { kind: "input" } });
  }
  return new IterAlignError("TRAINING_FAILED", `the native trainer ${how}${said}${tail}`, { details: { kind: "internal" } });
}

/** Splits a stream's chunks into lines. */
function lines(onLine: (line: string) => void): { push: (chunk: string) => void; flush: () => void } {
  let buffer = "";
  return {
    push: (chunk: string) => {
      buffer += chunk;
      for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
        const line = buffer.slice(0, nl).trimEnd();
        buffer = buffer.slice(nl + 1);
        if (line !== "") onLine(line);
      }
    },
    flush: () => {
      if (buffer.trim() !== "") onLine(buffer.trimEnd());
      buffer = "";
    },
  };
}

/**
 * Converts a GGUF file to F32, F16 or Q8_0 with llama.cpp's quantizer (every metadata key kept), through
 * `iteralign-finetune convert`.
 */
export async function convertModel(options: {
  readonly binary: string;
  readonly input: string;
  readonly output: string;
  readonly type: "f32" | "f16" | "q8_0";
  readonly threads?: number;
  readonly signal?: AbortSignal;
}): Promise<void> {
  const args = ["convert", "--in", options.input, "--out", options.output, "--type", options.type];
  if (options.threads !== undefined) args.push("--threads", String(options.threads));
  await runFinetune({ binary: options.binary, args, ...(options.signal ? { signal: options.signal } : {}) });
}
