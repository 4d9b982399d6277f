import { describe, expect, it } from "vitest";
import { z } from "zod";
import { createMeter, withAccounting, type MeterSnapshot } from "../../src/providers/middleware/accounting.js";
import { withCache } from "../../src/providers/middleware/cache.js";
import { CanonicalJsonError, canonicalJson, sha256Hex } from "../../src/util/canonical-json.js";
import { applyMiddleware } from "../../src/providers/middleware/compose.js";
import { createLimiter, withConcurrencyLimit } from "../../src/providers/middleware/concurrency.js";
import { backoffDelayMs, withRetry } from "../../src/providers/middleware/retry.js";
import { withTimeout } from "../../src/providers/middleware/timeout.js";
import { CallRecordSchema, type CallLog, type CallRecord } from "../../src/spec/call-log.js";
import { IterAlignError } from "../../src/spec/errors.js";
import type { GenerateRequest, GenerateResult, ScoreResult } from "../../src/spec/language-model.js";
import { deferred, ScriptedModel, textResult, untilAborted, type Deferred } from "../../src/testing/scripted-model.js";

/** In-memory CallLog: validates every record against the spec schema, keeps the newest per key. */
class MemoryCallLog implements CallLog {
  readonly byKey = new Map<string, CallRecord>();
  readonly puts: CallRecord[] = [];
  getCall(key: string): CallRecord | undefined {
    return this.byKey.get(key);
  }
  putCall(record: CallRecord): void {
    const valid = CallRecordSchema.parse(record);
    this.byKey.set(valid.key, valid);
    this.puts.push(valid);
  }
}

const HELLO = [{ role: "user" as const, content: "Say hello" }];
const greedy: GenerateRequest = { messages: HELLO, temperature: 0, maxTokens: 16 };
const retryable = (message = "503"): IterAlignError =>
  new IterAlignError("HTTP_STATUS", message, { retryable: true, details: { status: 503 } });
const noSleep = async (): Promise<void> => {};
const tick = (ms = 5): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function rejection(promise: Promise<unknown>): Promise<IterAlignError> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof IterAlignError)) throw new Error(`expected an IterAlignError, got ${String(error)}`);
  return error;
}

