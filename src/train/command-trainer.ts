import { createWriteStream, existsSync, readFileSync, rmSync, type WriteStream } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { PROVIDER_IDS, providerOf, type ModelConfig } from "../providers/builtin.js";
import { IterAlignError } from "../spec/errors.js";
import { runProcess } from "./command-process.js";
import {
  COMMAND_PLACEHOLDERS,
  placeholderEnv,
  placeholdersIn,
  placeholderValues,
  substituteArgument,
} from "./command-placeholders.js";
import { sha256OfFiles } from "./trainer.js";
import type { ModelRef, TrainInput, TrainResult, Trainer } from "../spec/trainer.js";

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const CommandTrainerOptionsSchema = z
  .object({
    command: z
      .union([z.array(z.string()).min(1), z.string().min(1)])
      .describe(
        "Argv array, run without a shell, `{placeholders}` substituted per element; or one string run with `/bin/sh -c` (use \"$ITERALIGN_*\" variables there, never placeholders).",
      ),
    cwd: z.string().min(1).optional().describe("Working directory of the command (relative paths: to the config file in `iteralign run`). Default: the config file's folder."),
    env: z
      .record(z.string().regex(ENV_NAME, "environment variable names use letters, digits and '_'"), z.string())
      .default({})
      .describe("Variables added to iteralign's environment for the command (ITERALIGN_* are reserved)."),
    timeoutMs: z.number().int().positive().optional().describe("Stop the command (its whole process group) after this long."),
    killGraceMs: z
      .number()
      .int()
      .min(0)
      .default(10_000)
      .describe("Time between SIGTERM and SIGKILL when stopping the command (abort, timeout)."),
  })
  .strict()
  .superRefine((options, ctx) => {
    if (typeof options.command === "string") {
      const used = placeholdersIn(options.command);
      if (used.length > 0) {
        const names = [...new Set(used)];
        ctx.addIssue({
          code: "custom",
          path: ["command"],
          message: `placeholders are substituted in the array form only; in a shell string use ${names
            .map((n) => `"$${COMMAND_PLACEHOLDERS[n].env}"`)
            .join(", ")} instead of ${names.map((n) => `{${n}}`).join(", ")}`,
        });
      }
    }
    for (const name of Object.keys(options.env)) {
      if (name.startsWith("ITERALIGN_")) {
        ctx.addIssue({ code: "custom", path: ["env", name], message: "ITERALIGN_* variables are set by iteralign" });
      }
    }
  });
export type CommandTrainerOptions = z.input<typeof CommandTrainerOptionsSchema>;
type ResolvedOptions = z.infer<typeof CommandTrainerOptionsSchema>;

/** What the command writes to ITERALIGN_RESULT_FILE. */
export const CommandResultSchema = z.object({
  model: z.string().min(1),
  provider: z.enum(PROVIDER_IDS as [string, ...string[]]).optional(),
  metrics: z
    .object({
      finalLoss: z.number().optional(),
      tokensPerSecond: z.number().optional(),
      seconds: z.number().optional(),
      lossCurve: z.array(z.object({ step: z.number(), loss: z.number() })).optional(),
    })
    .optional(),
});
export type CommandResult = z.infer<typeof CommandResultSchema>;

export interface CommandTrainerDeps {
  /** The environment the command inherits (before `env` and ITERALIGN_*). Default: process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

const RESULT_FILE = "result.json";
const LOG_FILE = "train.log";
const TAIL_LINES = 20;
/** State key of a finished run's result, so a restart after training does not train again. */
const STATE_RESULT = "command.result";
const StoredResultSchema = z.object({ fingerprint: z.string(), model: z.string(), provider: z.string(), metrics: CommandResultSchema.shape.metrics });

/**
 * Runs the user's own training command (TRL, axolotl, Unsloth, a cluster submit script...) and reads the model it
 * produced from the result file it writes. Values reach the command only as argv elements (array form) and
 * environment variables, never spliced into shell code: a string command is the user's config, run as written.
 */
export class CommandTrainer implements Trainer {
  readonly name = "command";
  private readonly options: ResolvedOptions;
  private readonly baseEnv: Readonly<Record<string, string | undefined>>;

  constructor(options: CommandTrainerOptions, deps: CommandTrainerDeps = {}) {
    const parsed = CommandTrainerOptionsSchema.safeParse(options);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
      throw new IterAlignError("CONFIG_INVALID", `command trainer options are invalid: ${problems}`);
    }
    this.options = parsed.data;
    this.baseEnv = deps.env ?? process.env;
  }

