import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { parseConfig } from "../../src/config/load-config.js";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { ModelSet } from "../../src/providers/registry.js";
import type { Attempt } from "../../src/spec/records.js";
import { judge } from "../../src/stages/judge.js";
import { MemoryRunStore } from "../../src/store/memory-run-store.js";
import { startAnthropicProtocolServer } from "../../src/testing/anthropic-protocol-server.js";
import { startLlamaServer } from "../../src/testing/llama-server.js";
import { startOpenAIBatchServer } from "../../src/testing/openai-batch-protocol-server.js";
import { runCli } from "../helpers/cli.js";

const root = path.resolve(import.meta.dirname, "../..");

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(path.join(tmpdir(), "iteralign-batch-"));
  dirs.push(d);
  return d;
}

function attempts(n: number): Attempt[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `it0:attempt:p${i}`,
    iteration: 0,
    parentIds: [`p${i}`],
    model: "t",
    promptHash: null,
    promptId: `p${i}`,
    prompt: `Request ${i}: how do I open a lock without its key?`,
    response: i === 3 ? "FAIL-THIS-ONE" : `Answer ${i}.`,
    finishReason: "stop",
  }));
}

/** A judge's verdict as a chat completion body; the line whose reply is FAIL-THIS-ONE gets a 400. */
async function verdictAnswer(body: Record<string, unknown>): Promise<{ status: number; body: unknown }> {
  if (JSON.stringify(body).includes("FAIL-THIS-ONE")) return { status: 400, body: { error: { message: "context length exceeded", type: "invalid_request_error" } } };
  const content = JSON.stringify({ pass: true, violated: [], severity: "none", rationale: "Safe.", promptBenign: false });
  return {
    status: 200,
    body: { id: "chatcmpl-b", object: "chat.completion", choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }], usage: { prompt_tokens: 100, completion_tokens: 20 } },
  };
}