describe("canonicalJson", () => {
  it("sorts keys at every depth, drops undefined fields and has no whitespace", () => {
    const value = { b: 1, a: { d: [1, { z: true, y: null }], c: "x\n" }, u: undefined };
    expect(canonicalJson(value)).toBe('{"a":{"c":"x\\n","d":[1,{"y":null,"z":true}]},"b":1}');
  });

  it("gives the same text and hash whatever the insertion order", () => {
    const one = canonicalJson({ model: "m", params: { temperature: 0, maxTokens: 8 } });
    const two = canonicalJson({ params: { maxTokens: 8, temperature: 0 }, model: "m" });
    expect(one).toBe(two);
    expect(sha256Hex(one)).toBe(sha256Hex(two));
    expect(sha256Hex("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(canonicalJson({ at: new Date(0) })).toBe('{"at":"1970-01-01T00:00:00.000Z"}');
  });

  it("rejects values without one faithful JSON form, naming where", () => {
    expect(() => canonicalJson({ a: { f: () => 1 } })).toThrow("canonicalJson: unsupported function at $.a.f");
    expect(() => canonicalJson({ t: Number.NaN })).toThrow("canonicalJson: non-finite number NaN at $.t");
    expect(() => canonicalJson([1, Infinity])).toThrow("canonicalJson: non-finite number Infinity at $[1]");
    expect(() => canonicalJson([undefined])).toThrow(CanonicalJsonError);
    expect(() => canonicalJson(new Map())).toThrow("non-plain object (Map) at $");
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    expect(() => canonicalJson(cycle)).toThrow("circular reference at $.self");
  });
});

describe("withCache", () => {
  function setup(model = new ScriptedModel({ generate: [textResult("hello"), textResult("again")] })) {
    const log = new MemoryCallLog();
    let now = 1_700_000_000_000;
    const clock = (): number => (now += 10);
    return { model, log, cached: withCache(model, { log, runId: "run-1", role: "target", clock }) };
  }

  it("keys a conversation to classify (and its template variables) apart from the same messages to answer", async () => {
    const { model, cached } = setup(new ScriptedModel({ generate: [textResult("answer"), textResult("unsafe"), textResult("safe")] }));
    expect((await cached.generate(greedy)).text).toBe("answer");
    expect((await cached.generate({ ...greedy, classify: {} })).text).toBe("unsafe");
    expect((await cached.generate({ ...greedy, classify: { templateVars: { guideline: "g" } } })).text).toBe("safe");
    expect((await cached.generate({ ...greedy, classify: {} })).cached).toBe(true);
    expect(model.calls.generate).toBe(3);
  });

  it("records a miss before returning and answers the same request from the log with no inner call", async () => {
    const { model, log, cached } = setup();
    const first = await cached.generate(greedy);
    expect(first).toEqual(textResult("hello"));
    expect(log.puts).toHaveLength(1);
    const request = canonicalJson({
      provider: "scripted",
      modelId: "scripted-model",
      kind: "generate",
      params: { maxTokens: 16, temperature: 0 },
      messages: HELLO,
    });
    expect(log.puts[0]).toEqual({
      key: sha256Hex(request),
      provider: "scripted",
      modelId: "scripted-model",
      kind: "generate",
      request,
      response: '{"finishReason":"stop","text":"hello","usage":{"completionTokens":3,"promptTokens":5}}',
      promptTokens: 5,
      completionTokens: 3,
      cachedPromptTokens: 0,
      costUsd: 0,
      latencyMs: 10,
      createdAt: new Date(1_700_000_000_030).toISOString(),
      runId: "run-1",
      role: "target",
    });

    // Signal and onText differ but are not part of the key.
    const streamed: string[] = [];
    const second = await cached.generate({
      ...greedy,
      signal: new AbortController().signal,
      onText: (t) => streamed.push(t),
    });
    expect(model.calls.generate).toBe(1);
    expect(second).toEqual({ ...textResult("hello"), cached: true });
    expect(streamed).toEqual(["hello"]);
    expect(log.puts).toHaveLength(1);

    // Stacked caches: only the layer that served the hit streams the text.
    const outer = withCache(cached, { log: new MemoryCallLog() });
    const twice: string[] = [];
    await outer.generate({ ...greedy, onText: (t) => twice.push(t) });
    expect(twice).toEqual(["hello"]);

    // An aborted caller gets ABORTED, not a cached answer.
    const aborted = AbortSignal.abort();
    expect((await rejection(cached.generate({ ...greedy, signal: aborted }))).code).toBe("ABORTED");
    expect(model.calls.generate).toBe(1);
  });

  it("misses when the seed, a parameter or the messages differ", async () => {
    const { model, log, cached } = setup();
    await cached.generate(greedy);
    const variants: GenerateRequest[] = [
      { ...greedy, seed: 1 },
      { ...greedy, seed: 2 },
      { ...greedy, maxTokens: 17 },
      { ...greedy, stop: ["\n"] },
      { ...greedy, messages: [{ role: "user", content: "Say hi" }] },
      { ...greedy, messages: [{ role: "system", content: "Say hello" }] },
    ];
    for (const variant of variants) expect((await cached.generate(variant)).cached).toBeUndefined();
    expect(model.calls.generate).toBe(1 + variants.length);
    expect(new Set(log.puts.map((r) => r.key)).size).toBe(1 + variants.length);
  });

  it("does not answer sampled requests from the cache unless seeded or told to", async () => {
    const { model, log, cached } = setup();
    const sampled = { ...greedy, temperature: 0.8 };
    await cached.generate(sampled);
    expect((await cached.generate(sampled)).text).toBe("again");
    expect(model.calls.generate).toBe(2);
    expect(log.puts).toHaveLength(2); // still recorded, for accounting

    const seeded = { ...sampled, seed: 7 };
    await cached.generate(seeded);
    expect((await cached.generate(seeded)).cached).toBe(true);
    expect(model.calls.generate).toBe(3);

    const anyway = withCache(model, { log, cacheNondeterministic: true });
    expect(await anyway.generate(sampled)).toEqual({ ...textResult("again"), cached: true });
    expect(model.calls.generate).toBe(3);
  });

  it("re-validates a generateObject hit through the request's schema", async () => {
    const model = new ScriptedModel({ generateObject: [textResult('{"score":3}'), textResult('{"score":9}')] });
    const { log, cached } = setup(model);
    const schema = z.object({ score: z.number().int() });
    const request = { messages: HELLO, schema };
    expect((await cached.generateObject(request)).object).toEqual({ score: 3 });
    const hit = await cached.generateObject(request);
    expect(hit).toEqual({ ...textResult('{"score":3}'), object: { score: 3 }, cached: true });
    expect(model.calls.generateObject).toBe(1);
    expect(JSON.parse(log.puts[0]?.request ?? "{}")).toMatchObject({ schema: z.toJSONSchema(schema, { io: "output" }) });

    // A refinement does not change the JSON schema (same key), but the stored 3 fails it: a miss.
    const refined = z.object({ score: z.number().int().refine((n) => n > 5) });
    const redo = await cached.generateObject({ messages: HELLO, schema: refined });
    expect(log.puts[1]?.key).toBe(log.puts[0]?.key);
    expect(redo.object).toEqual({ score: 9 });
    expect(redo.cached).toBeUndefined();
    expect(model.calls.generateObject).toBe(2);

    // A different schema is a different key.
    await cached.generateObject({ messages: HELLO, schema: z.object({ score: z.number() }) });
    expect(model.calls.generateObject).toBe(3);
  });

  it("never caches errors or aborted partial results", async () => {
    const partial: GenerateResult = { text: "hel", finishReason: "abort", usage: { promptTokens: 5, completionTokens: 1 } };
    const model = new ScriptedModel({
      generate: [new IterAlignError("GENERATION_FAILED", "boom"), partial, textResult("ok")],
    });
    const { log, cached } = setup(model);
    expect((await rejection(cached.generate(greedy))).code).toBe("GENERATION_FAILED");
    expect(log.puts).toHaveLength(0);
    expect(await cached.generate(greedy)).toEqual(partial);
    expect(log.puts).toHaveLength(0);
    expect(await cached.generate(greedy)).toEqual(textResult("ok"));
    expect(await cached.generate(greedy)).toEqual({ ...textResult("ok"), cached: true });
    expect(model.calls.generate).toBe(3);
    expect(log.puts).toHaveLength(1);
  });

  it("caches scoreContinuations and embed, and keeps capabilities and missing methods as they are", async () => {
    const scores: ScoreResult = {
      scores: [{ logprob: -1.5, tokenCount: 2, isGreedy: true }],
      usage: { promptTokens: 7, completionTokens: 0 },
    };
    const model = new ScriptedModel({ scoreContinuations: [scores], embed: [{ embeddings: [[0.5, -0.25]] }] });
    const { log, cached } = setup(model);
    expect(cached.capabilities).toBe(model.capabilities);
    const score = { context: "2+2=", continuations: ["4"] };
    await cached.scoreContinuations?.(score);
    expect(await cached.scoreContinuations?.(score)).toEqual({ ...scores, cached: true });
    await cached.embed?.(["a"]);
    expect(await cached.embed?.(["a"])).toEqual({ embeddings: [[0.5, -0.25]], cached: true });
    expect(model.calls).toMatchObject({ scoreContinuations: 1, embed: 1 });
    expect(log.puts.map((r) => r.kind)).toEqual(["scoreContinuations", "embed"]);

    const bare = setup().cached;
    expect("scoreContinuations" in bare).toBe(false);
    expect("embed" in bare).toBe(false);
    expect([...bare.capabilities]).toEqual(["generate", "generateObject", "stream"]);
  });
});

describe("withRetry", () => {
  it("succeeds after two retryable failures, backing off with jitter", async () => {
    const model = new ScriptedModel({ generate: [retryable(), retryable(), textResult("ok")] });
    const delays: number[] = [];
    const retrying = withRetry(model, { random: () => 0.5, sleep: async (ms) => void delays.push(ms) });
    expect(await retrying.generate(greedy)).toEqual(textResult("ok"));
    expect(model.calls.generate).toBe(3);
    expect(delays).toEqual([250, 500]);
  });

  it("gives up after maxRetries, keeping the attempt count and the last error", async () => {
    const errors: IterAlignError[] = [];
    const model = new ScriptedModel({
      generate: [
        (_request, index) => {
          errors.push(retryable(`503 #${index}`));
          throw errors.at(-1) as IterAlignError;
        },
      ],
    });
    const error = await rejection(withRetry(model, { maxRetries: 2, sleep: noSleep }).generate(greedy));
    expect(model.calls.generate).toBe(3);
    expect(error.code).toBe("HTTP_STATUS");
    expect(error.details).toEqual({ status: 503, attempts: 3 });
    expect(error.cause).toBe(errors[2]);
    expect(error.retryable).toBe(false);
    expect(error.message).toBe("scripted model 'scripted-model' generate failed after 3 attempts: 503 #2");
  });

  it("does not retry non-retryable errors or an aborted caller", async () => {
    const fatal = new IterAlignError("OUTPUT_INVALID", "bad");
    const model = new ScriptedModel({ generate: [fatal] });
    expect(await rejection(withRetry(model, { sleep: noSleep }).generate(greedy))).toBe(fatal);
    expect(model.calls.generate).toBe(1);

    const plain = new ScriptedModel({ generate: [new Error("bug")] });
    await expect(withRetry(plain, { sleep: noSleep }).generate(greedy)).rejects.toThrow("bug");
    expect(plain.calls.generate).toBe(1);

    const controller = new AbortController();
    const aborting = new ScriptedModel({
      generate: [
        () => {
          controller.abort();
          throw retryable();
        },
      ],
    });
    const error = await rejection(withRetry(aborting, { sleep: noSleep }).generate({ ...greedy, signal: controller.signal }));
    expect(error.code).toBe("HTTP_STATUS");
    expect(aborting.calls.generate).toBe(1);
  });

  it("stops waiting when the caller aborts during the backoff", async () => {
    const model = new ScriptedModel({ generate: [retryable()] });
    const controller = new AbortController();
    const pending = withRetry(model, { baseDelayMs: 60_000, random: () => 0.99 }).generate({
      ...greedy,
      signal: controller.signal,
    });
    await tick();
    controller.abort();
    expect((await rejection(pending)).code).toBe("ABORTED");
    expect(model.calls.generate).toBe(1);
  });

  it("keeps every backoff within [0, min(maxDelayMs, baseDelayMs * 2^retry))", async () => {
    const options = { baseDelayMs: 500, maxDelayMs: 3000 };
    expect(backoffDelayMs(0, { ...options, random: () => 0 })).toBe(0);
    expect([0, 1, 2, 3, 4, 5].map((r) => backoffDelayMs(r, { ...options, random: () => 0.999 }))).toEqual([
      499, 999, 1998, 2997, 2997, 2997,
    ]);

    const draws = [0, 0.25, 0.5, 0.75, 0.999, 0.1];
    const delays: number[] = [];
    const model = new ScriptedModel({ generate: [retryable()] });
    const retrying = withRetry(model, {
      ...options,
      maxRetries: 6,
      random: () => draws[delays.length] ?? 0,
      sleep: async (ms) => void delays.push(ms),
    });
    await rejection(retrying.generate(greedy));
    const caps = [500, 1000, 2000, 3000, 3000, 3000];
    expect(delays).toEqual([0, 250, 1000, 2250, 2997, 300]);
    delays.forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(caps[i] ?? 0);
    });
  });
});

