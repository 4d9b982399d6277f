import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { accessSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { IterAlignError } from "../spec/errors.js";
import { bundleCommit, defaultCacheDir, llamaBundlePath } from "./llama-bundle.js";

/**
 * llama.cpp programs iteralign builds from the source bundled in node-llama-cpp's npm tarball.
 * `iteralign-scorer` (log-likelihood scoring), `iteralign-generate` (decode groups with native sampling) and
 * `iteralign-finetune` (SFT with the loss on answer tokens) are iteralign's own programs (source in `native/<name>/`), built in the same tree.
 */
export type LlamaTool =
  | "llama-server"
  | "llama-finetune"
  | "llama-batched-bench"
  | "llama-export-lora"
  | "llama-quantize"
  | "iteralign-scorer"
  | "iteralign-generate"
  | "iteralign-finetune";

/** Every program {@link ensureLlamaBuild} can build (`llama-batched-bench`: the engine's own limit, for bench:loop). */
export const LLAMA_TOOLS: readonly LlamaTool[] = [
  "llama-server",
  "llama-finetune",
  "llama-batched-bench",
  "llama-export-lora",
  "llama-quantize",
  "iteralign-scorer",
  "iteralign-generate",
  "iteralign-finetune",
];

/**
 * The ggml backend a build is for: `cpu` (the default; needs only a C++ toolchain) or `cuda` (NVIDIA GPUs; needs
 * the CUDA toolkit's nvcc). Each has its own build directory, so the two never overwrite each other.
 */
export type LlamaGpu = "cpu" | "cuda";

export interface LlamaBuildOptions {
  /** Targets to build; already-built targets are skipped. */
  readonly targets: readonly LlamaTool[];
  /** Root of the build cache. Default: $ITERALIGN_CACHE_DIR or $XDG_CACHE_HOME/iteralign or ~/.cache/iteralign. */
  readonly cacheDir?: string;
  /** Parallel compile jobs. Default: number of CPUs. */
  readonly jobs?: number;
  /** Receives build output lines (for progress display). */
  readonly onLine?: (line: string) => void;
  /** Backend to build for. Default: `cpu`. `cuda` checks for the CUDA toolkit first (see {@link checkCudaToolkit}). */
  readonly gpu?: LlamaGpu;
}

export interface LlamaBuild {
  readonly commit: string;
  readonly gpu: LlamaGpu;
  readonly dir: string;
  readonly binaries: Readonly<Partial<Record<LlamaTool, string>>>;
}

/** CMake flags of every build; {@link llamaCmakeFlags} adds the backend's. */
const CMAKE_FLAGS = [
  "-DCMAKE_BUILD_TYPE=Release",
  "-DLLAMA_CURL=OFF",
  "-DLLAMA_OPENSSL=OFF",
  "-DLLAMA_BUILD_TESTS=OFF",
  "-DLLAMA_BUILD_EXAMPLES=ON",
  "-DLLAMA_BUILD_SERVER=ON",
  "-DLLAMA_USE_PREBUILT_UI=OFF",
  "-DLLAMA_BUILD_UI=OFF",
  "-DBUILD_SHARED_LIBS=OFF",
];

/**
 * The CMake configure flags of a build for `gpu`. CUDA builds add `-DGGML_CUDA=ON` and, when nvcc was found
 * through CUDA_HOME or in /usr/local/cuda rather than where CMake looks itself (PATH, $CUDACXX), the compiler and
 * toolkit root the check found.
 */
export function llamaCmakeFlags(gpu: LlamaGpu, cuda?: CudaToolkit): string[] {
  if (gpu === "cpu") return [...CMAKE_FLAGS];
  const flags = [...CMAKE_FLAGS, "-DGGML_CUDA=ON"];
  if (cuda && (cuda.source === "CUDA_HOME" || cuda.source === "default")) {
    flags.push(`-DCMAKE_CUDA_COMPILER=${cuda.nvcc}`, `-DCUDAToolkit_ROOT=${cuda.root}`);
  }
  return flags;
}

/**
 * Where the CUDA toolkit check looks: the environment (default: process.env) and a test for an executable file
 * (default: the file system's), both replaceable for tests.
 */
export interface CudaToolkitLookup {
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly isExecutable?: (file: string) => boolean;
}

/** The CUDA compiler a CUDA build uses, and where it was found. */
export interface CudaToolkit {
  /** Path of nvcc. */
  readonly nvcc: string;
  /** The toolkit's root (nvcc's folder's parent). */
  readonly root: string;
  /** `CUDACXX` (CMake's own variable), `CUDA_HOME`, `PATH` or `default` (/usr/local/cuda). */
  readonly source: "CUDACXX" | "CUDA_HOME" | "PATH" | "default";
}

/** The toolkit's usual place on Linux, tried last. */
export const DEFAULT_CUDA_HOME = "/usr/local/cuda";

function isExecutableFile(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * Finds the CUDA toolkit's compiler: `$CUDACXX` when set (CMake uses it too), else `$CUDA_HOME/bin/nvcc`, nvcc on
 * PATH, `/usr/local/cuda/bin/nvcc`. Undefined when none is an executable file.
 */
export function findCudaToolkit(lookup: CudaToolkitLookup = {}): CudaToolkit | undefined {
  const nvccName = process.platform === "win32" ? "nvcc.exe" : "nvcc";
  const at = (nvcc: string, source: CudaToolkit["source"]): CudaToolkit => ({
    nvcc,
    root: path.dirname(path.dirname(nvcc)),
    source,
  });
  const { env = process.env, isExecutable = isExecutableFile } = lookup;
  const onPath = (name: string): string | undefined =>
    (env.PATH ?? "")
      .split(path.delimiter)
      .filter((dir) => dir !== "")
      .map((dir) => path.join(dir, name))
      .find((file) => isExecutable(file));
  if (env.CUDACXX) {
    // CMake takes a path or a program name looked up on PATH.
    const nvcc = env.CUDACXX.includes("/") || env.CUDACXX.includes(path.sep) ? env.CUDACXX : onPath(env.CUDACXX);
    return nvcc !== undefined && isExecutable(nvcc) ? at(nvcc, "CUDACXX") : undefined;
  }
  if (env.CUDA_HOME) {
    const nvcc = path.join(env.CUDA_HOME, "bin", nvccName);
    if (isExecutable(nvcc)) return at(nvcc, "CUDA_HOME");
  }
  const nvcc = onPath(nvccName);
  if (nvcc !== undefined) return at(nvcc, "PATH");
  const fallback = path.join(DEFAULT_CUDA_HOME, "bin", nvccName);
  return isExecutable(fallback) ? at(fallback, "default") : undefined;
}

/**
 * Checks that a CUDA build can find the CUDA toolkit (see {@link findCudaToolkit}); throws BUILD_TOOL_MISSING
 * naming where nvcc was looked for and how to install it. Only the compiler is checked: the NVIDIA driver and a
 * GPU are needed to run, not to build.
 */
export function checkCudaToolkit(lookup: CudaToolkitLookup = {}): CudaToolkit {
  const found = findCudaToolkit(lookup);
  if (found) return found;
  const { env = process.env } = lookup;
  const looked = env.CUDACXX
    ? `$CUDACXX (${env.CUDACXX}) is not an executable file`
    : `nvcc is not in ${env.CUDA_HOME ? `$CUDA_HOME/bin (${path.join(env.CUDA_HOME, "bin")})` : "$CUDA_HOME/bin (CUDA_HOME is not set)"}, on PATH, or in ${path.join(DEFAULT_CUDA_HOME, "bin")}`;
  throw new IterAlignError(
    "BUILD_TOOL_MISSING",
    `building llama.cpp with CUDA needs the NVIDIA CUDA toolkit's compiler nvcc: ${looked}. ` +
      "Install the CUDA toolkit (https://developer.nvidia.com/cuda-downloads; Debian/Ubuntu: apt-get install nvidia-cuda-toolkit), " +
      "then put its bin/ on PATH or set CUDA_HOME to its root (e.g. CUDA_HOME=/usr/local/cuda). Or build for the CPU (without --cuda / gpu: cuda).",
    { details: { missing: "nvcc", ...(env.CUDA_HOME ? { cudaHome: env.CUDA_HOME } : {}) } },
  );
}

/**
 * Reads `npm run build:llama` arguments: program names (default: llama-server and iteralign's programs for the
 * CPU; iteralign-finetune, the only program that uses a GPU, with `--cuda`) and `--cuda`.
 */
export function parseBuildLlamaArgs(argv: readonly string[]): { targets: LlamaTool[]; gpu: LlamaGpu } {
  let gpu: LlamaGpu = "cpu";
  const targets: LlamaTool[] = [];
  for (const arg of argv) {
    if (arg === "--cuda") gpu = "cuda";
    else if (arg === "--cpu") gpu = "cpu";
    else if ((LLAMA_TOOLS as readonly string[]).includes(arg)) targets.push(arg as LlamaTool);
    else {
      throw new IterAlignError(
        "USAGE",
        `unknown ${arg.startsWith("-") ? "option" : "program"} '${arg}': expected --cuda and program names (${LLAMA_TOOLS.join(", ")})`,
      );
    }
  }
  if (targets.length > 0) return { targets, gpu };
  return { targets: gpu === "cuda" ? ["iteralign-finetune"] : ["llama-server", "iteralign-scorer", "iteralign-generate", "iteralign-finetune"], gpu };
}

function run(cmd: string, args: readonly string[], opts: { cwd?: string; onLine?: (l: string) => void }): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ["ignore", "pipe", "pipe"] });
    const tail: string[] = [];
    const onData = (buf: Buffer): void => {
      for (const line of buf.toString("utf8").split("\n")) {
        if (line.trim() === "") continue;
        tail.push(line);
        if (tail.length > 40) tail.shift();
        opts.onLine?.(line);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", (err) =>
      reject(
        new IterAlignError("BUILD_TOOL_MISSING", `cannot run '${cmd}': ${err.message}. ${installHint(cmd)}`, {
          cause: err,
        }),
      ),
    );
    child.on("close", (code) => {
      if (code === 0) resolve();
      else
        reject(
          new IterAlignError(
            "BUILD_FAILED",
            `'${cmd} ${args.join(" ")}' exited with ${String(code)}. Last output:\n${tail.join("\n")}`,
          ),
        );
    });
  });
}

