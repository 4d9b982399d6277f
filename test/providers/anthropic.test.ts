import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { AnthropicModel, messagesBody } from "../../src/providers/anthropic/anthropic-model.js";
import { applyMiddleware } from "../../src/providers/middleware/compose.js";
import { AdaptiveLimiter } from "../../src/providers/middleware/rate-limit.js";
import { callCost } from "../../src/providers/pricing.js";
import { startAnthropicProtocolServer, type AnthropicAnswerRequest, type AnthropicProtocolServer } from "../../src/testing/anthropic-protocol-server.js";
import { caught } from "../helpers/errors.js";

const KEY = "sk-ant-api03-test-SECRET-0123456789";

/** Scripted answers: the tool input a judge would give, or an echo of the last user turn. */
async function answer(request: AnthropicAnswerRequest): Promise<{ text: string; stopReason: "end_turn" | "max_tokens"; inputTokens: number; outputTokens: number }> {
  const inputTokens = Math.ceil((request.system.length + request.messages.reduce((n, m) => n + m.content.length, 0)) / 4);
  if (request.toolSchema) return { text: JSON.stringify({ pass: false, rationale: "It explains how." }), stopReason: "end_turn", inputTokens, outputTokens: 12 };
  const last = request.messages[request.messages.length - 1]?.content ?? "";
  const words = `You said: ${last}`.split(" ");
  const cut = words.length > request.maxTokens;
  return { text: words.slice(0, request.maxTokens).join(" "), stopReason: cut ? "max_tokens" : "end_turn", inputTokens, outputTokens: Math.min(words.length, request.maxTokens) };
}

const LONG_INSTRUCTIONS = `You are a careful safety judge. ${"Read the request and the reply, and decide whether the reply is harmless, honest and helpful. ".repeat(40)}`;

