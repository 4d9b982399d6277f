import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { IterAlignError } from "../../src/spec/errors.js";
import type { TrainingExample } from "../../src/spec/records.js";
import {
  toOpenAiChatJsonl,
  toOpenAiPreferenceJsonl,
  toShareGptJson,
  toTrlPreferenceJsonl,
  toTrlSftJsonl,
} from "../../src/stages/export.js";
import { COMMAND_PLACEHOLDERS } from "../../src/train/command-placeholders.js";
import { CommandTrainer, type CommandTrainerOptions } from "../../src/train/command-trainer.js";
import { sha256OfFiles } from "../../src/train/trainer.js";
import type { ModelRef, TrainInput, TrainProgress, TrainerState } from "../../src/spec/trainer.js";
import { caught } from "../helpers/errors.js";

const NODE = process.execPath;
const BASE: ModelRef = { provider: "llama-cpp", model: "/models/base.gguf" };

/** Answers that carry shell syntax: they must reach the command as data, never as code. */
const HOSTILE = [
  "$(touch PWNED_subst)",
  "`touch PWNED_backtick`",
  "; touch PWNED_semicolon",
  "| touch PWNED_pipe",
  "&& touch PWNED_and\n$(touch PWNED_newline)",
  "' ; touch PWNED_quote ; '",
];

function examples(texts: readonly string[] = ["Sure, here is a safe answer."]): TrainingExample[] {
  return texts.map((text, i) => ({
    id: `it0:example:${String(i)}`,
    iteration: 0,
    attemptId: `it0:attempt:${String(i)}`,
    revisionId: `it0:revision:${String(i)}`,
    messages: [{ role: "user" as const, content: `prompt ${String(i)} ${text}` }],
    chosen: text,
    rejected: `rejected ${text}`,
  }));
}