function installHint(cmd: string): string {
  if (cmd === "cmake") return "Install CMake (Debian/Ubuntu: apt-get install cmake; macOS: brew install cmake).";
  if (cmd === "git") return "Install git (Debian/Ubuntu: apt-get install git).";
  return "Install a C++ toolchain (Debian/Ubuntu: apt-get install build-essential cmake).";
}

/** Checks cmake, a C++ compiler and git are present; throws a typed error naming what is missing. */
export function checkBuildTools(): void {
  const missing: string[] = [];
  for (const [cmd, arg] of [
    ["cmake", "--version"],
    ["git", "--version"],
  ] as const) {
    if (spawnSync(cmd, [arg], { stdio: "ignore" }).error) missing.push(cmd);
  }
  const cxx = process.env.CXX ?? "c++";
  if (spawnSync(cxx, ["--version"], { stdio: "ignore" }).error && spawnSync("g++", ["--version"], { stdio: "ignore" }).error)
    missing.push("a C++ compiler (g++ or clang++)");
  if (missing.length > 0)
    throw new IterAlignError(
      "BUILD_TOOL_MISSING",
      `building llama.cpp needs ${missing.join(", ")}. Debian/Ubuntu: apt-get install build-essential cmake git; macOS: xcode-select --install && brew install cmake.`,
    );
}

