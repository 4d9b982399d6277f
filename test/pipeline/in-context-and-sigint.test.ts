import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { SqliteRunStore } from "../../src/store/sqlite-run-store.js";
import { runCli } from "../helpers/cli.js";

const root = path.resolve(import.meta.dirname, "../..");

interface Options {
  /** Model that judges (and proposes): tiny-qwen2 fails answers, tiny-llama passes every one. */
  readonly judge: "tiny-qwen2" | "tiny-llama";
  readonly loop?: string;
  readonly judgeContext?: number;
  readonly trainer?: string;
  readonly limit?: number;
}

/** A loop on the generated models, batches of 2 DangerousQA prompts, short answers. */
function config(options: Options): { file: string; dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), "iteralign-stop-"));
  const file = path.join(dir, "iteralign.yaml");
  writeFileSync(
    file,
    `models:
  target:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-llama")}
    contextSize: 1024
    sequences: 2
  oracle:
    provider: llama-cpp
    model: ${fixtureModelPath(options.judge)}
    contextSize: ${options.judgeContext ?? 8192}
    sequences: 2
roles:
  target: target
  oracle: oracle
data:
  redTeam:
    - bundled: dangerousqa
  limit: ${options.limit ?? 6}
loop:
  batchSize: 2
  redTeam: { temperature: 0, maxTokens: 12, frequencyPenalty: 0.5 }
${(options.loop ?? "").replace(/^/gm, "  ")}
train:
  trainer: ${options.trainer ?? "none"}
engine:
  maxThreads: 1
`,
  );
  return { file, dir };
}

function summary(dir: string, runId: string): { stopReason: string; iterations: Array<{ failures: number; skipped: boolean; errors: number }> } {
  return JSON.parse(readFileSync(path.join(dir, "runs", runId, "summary.json"), "utf8")) as ReturnType<typeof summary>;
}

function runStatus(dir: string, runId: string): string | undefined {
  const store = new SqliteRunStore(path.join(dir, ".iteralign", "iteralign.db"));
  try {
    return store.getRun(runId)?.status;
  } finally {
    store.close();
  }
}

describe("in-context trainer", () => {
  it("gives the next iteration's target the active constitution as a system prompt, and only that target", async () => {
    const { file, dir } = config({ judge: "tiny-qwen2", trainer: "in-context", limit: 4 });
    const result = await runCli(["run", "--config", file, "--run-id", "ctx"]);
    expect(result.code, result.err).toBe(0);
    const s = summary(dir, "ctx");
    expect(s.iterations).toHaveLength(2);
    expect(s.iterations[0]?.failures).toBeGreaterThan(0);
    const pool = JSON.parse(readFileSync(path.join(dir, "runs", "ctx", "iterations", "000", "constitution.json"), "utf8")) as {
      principles: Array<{ text: string; status: string }>;
    };
    const active = pool.principles.filter((p) => p.status === "active");
    expect(active.length).toBeGreaterThan(0);

    const db = new Database(path.join(dir, ".iteralign", "iteralign.db"), { readonly: true });
    const requests = db
      .prepare("SELECT request FROM llm_calls WHERE run_id = ? AND role = 'target' AND kind = 'generate' ORDER BY seq")
      .all("ctx") as Array<{ request: string }>;
    db.close();
    const redTeamPrompts = JSON.parse(readFileSync(path.join(dir, "runs", "ctx", "iterations", "001", "attempts.jsonl"), "utf8").split("\n")[0] ?? "{}") as {
      record: { prompt: string };
    };
    const systemOf = (r: { request: string }): string | undefined =>
      (JSON.parse(r.request) as { messages?: Array<{ role: string; content: string }> }).messages?.find((m) => m.role === "system")?.content;
    // Iteration 1's red-team call for its first prompt carries every principle active after iteration 0.
    const iteration1 = requests.filter((r) => r.request.includes(JSON.stringify(redTeamPrompts.record.prompt).slice(1, -1)));
    expect(iteration1.length).toBeGreaterThan(0);
    const system = systemOf(iteration1[0] as { request: string });
    expect(system).toBeDefined();
    for (const p of active) expect(system).toContain(p.text);
    // Iteration 0's red team ran before any principle existed: no system prompt.
    const first = JSON.parse(readFileSync(path.join(dir, "runs", "ctx", "iterations", "000", "attempts.jsonl"), "utf8").split("\n")[0] ?? "{}") as {
      record: { prompt: string };
    };
    const iteration0 = requests.filter((r) => r.request.includes(JSON.stringify(first.record.prompt).slice(1, -1)));
    expect(iteration0.length).toBeGreaterThan(0);
    expect(systemOf(iteration0[0] as { request: string })).toBeUndefined();
    // Training examples never carry the constitution.
    const sft = readFileSync(path.join(dir, "runs", "ctx", "iterations", "001", "sft.trl.jsonl"), "utf8");
    for (const p of active) expect(sft).not.toContain(p.text);
  }, 240_000);
});

describe("Ctrl-C", () => {
  it("stops cleanly, says how to resume, and the resumed run finishes", async () => {
    const { file, dir } = config({ judge: "tiny-llama", limit: 4 });
    const child = spawn(process.execPath, ["--import", "tsx", path.join(root, "test/helpers/cli-process.ts"), "run", "--config", file, "--run-id", "sigint"], {
      stdio: ["ignore", "pipe", "pipe"],
      cwd: root,
    });
    let stderr = "";
    let sent = false;
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      if (!sent && stderr.includes("red-team: 2 items in")) {
        sent = true;
        child.kill("SIGINT");
      }
    });
    const code = await new Promise<number | null>((resolve) => child.once("close", (c) => resolve(c)));
    expect(sent).toBe(true);
    expect(code).toBe(1);
    expect(stderr).toContain("stopping after the calls in flight");
    expect(stderr).toContain(`resume with: iteralign run --config ${file} --resume sigint`);
    expect(runStatus(dir, "sigint")).toBe("interrupted");

    const resumed = await runCli(["run", "--config", file, "--resume", "sigint"]);
    expect(resumed.code, resumed.err).toBe(0);
    expect(resumed.err).toContain("red-team: 2 items (from the store)");
    expect(summary(dir, "sigint").iterations).toHaveLength(2);
    expect(runStatus(dir, "sigint")).toBe("finished");
  }, 240_000);
});