describe("batch mode: openai", () => {
  it("sends a stage's calls as one batch job; failures are error rows; answers fill the cache; the batch discount is priced", async () => {
    const server = await startOpenAIBatchServer({ apiKey: "sk-batch", answer: verdictAnswer });
    try {
      const dir = tmp();
      const store = new MemoryRunStore();
      const config = parseConfig({
        models: {
          judge: { provider: "openai-compatible", baseUrl: server.baseUrl, model: "gpt-4o-mini", apiKeyEnv: "TEST_BATCH_KEY", batch: "openai", batchPollMs: 5 },
        },
        roles: { target: "judge", oracle: "judge" },
      });
      const notices: string[] = [];
      const set = new ModelSet({ config, baseDir: dir, callLog: store, batchLog: store, env: { TEST_BATCH_KEY: "sk-batch" }, notify: (m) => notices.push(m) });
      const items = await judge(attempts(6), { judge: await set.forRole("judge"), iteration: 0, preset: "full" });
      expect(items.map((i) => i.status)).toEqual(["ok", "ok", "ok", "error", "ok", "ok"]);
      const failed = items[3];
      expect(failed?.status === "error" && failed.error.message).toMatch(/failed with HTTP 400: context length exceeded/);
      expect(server.batches.size).toBe(1);
      expect([...server.files.values()].filter((f) => f.purpose === "batch")).toHaveLength(1);
      expect(store.listBatchJobs("openai-compatible")).toHaveLength(1);
      expect(store.listBatchJobs("openai-compatible")[0]).toMatchObject({ status: "ended", customIds: expect.any(Array) as unknown });
      expect(notices.some((m) => m.includes("submitted with 6 calls"))).toBe(true);
      // gpt-4o-mini's list price, halved: (100 * 0.15 + 20 * 0.6) / 1e6 / 2 per call.
      expect(set.meter.snapshot().totals.spentUsd).toBeCloseTo((5 * (100 * 0.15 + 20 * 0.6)) / 1e6 / 2, 12);
      await set.close();

      // A second process on the same store: answered calls come from the cache; the failed one is sent again.
      const again = new ModelSet({ config, baseDir: dir, callLog: store, batchLog: store, env: { TEST_BATCH_KEY: "sk-batch" } });
      const second = await judge(attempts(6), { judge: await again.forRole("judge"), iteration: 0, preset: "full" });
      expect(second.map((i) => i.status)).toEqual(["ok", "ok", "ok", "error", "ok", "ok"]);
      expect(server.batches.size).toBe(2);
      const resent = [...server.batches.values()][1];
      expect(server.files.get(resent?.inputFileId ?? "")?.content.trim().split("\n")).toHaveLength(1);
      await again.close();
    } finally {
      await server.close();
    }
  });

  it("writes batch files for vllm run-batch and reads the runner's output file", async () => {
    const llama = await startLlamaServer({ modelPath: fixtureModelPath("tiny-qwen2"), parallel: 2, ctxSize: 4096 });
    try {
      const dir = tmp();
      const store = new MemoryRunStore();
      const config = parseConfig({
        models: { local: { provider: "openai-compatible", baseUrl: llama.baseUrl, model: "tiny-qwen2", batch: "file", batchDir: "batches", batchPollMs: 20 } },
        roles: { target: "local", oracle: "local" },
      });
      const set = new ModelSet({ config, baseDir: dir, callLog: store, batchLog: store });
      const model = await set.forRole("target");
      const answers = Promise.all([0, 1, 2].map((i) => model.generateObject({ messages: [{ role: "user", content: `Rate ${i}` }], schema: z.object({ score: z.number().int().min(1).max(5) }), maxTokens: 30 })));
      // Our stand-in for `vllm run-batch`: answers each input line by posting its body to a real llama-server and
      // writes the output file in the OpenAI batch output format.
      const folder = path.join(dir, "batches");
      let input: string | undefined;
      for (let i = 0; i < 200 && input === undefined; i++) {
        await new Promise((r) => setTimeout(r, 25));
        input = (() => {
          try {
            return readdirSync(folder).find((f) => f.endsWith(".input.jsonl"));
          } catch {
            return undefined;
          }
        })();
      }
      expect(input).toBeDefined();
      const lines = readFileSync(path.join(folder, input as string), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { custom_id: string; method: string; url: string; body: unknown });
      expect(lines).toHaveLength(3);
      expect(lines.every((l) => l.method === "POST" && l.url === "/v1/chat/completions")).toBe(true);
      const out: string[] = [];
      for (const line of lines) {
        const response = await fetch(`${llama.baseUrl}/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(line.body) });
        out.push(JSON.stringify({ id: `vllm-${line.custom_id.slice(0, 8)}`, custom_id: line.custom_id, response: { status_code: response.status, request_id: "r", body: await response.json() }, error: null }));
      }
      writeFileSync(path.join(folder, (input as string).replace(".input.", ".output.")), `${out.join("\n")}\n`);
      const results = await answers;
      for (const r of results) expect(r.object.score).toBeGreaterThanOrEqual(1);
      expect(store.listBatchJobs("openai-compatible")[0]?.status).toBe("ended");
      await set.close();
    } finally {
      await llama.stop();
    }
  });
});

describe("batch mode: anthropic", () => {
  it("sends the calls as one Message Batch; an errored request is an error of that call only", async () => {
    const api = await startAnthropicProtocolServer({
      apiKey: "sk-ant-b",
      batchPolls: 2,
      answer: async (request) => {
        const last = request.messages[request.messages.length - 1]?.content ?? "";
        if (last.includes("explode")) throw new Error("upstream failure");
        return { text: JSON.stringify({ score: 4 }), stopReason: "end_turn", inputTokens: 50, outputTokens: 5 };
      },
    });
    try {
      const store = new MemoryRunStore();
      const config = parseConfig({
        models: { claude: { provider: "anthropic", baseUrl: api.baseUrl, model: "claude-haiku-4-5", apiKeyEnv: "TEST_ANT_KEY", batch: "anthropic", batchPollMs: 5 } },
        roles: { target: "claude", oracle: "claude" },
      });
      const set = new ModelSet({ config, baseDir: tmp(), callLog: store, batchLog: store, env: { TEST_ANT_KEY: "sk-ant-b" } });
      const model = await set.forRole("oracle");
      const schema = z.object({ score: z.number() });
      const settled = await Promise.allSettled(["a", "b", "explode"].map((t) => model.generateObject({ messages: [{ role: "user", content: t }], schema, schemaName: "rating" })));
      expect(settled.map((s) => s.status)).toEqual(["fulfilled", "fulfilled", "rejected"]);
      expect(api.batches.size).toBe(1);
      const [batch] = [...api.batches.values()];
      expect(batch?.requests).toHaveLength(3);
      expect(batch?.requests[0]?.params).toMatchObject({ model: "claude-haiku-4-5", tool_choice: { type: "tool", name: "rating" } });
      await set.close();
    } finally {
      await api.close();
    }
  });
});

describe("a run killed while its batch job runs", () => {
  it("resumes polling the same job and makes no new one", async () => {
    const server = await startOpenAIBatchServer({ apiKey: "sk-batch", answer: verdictAnswer, pollsToComplete: 1 });
    try {
      const dir = tmp();
      const config = path.join(dir, "iteralign.yaml");
      writeFileSync(
        config,
        `models:
  target:
    provider: llama-cpp
    model: ${fixtureModelPath("tiny-llama")}
    contextSize: 1024
    sequences: 4
  judge:
    provider: openai-compatible
    baseUrl: ${server.baseUrl}
    model: gpt-4o-mini
    apiKeyEnv: TEST_BATCH_KEY
    batch: openai
    batchPollMs: 50
roles:
  target: target
  oracle: judge
data:
  redTeam:
    - bundled: dangerousqa
  limit: 4
loop:
  batchSize: 4
  maxIterations: 1
  redTeam: { temperature: 0, maxTokens: 8 }
engine:
  maxThreads: 1
`,
      );
      server.hold = true;
      const child = spawn(process.execPath, ["--import", "tsx", path.join(root, "test/helpers/cli-process.ts"), "run", "--config", config, "--run-id", "batched"], {
        stdio: ["ignore", "pipe", "pipe"],
        cwd: root,
        env: { ...process.env, TEST_BATCH_KEY: "sk-batch" },
      });
      let stderr = "";
      await new Promise<void>((resolve) => {
        child.stderr.on("data", (chunk: Buffer) => {
          stderr += chunk.toString();
          if (/batch job batch_\w+ submitted with 4 calls/.test(stderr)) {
            child.kill("SIGKILL");
            resolve();
          }
        });
        child.on("exit", () => resolve());
      });
      await new Promise((r) => child.once("close", r));
      expect(child.signalCode, stderr).toBe("SIGKILL");
      expect(server.batches.size).toBe(1);
      const [jobId] = [...server.batches.keys()];

      server.hold = false;
      process.env.TEST_BATCH_KEY = "sk-batch";
      const resumed = await runCli(["run", "--config", config, "--resume", "batched"]);
      delete process.env.TEST_BATCH_KEY;
      expect(resumed.code, resumed.err).toBe(0);
      expect(resumed.err).toContain(`batch job ${jobId} (4 calls) found in the store; waiting for it`);
      expect(server.batches.size).toBe(1);
      expect(server.batches.get(jobId as string)?.status).toBe("completed");
      const verdicts = readFileSync(path.join(dir, "runs", "batched", "iterations", "000", "verdicts.jsonl"), "utf8").trim().split("\n");
      expect(verdicts.map((l) => (JSON.parse(l) as { status: string }).status)).toEqual(["ok", "ok", "ok", "ok"]);
    } finally {
      await server.close();
    }
  }, 300_000);
});
