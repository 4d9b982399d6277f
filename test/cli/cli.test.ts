import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { parseConfig } from "../../src/config/load-config.js";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { runCli } from "../helpers/cli.js";
import { trlPython } from "../helpers/trl-env.js";

const tmp = (): string => mkdtempSync(path.join(tmpdir(), "iteralign-cli-"));
const root = path.resolve(import.meta.dirname, "../..");

function tinyConfig(dir: string, extra = ""): string {
  const file = path.join(dir, "iteralign.yaml");
  writeFileSync(
    file,
    `models:
  tiny:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-llama")}
    contextSize: 512
    sequences: 2
    maxTokens: 16
${extra}
roles:
  target: tiny
  oracle: tiny
engine:
  maxThreads: 1
`,
  );
  return file;
}

describe("iteralign init", () => {
  it("writes a commented starter config that validates, and refuses to overwrite it", async () => {
    const file = path.join(tmp(), "iteralign.yaml");
    const first = await runCli(["init", "--config", file]);
    expect(first.code).toBe(0);
    const text = readFileSync(file, "utf8");
    expect(text).toMatch(/^# iteralign configuration/);
    const config = parseConfig(parse(text));
    expect(config.roles.target).toBe("target");
    expect(config.models.target?.provider).toBe("llama-cpp");
    const again = await runCli(["init", "--config", file]);
    expect(again.code).toBe(2);
    expect(again.err).toContain("already exists");
    expect((await runCli(["init", "--config", file, "--force"])).code).toBe(0);
  });

  it("ships example configs that validate", () => {
    for (const name of ["tiny.yaml", "local.yaml", "trl-lora.yaml", "vllm-lora.yaml"]) {
      const config = parseConfig(parse(readFileSync(path.join(root, "examples", name), "utf8")));
      expect(Object.keys(config.models).length).toBe(2);
      if (name.includes("lora")) expect(config.train.trainer).toBe("trl");
    }
  });
});

describe("bad usage and bad config exit 2 with every problem named", () => {
  it("lists each invalid field with its path", async () => {
    const dir = tmp();
    const file = path.join(dir, "bad.yaml");
    writeFileSync(
      file,
      `models:
  oracle:
    provider: llama-cpp
    model: x.gguf
    temperature: hot
    sequences: 0
  web:
    provider: openai-compatible
    baseUrl: not a url
    model: m
    colour: blue
roles:
  target: missing
  oracle: oracle
  judges: [oracle, nope]
`,
    );
    const r = await runCli(["models", "check", "--config", file]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("models.oracle.temperature: expected number, received string");
    expect(r.err).toContain("models.oracle.sequences:");
    expect(r.err).toContain("models.web.baseUrl:");
    expect(r.err).toContain('models.web: Unrecognized key: "colour"');
    expect(r.err).toContain("roles.target: unknown model 'missing' (defined: oracle, web)");
    expect(r.err).toContain("roles.judges.1: unknown model 'nope' (defined: oracle, web)");
  });

  it("reports YAML syntax errors with their line", async () => {
    const file = path.join(tmp(), "broken.yaml");
    writeFileSync(file, "models:\n  a: [1, 2\nroles: {}\n");
    const r = await runCli(["models", "check", "--config", file]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/line \d+, column \d+/);
  });

  it("names a missing config file and says how to create one", async () => {
    const r = await runCli(["chat", "--config", "/nonexistent/iteralign.yaml"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("/nonexistent/iteralign.yaml");
    expect(r.err).toContain("iteralign init");
  });

  it("rejects unknown commands, options and roles", async () => {
    expect((await runCli(["frobnicate"])).code).toBe(2);
    expect((await runCli(["chat", "--bogus"])).code).toBe(2);
    const dir = tmp();
    const r = await runCli(["chat", "--config", tinyConfig(dir), "--role", "wizard"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("--role must be one of target, oracle, judge, embedder");
  });
});

describe("iteralign models check", () => {
  it("loads each model and prints capabilities and measured tokens/s", async () => {
    const dir = tmp();
    const r = await runCli(["models", "check", "--config", tinyConfig(dir), "--json"]);
    expect(r.code).toBe(0);
    const checks = JSON.parse(r.out) as Array<Record<string, unknown>>;
    expect(checks).toHaveLength(1);
    const check = checks[0]!;
    expect(check.ok).toBe(true);
    expect(check.roles).toEqual(["target", "oracle", "judge"]);
    expect(check.capabilities).toEqual(["generate", "generateObject", "scoreContinuations", "stream", "classify", "scoreChat"]);
    expect(check.generationTokensPerSecond).toBeGreaterThan(0);
    expect(check.promptTokensPerSecond).toBeGreaterThan(0);
  });

  it("fails with exit 1 naming a missing model file, and keeps checking the others", async () => {
    const dir = tmp();
    const file = tinyConfig(dir, `  gone:\n    provider: llama-cpp\n    model: ./nowhere/model.gguf`);
    const r = await runCli(["models", "check", "--config", file]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/tiny\s+llama-cpp\s+target,oracle,judge\s+ok/);
    expect(r.out).toMatch(/gone\s+llama-cpp\s+-\s+FAILED/);
    expect(r.err).toContain(path.join(dir, "nowhere/model.gguf"));
  });

  it("reports an HTTP model that is down with its endpoint", async () => {
    const dir = tmp();
    const file = tinyConfig(dir, `  web:\n    provider: openai-compatible\n    baseUrl: http://127.0.0.1:9/v1\n    model: m\n    retries: 0`);
    const r = await runCli(["models", "check", "--config", file, "--role", "target"]);
    expect(r.code).toBe(0);
    const down = await runCli(["models", "check", "--config", file]);
    expect(down.code).toBe(1);
    expect(down.err).toContain("HTTP_UNREACHABLE");
    expect(down.err).toContain("http://127.0.0.1:9/v1");
  });
});

describe("iteralign models check with the trl trainer", () => {
  it("checks the trainer's Python environment with the models, naming what is missing", async () => {
    const dir = tmp();
    const file = tinyConfig(dir);
    writeFileSync(file, `${readFileSync(file, "utf8")}train:\n  trainer: trl\n  trl:\n    python: ${trlPython()}\n`);
    const ok = await runCli(["models", "check", "--config", file, "--json"]);
    expect(ok.code, ok.err).toBe(0);
    const trl = (JSON.parse(ok.out) as Array<{ name: string; ok: boolean; capabilities: string[] }>).find((c) => c.name === "train.trl");
    expect(trl?.ok).toBe(true);
    expect(trl?.capabilities).toEqual(expect.arrayContaining([expect.stringMatching(/^torch /), expect.stringMatching(/^trl /), expect.stringMatching(/^peft /), "device cpu"]));
    // python3 here has no torch: exit 1, and the message says how to get an environment.
    writeFileSync(file, readFileSync(file, "utf8").replace(`python: ${trlPython()}`, "python: python3"));
    const missing = await runCli(["models", "check", "--config", file]);
    expect(missing.code).toBe(1);
    expect(missing.out).toMatch(/train\.trl\s+python3\s+-\s+FAILED/);
    expect(missing.err).toMatch(/train\.trl: \[TRAINER_ENVIRONMENT\] .*torch cannot be imported.*iteralign setup trl/);
  });
});

describe("iteralign chat", () => {
  it("answers each input line, streaming the text, and honours /reset and /exit", async () => {
    const dir = tmp();
    const r = await runCli(["chat", "--config", tinyConfig(dir), "-n", "8"], "Hello there\n/reset\nAnother question\n/exit\nnot read\n");
    expect(r.code).toBe(0);
    expect(r.out).toContain("(history cleared)");
    // Two answers, each ended by a newline after the streamed tokens.
    expect(r.out.split("\n").filter((l) => l.length > 0 && l !== "(history cleared)")).toHaveLength(2);
    expect(r.err.match(/stopped at 8 tokens/g)).toHaveLength(2);
  });
});

describe("the installed binary", () => {
  it("runs as a real process with exit codes", () => {
    const require = createRequire(import.meta.url);
    const tsx = path.join(path.dirname(require.resolve("tsx/package.json")), "dist", "cli.mjs");
    const script = path.join(root, "test", "helpers", "cli-process.ts");
    const help = spawnSync(process.execPath, [tsx, script, "--help"], { encoding: "utf8" });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("models");
    const bad = spawnSync(process.execPath, [tsx, script, "models", "check", "--config", "/nope.yaml"], { encoding: "utf8" });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("/nope.yaml");
  });
});
