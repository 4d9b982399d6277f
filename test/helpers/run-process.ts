import { spawn } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "../..");

/** How a CLI process ended. */
export interface ProcessResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly out: string;
  readonly err: string;
}

/**
 * Runs the CLI from source in its own process (tsx as a loader, so the program runs in this very process and a
 * signal reaches it, not a wrapper). `env` adds to the environment, e.g. `ITERALIGN_FAULT_AT`.
 */
export function runCliProcess(args: readonly string[], env: Readonly<Record<string, string>> = {}): Promise<ProcessResult> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(root, "test/helpers/cli-process.ts"), ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    cwd: root,
    env: { ...process.env, ...env },
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    err += chunk.toString();
  });
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => resolve({ code, signal, out, err }));
  });
}

/** Every file under a directory, with its text, keyed by relative path. */
export function artifacts(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const full = path.join(d, name);
      if (statSync(full).isDirectory()) walk(full);
      else out.set(path.relative(dir, full), readFileSync(full, "utf8"));
    }
  };
  walk(dir);
  return out;
}
