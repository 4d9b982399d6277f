import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { defaultCacheDir } from "./llama-bundle.js";

/** The training script shipped with the package (`python/iteralign_trl.py` at the package root; src/ and dist/ alike). */
export function trlScriptPath(): string {
  return fileURLToPath(new URL("../../python/iteralign_trl.py", import.meta.url));
}

/** The virtual environment `iteralign setup trl` creates: `<cache>/trl-venv`. */
export function trlVenvDir(cacheDir = defaultCacheDir()): string {
  return path.join(cacheDir, "trl-venv");
}

/** Its interpreter. */
export function trlVenvPython(cacheDir = defaultCacheDir()): string {
  return path.join(trlVenvDir(cacheDir), "bin", "python");
}

/** Marks a finished `iteralign setup trl` (a half-made environment lacks it and is made again). */
export const READY_MARK = ".iteralign-ready";

/** Whether `iteralign setup trl` finished making its environment. */
export function trlVenvReady(cacheDir = defaultCacheDir()): boolean {
  return existsSync(path.join(trlVenvDir(cacheDir), READY_MARK));
}

/** The interpreter iteralign's Python tools run with: the `iteralign setup trl` environment when ready, else python3. */
export function defaultPython(cacheDir = defaultCacheDir()): string {
  return trlVenvReady(cacheDir) ? trlVenvPython(cacheDir) : "python3";
}

/** Runs a Python program to its end and collects its output. */
export function runPython(
  python: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, [...args], { stdio: ["ignore", "pipe", "pipe"], env: options.env ?? process.env, ...(options.cwd ? { cwd: options.cwd } : {}) });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => child.kill("SIGKILL"), options.timeoutMs);
    child.on("error", (err) => {
      if (timer) clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code) => {
      if (timer) clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