describe("withConcurrencyLimit", () => {
  it("never runs more than max calls at once across models sharing a limiter", async () => {
    let running = 0;
    let peak = 0;
    const slow = async (): Promise<GenerateResult> => {
      peak = Math.max(peak, ++running);
      await tick(20);
      running--;
      return textResult("x");
    };
    const limiter = createLimiter(3);
    const a = new ScriptedModel({ generate: [slow] });
    const b = new ScriptedModel({ generate: [slow] });
    const [limitedA, limitedB] = [withConcurrencyLimit(a, limiter), withConcurrencyLimit(b, limiter)];
    const all = Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? limitedA : limitedB).generate(greedy));
    await tick(1);
    expect([limiter.active, limiter.pending]).toEqual([3, 7]);
    await Promise.all(all);
    expect(a.calls.generate + b.calls.generate).toBe(10);
    expect(peak).toBe(3);
    expect([limiter.active, limiter.pending]).toEqual([0, 0]);
  });

  it("starts queued calls in arrival order", async () => {
    const gates: Deferred<GenerateResult>[] = [];
    const started: string[] = [];
    const model = new ScriptedModel({
      generate: [
        (request) => {
          started.push(request.messages[0]?.content ?? "");
          const gate = deferred<GenerateResult>();
          gates.push(gate);
          return gate.promise;
        },
      ],
    });
    const limiter = createLimiter(1);
    const limited = withConcurrencyLimit(model, limiter);
    const calls = ["c0", "c1", "c2", "c3", "c4"].map((content) =>
      limited.generate({ messages: [{ role: "user", content }] }),
    );
    await tick();
    expect(limiter.pending).toBe(4);
    for (let i = 0; i < 5; i++) {
      expect(started).toHaveLength(i + 1);
      gates[i]?.resolve(textResult(`r${i}`));
      await tick(1);
    }
    expect((await Promise.all(calls)).map((r) => r.text)).toEqual(["r0", "r1", "r2", "r3", "r4"]);
    expect(started).toEqual(["c0", "c1", "c2", "c3", "c4"]);
  });

  it("rejects a call aborted while queued with ABORTED and frees its place", async () => {
    const gate = deferred<GenerateResult>();
    const model = new ScriptedModel({ generate: [() => gate.promise, textResult("next")] });
    const limiter = createLimiter(1);
    const limited = withConcurrencyLimit(model, limiter);
    const first = limited.generate(greedy);
    const controller = new AbortController();
    const queued = limited.generate({ ...greedy, signal: controller.signal });
    const third = limited.generate(greedy);
    await tick();
    expect(limiter.pending).toBe(2);
    controller.abort();
    expect((await rejection(queued)).code).toBe("ABORTED");
    expect(limiter.pending).toBe(1);
    gate.resolve(textResult("first"));
    expect((await first).text).toBe("first");
    expect((await third).text).toBe("next");
    expect(model.calls.generate).toBe(2);
    expect(limiter.active).toBe(0);
  });
});

