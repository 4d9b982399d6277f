import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { defaultCacheDir } from "../native/llama-bundle.js";
import { IterAlignError } from "../spec/errors.js";
import type { TrainingExample } from "../spec/records.js";
import type { ModelRef, Trainer, TrainInput, TrainResult } from "../spec/trainer.js";
import { toTrlPreferenceJsonl, toTrlSftJsonl } from "../stages/export.js";
import { runProcess } from "./command-process.js";
import { checkPythonEnvironment, resolvePython, trlScriptPath, type PythonCheck } from "./python-env.js";
import { ggufToHf, handOff, type HandoffTarget } from "./trl-handoff.js";
import { TrlTrainerOptionsSchema, type TrlTrainerOptions, type TrlTrainerOptionsInput } from "./trl-options.js";
import { sha256OfFiles } from "./trainer.js";
import { faultPoint } from "../util/fault-points.js";

export { TrlTrainerOptionsSchema, type TrlTrainerOptions, type TrlTrainerOptionsInput } from "./trl-options.js";

/** Files under the iteration's `train/` folder. */
export const TRL_FILES = {
  dir: "trl",
  job: "trl/job.json",
  sft: "trl/data-sft.jsonl",
  preference: "trl/data-preference.jsonl",
  log: "trl/train.log",
  result: "trl/trl-result.json",
  pid: "trl/trainer.pid",
} as const;

/** What the script prints on its last line (see python/iteralign_trl.py). */
const EVENT_PREFIX = "@iteralign ";

const TrlEventSchema = z.object({ event: z.string() }).passthrough();
type TrlEvent = z.infer<typeof TrlEventSchema>;

/** The script's `trl-result.json`. */
export const TrlRunResultSchema = z.object({
  output: z.string(),
  outputHash: z.string(),
  mode: z.string(),
  method: z.string(),
  precision: z.string(),
  phases: z.array(
    z
      .object({
        phase: z.string(),
        steps: z.number(),
        examples: z.number(),
        trainLoss: z.number().nullable(),
        lossCurve: z.array(z.object({ step: z.number(), loss: z.number() }).passthrough()),
        tokensSeen: z.number().nullable().optional(),
        seconds: z.number(),
        trainableParameters: z.number().optional(),
        totalParameters: z.number().optional(),
      })
      .passthrough(),
  ),
  seconds: z.number(),
  tokensSeen: z.number(),
  peakRssBytes: z.number(),
  peakCudaBytes: z.number().nullable().optional(),
  versions: z.record(z.string(), z.string()),
});
export type TrlRunResult = z.infer<typeof TrlRunResultSchema>;

const FinishedSchema = z.object({ dataHash: z.string(), result: z.record(z.string(), z.unknown()) });

export interface TrlTrainerDeps {
  /** Folder relative paths of the options are resolved against (the config file's). */
  readonly baseDir?: string;
  /** Cache root (the HF copy of a GGUF target, the llama.cpp source and build). */
  readonly cacheDir?: string;
  /** How the trained model reaches the target's server (its provider, URLs, key). */
  readonly target?: HandoffTarget;
  /** Environment of the training process (before iteralign's variables). Default: process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/**
 * Training with Hugging Face TRL in a Python environment (`python/iteralign_trl.py`, shipped with the package):
 * SFT on the gated answers (loss on the answer only, in the model's chat template) and/or DPO on the preference
 * pairs, with a LoRA / QLoRA adapter (PEFT) or every weight, on the CPU or GPUs (one process, `accelerate launch`
 * or `torchrun`). Checkpoints are kept under the iteration's `train/trl/`, so a killed training resumes from the
 * last one; a finished training is recorded in the run store and never repeated. The trained adapter is then
 * handed to the target's provider (see {@link handOff}).
 */
export class TrlTrainer implements Trainer {
  readonly name = "trl";
  readonly options: TrlTrainerOptions;
  private readonly baseDir: string;
  private readonly cacheDir: string;
  private environment: Promise<PythonCheck> | undefined;

