import { afterEach, describe, expect, it } from "vitest";
import { applyMiddleware } from "../../src/providers/middleware/compose.js";
import { AdaptiveLimiter, parseResetDuration } from "../../src/providers/middleware/rate-limit.js";
import { OpenAICompatibleModel } from "../../src/providers/openai-compatible/openai-compatible-model.js";
import { chatBody, sendJson, startFakeServer, type FakeServer } from "../helpers/fake-openai-server.js";

const headers = (entries: Record<string, string>): Headers => new Headers(entries);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("AdaptiveLimiter", () => {
  it("reads OpenAI's reset durations", () => {
    expect(parseResetDuration("1s")).toBe(1000);
    expect(parseResetDuration("6m0s")).toBe(360_000);
    expect(parseResetDuration("20ms")).toBe(20);
    expect(parseResetDuration("1h2m3.5s")).toBe(3_723_500);
    expect(parseResetDuration("0.5")).toBe(500);
    expect(parseResetDuration("soon")).toBeUndefined();
  });

  it("halves its concurrency on a 429 (once per second) and grows it back by successes", async () => {
    const limiter = new AdaptiveLimiter({ ceiling: 8, floor: 2 });
    expect(limiter.current).toBe(8);
    limiter.observe({ status: 429, headers: headers({}) });
    expect(limiter.current).toBe(4);
    limiter.observe({ status: 429, headers: headers({}) });
    expect(limiter.current).toBe(4);
    for (let i = 0; i < 8; i++) await limiter.run(async () => undefined);
    expect(limiter.current).toBe(5);
    expect(limiter.rateLimited).toBe(2);
    expect(limiter.decreases).toBe(1);
  });

  it("never goes under its floor, and a 529 counts like a 429", async () => {
    let now = 0;
    const limiter = new AdaptiveLimiter({ ceiling: 4, floor: 2, now: () => now });
    for (let i = 0; i < 5; i++) {
      now += 2000;
      limiter.observe({ status: 529, headers: headers({}) });
    }
    expect(limiter.current).toBe(2);
  });

  it("holds new calls while a Retry-After runs, and limits concurrency", async () => {
    const limiter = new AdaptiveLimiter({ ceiling: 4 });
    limiter.observe({ status: 429, headers: headers({ "retry-after-ms": "300" }) });
    const started = Date.now();
    let running = 0;
    let most = 0;
    await Promise.all(
      Array.from({ length: 4 }, () =>
        limiter.run(async () => {
          running++;
          most = Math.max(most, running);
          await sleep(20);
          running--;
        }),
      ),
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    // The 429 halved the limit to 2; successes grow it back slowly.
    expect(most).toBe(2);
  });

  it("paces rpm and tpm over their window", async () => {
    const limiter = new AdaptiveLimiter({ ceiling: 10, rpm: 3, windowMs: 400 });
    const starts: number[] = [];
    const t0 = Date.now();
    await Promise.all(Array.from({ length: 6 }, () => limiter.run(async () => void starts.push(Date.now() - t0))));
    expect(starts.slice(0, 3).every((t) => t < 100)).toBe(true);
    expect(starts.slice(3).every((t) => t >= 390)).toBe(true);

    const tokens = new AdaptiveLimiter({ ceiling: 10, tpm: 1000, windowMs: 400 });
    const at: number[] = [];
    const t1 = Date.now();
    await Promise.all(Array.from({ length: 4 }, () => tokens.run(async () => void at.push(Date.now() - t1), undefined, 400)));
    expect(at.filter((t) => t < 100)).toHaveLength(2);
    expect(at.filter((t) => t >= 390)).toHaveLength(2);
  });
});

describe("OpenAI rate-limit headers against a server with a fixed window", () => {
  let server: FakeServer | undefined;
  afterEach(async () => {
    await server?.close();
  });

  it("spends each window's budget and waits for its reset: no 429 after the first window", async () => {
    const limit = 6;
    const windowMs = 600;
    let windowStart = Date.now();
    let used = 0;
    const log: Array<{ at: number; status: number }> = [];
    // Like the real APIs: a request is counted when it arrives, and answered a little later.
    server = await startFakeServer((_req, res) => {
      const now = Date.now();
      if (now >= windowStart + windowMs) {
        windowStart += Math.floor((now - windowStart) / windowMs) * windowMs;
        used = 0;
      }
      const admitted = used < limit;
      if (admitted) used++;
      const remaining = limit - used;
      log.push({ at: now, status: admitted ? 200 : 429 });
      setTimeout(() => {
        const rate = {
          "x-ratelimit-limit-requests": String(limit),
          "x-ratelimit-reset-requests": `${((windowStart + windowMs - Date.now()) / 1000).toFixed(3)}s`,
          "x-ratelimit-remaining-requests": String(remaining),
        };
        if (!admitted) sendJson(res, 429, { error: { message: "Rate limit reached" } }, { ...rate, "retry-after": "1" });
        else sendJson(res, 200, chatBody("ok"), rate);
      }, 30);
    });
    const t0 = Date.now();
    windowStart = t0;
    const limiter = new AdaptiveLimiter({ ceiling: 4 });
    const model = applyMiddleware(new OpenAICompatibleModel({ baseUrl: server.baseUrl, model: "m", rateLimits: limiter }), {
      concurrency: limiter,
      limitEachAttempt: true,
      retry: { maxRetries: 6, baseDelayMs: 20, maxRetryAfterMs: 2000 },
    });
    const results = await Promise.all(Array.from({ length: 24 }, () => model.generate({ messages: [{ role: "user", content: "x" }] })));
    expect(results.every((r) => r.text === "ok")).toBe(true);
    expect(log.filter((e) => e.status === 429 && e.at >= t0 + windowMs)).toEqual([]);
    // 24 requests at 6 per window need 4 windows: the last ones start in the fourth.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(3 * windowMs - 50);
  });
});
