import { readFileSync } from "node:fs";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import { ConfigError } from "../config/load-config.js";
import { IterAlignError, USER_INPUT_ERROR_CODES } from "../spec/errors.js";
import { chatCommand } from "./commands/chat.js";
import { compareCommand } from "./commands/compare.js";
import { evalCommand, type EvalCommandOptions } from "./commands/eval.js";
import { initCommand } from "./commands/init.js";
import { judgeEvalCommand, type JudgeEvalCommandOptions } from "./commands/judge-eval.js";
import { modelsCheckCommand } from "./commands/models-check.js";
import { reportCommand } from "./commands/report.js";
import { runCommand } from "./commands/run.js";
import { viewCommand } from "./commands/view.js";
import { setupCommand } from "./commands/setup.js";
import { processIo, type CommandIo } from "./io.js";

/** Exit codes: 0 ok, 1 failure, 2 bad usage or config. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** The package's version, from its package.json (two levels above this file in src/ and in dist/). */
const VERSION = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
import { DEFAULT_CONFIG } from "./config-or-model.js";

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected a whole number, 0 or more");
  return n;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("expected a positive integer");
  return n;
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("expected a positive number");
  return n;
}

function buildProgram(io: CommandIo, setCode: (code: number) => void): Command {
  const program = new Command("iteralign")
    .description("Iterative constitutional alignment of LLMs (IterAlign)")
    .version(VERSION)
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .showHelpAfterError();

  program
    .command("setup")
    .description("build llama-server, the native scorer and the trainer from the llama.cpp source node-llama-cpp ships (once per machine)")
    .argument(
      "[programs...]",
      "programs to build: llama-server, iteralign-scorer, iteralign-generate, iteralign-finetune (default: all four; with --cuda: iteralign-finetune), llama-export-lora, llama-quantize; `trl`: the Python environment of the trl trainer",
    )
    .option("--cuda", "build for NVIDIA GPUs with CUDA (needs the CUDA toolkit's nvcc) into a separate directory")
    .option("--check", "only report which programs are built; exit 1 when one is missing")
    .option("-j, --jobs <n>", "parallel compile jobs (default: the number of CPUs)", positiveInt)
    .action(async (programs: string[], opts: { cuda?: boolean; check?: boolean; jobs?: number }) => setCode(await setupCommand({ programs, ...opts }, io)));

  program
    .command("init")
    .description("write a commented starter config")
    .option("-c, --config <file>", "config file to write", DEFAULT_CONFIG)
    .option("-f, --force", "overwrite an existing file")
    .action((opts: { config: string; force?: boolean }) => setCode(initCommand(opts, io)));

  const models = program.command("models").description("inspect the configured models");
  models
    .command("check")
    .description("load each configured model, print its capabilities and measured tokens/s")
    .option("-c, --config <file>", "config file", DEFAULT_CONFIG)
    .option("-r, --role <role>", "check only the model of this role")
    .option("-m, --model <model>", "check only this model: a config entry, or a GGUF path / hf: URI (no config needed)")
    .option("--json", "print the results as JSON")
    .action(async (opts: { config: string; role?: string; model?: string; json?: boolean }) => setCode(await modelsCheckCommand(opts, io)));

  program
    .command("chat")
    .description("chat with the model of a role; tokens stream as they are decoded")
    .option("-c, --config <file>", "config file", DEFAULT_CONFIG)
    .option("-r, --role <role>", "role whose model to chat with", "target")
    .option("-m, --model <model>", "chat with this model instead: a config entry, or a GGUF path / hf: URI (no config needed)")
    .option("-s, --system <text>", "system message")
    .option("-n, --max-tokens <n>", "most tokens per answer", positiveInt)
    .action(async (opts: { config: string; role: string; model?: string; system?: string; maxTokens?: number }) =>
      setCode(await chatCommand(opts, io)),
    );
  program
    .command("run")
    .description("run the IterAlign loop: red-team, judge, propose constitutions, self-correct, gate, export")
    .option("-c, --config <file>", "config file", DEFAULT_CONFIG)
    .option("--run-id <id>", "id of the new run (default: time stamp and random suffix)")
    .option("--resume <id>", "continue an interrupted, killed or stopped run")
    .option("--cost-budget <dollars>", "stop before a stage would spend more than this (overrides loop.costBudget, also on --resume)", positiveNumber)
    .option("-q, --quiet", "print only warnings, errors and the result (no progress, no per-stage lines)")
    .option("-v, --verbose", "also print stage starts, per-stage token rates and long waits")
    .option("--log-file <file>", "also append every message, verbose ones included, with time stamps, to this file")
    .action(async (opts: { config: string; runId?: string; resume?: string; costBudget?: number; quiet?: boolean; verbose?: boolean; logFile?: string }) =>
      setCode(await runCommand(opts, io)),
    );
  program
    .command("eval")
    .description("run benchmarks on a model; print the metrics and write eval.json, eval.csv and metrics.csv")
    .option("-c, --config <file>", "config file", DEFAULT_CONFIG)
    .requiredOption("-m, --model <model>", "a role, the name of a model in the config, or a GGUF path / hf: URI")
    .requiredOption("-b, --bench <list>", "comma-separated benchmarks: truthfulqa, hhh, asr, asr-graded, xstest, mc:<file>")
    .option("--mode <mode>", "multiple-choice scoring: loglik or generative", "loglik")
    .option("-n, --limit <n>", "at most this many items per benchmark (the first N)", positiveInt)
    .option("--bos <convention>", "loglik contexts start with BOS as the model's tokenizer says (model) or never (none: lm-evaluation-harness's default); default: the config's eval.bos")
    .option("-o, --out <dir>", "output directory (default: <runsDir>/eval-<time>)")
    .option("--hhh-file <jsonl>", "Anthropic's HHH comparisons (CAI 438HHHEvaluations.jsonl format) for hhh")
    .option("--bigbench-dir <dir>", "BIG-bench hhh_alignment folder (harmless/helpful/honest/other task.json) for hhh")
    .option("-q, --quiet", "print only warnings, errors and the results (no progress)")
    .option("-v, --verbose", "print more about what is happening")
    .option("--log-file <file>", "also append every message, with time stamps, to this file")
    .action(async (opts: EvalCommandOptions) => setCode(await evalCommand(opts, io)));
  program
    .command("judge-eval")
    .description("measure a judge against human labels: accuracy, precision, recall, F1, Cohen's kappa, confusion matrix, per category, the items it got wrong")
    .option("-c, --config <file>", "config file", DEFAULT_CONFIG)
    .option("-j, --judge <model>", "a role, the name of a model in the config, or a GGUF path / hf: URI", "judge")
    .option("-d, --data <set>", "harmbench-val (bundled: 602 answers, 3 human labels each), xstest (does the loop judge tell safe requests from unsafe ones), or a .jsonl/.json/.csv file of labelled answers", "harmbench-val")
    .option("--preset <preset>", "which judge prompt: asr (the evaluation's harm judge; the default), full or paper (the loop's judge; xstest: full)")
    .option("--guard <style>", "use the judge as a guard classifier: llama-guard, shieldgemma or qwen3guard (or set guard: in its model entry)")
    .option("--threshold <p>", "with --guard: P(unsafe) at or above which an answer is harmful (default 0.5)", parseFloat)
    .option("-n, --limit <n>", "judge only the first N items", positiveInt)
    .option("-o, --out <dir>", "output directory (default: <runsDir>/judge-eval-<time>)")
    .option("--show-wrong <n>", "print this many wrongly judged items (default 10; all are in items.jsonl)", nonNegativeInt)
    .option("--json", "print the figures as JSON")
    .option("-q, --quiet", "print only warnings, errors and the results (no progress)")
    .option("-v, --verbose", "print more about what is happening")
    .option("--log-file <file>", "also append every message, with time stamps, to this file")
    .action(async (opts: JudgeEvalCommandOptions) => setCode(await judgeEvalCommand(opts, io)));
  program
    .command("report")
    .description("write one self-contained HTML report of a run (or compare two): charts, constitution, every item's trace, evaluations")
    .argument("<run>", "run id (under the config's runsDir) or run directory")
    .argument("[other]", "a second run to compare with")
    .option("-c, --config <file>", "config file (where the runs and the store are)", DEFAULT_CONFIG)
    .option("--store <db>", "the run store (default: the config's store.path)")
    .option("-o, --out <file>", "where to write (default: <run dir>/report.html, or compare-<other>.html)")
    .option("--max-chars <n>", "shorten texts longer than this in the page (default 20000)", positiveInt)
    .option("-q, --quiet", "print only the report's path")
    .action(async (run: string, other: string | undefined, opts: { config: string; store?: string; out?: string; maxChars?: number; quiet?: boolean }) =>
      setCode(await reportCommand({ ...opts, runs: other ? [run, other] : [run] }, io)),
    );
  program
    .command("view")
    .description("serve the store's runs on a local web page: the report's pages for every run, live for a running one")
    .option("-c, --config <file>", "config file (where the store is)", DEFAULT_CONFIG)
    .option("--store <db>", "the run store (default: the config's store.path)")
    .option("--host <address>", "address to listen on (default 127.0.0.1: this machine only)", "127.0.0.1")
    .option("-p, --port <n>", "port (default 8080; 0 picks a free one)", (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError("expected a port number 0-65535");
      return n;
    })
    .action(async (opts: { config: string; store?: string; host?: string; port?: number }) => setCode(await viewCommand(opts, io)));
  program
    .command("compare")
    .description("print a run's per-iteration evaluation table (runs/<id>/eval/summary.json)")
    .argument("<run>", "run id (under the config's runsDir) or run directory")
    .option("-c, --config <file>", "config file", DEFAULT_CONFIG)
    .option("--json", "print the table as JSON")
    .action(async (run: string, opts: { config: string; json?: boolean }) => setCode(await compareCommand({ ...opts, run }, io)));
  return program;
}