/**
 * The build directory of one llama.cpp commit, platform, architecture and backend:
 * `<cacheDir>/llama.cpp/<commit12>-<platform>-<arch>-cpu` or `...-cuda`.
 */
export function llamaBuildDir(cacheDir: string, commit: string, gpu: LlamaGpu = "cpu"): string {
  return path.join(cacheDir, "llama.cpp", `${commit.slice(0, 12)}-${process.platform}-${process.arch}-${gpu}`);
}

function binaryPath(dir: string, tool: LlamaTool): string {
  return path.join(dir, "build", "bin", tool);
}

/** iteralign's own programs: source in `native/<tool>/`, overlaid into llama.cpp's tools/ and stamped. */
const OWN_TOOLS = ["iteralign-scorer", "iteralign-generate", "iteralign-finetune"] as const;
export type OwnTool = (typeof OWN_TOOLS)[number];

function isOwnTool(tool: LlamaTool): tool is OwnTool {
  return (OWN_TOOLS as readonly string[]).includes(tool);
}

/** Where one of iteralign's programs' source lives: `native/<tool>/` at the package root (src/ and dist/ alike). */
export function ownToolSourceDir(tool: OwnTool): string {
  return fileURLToPath(new URL(`../../native/${tool}/`, import.meta.url));
}

