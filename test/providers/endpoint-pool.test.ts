import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { EndpointPool } from "../../src/providers/http/endpoint-pool.js";
import { applyMiddleware } from "../../src/providers/middleware/compose.js";
import { createLimiter } from "../../src/providers/middleware/concurrency.js";
import { OpenAICompatibleModel } from "../../src/providers/openai-compatible/openai-compatible-model.js";
import { startLlamaServer, type RunningLlamaServer } from "../../src/testing/llama-server.js";

describe("EndpointPool", () => {
  it("sends each request to the replica with the fewest in flight, in turn on ties", () => {
    const pool = new EndpointPool(["a", "b", "c"]);
    const first = [pool.acquire(), pool.acquire(), pool.acquire()];
    expect(first.map((l) => l.url)).toEqual(["a", "b", "c"]);
    first[1]?.release("ok");
    expect(pool.acquire().url).toBe("b");
    pool.close();
  });

  it("takes a failing replica out, probes it back in, and never refuses when all are down", async () => {
    let healthy = false;
    const pool = new EndpointPool(["a", "b"], { probe: async () => healthy, baseBackoffMs: 30 });
    pool.acquire().release("down");
    expect(pool.stats().map((s) => s.up)).toEqual([false, true]);
    expect([pool.acquire().url, pool.acquire().url]).toEqual(["b", "b"]);
    await new Promise((r) => setTimeout(r, 60));
    // The probe failed: still out, with a longer backoff.
    expect(pool.stats()[0]?.up).toBe(false);
    healthy = true;
    await new Promise((r) => setTimeout(r, 120));
    expect(pool.stats()[0]?.up).toBe(true);
    const single = new EndpointPool(["only"]);
    single.acquire().release("down");
    expect(single.acquire().url).toBe("only");
    pool.close();
    single.close();
  });
});

describe("a pool of two real llama-server processes", () => {
  let a: RunningLlamaServer;
  let b: RunningLlamaServer;
  beforeAll(async () => {
    [a, b] = await Promise.all([
      startLlamaServer({ modelPath: fixtureModelPath("tiny-qwen2"), parallel: 2, ctxSize: 2048 }),
      startLlamaServer({ modelPath: fixtureModelPath("tiny-qwen2"), parallel: 2, ctxSize: 2048 }),
    ]);
  }, 300_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  const ask = (i: number) => ({ messages: [{ role: "user" as const, content: `Say something about ${i}.` }], maxTokens: 16 });

  it("splits requests no worse than 60/40", async () => {
    const raw = new OpenAICompatibleModel({ baseUrl: [a.baseUrl, b.baseUrl], model: "tiny-qwen2" });
    const model = applyMiddleware(raw, { concurrency: createLimiter(4), retry: { maxRetries: 3, baseDelayMs: 20 } });
    await Promise.all(Array.from({ length: 40 }, (_, i) => model.generate(ask(i))));
    const sent = raw.pool.stats().map((s) => s.sent);
    expect(sent.reduce((x, y) => x + y, 0)).toBe(40);
    for (const n of sent) expect(n / 40).toBeGreaterThanOrEqual(0.4);
    await raw.close();
  });

  it("sends a killed replica's requests to the other, probes it back in once restarted, and loses no item", async () => {
    const raw = new OpenAICompatibleModel({ baseUrl: [a.baseUrl, b.baseUrl], model: "tiny-qwen2", timeoutMs: 20_000 });
    const model = applyMiddleware(raw, { concurrency: createLimiter(4), retry: { maxRetries: 6, baseDelayMs: 100 } });
    let done = 0;
    const port = a.port;
    const results = Promise.all(
      Array.from({ length: 48 }, async (_, i) => {
        const r = await model.generate(ask(i));
        done++;
        return r;
      }),
    );
    while (done < 8) await new Promise((r) => setTimeout(r, 20));
    await a.stop();
    const killedAt = done;
    await new Promise((r) => setTimeout(r, 1500));
    a = await startLlamaServer({ modelPath: fixtureModelPath("tiny-qwen2"), parallel: 2, ctxSize: 2048, port });
    const all = await results;
    expect(all).toHaveLength(48);
    expect(all.every((r) => typeof r.text === "string")).toBe(true);
    expect(killedAt).toBeLessThan(48);
    // The restarted replica is probed back in and takes requests again.
    const before = raw.pool.stats()[0]?.sent ?? 0;
    for (let i = 0; i < 30 && !raw.pool.stats()[0]?.up; i++) await new Promise((r) => setTimeout(r, 200));
    expect(raw.pool.stats()[0]?.up).toBe(true);
    await Promise.all(Array.from({ length: 8 }, (_, i) => model.generate(ask(100 + i))));
    expect((raw.pool.stats()[0]?.sent ?? 0) - before).toBeGreaterThanOrEqual(2);
    await raw.close();
  }, 300_000);
});
