import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { loadConfig } from "../../config/load-config.js";
import { loadRun } from "../../report/run-view.js";
import { writeReport, type ReportRun } from "../../report/render.js";
import { IterAlignError } from "../../spec/errors.js";
import { SqliteRunStore } from "../../store/sqlite-run-store.js";
import type { CommandIo } from "../io.js";
import { Reporter } from "../reporter.js";

export interface ReportCommandOptions {
  /** One run, or two to compare: run ids (under the config's runsDir) or run directories. */
  readonly runs: readonly string[];
  readonly config: string;
  /** The SQLite store (default: the config's `store.path`). */
  readonly store?: string;
  readonly out?: string;
  readonly maxChars?: number;
  readonly quiet?: boolean;
}

/** Where a run's files and store are. */
export interface ResolvedRun {
  readonly runId: string;
  readonly runDir: string;
  readonly storePath: string;
}

/** A run id under the config's runsDir, or a run directory; its store is `--store` or the config's. */
export function resolveRun(run: string, options: { config: string; store?: string }): ResolvedRun {
  const isDir = existsSync(run) && statSync(run).isDirectory();
  let loaded: ReturnType<typeof loadConfig> | undefined;
  const config = (): ReturnType<typeof loadConfig> => (loaded ??= loadConfig(options.config));
  const storePath = options.store !== undefined ? path.resolve(options.store) : path.resolve(config().baseDir, config().config.store.path);
  if (isDir) return { runId: path.basename(path.resolve(run)), runDir: path.resolve(run), storePath };
  if (run.includes("/") || run.includes(path.sep)) throw new IterAlignError("USAGE", `${run}: no such run directory`);
  const runDir = path.resolve(config().baseDir, config().config.runsDir, run);
  if (!existsSync(runDir)) throw new IterAlignError("USAGE", `run '${run}' not found (looked in ${runDir})`);
  return { runId: run, runDir, storePath };
}

/**
 * `iteralign report <run> [<other run>]`: one self-contained HTML file showing a run (or comparing two): overview,
 * per-iteration charts, the constitution's evolution, every item's trace, the evaluations. Opens offline.
 */
export async function reportCommand(options: ReportCommandOptions, io: CommandIo): Promise<number> {
  if (options.runs.length === 0 || options.runs.length > 2) throw new IterAlignError("USAGE", "report takes one run, or two to compare");
  const reporter = new Reporter(io, options);
  const resolved = options.runs.map((r) => resolveRun(r, options));
  const stores = new Map<string, SqliteRunStore>();
  try {
    const runs: ReportRun[] = resolved.map((r) => {
      if (!existsSync(r.storePath)) throw new IterAlignError("USAGE", `no run store at ${r.storePath} (give the run's config with --config, or the store with --store)`);
      let store = stores.get(r.storePath);
      if (!store) {
        store = new SqliteRunStore(r.storePath);
        stores.set(r.storePath, store);
      }
      return { loaded: loadRun({ store, runId: r.runId, runDir: r.runDir }), store, runDir: r.runDir };
    });
    const first = resolved[0] as ResolvedRun;
    const out = path.resolve(options.out ?? (resolved.length === 1 ? path.join(first.runDir, "report.html") : path.join(first.runDir, `compare-${(resolved[1] as ResolvedRun).runId}.html`)));
    const started = performance.now();
    const bar = reporter.progress("report items", runs.reduce((n, r) => n + r.loaded.index.size, 0));
    const stats = writeReport(out, runs, { ...(options.maxChars !== undefined ? { maxChars: options.maxChars } : {}), onProgress: (done) => bar.update(done), generator: "iteralign report" });
    bar.stop();
    for (const r of runs) for (const w of r.loaded.view.warnings) reporter.warn(`warning: ${r.loaded.view.runId}: ${w}`);
    reporter.info(`${stats.items} items, ${(stats.bytes / 1e6).toFixed(2)} MB in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    io.out(`report: ${out}\n`);
    return 0;
  } finally {
    for (const s of stores.values()) s.close();
  }
}