/**
 * Hash of a program's source files (names and contents), or undefined when the source is missing. A built
 * program records it in a stamp file next to the binary, so editing the source makes the binary stale.
 */
export function sourceHash(dir: string): string | undefined {
  if (!existsSync(dir)) return undefined;
  const hash = createHash("sha256");
  for (const name of readdirSync(dir).sort()) {
    const file = path.join(dir, name);
    if (!statSync(file).isFile()) continue;
    hash.update(`${name}\0`).update(readFileSync(file)).update("\0");
  }
  return hash.digest("hex");
}

/** What iteralign's programs share (`native/common/`): copied next to each program's source when it is built. */
export function commonSourceDir(): string {
  return fileURLToPath(new URL("../../native/common/", import.meta.url));
}

/** Source folders of one of iteralign's programs: its own, then the shared one. */
function ownToolSourceDirs(tool: OwnTool): string[] {
  return [ownToolSourceDir(tool), commonSourceDir()];
}

/**
 * Hash of a program's source: its own folder and the shared one (see {@link sourceHash}); undefined when its own
 * folder is missing. A change to either makes the built binary stale.
 */
export function ownToolSourceHash(tool: OwnTool): string | undefined {
  const hashes = ownToolSourceDirs(tool).map((dir) => sourceHash(dir));
  if (hashes[0] === undefined) return undefined;
  return createHash("sha256").update(hashes.map((h) => h ?? "").join("\n")).digest("hex");
}

/** Hash of the scorer's source files, the shared ones included (see {@link ownToolSourceHash}). */
export function scorerSourceHash(): string | undefined {
  return ownToolSourceHash("iteralign-scorer");
}

function stampPath(dir: string, tool: LlamaTool): string {
  return `${binaryPath(dir, tool)}.source-hash`;
}

/** A target counts as built when its binary exists and, for iteralign's own programs, was built from the current source. */
function isBuilt(dir: string, tool: LlamaTool): boolean {
  if (!existsSync(binaryPath(dir, tool))) return false;
  if (!isOwnTool(tool)) return true;
  const want = ownToolSourceHash(tool);
  const stamp = stampPath(dir, tool);
  return want !== undefined && existsSync(stamp) && readFileSync(stamp, "utf8").trim() === want;
}

/**
 * Copies one of iteralign's programs into llama.cpp's tools/ folder and registers it there (once), so it builds
 * in the same build directory as llama-server and links the libllama/ggml objects already compiled: seconds, not
 * a fresh llama.cpp build. Files are rewritten only when they differ, so make sees no spurious changes.
 */
