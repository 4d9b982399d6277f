import path from "node:path";
import { writeFileAtomic } from "../util/atomic-write.js";
import { stableJson } from "../util/canonical-json.js";

/**
 * Where a run's files go: `runs/<id>/`. Every file is rendered from stored records and written atomically
 * (temporary file, then rename), so a crash never leaves a half-written artifact and a resumed run rewrites
 * the same bytes.
 */
export class RunLayout {
  constructor(readonly dir: string) {}

  static forRun(runsDir: string, runId: string): RunLayout {
    return new RunLayout(path.join(runsDir, runId));
  }

  iterationDir(iteration: number): string {
    return path.join(this.dir, "iterations", String(iteration).padStart(3, "0"));
  }

  /**
   * Writes a file under the run directory atomically. A temporary file of the same target left by a process that
   * was killed between writing and renaming is removed, so a resumed run leaves exactly the files an uninterrupted
   * run leaves.
   */
  write(relativePath: string, content: string): string {
    const file = path.join(this.dir, relativePath);
    writeFileAtomic(file, content);
    return file;
  }

  writeIteration(iteration: number, name: string, content: string): string {
    return this.write(path.join(path.relative(this.dir, this.iterationDir(iteration)), name), content);
  }
}

/**
 * JSON with a trailing newline and keys sorted at every depth: the bytes depend on the data only, never on
 * whether a record was just computed or re-read from the store (resume writes what an uninterrupted run writes).
 */
export function jsonFile(value: unknown): string {
  return `${stableJson(value, 2)}\n`;
}

/** One JSON value per line, keys sorted at every depth (see {@link jsonFile}). */
export function jsonlFile(values: readonly unknown[]): string {
  return values.map((v) => `${stableJson(v)}\n`).join("");
}