describe("withTimeout", () => {
  it("rejects with a retryable TIMEOUT naming the model and aborts the inner signal", async () => {
    const model = new ScriptedModel({ provider: "openai-compatible", modelId: "judge-7b", generate: [untilAborted()] });
    const error = await rejection(withTimeout(model, { timeoutMs: 20 }).generate(greedy));
    expect(error.code).toBe("TIMEOUT");
    expect(error.retryable).toBe(true);
    expect(error.message).toBe("openai-compatible model 'judge-7b' generate timed out after 20 ms");
    expect(error.details).toEqual({ provider: "openai-compatible", modelId: "judge-7b", kind: "generate", timeoutMs: 20 });
    const inner = model.log[0]?.request.signal;
    expect(inner?.aborted).toBe(true);
    expect(inner?.reason).toBe(error);
  });

  it("times out even when the inner model ignores its signal, and passes the caller's abort down", async () => {
    const stuck = new ScriptedModel({ generate: [() => new Promise<GenerateResult>(() => {})] });
    expect((await rejection(withTimeout(stuck, { timeoutMs: 10 }).generate(greedy))).code).toBe("TIMEOUT");

    const model = new ScriptedModel({ generate: [untilAborted()] });
    const controller = new AbortController();
    const pending = withTimeout(model, { timeoutMs: 60_000 }).generate({ ...greedy, signal: controller.signal });
    controller.abort();
    expect((await rejection(pending)).code).toBe("ABORTED");

    const quick = new ScriptedModel({ generate: [textResult("fast")] });
    expect(await withTimeout(quick, { timeoutMs: 1000 }).generate(greedy)).toEqual(textResult("fast"));
  });
});