function overlayOwnTool(src: string, tool: OwnTool): void {
  const from = ownToolSourceDir(tool);
  if (!existsSync(from)) {
    throw new IterAlignError("BUILD_FAILED", `the ${tool} source is missing (${from}); reinstall iteralign`);
  }
  const to = path.join(src, "tools", tool);
  mkdirSync(to, { recursive: true });
  // The shared headers sit next to the program's own files, so `#include "iteralign-native.h"` finds them.
  for (const dir of ownToolSourceDirs(tool).filter((d) => existsSync(d))) {
    for (const name of readdirSync(dir)) {
      const file = path.join(dir, name);
      if (!statSync(file).isFile()) continue;
      const content = readFileSync(file);
      const target = path.join(to, name);
      if (!existsSync(target) || !readFileSync(target).equals(content)) writeFileSync(target, content);
    }
  }
  const tools = path.join(src, "tools", "CMakeLists.txt");
  const listing = readFileSync(tools, "utf8");
  if (!new RegExp(`^add_subdirectory\\(${tool}\\)`, "m").test(listing)) {
    writeFileSync(tools, `${listing.endsWith("\n") ? listing : `${listing}\n`}add_subdirectory(${tool}) # added by iteralign\n`);
  }
}

const LlamaPatchesSchema = z.array(
  z.object({ file: z.string(), why: z.string(), find: z.string().min(1), replace: z.string().min(1) }).strict(),
);

/**
 * Applies the edits of llama.cpp's own source that one of iteralign's programs needs, listed with their reasons
 * in `native/<tool>/llama-patches.json` (part of the program's source, so of its stamp). An edit already in place
 * is skipped; one whose anchor text is missing (another llama.cpp version) fails the build with a clear message.
 */
function applyLlamaPatches(src: string, tool: OwnTool): void {
  const list = path.join(ownToolSourceDir(tool), "llama-patches.json");
  if (!existsSync(list)) return;
  const patches = LlamaPatchesSchema.parse(JSON.parse(readFileSync(list, "utf8")));
  for (const patch of patches) {
    const file = path.join(src, patch.file);
    const text = readFileSync(file, "utf8");
    if (text.includes(patch.replace)) continue;
    const at = text.indexOf(patch.find);
    if (at < 0 || text.indexOf(patch.find, at + 1) >= 0) {
      throw new IterAlignError(
        "BUILD_FAILED",
        `${tool} needs an edit of llama.cpp's ${patch.file} whose anchor text is ${at < 0 ? "missing" : "not unique"} in this llama.cpp version (${patch.why})`,
      );
    }
    writeFileSync(file, text.slice(0, at) + patch.replace + text.slice(at + patch.find.length));
  }
}

/** Returns the cached build for `gpu` (default `cpu`) if every requested target is already built, without building. */
export function findLlamaBuild(
  targets: readonly LlamaTool[],
  cacheDir = defaultCacheDir(),
  gpu: LlamaGpu = "cpu",
): LlamaBuild | undefined {
  const commit = bundleCommit();
  const dir = llamaBuildDir(cacheDir, commit, gpu);
  const binaries: Partial<Record<LlamaTool, string>> = {};
  for (const t of targets) {
    if (!isBuilt(dir, t)) return undefined;
    binaries[t] = binaryPath(dir, t);
  }
  return { commit, gpu, dir, binaries };
}

/**
 * Builds llama.cpp programs from the source bundled with node-llama-cpp, once per machine.
 * The build is keyed by the llama.cpp commit, platform, architecture and backend (CPU or CUDA); a lock file
 * keeps two processes from building into the same directory at once.
 */