  async train(input: TrainInput): Promise<TrainResult> {
    const resultFile = path.join(input.outDir, RESULT_FILE);
    const logFile = path.join(input.outDir, LOG_FILE);
    const values = placeholderValues(input, resultFile);
    const [file, args] =
      typeof this.options.command === "string"
        ? ["/bin/sh", ["-c", this.options.command]]
        : [substituteArgument(this.options.command[0] ?? "", values), this.options.command.slice(1).map((a) => substituteArgument(a, values))];
    const cwd = path.resolve(this.options.cwd ?? ".");
    if (!existsSync(cwd)) throw new IterAlignError("CONFIG_INVALID", `command trainer: cwd ${cwd} does not exist`);
    const fingerprint = JSON.stringify([file, args, cwd]);
    const dataHash = sha256OfFiles(exportFiles(input));

    const earlier = StoredResultSchema.safeParse(input.state.get(STATE_RESULT));
    if (earlier.success && earlier.data.fingerprint === fingerprint && modelStillThere(earlier.data)) {
      input.onProgress({ type: "status", message: `reusing ${earlier.data.model}, trained by an earlier run of this command` });
      return this.result(input, { provider: earlier.data.provider, model: earlier.data.model }, earlier.data.metrics, dataHash, cwd);
    }

    // A result left by an earlier, failed attempt must not pass for this one's.
    rmSync(resultFile, { force: true });
    const log = createWriteStream(logFile, { flags: "a" });
    log.on("error", (err) => input.onProgress({ type: "status", message: `cannot write ${logFile}: ${err.message}` }));
    const tail: string[] = [];
    const label = typeof this.options.command === "string" ? "training command" : `training command ${path.basename(file)}`;
    const started = Date.now();
    writeLine(log, `$ ${typeof this.options.command === "string" ? this.options.command : JSON.stringify([file, ...args])}`);
    input.onProgress({ type: "status", message: `running ${label} in ${cwd}` });
    let exit;
    try {
      exit = await runProcess({
        file,
        args,
        cwd,
        env: { ...this.baseEnv, ...this.options.env, ...placeholderEnv(values) },
        signal: input.signal,
        ...(this.options.timeoutMs !== undefined ? { timeoutMs: this.options.timeoutMs } : {}),
        killGraceMs: this.options.killGraceMs,
        label,
        onLine: (line) => {
          writeLine(log, line);
          tail.push(line);
          if (tail.length > TAIL_LINES) tail.shift();
          input.onProgress({ type: "log", line });
        },
      });
    } finally {
      await closeLog(log);
    }
    if (exit.code !== 0) {
      const how = exit.code === null ? `was killed by ${exit.signal ?? "a signal"}` : `exited with code ${String(exit.code)}`;
      throw new IterAlignError(
        "TRAINING_FAILED",
        `${label} ${how}; last lines of ${logFile}:\n${tail.length > 0 ? tail.join("\n") : "(no output)"}`,
        { details: { exitCode: exit.code, signal: exit.signal, log: logFile, tail: [...tail] } },
      );
    }
    const parsed = readResult(resultFile);
    const model = resolveModel(parsed, input, resultFile);
    const seconds = (Date.now() - started) / 1000;
    const metrics = { seconds, ...parsed.metrics };
    input.state.set(STATE_RESULT, { fingerprint, model: model.model, provider: model.provider, metrics });
    input.onProgress({ type: "status", message: `${label} finished: ${model.model}` });
    return this.result(input, model, metrics, dataHash, cwd);
  }

  private result(input: TrainInput, model: ModelRef, metrics: CommandResult["metrics"], dataHash: string, cwd: string): TrainResult {
    return {
      model,
      trainer: this.name,
      // Only the names of the added variables: their values may be tokens.
      settings: {
        command: this.options.command,
        cwd,
        envNames: Object.keys(this.options.env),
        ...(this.options.timeoutMs !== undefined ? { timeoutMs: this.options.timeoutMs } : {}),
      },
      dataHash,
      examples: input.examples.length,
      ...(metrics !== undefined ? { metrics } : {}),
    };
  }
}

/** Every export file, in TrainFiles order: the command may read any of them. */
function exportFiles(input: TrainInput): string[] {
  const f = input.files;
  return [f.sharegpt, f.trlSft, f.openaiChat, f.trlPreference, f.openaiPreference];
}

function readResult(file: string): CommandResult {
  if (!existsSync(file)) {
    throw new IterAlignError(
      "TRAINING_FAILED",
      `the training command exited 0 but wrote no result file ${file} (ITERALIGN_RESULT_FILE); it must write {"model": "<path or id>"}`,
      { details: { resultFile: file } },
    );
  }
  const text = readFileSync(file, "utf8");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new IterAlignError("TRAINING_FAILED", `result file ${file} is not JSON: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
      details: { resultFile: file, excerpt: text.slice(0, 200) },
    });
  }
  const result = CommandResultSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = issue && issue.path.length > 0 ? issue.path.join(".") : "(root)";
    throw new IterAlignError("TRAINING_FAILED", `result file ${file}: field "${field}": ${issue?.message ?? "invalid"}`, {
      details: { resultFile: file, field },
    });
  }
  return result.data;
}

/**
 * The model the result names, resolved by the provider that serves it (a GGUF file must exist; a served model id is
 * kept as written). Without `provider` the result is taken to be of the same kind as the model the iteration
 * red-teamed.
 */
function resolveModel(result: CommandResult, input: TrainInput, resultFile: string): ModelRef {
  const provider = result.provider ?? input.current.provider;
  return providerOf({ provider: provider as ModelConfig["provider"] }).resolveTrainedModel(result.model, input.outDir, `result file ${resultFile}: field "model"`);
}

function modelStillThere(stored: z.infer<typeof StoredResultSchema>): boolean {
  return providerOf({ provider: stored.provider as ModelConfig["provider"] }).stillExists(stored);
}

function writeLine(log: WriteStream, line: string): void {
  log.write(`${line}\n`);
}

function closeLog(log: WriteStream): Promise<void> {
  return new Promise((resolve) => log.end(() => resolve()));
}