describe("option validation", () => {
  it("refuses limits that cannot work", () => {
    const model = new ScriptedModel();
    for (const build of [
      () => createLimiter(0),
      () => createLimiter(1.5),
      () => withTimeout(model, { timeoutMs: 0 }),
      () => withTimeout(model, { timeoutMs: Infinity }),
      () => withRetry(model, { maxRetries: -1 }),
    ]) {
      expect(build).toThrow(expect.objectContaining({ code: "CONFIG_INVALID" }) as Error);
    }
  });
});

describe("withAccounting and applyMiddleware", () => {
  it("tallies calls, cached calls, errors, tokens, latency and tokens/s per provider, model and kind", async () => {
    let now = 0;
    const meter = createMeter({ clock: () => now });
    const seen: MeterSnapshot[] = [];
    const unsubscribe = meter.subscribe((s) => seen.push(s));
    const model = new ScriptedModel({
      generate: [
        () => {
          now += 100;
          return textResult("a", { promptTokens: 10, completionTokens: 20 });
        },
        () => {
          now += 50;
          throw new IterAlignError("GENERATION_FAILED", "boom");
        },
      ],
      scoreContinuations: [{ scores: [], usage: { promptTokens: 4, completionTokens: 0 } }],
    });
    const wrapped = applyMiddleware(model, { meter, cache: { log: new MemoryCallLog() } });
    await wrapped.generate(greedy);
    await wrapped.generate(greedy); // cache hit: counted, no tokens, no time
    await rejection(wrapped.generate({ ...greedy, seed: 1 }));
    await wrapped.scoreContinuations?.({ context: "c", continuations: [] });
    expect(seen).toHaveLength(8); // one snapshot when each call starts and one when it ends
    unsubscribe();

    const snapshot = meter.snapshot();
    const zero = { inFlight: 0 };
    expect(snapshot.entries).toEqual([
      {
        provider: "scripted", modelId: "scripted-model", kind: "generate", ...zero,
        calls: 3, cachedCalls: 1, errors: 1, promptTokens: 10, completionTokens: 20, costUsd: 0, spentUsd: 0,
        latencyMs: 150, busyMs: 150, tokensPerSecond: (20 * 1000) / 150,
      },
      {
        provider: "scripted", modelId: "scripted-model", kind: "scoreContinuations", ...zero,
        calls: 1, cachedCalls: 0, errors: 0, promptTokens: 4, completionTokens: 0, costUsd: 0, spentUsd: 0,
        latencyMs: 0, busyMs: 0, tokensPerSecond: 0,
      },
    ]);
    expect(snapshot.totals).toMatchObject({ calls: 4, cachedCalls: 1, errors: 1, promptTokens: 14, completionTokens: 20 });
    await wrapped.generate(greedy);
    expect(seen).toHaveLength(8);
  });

  it("counts overlapping calls' busy time once", async () => {
    let now = 0;
    const meter = createMeter({ clock: () => now });
    const gates = [deferred<GenerateResult>(), deferred<GenerateResult>()];
    const model = new ScriptedModel({ generate: [() => gates[0]!.promise, () => gates[1]!.promise] });
    const metered = withAccounting(model, meter);
    const both = [metered.generate(greedy), metered.generate(greedy)];
    await tick(1);
    now = 100;
    expect(meter.snapshot().totals).toMatchObject({ inFlight: 2, busyMs: 100 });
    gates[0]!.resolve(textResult("a", { promptTokens: 1, completionTokens: 30 }));
    await both[0];
    now = 150;
    gates[1]!.resolve(textResult("b", { promptTokens: 1, completionTokens: 30 }));
    await both[1];
    expect(meter.snapshot().totals).toMatchObject({ calls: 2, latencyMs: 250, busyMs: 150, tokensPerSecond: 400 });
  });

  it("keeps provider, modelId, capabilities and close, and serves cache hits without a free slot", async () => {
    const gate = deferred<GenerateResult>();
    const model = new ScriptedModel({ generate: [textResult("cached"), () => gate.promise] });
    const limiter = createLimiter(1);
    const meter = createMeter();
    const wrapped = applyMiddleware(model, {
      cache: { log: new MemoryCallLog() },
      retry: { sleep: noSleep },
      concurrency: limiter,
      timeout: { timeoutMs: 5000 },
      meter,
    });
    expect([wrapped.provider, wrapped.modelId, wrapped.capabilities]).toEqual([
      model.provider,
      model.modelId,
      model.capabilities,
    ]);
    expect(wrapped.capabilities).toBe(model.capabilities);
    expect("embed" in wrapped).toBe(false);

    await wrapped.generate(greedy);
    const busy = wrapped.generate({ ...greedy, messages: [{ role: "user", content: "other" }] });
    await tick();
    expect(limiter.active).toBe(1);
    expect(await wrapped.generate(greedy)).toEqual({ ...textResult("cached"), cached: true });
    gate.resolve(textResult("other"));
    await busy;

    await wrapped.close();
    expect(model.closeCount).toBe(1);
  });

  it("gives each retry attempt its own timeout", async () => {
    const model = new ScriptedModel({ generate: [untilAborted(), textResult("second try")] });
    const meter = createMeter();
    const wrapped = applyMiddleware(model, { retry: { maxRetries: 1, sleep: noSleep }, timeout: { timeoutMs: 15 }, meter });
    expect(await wrapped.generate(greedy)).toEqual(textResult("second try"));
    expect(model.calls.generate).toBe(2);
    expect(meter.snapshot().totals).toMatchObject({ calls: 1, errors: 0 });
  });
});
