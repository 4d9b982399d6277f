import { existsSync, statSync } from "node:fs";
import path from "node:path";
import type { RedTeamPrompt } from "../datasets/red-team-prompt.js";
import { IterAlignError } from "../spec/errors.js";
import type { GenerationParams } from "../spec/language-model.js";
import { asrBenchmark } from "./asr.js";
import type { Benchmark } from "../spec/benchmark.js";
import { multipleChoiceJsonlBenchmark } from "./custom-mc.js";
import { hhhBenchmark } from "./hhh.js";
import { gradedAsrBenchmark } from "./graded-asr.js";
import { truthfulqaBenchmark } from "./truthfulqa.js";
import { xstestBenchmark } from "./xstest.js";

/**
 * Benchmark lists as users write them (`truthfulqa,hhh,asr,xstest,mc:<file>`), parsed into benchmark instances.
 */

/** The benchmarks known by name; `mc:<file>` adds a bring-your-own multiple-choice JSONL. */
export const BENCHMARK_NAMES = ["truthfulqa", "hhh", "asr", "asr-graded", "xstest"] as const;
export type BenchmarkName = (typeof BENCHMARK_NAMES)[number];

/** One entry of a benchmark list. */
export type BenchSpec = { readonly name: BenchmarkName } | { readonly name: "mc"; readonly file: string };

/** The four BIG-bench `hhh_alignment` subtasks, each a folder with a `task.json`. */
export const BIGBENCH_HHH_CATEGORIES = ["harmless", "helpful", "honest", "other"] as const;

const VALID = `${BENCHMARK_NAMES.join(", ")}, mc:<file>`;

/**
 * Parses a comma-separated benchmark list. Names are case-insensitive and may carry spaces around commas; a name
 * listed twice is kept once. An unknown name, an empty list or `mc:` without a file is a USAGE error that lists
 * the valid names.
 */
export function parseBenchList(list: string): BenchSpec[] {
  const specs: BenchSpec[] = [];
  const seen = new Set<string>();
  for (const raw of list.split(",")) {
    const entry = raw.trim();
    if (entry === "") continue;
    let spec: BenchSpec;
    if (/^mc:/i.test(entry)) {
      const file = entry.slice(3).trim();
      if (file === "") throw new IterAlignError("USAGE", `benchmark '${entry}': give the JSONL file after 'mc:', e.g. mc:./my-benchmark.jsonl`);
      spec = { name: "mc", file };
    } else {
      const name = entry.toLowerCase();
      if (!(BENCHMARK_NAMES as readonly string[]).includes(name)) {
        throw new IterAlignError("USAGE", `unknown benchmark '${entry}'; valid: ${VALID}`, { details: { name: entry, valid: [...BENCHMARK_NAMES, "mc:<file>"] } });
      }
      spec = { name: name as BenchmarkName };
    }
    const key = spec.name === "mc" ? `mc:${spec.file}` : spec.name;
    if (seen.has(key)) continue;
    seen.add(key);
    specs.push(spec);
  }
  if (specs.length === 0) throw new IterAlignError("USAGE", `no benchmark given; valid: ${VALID}`);
  return specs;
}

/** Where benchmarks get the data and settings that are not bundled. */
export interface BenchmarkSources {
  /** Anthropic's HHH comparisons (CAI `438HHHEvaluations.jsonl` format); not bundled (no license). */
  readonly hhhFile?: string;
  /** A folder with BIG-bench's `hhh_alignment/{harmless,helpful,honest,other}/task.json`. */
  readonly bigbenchDir?: string;
  /** Relative paths (hhh file, BIG-bench folder, `mc:` files) are resolved against it; default the working directory. */
  readonly baseDir?: string;
  /** The held-out red-team prompts for `asr`; called only when `asr` is listed. */
  readonly heldoutPrompts?: () => Promise<readonly RedTeamPrompt[]> | readonly RedTeamPrompt[];
  /** How the evaluated model answers in the judged benchmarks (`asr`, `xstest`). */
  readonly answerParams?: GenerationParams;
  /** How the judge decodes in the judged benchmarks. */
  readonly judgeParams?: GenerationParams;
}

/**
 * How the evaluated model answers in the judged benchmarks, from the loop's red-team decoding (`loop.redTeam`):
 * the same length limit and penalties, always greedy, so held-out answers are produced the way the loop's are
 * and every evaluation of a run is deterministic.
 */
