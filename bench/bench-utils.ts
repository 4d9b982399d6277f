import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { renderTable } from "../src/util/table.js";

/** One performance goal and whether the measurement meets it. */
export interface Goal {
  readonly name: string;
  readonly value: number;
  readonly goal: string;
  readonly holds: boolean;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? NaN) : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

/** Runs `fn` `runs` times and returns each run's seconds. */
export async function timeRuns(runs: number, fn: () => Promise<void>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await fn();
    out.push((performance.now() - start) / 1000);
  }
  return out;
}

/** Prints the measurements and goals, and writes bench/results/<name>.json. */
export function report(
  name: string,
  measurements: ReadonlyArray<{ name: string; value: number; unit: string }>,
  goals: readonly Goal[],
  extra: Record<string, unknown> = {},
): void {
  process.stdout.write(
    `\n${renderTable(
      ["measurement", "value", "unit"],
      measurements.map((m) => [m.name, m.value.toFixed(m.value < 10 ? 3 : 1), m.unit]),
    )}\n${renderTable(
      ["goal", "value", "target", "holds"],
      goals.map((g) => [g.name, g.value.toFixed(2), g.goal, g.holds ? "yes" : "NO"]),
    )}`,
  );
  const dir = path.resolve(path.dirname(new URL(import.meta.url).pathname), "results");
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify({ goals, measurements, ...extra }, null, 2)}\n`);
  process.stdout.write(`\nwrote ${file}\n`);
}