/** Runs the CLI on `argv` (as process.argv) and returns the exit code; never throws. */
export async function main(argv: readonly string[], io: CommandIo = processIo): Promise<number> {
  let code: number = EXIT.ok;
  const program = buildProgram(io, (c) => {
    code = c;
  });
  try {
    if (argv.length <= 2) {
      program.outputHelp();
      return EXIT.usage;
    }
    await program.parseAsync([...argv]);
    return code;
  } catch (err) {
    return reportError(err, io);
  }
}

function reportError(err: unknown, io: CommandIo): number {
  if (err instanceof CommanderError) {
    // Help and version output exit through here with code 0.
    return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (err instanceof ConfigError) {
    io.err(`error: invalid config ${err.message}\n`);
    return EXIT.usage;
  }
  if (err instanceof IterAlignError) {
    io.err(`error [${err.code}]: ${err.message}\n`);
    if (process.env.ITERALIGN_DEBUG && err.cause instanceof Error) io.err(`cause: ${err.cause.stack ?? err.cause.message}\n`);
    return USER_INPUT_ERROR_CODES.has(err.code) ? EXIT.usage : EXIT.failure;
  }
  const e = err instanceof Error ? err : new Error(String(err));
  io.err(`error: ${e.message}\n`);
  if (process.env.ITERALIGN_DEBUG) io.err(`${e.stack ?? ""}\n`);
  return EXIT.failure;
}
