import { ensureLlamaBuild, findLlamaBuild, llamaBuildDir, parseBuildLlamaArgs, type LlamaTool } from "../../native/llama-build.js";
import { bundleCommit, defaultCacheDir } from "../../native/llama-bundle.js";
import { checkPythonEnvironment, setupTrlEnvironment, trlVenvDir, trlVenvPython, trlVenvReady } from "../../train/python-env.js";
import { renderTable } from "../../util/table.js";
import type { CommandIo } from "../io.js";
import { createProgress, type Progress } from "../progress.js";

/** Options of `iteralign setup`. */
export interface SetupCommandOptions {
  /** Programs to build (default: llama-server, iteralign-scorer, iteralign-generate, iteralign-finetune; with --cuda: iteralign-finetune). */
  readonly programs: readonly string[];
  readonly cuda?: boolean;
  /** Only report what is built; exit 1 when a program is missing. */
  readonly check?: boolean;
  readonly jobs?: number;
}

/** The percentage CMake's build prints at the start of a line (`[ 45%] Building CXX object ...`). */
export function buildPercent(line: string): number | undefined {
  const m = /^\[\s*(\d{1,3})%\]/.exec(line);
  return m ? Number(m[1]) : undefined;
}

/**
 * `iteralign setup`: builds the native programs iteralign runs beside the embedded engine (llama-server for the
 * HTTP tests and benches, iteralign-scorer for fast log-likelihood scoring, iteralign-finetune for the llama-cpp
 * trainer) from the llama.cpp source node-llama-cpp ships, once per machine, into the cache
 * (`$ITERALIGN_CACHE_DIR`, default `~/.cache/iteralign`). Programs already built are kept.
 */
export async function setupCommand(options: SetupCommandOptions, io: CommandIo): Promise<number> {
  if (options.programs.includes("trl")) {
    const code = await setupTrl(options, io);
    const rest = options.programs.filter((p) => p !== "trl");
    if (code !== 0 || rest.length === 0) return code;
    return setupCommand({ ...options, programs: rest }, io);
  }
  const { targets, gpu } = parseBuildLlamaArgs([...(options.cuda ? ["--cuda"] : []), ...options.programs]);
  const cacheDir = defaultCacheDir();
  const commit = bundleCommit();
  const dir = llamaBuildDir(cacheDir, commit, gpu);
  const status = (tool: LlamaTool): string | undefined => findLlamaBuild([tool], cacheDir, gpu)?.binaries[tool];
  const label = `llama.cpp ${commit.slice(0, 12)} (${gpu === "cuda" ? "CUDA" : "CPU"})`;
  if (options.check) {
    const rows = targets.map((tool) => [tool, status(tool) ?? "not built"]);
    io.out(`${label} in ${dir}\n${renderTable(["program", "binary"], rows)}`);
    return targets.every((t) => status(t) !== undefined) ? 0 : 1;
  }
  const missing = targets.filter((t) => status(t) === undefined);
  const kept = targets.filter((t) => !missing.includes(t));
  if (missing.length === 0) {
    io.err(`${label}: ${targets.join(", ")} already built\n`);
  } else {
    io.err(`${label}: building ${missing.join(", ")}${kept.length > 0 ? ` (${kept.join(", ")} already built)` : ""} in ${dir}\n`);
    io.err("this takes a few minutes per program on a laptop (about 10 minutes for all four on 2 cores)\n");
  }
  const started = performance.now();
  let bar: Progress | undefined;
  let lastLine = -1;
  let lastAt = started;
  const build = await ensureLlamaBuild({
    targets,
    gpu,
    ...(options.jobs !== undefined ? { jobs: options.jobs } : {}),
    onLine: (line) => {
      const percent = buildPercent(line);
      if (percent === undefined) {
        if (/^(cloning|configuring|waiting)/.test(line)) io.err(`${line}\n`);
        return;
      }
      if (io.errIsTTY) {
        bar ??= createProgress("compiling", 100, { tty: true });
        bar.update(percent);
        return;
      }
      // Without a terminal: a line every 10% or every 30 s, whichever comes first.
      const now = performance.now();
      if (percent >= lastLine + 10 || now - lastAt > 30_000) {
        io.err(`compiling: ${percent}% (${((now - started) / 1000).toFixed(0)} s)\n`);
        lastLine = percent;
        lastAt = now;
      }
    },
  });
  bar?.stop();
  if (missing.length > 0) io.err(`${label} ready in ${((performance.now() - started) / 1000).toFixed(0)} s\n`);
  io.out(renderTable(["program", "binary"], Object.entries(build.binaries).map(([tool, bin]) => [tool, bin ?? ""])));
  return 0;
}

/**
 * `iteralign setup trl`: the Python environment of the `trl` trainer (a virtual environment in the cache with torch,
 * transformers, trl, peft, accelerate, datasets, safetensors, gguf), then its check. `--check` only reports.
 */
async function setupTrl(options: SetupCommandOptions, io: CommandIo): Promise<number> {
  const cacheDir = defaultCacheDir();
  if (options.check) {
    if (!trlVenvReady(cacheDir)) {
      io.out(`trl: no environment in ${trlVenvDir(cacheDir)} (run \`iteralign setup trl\`)\n`);
      return 1;
    }
    const check = await checkPythonEnvironment(trlVenvPython(cacheDir), { requireAll: false });
    io.out(renderTable(["package", "version"], [["python", check.python], ...Object.entries(check.packages), ...check.missing.map((m) => [m.package, `missing: ${m.error}`])]));
    io.out(`device: ${check.device.type}${check.device.name ? ` (${check.device.name})` : ""}, bf16 ${check.device.bf16 ? "yes" : "no"}\n`);
    return check.missing.length === 0 ? 0 : 1;
  }
  const started = performance.now();
  const extra = (process.env["ITERALIGN_PIP_ARGS"] ?? "").split(/\s+/).filter((a) => a.length > 0);
  const { python, check, created } = await setupTrlEnvironment({ cacheDir, extraPipArgs: extra, onLine: (line) => io.err(`${line}\n`) });
  io.err(`trl environment ${created ? `ready in ${((performance.now() - started) / 1000).toFixed(0)} s` : "already set up"}: ${python}\n`);
  io.out(renderTable(["package", "version"], [["python", check.python], ...Object.entries(check.packages)]));
  io.out(`device: ${check.device.type}${check.device.name ? ` (${check.device.name})` : ""}\n`);
  return 0;
}