class JsonState implements TrainerState {
  private readonly values = new Map<string, string>();
  get(key: string): unknown {
    const v = this.values.get(key);
    return v === undefined ? undefined : JSON.parse(v);
  }
  set(key: string, value: unknown): void {
    this.values.set(key, JSON.stringify(value));
  }
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface Harness {
  input: TrainInput;
  progress: TrainProgress[];
  outDir: string;
  controller: AbortController;
}

function harness(
  options: { texts?: readonly string[]; current?: ModelRef; state?: TrainerState; onLine?: (line: string, c: AbortController) => void } = {},
): Harness {
  const root = mkdtempSync(path.join(tmpdir(), "iteralign-command-"));
  dirs.push(root);
  const dataDir = path.join(root, "iterations", "000");
  const outDir = path.join(dataDir, "train");
  const ex = examples(options.texts);
  const files = {
    sharegpt: path.join(dataDir, "sft.sharegpt.json"),
    trlSft: path.join(dataDir, "sft.trl.jsonl"),
    openaiChat: path.join(dataDir, "sft.openai.jsonl"),
    trlPreference: path.join(dataDir, "preference.trl.jsonl"),
    openaiPreference: path.join(dataDir, "preference.openai.jsonl"),
  };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(files.sharegpt, toShareGptJson(ex));
  writeFileSync(files.trlSft, toTrlSftJsonl(ex));
  writeFileSync(files.openaiChat, toOpenAiChatJsonl(ex));
  writeFileSync(files.trlPreference, toTrlPreferenceJsonl(ex));
  writeFileSync(files.openaiPreference, toOpenAiPreferenceJsonl(ex));
  const progress: TrainProgress[] = [];
  const controller = new AbortController();
  const input: TrainInput = {
    runId: "run-cmd",
    iteration: 2,
    base: BASE,
    current: options.current ?? { provider: "llama-cpp", model: "/runs/run-cmd/iterations/001/train/model.gguf" },
    examples: ex,
    allExamples: ex,
    principles: [],
    files,
    outDir,
    state: options.state ?? new JsonState(),
    signal: controller.signal,
    onProgress: (p) => {
      progress.push(p);
      if (p.type === "log") options.onLine?.(p.line, controller);
    },
  };
  return { input, progress, outDir, controller };
}

/** A `node -e` script; `WRITE_RESULT(obj)` writes the result file. */
function script(body: string): string {
  return `const fs = require("fs"); const WRITE_RESULT = (o) => fs.writeFileSync(process.env.ITERALIGN_RESULT_FILE, JSON.stringify(o));\n${body}`;
}

function trainer(options: CommandTrainerOptions): CommandTrainer {
  return new CommandTrainer({ killGraceMs: 500, ...options }, { env: { PATH: process.env.PATH, HOME: process.env.HOME } });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(check: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return check();
}

describe("CommandTrainer with real child processes", () => {
  it("passes ITERALIGN_* variables and substitutes {placeholders} in argv; reads the result with a relative model path", async () => {
    const h = harness();
    const body = script(`
      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("ITERALIGN_") || k === "EXTRA"));
      fs.writeFileSync(process.env.ITERALIGN_OUTPUT_DIR + "/seen.json", JSON.stringify({ argv: process.argv.slice(1), env, cwd: process.cwd() }));
      fs.writeFileSync(process.env.ITERALIGN_OUTPUT_DIR + "/model.gguf", "GGUF");
      console.log("training step 1 loss=1.5");
      console.error("a warning on stderr");
      WRITE_RESULT({ model: "model.gguf", provider: "llama-cpp", metrics: { finalLoss: 0.42, lossCurve: [{ step: 1, loss: 0.42 }] } });
    `);
    const result = await trainer({
      command: [NODE, "-e", body, "{sft_trl}", "--epoch={iteration}", "{run_id}/{current_model}", "{not_a_placeholder}", "{{sft_trl}}"],
      cwd: h.outDir,
      env: { EXTRA: "added" },
    }).train(h.input);

    const seen = JSON.parse(readFileSync(path.join(h.outDir, "seen.json"), "utf8")) as {
      argv: string[];
      env: Record<string, string>;
      cwd: string;
    };
    expect(seen.argv).toEqual([
      h.input.files.trlSft,
      "--epoch=2",
      `run-cmd/${h.input.current.model}`,
      "{not_a_placeholder}",
      `{${h.input.files.trlSft}}`,
    ]);
    expect(seen.env).toEqual({
      ITERALIGN_ITERATION: "2",
      ITERALIGN_RUN_ID: "run-cmd",
      ITERALIGN_SFT_SHAREGPT: h.input.files.sharegpt,
      ITERALIGN_SFT_TRL: h.input.files.trlSft,
      ITERALIGN_SFT_OPENAI: h.input.files.openaiChat,
      ITERALIGN_PREF_TRL: h.input.files.trlPreference,
      ITERALIGN_PREF_OPENAI: h.input.files.openaiPreference,
      ITERALIGN_BASE_MODEL: BASE.model,
      ITERALIGN_BASE_PROVIDER: "llama-cpp",
      ITERALIGN_CURRENT_MODEL: h.input.current.model,
      ITERALIGN_CURRENT_PROVIDER: "llama-cpp",
      ITERALIGN_EXAMPLES: "1",
      ITERALIGN_OUTPUT_DIR: h.outDir,
      ITERALIGN_RESULT_FILE: path.join(h.outDir, "result.json"),
      EXTRA: "added",
    });
    expect(Object.keys(seen.env).filter((k) => k.startsWith("ITERALIGN_")).length).toBe(Object.keys(COMMAND_PLACEHOLDERS).length);

    expect(result.model).toEqual({ provider: "llama-cpp", model: path.join(h.outDir, "model.gguf") });
    expect(result.trainer).toBe("command");
    expect(result.examples).toBe(1);
    expect(result.metrics?.finalLoss).toBe(0.42);
    expect(result.metrics?.lossCurve).toEqual([{ step: 1, loss: 0.42 }]);
    expect(result.metrics?.seconds).toBeGreaterThan(0);
    const f = h.input.files;
    expect(result.dataHash).toBe(sha256OfFiles([f.sharegpt, f.trlSft, f.openaiChat, f.trlPreference, f.openaiPreference]));
    expect(result.settings).toMatchObject({ cwd: h.outDir, envNames: ["EXTRA"] });
    expect(JSON.stringify(result.settings)).not.toContain("added");

    // stdout and stderr are separate pipes, so only each stream's own order is defined.
    const lines = h.progress.flatMap((p) => (p.type === "log" ? [p.line] : []));
    expect([...lines].sort()).toEqual(["a warning on stderr", "training step 1 loss=1.5"]);
    const log = readFileSync(path.join(h.outDir, "train.log"), "utf8");
    expect(log).toContain("training step 1 loss=1.5\n");
    expect(log).toContain("a warning on stderr\n");
  });

  it("runs a string command with /bin/sh -c and keeps an openai-compatible model id as written", async () => {
    const h = harness({ current: { provider: "openai-compatible", model: "org/base-7b" } });
    const body = script(`WRITE_RESULT({ model: "org/aligned-7b-it" + process.env.ITERALIGN_ITERATION });`);
    writeFileSync(path.join(h.outDir, "train.js"), body);
    const result = await trainer({
      command: 'printf "data=%s\\n" "$(wc -l < "$ITERALIGN_SFT_TRL" | tr -d " ")" && "$NODE_BIN" train.js',
      cwd: h.outDir,
      env: { NODE_BIN: NODE },
    }).train(h.input);
    expect(result.model).toEqual({ provider: "openai-compatible", model: "org/aligned-7b-it2" });
    expect(h.progress).toContainEqual({ type: "log", line: "data=1" });
  });

  it("fails with the exit code and the log's tail when the command exits non-zero", async () => {
    const h = harness();
    const body = `for (let i = 1; i <= 30; i++) console.log("line " + i); console.error("CUDA out of memory"); process.exit(3);`;
    const err = await caught(trainer({ command: [NODE, "-e", body] }).train(h.input));
    expect(err.code).toBe("TRAINING_FAILED");
    expect(err.message).toContain("exited with code 3");
    expect(err.message).toContain(path.join(h.outDir, "train.log"));
    expect(err.message).toContain("CUDA out of memory");
    expect(err.message).toContain("line 30");
    expect(err.message).not.toMatch(/line 1\n/);
    expect(err.details.exitCode).toBe(3);
    expect((err.details.tail as string[]).length).toBe(20);
  });

  it("names the file and field when the result file is missing or invalid", async () => {
    const h = harness();
    const resultFile = path.join(h.outDir, "result.json");
    // A stale result from an earlier attempt must not count.
    writeFileSync(resultFile, JSON.stringify({ model: "old.gguf" }));
    const missing = await caught(trainer({ command: [NODE, "-e", "console.log('trained, forgot the result')"] }).train(h.input));
    expect(missing.code).toBe("TRAINING_FAILED");
    expect(missing.message).toContain(resultFile);
    expect(missing.message).toContain("ITERALIGN_RESULT_FILE");

    const wrongType = await caught(trainer({ command: [NODE, "-e", script("WRITE_RESULT({ model: 42 })")] }).train(h.input));
    expect(wrongType.message).toContain(resultFile);
    expect(wrongType.message).toContain('field "model"');

    const badProvider = await caught(
      trainer({ command: [NODE, "-e", script("WRITE_RESULT({ model: 'x.gguf', provider: 'vllm' })")] }).train(h.input),
    );
    expect(badProvider.message).toContain('field "provider"');

    const notJson = await caught(
      trainer({ command: [NODE, "-e", "require('fs').writeFileSync(process.env.ITERALIGN_RESULT_FILE, 'model: x')"] }).train(h.input),
    );
    expect(notJson.message).toContain(`result file ${resultFile} is not JSON`);

    const noModelFile = await caught(trainer({ command: [NODE, "-e", script("WRITE_RESULT({ model: 'out/model.gguf' })")] }).train(h.input));
    expect(noModelFile.message).toContain('field "model"');
    expect(noModelFile.message).toContain(`${path.join(h.outDir, "out", "model.gguf")} does not exist`);

    const directory = await caught(trainer({ command: [NODE, "-e", script("WRITE_RESULT({ model: '.' })")] }).train(h.input));
    expect(directory.message).toContain("is a directory");
  });

  it("abort stops the command and everything it started", async () => {
    const pidsFile = () => path.join(h.outDir, "pids.json");
    const grandchild = `setInterval(() => {}, 1000)`;
    const body = `
      const { spawn } = require("child_process");
      const g = spawn(process.execPath, ["-e", ${JSON.stringify(grandchild)}], { stdio: "ignore" });
      require("fs").writeFileSync(${JSON.stringify("PIDS")}.replace("PIDS", process.env.ITERALIGN_OUTPUT_DIR + "/pids.json"), JSON.stringify([process.pid, g.pid]));
      console.log("ready");
      setInterval(() => {}, 1000);
    `;
    const h = harness({ onLine: (line, c) => line === "ready" && c.abort(new Error("Ctrl-C")) });
    const started = Date.now();
    const err = await caught(trainer({ command: [NODE, "-e", body] }).train(h.input));
    expect(err.code).toBe("ABORTED");
    expect(Date.now() - started).toBeLessThan(10_000);
    const pids = JSON.parse(readFileSync(pidsFile(), "utf8")) as number[];
    expect(pids).toHaveLength(2);
    try {
      expect(await waitFor(() => pids.every((pid) => !alive(pid)), 3_000)).toBe(true);
    } finally {
      // Should the trainer have left one behind, do not leave it running after the test.
      for (const pid of pids.filter(alive)) process.kill(pid, "SIGKILL");
    }
  });

  it("stops a command that passes timeoutMs, even one that ignores SIGTERM", async () => {
    const h = harness();
    const body = `process.on("SIGTERM", () => console.log("ignoring SIGTERM")); console.log("pid " + process.pid); setInterval(() => {}, 1000);`;
    const err = await caught(trainer({ command: [NODE, "-e", body], timeoutMs: 300, killGraceMs: 200 }).train(h.input));
    expect(err.code).toBe("TIMEOUT");
    const pidLine = h.progress.find((p) => p.type === "log" && p.line.startsWith("pid "));
    const pid = Number(pidLine?.type === "log" ? pidLine.line.slice(4) : NaN);
    try {
      expect(await waitFor(() => !alive(pid), 3_000)).toBe(true);
    } finally {
      if (alive(pid)) process.kill(pid, "SIGKILL");
    }
  });

  it("never executes shell syntax found in example data or model ids, in either command form", async () => {
    const h = harness({ texts: HOSTILE, current: { provider: "openai-compatible", model: "evil; touch PWNED_model #$(touch PWNED_model2)" } });
    const writeOk = script(`WRITE_RESULT({ model: "ok", provider: "openai-compatible" })`);
    writeFileSync(path.join(h.outDir, "ok.js"), writeOk);
    // The shell form reads the data through variables, even unquoted; the array forms get it as argv.
    await trainer({
      command: 'cat "$ITERALIGN_SFT_TRL"; echo $ITERALIGN_CURRENT_MODEL; echo "$ITERALIGN_CURRENT_MODEL"; cat $ITERALIGN_SFT_SHAREGPT; "$NODE_BIN" ok.js',
      cwd: h.outDir,
      env: { NODE_BIN: NODE },
    }).train(h.input);
    await trainer({
      command: ["/bin/sh", "-c", 'echo "$1"; cat "$2"; "$3" ok.js', "sh", "{current_model}", "{sft_trl}", NODE],
      cwd: h.outDir,
    }).train(h.input);
    await trainer({
      command: [NODE, "-e", `${writeOk}; console.log(process.argv.slice(1).join(" | "))`, "{current_model}", "{sft_openai}"],
      cwd: h.outDir,
    }).train(h.input);

    const lines = h.progress.flatMap((p) => (p.type === "log" ? [p.line] : []));
    // The hostile text went through as data...
    expect(lines.some((l) => l.includes("$(touch PWNED_subst)"))).toBe(true);
    expect(lines.some((l) => l.includes("evil; touch PWNED_model #$(touch PWNED_model2)"))).toBe(true);
    // ...and none of it ran, in the command's directory or anywhere near it.
    const root = path.dirname(path.dirname(path.dirname(h.outDir)));
    const pwned = (dir: string): string[] => readdirSync(dir, { recursive: true }).map(String).filter((f) => f.includes("PWNED"));
    expect(pwned(root)).toEqual([]);
    expect(readdirSync(process.cwd()).filter((f) => f.includes("PWNED"))).toEqual([]);
  });

  it("rejects placeholders in a shell string, reserved variables and a missing executable", async () => {
    expect(() => new CommandTrainer({ command: "trl sft --dataset_name {sft_trl}" })).toThrow(/"\$ITERALIGN_SFT_TRL"/);
    expect(() => new CommandTrainer({ command: ["x"], env: { ITERALIGN_RUN_ID: "mine" } })).toThrow(/ITERALIGN_\* variables are set by iteralign/);
    expect(() => new CommandTrainer({ command: [] })).toThrow(IterAlignError);
    const err = await caught(trainer({ command: ["/nonexistent/trainer-binary", "{sft_trl}"] }).train(harness().input));
    expect(err.code).toBe("TRAINING_FAILED");
    expect(err.message).toContain("cannot start");
  });

  it("after a restart, reuses the model a finished run of the same command produced instead of training again", async () => {
    const state = new JsonState();
    const h = harness({ state });
    const counter = path.join(h.outDir, "runs.txt");
    const body = script(`fs.appendFileSync(${JSON.stringify(counter)}, "x"); fs.writeFileSync(process.env.ITERALIGN_OUTPUT_DIR + "/m.gguf", "GGUF"); WRITE_RESULT({ model: "m.gguf" });`);
    const first = await trainer({ command: [NODE, "-e", body] }).train(h.input);
    const second = await trainer({ command: [NODE, "-e", body] }).train(h.input);
    expect(readFileSync(counter, "utf8")).toBe("x");
    expect(second.model).toEqual(first.model);
    expect(second.metrics?.seconds).toBe(first.metrics?.seconds);
    // A changed command trains again.
    await trainer({ command: [NODE, "-e", `${body}\n// v2`] }).train(h.input);
    expect(readFileSync(counter, "utf8")).toBe("xx");
    expect(existsSync(path.join(h.outDir, "m.gguf"))).toBe(true);
  });

  // The example scripts need the GPU tools; stand-ins for `trl` and llama.cpp's converter check the plumbing:
  // the dataset directory, the warm start from the previous iteration's checkpoint, the GGUF and the result file.
  const hasPython = spawnSync("python3", ["--version"]).status === 0;
  it.runIf(hasPython)("examples/train/trl-sft.sh writes a result iteralign accepts, and warm-starts the next iteration", async () => {
    const tools = mkdtempSync(path.join(tmpdir(), "iteralign-tools-"));
    dirs.push(tools);
    mkdirSync(path.join(tools, "bin"));
    mkdirSync(path.join(tools, "llama.cpp"));
    writeFileSync(
      path.join(tools, "bin", "trl"),
      [
        "#!/usr/bin/env bash",
        "set -euo pipefail",
        'printf "%s\\n" "$@" > "$ITERALIGN_OUTPUT_DIR/trl-args.txt"',
        'while [ $# -gt 0 ]; do case "$1" in --output_dir) out="$2"; shift 2;; --dataset_name) data="$2"; shift 2;; *) shift;; esac; done',
        'cmp "$data/train.jsonl" "$ITERALIGN_SFT_TRL"',
        'mkdir -p "$out" && echo "{}" > "$out/config.json"',
        `echo "  0%|          | 0/2 [00:00<?, ?it/s]{'loss': 1.5, 'grad_norm': 2.0, 'learning_rate': 2e-05, 'epoch': 0.5}"`,
        `echo "{'loss': 0.75, 'grad_norm': 1.0, 'learning_rate': 1e-05, 'epoch': 1.0}"`,
      ].join("\n"),
    );
    chmodSync(path.join(tools, "bin", "trl"), 0o755);
    writeFileSync(
      path.join(tools, "llama.cpp", "convert_hf_to_gguf.py"),
      'import argparse\np = argparse.ArgumentParser(); p.add_argument("dir"); p.add_argument("--outfile"); p.add_argument("--outtype")\na = p.parse_args(); open(a.outfile, "w").write("GGUF " + a.outtype)\n',
    );
    const script = path.resolve("examples/train/trl-sft.sh");
    const options: CommandTrainerOptions = {
      command: ["bash", script, "--max_length", "1024"],
      env: { HF_BASE_MODEL: "Qwen/Qwen2.5-0.5B-Instruct", LLAMA_CPP_DIR: path.join(tools, "llama.cpp") },
    };
    const env = { PATH: `${path.join(tools, "bin")}:${process.env.PATH ?? ""}`, HOME: process.env.HOME };

    const first = harness({ texts: HOSTILE });
    const r0 = await new CommandTrainer(options, { env }).train({ ...first.input, current: BASE });
    expect(r0.model).toEqual({ provider: "llama-cpp", model: path.join(first.outDir, "model.gguf") });
    expect(readFileSync(r0.model.model, "utf8")).toBe("GGUF f16");
    expect(r0.metrics?.lossCurve).toEqual([
      { step: 1, loss: 1.5 },
      { step: 2, loss: 0.75 },
    ]);
    expect(r0.metrics?.finalLoss).toBe(0.75);
    const args0 = readFileSync(path.join(first.outDir, "trl-args.txt"), "utf8").split("\n");
    expect(args0.slice(0, 3)).toEqual(["sft", "--model_name_or_path", "Qwen/Qwen2.5-0.5B-Instruct"]);
    expect(args0.slice(-3, -1)).toEqual(["--max_length", "1024"]);

    const second = harness();
    const r1 = await new CommandTrainer(options, { env }).train({ ...second.input, current: r0.model });
    const args1 = readFileSync(path.join(second.outDir, "trl-args.txt"), "utf8").split("\n");
    expect(args1.slice(0, 3)).toEqual(["sft", "--model_name_or_path", path.join(first.outDir, "hf")]);
    expect(r1.model.model).toBe(path.join(second.outDir, "model.gguf"));
    expect(readdirSync(first.outDir).filter((f) => f.includes("PWNED"))).toEqual([]);
  });
});