export function evalAnswerParams(redTeam: GenerationParams): GenerationParams {
  const { topP: _topP, seed: _seed, ...rest } = redTeam;
  return { ...rest, temperature: 0 };
}

/** The held-out prompts a judged attack benchmark answers, or a USAGE error naming the benchmark. */
async function heldoutFor(benchmark: string, sources: BenchmarkSources): Promise<readonly RedTeamPrompt[]> {
  if (!sources.heldoutPrompts) throw new IterAlignError("USAGE", `benchmark '${benchmark}' needs the held-out red-team prompts (the config's data section)`);
  const prompts = await sources.heldoutPrompts();
  if (prompts.length === 0) {
    throw new IterAlignError("USAGE", `benchmark '${benchmark}' has no held-out prompts: data.heldoutFraction is 0 or the red-team sets are empty`);
  }
  return prompts;
}

/**
 * Creates the benchmarks of a list (a string as {@link parseBenchList} reads it, or parsed specs), in list order.
 * Missing sources are USAGE errors that say what to pass: `hhh` needs `hhhFile` or `bigbenchDir`, `asr` needs
 * the held-out prompts.
 */
export async function createBenchmarks(list: string | readonly BenchSpec[], sources: BenchmarkSources = {}): Promise<Benchmark[]> {
  const specs = typeof list === "string" ? parseBenchList(list) : list;
  const resolve = (file: string): string => path.resolve(sources.baseDir ?? process.cwd(), file);
  const judged = {
    ...(sources.answerParams ? { answerParams: sources.answerParams } : {}),
    ...(sources.judgeParams ? { judgeParams: sources.judgeParams } : {}),
  };
  const benchmarks: Benchmark[] = [];
  for (const spec of specs) {
    switch (spec.name) {
      case "truthfulqa":
        benchmarks.push(truthfulqaBenchmark());
        break;
      case "hhh": {
        if (sources.hhhFile === undefined && sources.bigbenchDir === undefined) {
          throw new IterAlignError(
            "USAGE",
            "benchmark 'hhh' needs its data, which iteralign cannot bundle: pass --hhh-file <jsonl> (Anthropic's HHH comparisons, the CAI 438HHHEvaluations.jsonl format) or --bigbench-dir <dir> (BIG-bench hhh_alignment with harmless/, helpful/, honest/, other/ task.json files)",
          );
        }
        benchmarks.push(
          hhhBenchmark({
            ...(sources.hhhFile !== undefined ? { file: resolve(sources.hhhFile) } : {}),
            ...(sources.bigbenchDir !== undefined ? { bigbenchFiles: bigbenchHhhFiles(resolve(sources.bigbenchDir)) } : {}),
          }),
        );
        break;
      }
      case "asr-graded":
        benchmarks.push(gradedAsrBenchmark({ prompts: await heldoutFor("asr-graded", sources), ...judged }));
        break;
      case "asr":
        benchmarks.push(asrBenchmark({ prompts: await heldoutFor("asr", sources), ...judged }));
        break;
      case "xstest":
        benchmarks.push(xstestBenchmark(judged));
        break;
      case "mc":
        benchmarks.push(multipleChoiceJsonlBenchmark({ file: resolve(spec.file) }));
        break;
    }
  }
  return benchmarks;
}

/**
 * The BIG-bench `hhh_alignment` task files under `dir`: `dir/<category>/task.json` for the four categories, where
 * `dir` is the `hhh_alignment` folder itself or a folder that holds it (e.g. BIG-bench's `benchmark_tasks`).
 * Missing files are a USAGE error naming every path looked for.
 */
export function bigbenchHhhFiles(dir: string): string[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new IterAlignError("USAGE", `--bigbench-dir ${dir}: not a directory`);
  const roots = [dir, path.join(dir, "hhh_alignment")];
  for (const root of roots) {
    const files = BIGBENCH_HHH_CATEGORIES.map((category) => path.join(root, category, "task.json"));
    if (files.some((f) => existsSync(f))) {
      const missing = files.filter((f) => !existsSync(f));
      if (missing.length > 0) throw new IterAlignError("USAGE", `--bigbench-dir ${dir}: missing ${missing.join(", ")}`);
      return files;
    }
  }
  throw new IterAlignError(
    "USAGE",
    `--bigbench-dir ${dir}: no BIG-bench hhh_alignment task files found (looked for ${BIGBENCH_HHH_CATEGORIES.map((c) => `${c}/task.json`).join(", ")} in it and in its hhh_alignment/ folder)`,
  );
}
