import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ensureFixtureModels, fixtureModelPath } from "../../src/gguf/fixture-models.js";

const root = path.resolve(import.meta.dirname, "../..");
const work = mkdtempSync(path.join(tmpdir(), "iteralign-install-"));
const prefix = path.join(work, "prefix");
const bin = path.join(prefix, "bin", "iteralign");

afterAll(() => rmSync(work, { recursive: true, force: true }));

function sh(cmd: string, args: readonly string[], cwd: string, timeout = 600_000): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", timeout, maxBuffer: 1 << 26, env: { ...process.env, npm_config_fund: "false", npm_config_audit: "false" } });
  if (r.error) throw r.error;
  return r;
}

/**
 * What a new user does with a release tarball: `npm pack`, `npm install -g ./iteralign-<v>.tgz` into a fresh
 * prefix, `iteralign setup`, `iteralign run`. (Needs the npm registry for the dependencies. `setup` finds the
 * programs `npm run build:llama` built into the shared cache, from the same sources the tarball carries: the
 * native programs' source hashes must match for it to accept them.)
 */
describe("installed from the tarball", () => {
  it("packs, installs into a clean prefix, sets up, and runs the loop", () => {
    const version = (JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as { version: string }).version;
    const pack = sh("npm", ["pack", "--silent", "--pack-destination", work], root);
    expect(pack.status, pack.stderr).toBe(0);
    const tarball = path.join(work, `iteralign-${version}.tgz`);
    expect(existsSync(tarball)).toBe(true);
    const listing = sh("tar", ["tzf", tarball], work).stdout.split("\n");
    // What the package needs at run time is in it; the tests and sources of the checkout are not.
    for (const f of ["package/bin/iteralign.js", "package/dist/index.js", "package/dist/testing/index.d.ts", "package/native/iteralign-scorer/iteralign-scorer.cpp", "package/data/MANIFEST.md", "package/schema/iteralign.schema.json"]) {
      expect(listing, f).toContain(f);
    }
    expect(listing.filter((f) => f.startsWith("package/test/") || f.startsWith("package/src/"))).toEqual([]);

    const install = sh("npm", ["install", "-g", "--prefix", prefix, "--allow-scripts=better-sqlite3,node-llama-cpp", tarball], work, 900_000);
    expect(install.status, install.stderr.slice(-3000)).toBe(0);
    expect(existsSync(bin)).toBe(true);

    const version_ = sh(bin, ["--version"], work);
    expect(version_.stdout.trim()).toBe(version);

    const setup = sh(bin, ["setup"], work);
    expect(setup.status, setup.stderr).toBe(0);
    for (const program of ["llama-server", "iteralign-scorer", "iteralign-generate", "iteralign-finetune"]) expect(setup.stdout).toMatch(new RegExp(`^${program}\\s+/`, "m"));
    const check = sh(bin, ["setup", "--check"], work);
    expect(check.status).toBe(0);

    ensureFixtureModels(["tiny-llama", "tiny-qwen2"]);
    const project = path.join(work, "project");
    const init = sh(bin, ["init", "--config", path.join(project, "iteralign.yaml")], work);
    expect(init.status, init.stderr).toBe(0);
    writeFileSync(
      path.join(project, "iteralign.yaml"),
      `models:
  target: { provider: llama-cpp, model: ${fixtureModelPath("tiny-llama")}, contextSize: 1024, sequences: 2 }
  oracle: { provider: llama-cpp, model: ${fixtureModelPath("tiny-qwen2")}, contextSize: 8192, sequences: 2 }
roles: { target: target, oracle: oracle }
data: { redTeam: [{ bundled: dangerousqa }], limit: 4 }
loop: { batchSize: 2, maxIterations: 1, redTeam: { temperature: 0, maxTokens: 12 } }
engine: { maxThreads: 1 }
`,
    );
    const run = sh(bin, ["run", "--run-id", "installed"], project);
    expect(run.status, run.stderr.slice(-3000)).toBe(0);
    const summary = JSON.parse(readFileSync(path.join(project, "runs", "installed", "summary.json"), "utf8")) as { iterations: unknown[]; stopReason: string };
    expect(summary.iterations).toHaveLength(1);
    expect(readdirSync(path.join(project, "runs", "installed", "iterations", "000"))).toContain("attempts.jsonl");
    // The bundled dataset was read from the installed package.
    expect(run.stderr + run.stdout).not.toContain("ENOENT");
  }, 1_500_000);
});