export async function ensureLlamaBuild(options: LlamaBuildOptions): Promise<LlamaBuild> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const gpu = options.gpu ?? "cpu";
  const found = findLlamaBuild(options.targets, cacheDir, gpu);
  if (found) return found;
  checkBuildTools();
  const flags = llamaCmakeFlags(gpu, gpu === "cuda" ? checkCudaToolkit() : undefined);
  const bundle = llamaBundlePath();
  const commit = bundleCommit(bundle);
  const dir = llamaBuildDir(cacheDir, commit, gpu);
  mkdirSync(dir, { recursive: true });
  const lock = path.join(dir, "build.lock");
  await acquireLock(lock, options.onLine);
  try {
    const src = await cloneSource(dir, bundle, commit, options.onLine);
    // Hashed before copying: should the source change during the build, the stamp stays stale and the
    // next call rebuilds.
    const stamps = new Map<OwnTool, string | undefined>();
    for (const tool of options.targets.filter(isOwnTool)) {
      stamps.set(tool, ownToolSourceHash(tool));
      overlayOwnTool(src, tool);
      applyLlamaPatches(src, tool);
    }
    const build = path.join(dir, "build");
    options.onLine?.(`configuring llama.cpp (${gpu === "cuda" ? "CUDA" : "CPU"}, Release)`);
    await run("cmake", ["-S", src, "-B", build, ...flags], { onLine: options.onLine });
    const jobs = String(options.jobs ?? Math.max(1, (await import("node:os")).availableParallelism()));
    const missing = options.targets.filter((t) => !isBuilt(dir, t));
    await run("cmake", ["--build", build, "--config", "Release", "-j", jobs, "--target", ...missing], {
      onLine: options.onLine,
    });
    for (const [tool, hash] of stamps) if (hash !== undefined) writeFileSync(stampPath(dir, tool), `${hash}\n`);
    writeFileSync(
      path.join(dir, "build.json"),
      JSON.stringify({ commit, gpu, flags, targets: options.targets, builtAt: new Date().toISOString() }, null, 2),
    );
  } finally {
    rmSync(lock, { force: true });
  }
  const done = findLlamaBuild(options.targets, cacheDir, gpu);
  if (!done) throw new IterAlignError("BUILD_FAILED", `llama.cpp build in ${dir} finished without ${options.targets.join(", ")}`);
  return done;
}

/** Checks the llama.cpp source out of node-llama-cpp's bundle into `<dir>/src` unless it is there; returns that folder. */
async function cloneSource(dir: string, bundle: string, commit: string, onLine?: (l: string) => void): Promise<string> {
  const src = path.join(dir, "src");
  if (!existsSync(path.join(src, "CMakeLists.txt"))) {
    const tmp = `${src}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    onLine?.(`cloning llama.cpp ${commit.slice(0, 12)} from ${bundle}`);
    await run("git", ["clone", "--quiet", bundle, tmp], { ...(onLine ? { onLine } : {}) });
    await run("git", ["-c", "advice.detachedHead=false", "checkout", "--quiet", commit], { cwd: tmp });
    rmSync(src, { recursive: true, force: true });
    renameSync(tmp, src);
  }
  return src;
}

/**
 * The llama.cpp source node-llama-cpp ships, checked out once into the build cache (no build): its Python
 * conversion scripts (`convert_hf_to_gguf.py`, `convert_lora_to_gguf.py`) and their `gguf-py`.
 */
export async function ensureLlamaSource(options: { cacheDir?: string; gpu?: LlamaGpu; onLine?: (l: string) => void } = {}): Promise<string> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const bundle = llamaBundlePath();
  const commit = bundleCommit(bundle);
  const dir = llamaBuildDir(cacheDir, commit, options.gpu ?? "cpu");
  if (existsSync(path.join(dir, "src", "convert_lora_to_gguf.py"))) return path.join(dir, "src");
  checkBuildTools();
  mkdirSync(dir, { recursive: true });
  const lock = path.join(dir, "build.lock");
  await acquireLock(lock, options.onLine);
  try {
    return await cloneSource(dir, bundle, commit, options.onLine);
  } finally {
    rmSync(lock, { force: true });
  }
}

async function acquireLock(lock: string, onLine?: (l: string) => void): Promise<void> {
  for (let waited = 0; ; waited += 2) {
    try {
      writeFileSync(lock, String(process.pid), { flag: "wx" });
      return;
    } catch {
      const pid = Number(readFileSync(lock, "utf8"));
      if (!Number.isFinite(pid) || !isAlive(pid)) {
        rmSync(lock, { force: true });
        continue;
      }
      if (waited % 30 === 0) onLine?.(`waiting for another llama.cpp build (pid ${pid})`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
