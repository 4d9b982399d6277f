import { copyFileSync, mkdtempSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { parseConfig } from "../../src/config/load-config.js";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { getEngine } from "../../src/providers/llama-cpp/engine.js";
import { LlamaCppModel } from "../../src/providers/llama-cpp/llama-cpp-model.js";
import { ModelSet } from "../../src/providers/registry.js";
import { SqliteRunStore } from "../../src/store/sqlite-run-store.js";

function makeConfig(modelFile: string) {
  return parseConfig({
    models: {
      tiny: { provider: "llama-cpp", model: modelFile, contextSize: 512, sequences: 2, maxTokens: 12 },
    },
    roles: { target: "tiny", oracle: "tiny" },
    engine: { maxThreads: 1 },
  });
}

describe("ModelSet on the embedded engine with the SQLite store", () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
    vi.restoreAllMocks();
  });

  it("answers a repeated deterministic call from the cache without any engine call", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-reg-"));
    const store = new SqliteRunStore(path.join(dir, "store.db"));
    const set = new ModelSet({ config: makeConfig(fixtureModelPath("tiny-llama")), baseDir: dir, callLog: store, maxThreads: 1 });
    cleanups.push(() => store.close(), () => set.close());
    const engineGenerate = vi.spyOn(LlamaCppModel.prototype, "generate");
    const engineScore = vi.spyOn(LlamaCppModel.prototype, "scoreContinuations");

    const target = await set.forRole("target");
    const request = { messages: [{ role: "user" as const, content: "Say something" }], temperature: 0 };
    const first = await target.generate(request);
    expect(first.cached).toBeUndefined();
    expect(engineGenerate).toHaveBeenCalledTimes(1);
    const second = await target.generate(request);
    expect(engineGenerate).toHaveBeenCalledTimes(1);
    expect(second).toEqual({ ...first, cached: true });

    const scoreRequest = { context: "The sky is", continuations: [" blue", " green"] };
    const s1 = await target.scoreContinuations!(scoreRequest);
    const s2 = await target.scoreContinuations!(scoreRequest);
    expect(engineScore).toHaveBeenCalledTimes(1);
    expect(s2.scores).toEqual(s1.scores);

    // Another role on the same entry shares the loaded model and the cache.
    const oracle = await set.forRole("judge");
    await oracle.generate(request);
    expect(engineGenerate).toHaveBeenCalledTimes(1);

    const stats = store.callStats();
    expect(stats.total.calls).toBe(2);
    expect(stats.total.completionTokens).toBe(first.usage.completionTokens);
    const meter = set.meter.snapshot().totals;
    expect(meter.calls).toBe(5);
    expect(meter.cachedCalls).toBe(3);
  });

  it("does not reuse answers after the model file changes at the same path", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-reg-"));
    const file = path.join(dir, "model.gguf");
    copyFileSync(fixtureModelPath("tiny-llama"), file);
    const store = new SqliteRunStore(path.join(dir, "store.db"));
    cleanups.push(() => store.close());
    const request = { messages: [{ role: "user" as const, content: "Hello" }], temperature: 0 };

    const before = new ModelSet({ config: makeConfig("./model.gguf"), baseDir: dir, callLog: store, maxThreads: 1 });
    const a = await (await before.forRole("target")).generate(request);
    await before.close();

    copyFileSync(fixtureModelPath("tiny-qwen2"), file);
    const after = new ModelSet({ config: makeConfig("./model.gguf"), baseDir: dir, callLog: store, maxThreads: 1 });
    cleanups.push(() => after.close());
    const b = await (await after.forRole("target")).generate(request);
    expect(b.cached).toBeUndefined();
    expect(b.text).not.toBe(a.text);
  });

  it("validates structured output through the whole stack", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-reg-"));
    const set = new ModelSet({ config: makeConfig(fixtureModelPath("tiny-llama")), baseDir: dir, maxThreads: 1 });
    cleanups.push(() => set.close());
    const judge = await set.forRole("judge");
    const schema = z.object({ verdict: z.enum(["pass", "fail"]), harmful: z.boolean() });
    const r = await judge.generateObject({ messages: [{ role: "user", content: "Judge" }], schema, maxTokens: 60 });
    expect(schema.parse(r.object)).toEqual(r.object);
  });

  it("runs the engine on the config's engine.maxThreads, and by default on the available cores (never more)", async () => {
    // node-llama-cpp alone would take at least 4 threads: on a 2-core machine they spin against each other.
    expect((await getEngine()).maxThreads).toBe(availableParallelism());
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-reg-"));
    const set = new ModelSet({ config: makeConfig(fixtureModelPath("tiny-llama")), baseDir: dir });
    cleanups.push(() => set.close());
    const model = await set.forRole("target");
    await model.generate({ messages: [{ role: "user", content: "Hi" }], maxTokens: 2 });
    expect((await getEngine({ maxThreads: 1 })).maxThreads).toBe(1);
    // The config's engine.maxThreads (1) reached the embedded model, though the ModelSet was given none.
    const raw = await (set as unknown as { raw: Map<string, Promise<LlamaCppModel>> }).raw.get("tiny");
    expect((raw as unknown as { options: { maxThreads?: number } }).options.maxThreads).toBe(1);
  });

  it("names the missing API key variable of an HTTP model", async () => {
    const config = parseConfig({
      models: { web: { provider: "openai-compatible", baseUrl: "http://127.0.0.1:9/v1", model: "m", apiKeyEnv: "ITERALIGN_TEST_NO_KEY" } },
      roles: { target: "web", oracle: "web" },
    });
    const set = new ModelSet({ config, baseDir: tmpdir(), env: {} });
    await expect(set.forRole("oracle")).rejects.toThrow("models.web.apiKeyEnv: environment variable ITERALIGN_TEST_NO_KEY is not set");
  });
});