  constructor(
    options: TrlTrainerOptionsInput = {},
    private readonly deps: TrlTrainerDeps = {},
  ) {
    const parsed = TrlTrainerOptionsSchema.safeParse(options);
    if (!parsed.success) throw new IterAlignError("CONFIG_INVALID", `train.trl: ${z.prettifyError(parsed.error)}`);
    this.options = parsed.data;
    this.baseDir = deps.baseDir ?? process.cwd();
    this.cacheDir = deps.cacheDir ?? defaultCacheDir();
  }

  /** The interpreter training runs with. */
  get python(): string {
    return resolvePython(this.options.python, this.baseDir, this.cacheDir);
  }

  /** Checks (once) that the interpreter has every package; throws TRAINER_ENVIRONMENT naming what is missing. */
  checkEnvironment(): Promise<PythonCheck> {
    this.environment ??= checkPythonEnvironment(this.python);
    return this.environment;
  }

  async train(input: TrainInput): Promise<TrainResult> {
    const o = this.options;
    const settings: Record<string, unknown> = { ...o };
    if (input.examples.length === 0) {
      input.onProgress({ type: "status", message: "no new training examples: the model stays as it is" });
      return { model: input.current, trainer: this.name, settings, dataHash: sha256OfFiles([]), examples: 0 };
    }
    const env = await this.checkEnvironment();
    const device = o.device === "auto" ? (env.device.type === "cuda" ? "cuda" : "cpu") : o.device;
    if (device === "cuda" && env.device.type !== "cuda") {
      throw new IterAlignError("TRAINER_ENVIRONMENT", `train.trl.device is cuda, but torch in ${this.python} sees no CUDA device`);
    }
    const outDir = path.resolve(input.outDir);
    const file = (name: keyof typeof TRL_FILES): string => path.join(outDir, TRL_FILES[name]);
    mkdirSync(file("dir"), { recursive: true });

    // The weights training starts from, as a Hugging Face folder or id.
    const baseModel = await this.baseModel(input, (message) => input.onProgress({ type: "status", message }));
    const previous = o.warmStart === "previous" ? previousOutput(outDir, input.iteration, o.mode) : undefined;
    const examples: readonly TrainingExample[] = o.warmStart === "previous" && previous ? input.examples : input.allExamples;
    const wantsSft = o.method !== "dpo";
    const wantsDpo = o.method !== "sft";
    writeFileSync(file("sft"), toTrlSftJsonl(examples));
    writeFileSync(file("preference"), toTrlPreferenceJsonl(examples));
    const preferencePairs = readFileSync(file("preference"), "utf8").split("\n").filter((l) => l.length > 0).length;
    if (wantsDpo && preferencePairs === 0) {
      throw new IterAlignError("TRAINING_FAILED", `train.trl.method ${o.method}: none of the ${examples.length} examples has a rejected answer to prefer against`, { details: { kind: "input" } });
    }
    const dataFiles = [...(wantsSft ? [file("sft")] : []), ...(wantsDpo ? [file("preference")] : [])];
    const dataHash = sha256OfFiles(dataFiles);

    const finished = FinishedSchema.safeParse(input.state.get("trl"));
    if (finished.success && finished.data.dataHash === dataHash) {
      const stored = finished.data.result as unknown as TrainResult;
      if (existsSync(path.join(outDir, TRL_FILES.dir, o.mode === "full" ? "model" : "adapter"))) {
        input.onProgress({ type: "status", message: "training of this iteration already finished: reusing its result" });
        return stored;
      }
    }

    const job = {
      baseModel: previous && o.mode === "full" ? previous.folder : baseModel,
      ...(previous && o.mode !== "full" ? { startAdapter: previous.folder } : {}),
      outDir: file("dir"),
      method: o.method,
      mode: o.mode,
      lora: o.lora,
      learningRate: o.learningRate,
      epochs: o.epochs,
      schedule: o.schedule,
      warmupRatio: o.warmupRatio,
      batchSize: o.batchSize,
      gradientAccumulation: o.gradientAccumulation,
      seed: o.seed,
      precision: o.precision,
      device,
      checkpointSteps: o.checkpointSteps,
      maxLength: o.maxLength,
      dpoBeta: o.dpoBeta,
      // Only when set, so the job text (and with it the resume check) of runs that never set it stays the same.
      ...(o.gradientCheckpointing ? { gradientCheckpointing: true } : {}),
      ...(o.lossChunk !== "auto" ? { lossChunk: o.lossChunk } : {}),
      ...(o.threads !== undefined ? { threads: o.threads } : {}),
      sftFile: file("sft"),
      preferenceFile: file("preference"),
    };
    // A job with other inputs than the checkpoints on disk were made from must not resume from them.
    const jobText = `${JSON.stringify(job, null, 2)}\n`;
    if (existsSync(file("job")) && readFileSync(file("job"), "utf8") !== jobText) {
      input.onProgress({ type: "log", line: "the training job changed since its checkpoints were written: starting over" });
      for (const name of readdirSync(file("dir"))) if (!/\.(jsonl|log)$/.test(name)) rmSync(path.join(file("dir"), name), { recursive: true, force: true });
    }
    writeFileSync(file("job"), jobText);
    stopLeftoverTrainer(file("pid"));
    rmSync(file("result"), { force: true });

    const launch = this.command(file("job"), device);
    const log = openSync(file("log"), "a");
    const events: TrlEvent[] = [];
    let lastError: TrlEvent | undefined;
    try {
      writeSync(log, `# ${new Date().toISOString()} ${[launch.file, ...launch.args].join(" ")}\n`);
      input.onProgress({ type: "status", message: `training ${examples.length} examples with TRL (${o.method}, ${o.mode}, ${device}${o.numProcesses > 1 ? `, ${o.numProcesses} processes` : ""})` });
      const exit = await runProcess({
        file: launch.file,
        args: launch.args,
        cwd: outDir,
        env: {
          ...(this.deps.env ?? process.env),
          ITERALIGN_PARENT_PID: String(process.pid),
          PYTHONUNBUFFERED: "1",
          // Sets (PEFT's target modules) are written in hash order: a fixed seed writes the same adapter_config.json.
          PYTHONHASHSEED: "0",
          TOKENIZERS_PARALLELISM: "false",
          HF_HUB_DISABLE_TELEMETRY: "1",
          ...cpuMallocEnv(device, this.deps.env ?? process.env),
        },
        signal: input.signal,
        ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
        killGraceMs: 10_000,
        label: "the trl trainer",
        onStart: (pid) => writeFileSync(file("pid"), `${pid}\n`),
        onLine: (line) => {
          if (line.startsWith(EVENT_PREFIX)) {
            const event = parseEvent(line.slice(EVENT_PREFIX.length));
            if (event) {
              events.push(event);
              if (event.event === "error") lastError = event;
              reportEvent(event, input);
              // Crash tests stop the run right after a checkpoint was written (ITERALIGN_FAULT_AT=trl-checkpoint:<iteration>:<step>).
              if (event.event === "save") faultPoint(`trl-checkpoint:${input.iteration}:${String(event["step"])}`);
            }
          }
          writeSync(log, `${line}\n`);
        },
      });
      if (exit.code !== 0) {
        const why = lastError ? `${String(lastError["kind"])}: ${String(lastError["message"])}` : `exit ${String(exit.code ?? exit.signal)}`;
        throw new IterAlignError("TRAINING_FAILED", `the trl trainer failed (${why}); see ${file("log")}. Checkpoints are kept: --resume continues from the last one`, {
          details: { kind: lastError?.["kind"] ?? "process", log: file("log") },
        });
      }
    } finally {
      closeSync(log);
      rmSync(file("pid"), { force: true });
    }
    const run = readRunResult(file("result"));
    input.onProgress({ type: "status", message: `handing the trained ${o.mode === "full" ? "model" : "adapter"} to the target` });
    const handoff = await handOff({
      options: o,
      run,
      iteration: input.iteration,
      base: input.base,
      current: input.current,
      hfBase: baseModel,
      outDir,
      python: this.python,
      cacheDir: this.cacheDir,
      target: this.deps.target ?? { provider: input.base.provider },
      signal: input.signal,
      onProgress: input.onProgress,
    });
    const last = run.phases.at(-1);
    const lossCurve = run.phases.flatMap((p, i) => p.lossCurve.map((point) => ({ step: point.step + run.phases.slice(0, i).reduce((s, q) => s + q.steps, 0), loss: point.loss })));
    const result: TrainResult = {
      model: handoff.model,
      trainer: this.name,
      settings: {
        ...settings,
        python: this.python,
        device,
        baseModel,
        startedFrom: previous?.folder ?? baseModel,
        precisionUsed: run.precision,
        versions: run.versions,
        output: run.output,
        outputHash: run.outputHash,
        handoff: handoff.description,
        lossOn: "answer tokens only (prompt-completion in the model's chat template)",
        preferencePairs,
      },
      dataHash,
      examples: examples.length,
      metrics: {
        ...(last?.trainLoss !== null && last?.trainLoss !== undefined ? { finalLoss: last.trainLoss } : {}),
        ...(run.seconds > 0 && run.tokensSeen > 0 ? { tokensPerSecond: run.tokensSeen / run.phases.reduce((s, p) => s + p.seconds, 0) } : {}),
        seconds: run.seconds,
        lossCurve,
      },
    };
    input.state.set("trl", { dataHash, result });
    return result;
  }

