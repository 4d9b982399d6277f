import path from "node:path";
import { z } from "zod";
import { defaultCacheDir } from "../native/llama-bundle.js";
import { READY_MARK, runPython, trlScriptPath, trlVenvDir, trlVenvPython, trlVenvReady } from "../native/python-runtime.js";
import { IterAlignError } from "../spec/errors.js";

export { runPython, trlScriptPath, trlVenvDir, trlVenvPython, trlVenvReady };

/** Packages the `trl` trainer imports, with the oldest versions it was written against. */
export const TRL_PACKAGES = ["torch", "transformers", "trl", "peft", "accelerate", "datasets", "safetensors", "gguf"] as const;

/** What `pip install` gets for `iteralign setup trl` (sentencepiece and protobuf: tokenizers of Llama-family models). */
export const TRL_PIP_REQUIREMENTS = [...TRL_PACKAGES, "sentencepiece", "protobuf"] as const;

/**
 * The interpreter the trainer runs: `train.trl.python` when set (relative to the config's folder), else the
 * environment `iteralign setup trl` made, else `python3` from PATH.
 */
export function resolvePython(configured: string | undefined, baseDir: string, cacheDir = defaultCacheDir()): string {
  if (configured !== undefined) return configured.includes("/") ? path.resolve(baseDir, configured) : configured;
  return trlVenvReady(cacheDir) ? trlVenvPython(cacheDir) : "python3";
}

export const PythonCheckSchema = z.object({
  python: z.string(),
  executable: z.string(),
  packages: z.record(z.string(), z.string()),
  missing: z.array(z.object({ package: z.string(), error: z.string() })),
  device: z
    .object({
      type: z.string(),
      bf16: z.boolean(),
      fp16: z.boolean(),
      name: z.string().optional(),
      count: z.number().optional(),
      memoryBytes: z.number().optional(),
      threads: z.number().optional(),
    })
    .passthrough(),
});
export type PythonCheck = z.infer<typeof PythonCheckSchema>;

/**
 * Asks `python` what the trainer needs: its version, the packages' versions (or why each cannot be imported) and
 * the device. Throws TRAINER_ENVIRONMENT with one line per missing thing and how to get it.
 */
export async function checkPythonEnvironment(python: string, options: { requireAll?: boolean } = {}): Promise<PythonCheck> {
  let out: { code: number | null; stdout: string; stderr: string };
  try {
    out = await runPython(python, [trlScriptPath(), "check"], { timeoutMs: 300_000 });
  } catch (err) {
    throw new IterAlignError(
      "TRAINER_ENVIRONMENT",
      `train.trl.python: cannot run ${python} (${err instanceof Error ? err.message : String(err)}); run \`iteralign setup trl\` to create an environment, or set train.trl.python to an interpreter with torch, transformers, trl and peft`,
      { cause: err },
    );
  }
  const line = out.stdout.trim().split("\n").at(-1) ?? "";
  let parsed: PythonCheck;
  try {
    parsed = PythonCheckSchema.parse(JSON.parse(line));
  } catch {
    throw new IterAlignError(
      "TRAINER_ENVIRONMENT",
      `train.trl.python: ${python} could not run iteralign's environment check (exit ${String(out.code)})${out.stderr ? `: ${out.stderr.trim().split("\n").slice(-3).join(" | ")}` : ""}`,
    );
  }
  const [major = 0, minor = 0] = parsed.python.split(".").map(Number);
  const problems: string[] = [];
  if (major < 3 || (major === 3 && minor < 9)) problems.push(`python ${parsed.python} is too old (3.9 or newer)`);
  for (const m of parsed.missing) problems.push(`${m.package} cannot be imported (${m.error.split("\n")[0] ?? ""})`);
  if (problems.length > 0 && options.requireAll !== false) {
    throw new IterAlignError(
      "TRAINER_ENVIRONMENT",
      `train.trl.python ${python}: ${problems.join("; ")}. Run \`iteralign setup trl\` (a virtual environment with ${TRL_PIP_REQUIREMENTS.join(", ")}) or \`${python} -m pip install ${parsed.missing.map((m) => m.package).join(" ") || TRL_PACKAGES.join(" ")}\``,
      { details: { python, missing: parsed.missing.map((m) => m.package) } },
    );
  }
  return parsed;
}

/**
 * `iteralign setup trl`: a virtual environment in the cache with the trainer's packages, made with `python`
 * (default python3) and pip's own configuration (an index, a local mirror). pip retries a failing index once
 * (`ITERALIGN_PIP_ARGS` adds or overrides pip options). Kept when it is complete; checked afterwards.
 */
export async function setupTrlEnvironment(options: {
  cacheDir?: string;
  python?: string;
  onLine?: (line: string) => void;
  extraPipArgs?: readonly string[];
} = {}): Promise<{ python: string; check: PythonCheck; created: boolean }> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const dir = trlVenvDir(cacheDir);
  const python = trlVenvPython(cacheDir);
  let created = false;
  if (!trlVenvReady(cacheDir)) {
    const { rmSync, mkdirSync, writeFileSync } = await import("node:fs");
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(path.dirname(dir), { recursive: true });
    const base = options.python ?? "python3";
    options.onLine?.(`creating a virtual environment with ${base} in ${dir}`);
    const venv = await runPython(base, ["-m", "venv", dir]);
    if (venv.code !== 0) {
      throw new IterAlignError("TRAINER_ENVIRONMENT", `${base} -m venv ${dir} failed: ${venv.stderr.trim().split("\n").slice(-2).join(" | ")} (on Debian/Ubuntu: apt install python3-venv)`);
    }
    const pipArgs = ["-m", "pip", "install", "--disable-pip-version-check", "--retries", "1", ...(options.extraPipArgs ?? []), ...TRL_PIP_REQUIREMENTS];
    options.onLine?.(`installing ${TRL_PIP_REQUIREMENTS.join(", ")} (torch is large: minutes on a slow link)`);
    const { spawn: spawnChild } = await import("node:child_process");
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawnChild(python, pipArgs, { stdio: ["ignore", "pipe", "pipe"] });
      const forward = (chunk: Buffer): void => {
        for (const line of chunk.toString("utf8").split("\n")) if (line.trim()) options.onLine?.(line);
      };
      child.stdout.on("data", forward);
      child.stderr.on("data", forward);
      child.on("error", reject);
      child.on("close", resolve);
    });
    if (code !== 0) throw new IterAlignError("TRAINER_ENVIRONMENT", `pip install in ${dir} failed (exit ${String(code)}); see the lines above`);
    writeFileSync(path.join(dir, READY_MARK), `${new Date().toISOString()}\n`);
    created = true;
  }
  const check = await checkPythonEnvironment(python);
  return { python, check, created };
}
