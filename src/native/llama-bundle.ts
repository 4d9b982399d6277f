import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import path from "node:path";
import { IterAlignError } from "../spec/errors.js";

/** The user cache directory iteralign keeps builds and extracted files in. */
export function defaultCacheDir(): string {
  if (process.env.ITERALIGN_CACHE_DIR) return process.env.ITERALIGN_CACHE_DIR;
  const xdg = process.env.XDG_CACHE_HOME;
  return path.join(xdg && xdg.length > 0 ? xdg : path.join(homedir(), ".cache"), "iteralign");
}

/** Path of the llama.cpp git bundle inside node-llama-cpp's npm package. */
export function llamaBundlePath(): string {
  const require = createRequire(import.meta.url);
  // node-llama-cpp does not export its package.json: walk up from its entry point.
  let dir = path.dirname(require.resolve("node-llama-cpp"));
  while (!existsSync(path.join(dir, "package.json")) || path.basename(dir) === "dist") dir = path.dirname(dir);
  return path.join(dir, "llama", "gitRelease.bundle");
}

/** The llama.cpp commit of the bundle node-llama-cpp ships. */
export function bundleCommit(bundle = llamaBundlePath()): string {
  const out = spawnSync("git", ["bundle", "list-heads", bundle], { encoding: "utf8" });
  if (out.error) throw new IterAlignError("BUILD_TOOL_MISSING", `reading ${bundle} needs git: ${out.error.message}`);
  if (out.status !== 0 || !out.stdout) {
    throw new IterAlignError("BUILD_FAILED", `cannot read llama.cpp bundle ${bundle}: ${out.stderr}`);
  }
  const first = out.stdout.trim().split("\n")[0] ?? "";
  const commit = first.split(" ")[0] ?? "";
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new IterAlignError("BUILD_FAILED", `unexpected bundle heads in ${bundle}: ${first}`);
  return commit;
}

/**
 * Extracts one file of the bundled llama.cpp tree (e.g. `models/ggml-vocab-qwen2.gguf`) into the cache,
 * once, and returns its path.
 */
export function extractBundledFile(relativePath: string, cacheDir = defaultCacheDir()): string {
  const bundle = llamaBundlePath();
  const commit = bundleCommit(bundle);
  const root = path.join(cacheDir, "llama.cpp", `${commit.slice(0, 12)}-files`);
  const out = path.join(root, relativePath);
  if (existsSync(out)) return out;
  const bare = path.join(root, ".git-bare");
  if (!existsSync(path.join(bare, "HEAD"))) {
    mkdirSync(root, { recursive: true });
    const tmp = `${bare}.tmp-${process.pid}`;
    const clone = spawnSync("git", ["clone", "--quiet", "--bare", bundle, tmp], { encoding: "utf8" });
    if (clone.status !== 0) throw new IterAlignError("BUILD_FAILED", `git clone of ${bundle} failed: ${clone.stderr}`);
    if (!existsSync(path.join(bare, "HEAD"))) renameSync(tmp, bare);
  }
  const show = spawnSync("git", ["--git-dir", bare, "show", `${commit}:${relativePath}`], {
    maxBuffer: 1 << 30,
  });
  if (show.status !== 0) {
    throw new IterAlignError("BUILD_FAILED", `${relativePath} is not in llama.cpp ${commit.slice(0, 12)}: ${show.stderr.toString()}`);
  }
  mkdirSync(path.dirname(out), { recursive: true });
  const tmpFile = `${out}.tmp-${process.pid}`;
  writeFileSync(tmpFile, show.stdout);
  renameSync(tmpFile, out);
  return out;
}