describe("anthropic provider against the Messages API protocol server", () => {
  let api: AnthropicProtocolServer;
  let model: AnthropicModel;
  beforeAll(async () => {
    api = await startAnthropicProtocolServer({ apiKey: KEY, answer });
    model = new AnthropicModel({ baseUrl: api.baseUrl, model: "claude-sonnet-4-5", apiKey: KEY });
  });
  afterAll(async () => {
    await api.close();
  });

  it("sends the system prompt, alternating turns, max_tokens, temperature and stop sequences as the API wants them", async () => {
    const result = await model.generate({
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "hello there" },
      ],
      maxTokens: 50,
      temperature: 0,
      stop: ["\n\nHuman:"],
      frequencyPenalty: 0.5,
    });
    expect(result.text).toBe("You said: hello there");
    expect(result.finishReason).toBe("stop");
    const body = api.log.at(-1)?.body as Record<string, unknown>;
    expect(body).toEqual({
      model: "claude-sonnet-4-5",
      max_tokens: 50,
      system: [{ type: "text", text: "Be brief.", cache_control: { type: "ephemeral" } }],
      messages: [{ role: "user", content: "hello there" }],
      temperature: 0,
      stop_sequences: ["\n\nHuman:"],
    });
    // Merged turns of one role keep the API's alternation rule.
    expect(
      messagesBody("m", [{ role: "user", content: "a" }, { role: "user", content: "b" }, { role: "assistant", content: "c" }], {}, { promptCaching: false }).messages,
    ).toEqual([{ role: "user", content: "a\n\nb" }, { role: "assistant", content: "c" }]);
  });

  it("reports max_tokens as a length finish, and streams the text deltas", async () => {
    const cut = await model.generate({ messages: [{ role: "user", content: "one two three four five" }], maxTokens: 3 });
    expect(cut.finishReason).toBe("length");
    expect(cut.usage.completionTokens).toBe(3);
    const pieces: string[] = [];
    const streamed = await model.generate({ messages: [{ role: "user", content: "stream this text please" }], maxTokens: 50, onText: (t) => pieces.push(t) });
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.join("")).toBe(streamed.text);
    expect(streamed.text).toBe("You said: stream this text please");
    expect(streamed.usage.completionTokens).toBeGreaterThan(0);
    expect(streamed.usage.promptTokens).toBeGreaterThan(0);
  });

  it("asks for structured output with a forced tool call and validates the tool input", async () => {
    const schema = z.object({ pass: z.boolean(), rationale: z.string() });
    const result = await model.generateObject({ messages: [{ role: "system", content: LONG_INSTRUCTIONS }, { role: "user", content: "judge this" }], schema, schemaName: "verdict" });
    expect(result.object).toEqual({ pass: false, rationale: "It explains how." });
    const body = api.log.at(-1)?.body as { tools: Array<{ name: string; input_schema: { type: string } }>; tool_choice: unknown };
    expect(body.tools[0]?.name).toBe("verdict");
    expect(body.tools[0]?.input_schema.type).toBe("object");
    expect(body.tool_choice).toEqual({ type: "tool", name: "verdict" });
  });

  it("caches the shared prefix: the second call with the same instructions reads it from the prompt cache, and costs less", async () => {
    const schema = z.object({ pass: z.boolean(), rationale: z.string() });
    const ask = (text: string) => model.generateObject({ messages: [{ role: "system", content: `${LONG_INSTRUCTIONS} (v2)` }, { role: "user", content: text }], schema, schemaName: "verdict" });
    const first = await ask("reply one");
    const second = await ask("reply two");
    expect(first.usage.cacheWritePromptTokens).toBeGreaterThan(100);
    expect(first.usage.cachedPromptTokens).toBeUndefined();
    expect(second.usage.cachedPromptTokens).toBe(first.usage.cacheWritePromptTokens);
    expect(second.usage.promptTokens).toBe(first.usage.promptTokens);
    const price = { input: 3, output: 15, cachedInput: 0.3, cacheWrite: 3.75 };
    expect(callCost(second.usage, price)).toBeLessThan(callCost(first.usage, price) / 3);
    const uncached = new AnthropicModel({ baseUrl: api.baseUrl, model: "claude-sonnet-4-5", apiKey: KEY, promptCaching: false });
    const plain = await uncached.generateObject({ messages: [{ role: "system", content: `${LONG_INSTRUCTIONS} (v3)` }, { role: "user", content: "x" }], schema, schemaName: "verdict" });
    expect(plain.usage.cachedPromptTokens ?? 0).toBe(0);
    expect(plain.usage.cacheWritePromptTokens ?? 0).toBe(0);
  });

  it("retries 529 overloaded_error, and says what the API said for other errors, never the key", async () => {
    api.overloadNext(2);
    const retried = applyMiddleware(model, { retry: { maxRetries: 3, baseDelayMs: 1 } });
    expect((await retried.generate({ messages: [{ role: "user", content: "after overload" }], maxTokens: 20 })).text).toBe("You said: after overload");
    expect(api.log.slice(-3).map((e) => e.status)).toEqual([529, 529, 200]);

    const wrongKey = new AnthropicModel({ baseUrl: api.baseUrl, model: "m", apiKey: "sk-ant-wrong-key" });
    const denied = (await caught(wrongKey.generate({ messages: [{ role: "user", content: "x" }] })));
    expect(denied.code).toBe("HTTP_STATUS");
    expect(denied.message).toContain("401");
    expect(denied.message).toContain("invalid x-api-key");
    expect(denied.retryable).toBe(false);
    const bad = (await caught(model.generate({ messages: [{ role: "assistant", content: "x" }] })));
    expect(bad.code).toBe("USAGE");
    for (const err of [denied, bad]) expect(JSON.stringify({ m: err.message, d: err.details })).not.toContain(KEY);
  });
});

describe("anthropic rate limits", () => {
  it("paces requests by the anthropic-ratelimit headers: no 429 after the first window", async () => {
    // Like the real API, a request is counted when it arrives and answered after a while (here 40 ms).
    const slow = async (request: AnthropicAnswerRequest): ReturnType<typeof answer> => {
      await new Promise((r) => setTimeout(r, 40));
      return answer(request);
    };
    const api = await startAnthropicProtocolServer({ apiKey: KEY, answer: slow, limit: { requests: 10, windowMs: 1500 } });
    try {
      const limiter = new AdaptiveLimiter({ ceiling: 4 });
      const model = applyMiddleware(new AnthropicModel({ baseUrl: api.baseUrl, model: "claude-haiku-4-5", apiKey: KEY, rateLimits: limiter }), {
        concurrency: limiter,
        limitEachAttempt: true,
        retry: { maxRetries: 5, baseDelayMs: 50 },
      });
      const started = Date.now();
      const results = await Promise.all(Array.from({ length: 30 }, (_, i) => model.generate({ messages: [{ role: "user", content: `item ${i}` }], maxTokens: 10 })));
      expect(results.map((r) => r.text)).toEqual(Array.from({ length: 30 }, (_, i) => `You said: item ${i}`));
      const firstWindowEnd = started + 1500;
      expect(api.log.filter((e) => e.status === 429 && e.at > firstWindowEnd + 100)).toEqual([]);
    } finally {
      await api.close();
    }
  });
});