  /** The Hugging Face weights of the config's target: `baseModel`, or a folder made once from the target's GGUF. */
  private async baseModel(input: TrainInput, status: (message: string) => void): Promise<string> {
    const configured = this.options.baseModel;
    if (configured !== undefined) {
      const local = path.resolve(this.baseDir, configured);
      return existsSync(local) ? local : configured;
    }
    if (input.base.provider !== "llama-cpp") {
      throw new IterAlignError(
        "CONFIG_INVALID",
        `train.trl.baseModel: the target ${input.base.model} is served by ${input.base.provider}; name the Hugging Face model id or folder of its weights`,
      );
    }
    // A 16-bit trainer loads a 16-bit copy: the weights it computes with, half the file mapped while loading.
    const precision = this.options.precision;
    const dtype = precision === "bf16" ? "bfloat16" : precision === "fp16" ? "float16" : "float32";
    return ggufToHf(input.base.model, { python: this.python, cacheDir: this.cacheDir, signal: input.signal, status, dtype });
  }

  /** The launcher command line of a job. */
  command(jobFile: string, device: string): { file: string; args: string[] } {
    const o = this.options;
    const script = trlScriptPath();
    const python = this.python;
    if (o.launcher === "python") return { file: python, args: [script, "train", jobFile] };
    if (o.launcher === "torchrun") {
      return { file: python, args: ["-m", "torch.distributed.run", "--nproc-per-node", String(o.numProcesses), ...o.launcherArgs, script, "train", jobFile] };
    }
    const config = o.acceleratorConfig !== undefined ? ["--config_file", path.resolve(this.baseDir, o.acceleratorConfig)] : [];
    // Without a config file, several processes run data-parallel (torch.distributed: NCCL on GPUs, gloo on CPUs).
    const defaults = config.length === 0 ? ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", ...(o.numProcesses > 1 ? ["--multi_gpu"] : [])] : [];
    return {
      file: python,
      args: ["-m", "accelerate.commands.launch", ...config, "--num_processes", String(o.numProcesses), ...defaults, ...(device === "cpu" && o.numProcesses === 1 ? ["--cpu"] : []), ...o.launcherArgs, script, "train", jobFile],
    };
  }
}

function parseEvent(text: string): TrlEvent | undefined {
  try {
    const parsed = TrlEventSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

function reportEvent(event: TrlEvent, input: TrainInput): void {
  const num = (key: string): number | undefined => (typeof event[key] === "number" ? event[key] : undefined);
  if (event.event === "step") {
    const step = num("step") ?? 0;
    const totalSteps = num("totalSteps");
    const epoch = num("epoch");
    const loss = num("loss");
    input.onProgress({ type: "step", step, ...(totalSteps !== undefined ? { totalSteps } : {}), ...(epoch !== undefined ? { epoch } : {}), ...(loss !== undefined ? { loss } : {}) });
  } else if (event.event === "resume") {
    input.onProgress({ type: "status", message: `resuming ${String(event["phase"])} from ${String(event["checkpoint"])}` });
  } else if (event.event === "phase") {
    input.onProgress({ type: "status", message: `${String(event["phase"])}: ${String(event["totalSteps"])} steps` });
  } else if (event.event === "error") {
    input.onProgress({ type: "log", line: `trl trainer: ${String(event["kind"])}: ${String(event["message"])}` });
  }
}

function readRunResult(file: string): TrlRunResult {
  if (!existsSync(file)) throw new IterAlignError("TRAINING_FAILED", `the trl trainer exited without writing ${file}`);
  const parsed = TrlRunResultSchema.safeParse(JSON.parse(readFileSync(file, "utf8")));
  if (!parsed.success) throw new IterAlignError("TRAINING_FAILED", `${file}: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/**
 * The trained output of the latest earlier iteration that trained with this trainer (`iterations/NNN/train/trl/
 * adapter` or `model`), which `warmStart: previous` continues from; undefined when there is none.
 */
export function previousOutput(outDir: string, iteration: number, mode: TrlTrainerOptions["mode"]): { folder: string; iteration: number } | undefined {
  const iterationsDir = path.dirname(path.dirname(outDir));
  for (let i = iteration - 1; i >= 0; i--) {
    const dir = path.join(iterationsDir, String(i).padStart(3, "0"), "train", TRL_FILES.dir);
    const folder = path.join(dir, mode === "full" ? "model" : "adapter");
    if (existsSync(path.join(dir, "trl-result.json")) && existsSync(folder)) return { folder, iteration: i };
  }
  return undefined;
}

/**
 * A training process of an earlier, killed iteralign may still run (it has its own process group): stop it before
 * a new one writes the same checkpoints. The pid file names the group; only a Python process is signalled.
 */
function stopLeftoverTrainer(pidFile: string): void {
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, "utf8").trim());
  rmSync(pidFile, { force: true });
  if (!Number.isInteger(pid) || pid <= 1) return;
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return;
  }
  if (!cmdline.includes("iteralign_trl.py") && !cmdline.includes("accelerate") && !cmdline.includes("torch.distributed")) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // already gone
  }
  // Wait until the group is gone (it holds the checkpoint folder).
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  }
}

export type { ModelRef };

/**
 * On a Linux CPU, glibc's malloc keeps the blocks torch frees (activations, each loss chunk's logits) in its heaps
 * once its adaptive mmap threshold has grown, so every step's temporaries pile up in the process's peak. A fixed
 * 128 KiB threshold maps each large block on its own and returns it when freed: about a fifth less peak memory
 * for a LoRA run on the CPU (`npm run bench:trl`), no slower there. The user's own settings win.
 */
export function cpuMallocEnv(device: string, env: NodeJS.ProcessEnv): Record<string, string> {
  if (device !== "cpu" || process.platform !== "linux") return {};
  return {
    ...(env["MALLOC_MMAP_THRESHOLD_"] === undefined ? { MALLOC_MMAP_THRESHOLD_: "131072" } : {}),
    ...(env["MALLOC_TRIM_THRESHOLD_"] === undefined ? { MALLOC_TRIM_THRESHOLD_: "131072" } : {}),
  };
}
