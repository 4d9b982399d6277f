import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { IterAlignError, OutputInvalidError } from "../../src/spec/errors.js";
import type { GenerateResult } from "../../src/spec/language-model.js";
import { OpenAICompatibleModel } from "../../src/providers/openai-compatible/openai-compatible-model.js";
import { chatBody, sendJson, startFakeServer, type FakeServer } from "../helpers/fake-openai-server.js";
import { startLlamaServer, type RunningLlamaServer } from "../helpers/llama-server.js";
import { caught } from "../helpers/errors.js";
import { applyMiddleware } from "../../src/providers/middleware/compose.js";
import { endpointUrl } from "../../src/util/url.js";

/** Runs `fn` and returns what it threw (failing the test when it does not throw). */
function isServer500(err: unknown): boolean {
  return err instanceof IterAlignError && err.code === "HTTP_STATUS" && err.details.status === 500;
}

/**
 * Sampled generation on a random-weight model: llama-server's chat parser rejects some random outputs with
 * HTTP 500 ("does not match the expected ... format"), and with a fixed seed the same seed fails every time.
 * So these tests look for a seed that succeeds and retry only on that 500; any other error fails the test.
 */
async function firstWorkingSeed(run: (seed: number) => Promise<GenerateResult>): Promise<{ seed: number; result: GenerateResult }> {
  for (let seed = 1; seed <= 20; seed++) {
    try {
      return { seed, result: await run(seed) };
    } catch (err) {
      if (!isServer500(err)) throw err;
    }
  }
  throw new Error("every seed from 1 to 20 ended in HTTP 500");
}

describe("OpenAICompatibleModel against llama-server on tiny-qwen2", () => {
  let server: RunningLlamaServer;
  let model: OpenAICompatibleModel;

  beforeAll(async () => {
    server = await startLlamaServer({ modelPath: fixtureModelPath("tiny-qwen2"), parallel: 4, ctxSize: 4096 });
    model = new OpenAICompatibleModel({ baseUrl: server.baseUrl, model: "tiny-qwen2", timeoutMs: 60_000 });
  });
  afterAll(async () => {
    await server.stop();
  });

  const messages = [{ role: "user" as const, content: "Say something." }];

  it("is deterministic with greedy decoding and with a fixed seed", async () => {
    const greedy = { messages, maxTokens: 12, temperature: 0, seed: 7 };
    const a = await model.generate(greedy);
    const b = await model.generate(greedy);
    expect(a.text).toBe(b.text);
    expect(a.text.length).toBeGreaterThan(0);
    expect(a.finishReason).toBe("length");
    expect(a.usage.completionTokens).toBe(12);
    expect(a.usage.promptTokens).toBeGreaterThan(0);

    const sampled = (seed: number): Promise<GenerateResult> => model.generate({ messages, maxTokens: 12, temperature: 1, seed });
    const first = await firstWorkingSeed(sampled);
    const again = await sampled(first.seed);
    expect(again.text).toBe(first.result.text);
  });

  it("streams pieces that concatenate to the final text, with usage", async () => {
    const pieces: string[][] = [];
    const { seed, result } = await firstWorkingSeed(async (s) => {
      const got: string[] = [];
      pieces.push(got);
      return model.generate({ messages, maxTokens: 16, temperature: 1, seed: s, onText: (t) => got.push(t) });
    });
    const streamed = pieces.at(-1) ?? [];
    expect(streamed.length).toBeGreaterThan(1);
    expect(streamed.join("")).toBe(result.text);
    expect(result.usage.completionTokens).toBeGreaterThan(0);
    const plain = await model.generate({ messages, maxTokens: 16, temperature: 1, seed });
    expect(plain.text).toBe(result.text);
  });

  it("returns schema-valid objects for several schemas (llama-server turns json_schema into a grammar)", async () => {
    const schemas: readonly z.ZodType[] = [
      z.object({ name: z.string().max(12), count: z.number().int().min(0).max(999), ok: z.boolean() }),
      z.object({ verdict: z.enum(["safe", "unsafe"]), tags: z.array(z.string().max(8)).max(3) }),
      z.object({ critique: z.object({ score: z.number().int().min(1).max(10), note: z.string().max(20) }) }),
    ];
    for (const schema of schemas) {
      for (const seed of [1, 2]) {
        const out = await model.generateObject({ messages, schema, maxTokens: 200, temperature: 0.8, seed, schemaName: "probe" });
        expect(schema.safeParse(out.object).success).toBe(true);
        expect(JSON.parse(out.text)).toEqual(out.object);
      }
    }
  });

  it("serves 4 concurrent requests", async () => {
    const prompts = ["one", "two", "three", "four"];
    const results = await Promise.all(
      prompts.map((p) => model.generate({ messages: [{ role: "user", content: p }], maxTokens: 8, temperature: 0 })),
    );
    expect(results).toHaveLength(4);
    for (const r of results) expect(r.usage.completionTokens).toBe(8);
  });

  it("reports CAPABILITY_MISSING for echo scoring, which llama-server does not support", async () => {
    const scorer = new OpenAICompatibleModel({ baseUrl: server.baseUrl, model: "tiny-qwen2", scoring: "echo" });
    expect(scorer.capabilities.has("scoreContinuations")).toBe(true);
    const err = await caught(() => scorer.scoreContinuations!({ context: "The capital is", continuations: [" Paris", " Rome"] }));
    expect(err.code).toBe("CAPABILITY_MISSING");
    expect(err.message).toMatch(/does not support echo\+logprobs/);
    expect(err.message).toContain(`${server.baseUrl}/completions`);
  });
});

describe("OpenAICompatibleModel against a fake server", () => {
  const apiKey = "sk-test-DO-NOT-LEAK-4242";
  let fake: FakeServer;
  let model: OpenAICompatibleModel;
  const errors: IterAlignError[] = [];
  const messages = [{ role: "user" as const, content: "hi" }];

  beforeAll(async () => {
    fake = await startFakeServer((_req, res) => sendJson(res, 200, chatBody("hello")));
    model = new OpenAICompatibleModel({ baseUrl: fake.baseUrl, model: "fake", apiKey, timeoutMs: 2000 });
  });
  afterAll(async () => {
    await fake.close();
  });

  async function failure(fn: () => Promise<unknown>): Promise<IterAlignError> {
    const err = await caught(fn);
    errors.push(err);
    return err;
  }

  it("sends the request in the OpenAI shape with a bearer key", async () => {
    fake.setHandler((_req, res) => sendJson(res, 200, chatBody("hello", "length")));
    const out = await model.generate({ messages, maxTokens: 5, temperature: 0.5, topP: 0.9, seed: 3, stop: ["\n"], presencePenalty: 0.1 });
    expect(out).toEqual({ text: "hello", finishReason: "length", usage: { promptTokens: 5, completionTokens: 3 } });
    const req = fake.requests.at(-1);
    expect(req?.path).toBe("/chat/completions");
    expect(req?.headers.authorization).toBe(`Bearer ${apiKey}`);
    expect(req?.body).toEqual({
      model: "fake",
      messages,
      max_tokens: 5,
      temperature: 0.5,
      top_p: 0.9,
      seed: 3,
      stop: ["\n"],
      presence_penalty: 0.1,
    });
  });

  it("parses a server-sent event stream split at awkward places", async () => {
    fake.setHandler((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      const events = [
        { choices: [{ index: 0, delta: { role: "assistant", content: null }, finish_reason: null }] },
        { choices: [{ index: 0, delta: { content: "Hel" }, finish_reason: null }] },
        { choices: [{ index: 0, delta: { content: "lo ✓" }, finish_reason: null }] },
        { choices: [{ index: 0, delta: {}, finish_reason: "stop" }] },
        { choices: [], usage: { prompt_tokens: 4, completion_tokens: 2 } },
      ];
      const wire = `: comment\r\n${events.map((e) => `data: ${JSON.stringify(e)}\r\n\r\n`).join("")}data: [DONE]\r\n\r\n`;
      const bytes = Buffer.from(wire, "utf8");
      // Send 7-byte pieces so CRLFs and the multi-byte ✓ are split across chunks.
      for (let i = 0; i < bytes.length; i += 7) res.write(bytes.subarray(i, i + 7));
      res.end();
    });
    const pieces: string[] = [];
    const out = await model.generate({ messages, onText: (t) => pieces.push(t) });
    expect(pieces).toEqual(["Hel", "lo ✓"]);
    expect(out).toEqual({ text: "Hello ✓", finishReason: "stop", usage: { promptTokens: 4, completionTokens: 2 } });
    expect(fake.requests.at(-1)?.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
  });

  it("maps an error event inside a stream to a retryable HTTP_STATUS", async () => {
    fake.setHandler((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(`data: ${JSON.stringify({ error: { code: 500, message: "output does not match", type: "server_error" } })}\n\n`);
    });
    const err = await failure(() => model.generate({ messages, onText: () => undefined }));
    expect(err.code).toBe("HTTP_STATUS");
    expect(err.retryable).toBe(true);
    expect(err.message).toContain("output does not match");
  });

  it("reports a garbage body as HTTP_BAD_RESPONSE naming the endpoint", async () => {
    fake.setHandler((_req, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.end("<html>definitely not json</html>");
    });
    const err = await failure(() => model.generate({ messages }));
    expect(err.code).toBe("HTTP_BAD_RESPONSE");
    expect(err.message).toContain(`${fake.baseUrl}/chat/completions`);
    expect(err.message).toContain("not JSON");

    fake.setHandler((_req, res) => sendJson(res, 200, { choices: [] }));
    const shape = await failure(() => model.generate({ messages }));
    expect(shape.code).toBe("HTTP_BAD_RESPONSE");
    expect(shape.message).toContain("unexpected shape");
  });

  it("maps 500 and 429 to retryable HTTP_STATUS, 401 to non-retryable", async () => {
    fake.setHandler((_req, res) => sendJson(res, 500, { error: { message: "engine exploded", code: 500 } }));
    const e500 = await failure(() => model.generate({ messages }));
    expect(e500).toMatchObject({ code: "HTTP_STATUS", retryable: true, details: { status: 500 } });
    expect(e500.message).toContain("engine exploded");
    expect(e500.message).toContain(fake.baseUrl);

    fake.setHandler((_req, res) => sendJson(res, 429, { error: { message: "slow down" } }, { "retry-after": "2" }));
    const e429 = await failure(() => model.generate({ messages }));
    expect(e429).toMatchObject({ code: "HTTP_STATUS", retryable: true, details: { status: 429, retryAfterMs: 2000 } });

    // Like the OpenAI API, this server quotes the key it rejected; the error must not.
    fake.setHandler((_req, res) => sendJson(res, 401, { error: { message: `Incorrect API key provided: ${apiKey}` } }));
    const e401 = await failure(() => model.generate({ messages }));
    expect(e401).toMatchObject({ code: "HTTP_STATUS", retryable: false, details: { status: 401 } });
    expect(e401.message).toContain("[redacted]");
  });

  it("times out on a hanging server, and on a stream that stalls", async () => {
    fake.setHandler(() => undefined);
    const quick = new OpenAICompatibleModel({ baseUrl: fake.baseUrl, model: "fake", apiKey, timeoutMs: 300 });
    const hang = await failure(() => quick.generate({ messages }));
    expect(hang).toMatchObject({ code: "TIMEOUT", retryable: true });
    expect(hang.message).toContain(fake.baseUrl);

    fake.setHandler((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: "a" }, finish_reason: null }] })}\n\n`);
    });
    const stall = await failure(() => quick.generate({ messages, onText: () => undefined }));
    expect(stall.code).toBe("TIMEOUT");
  });

  it("reports the caller's abort as ABORTED", async () => {
    fake.setHandler(() => undefined);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const err = await failure(() => model.generate({ messages, signal: controller.signal }));
    expect(err.code).toBe("ABORTED");
    expect(err.retryable).toBe(false);
  });

  it("reports a closed port as retryable HTTP_UNREACHABLE", async () => {
    const other = await startFakeServer(() => undefined);
    const deadUrl = other.baseUrl;
    await other.close();
    const dead = new OpenAICompatibleModel({ baseUrl: deadUrl, model: "fake", apiKey });
    const err = await failure(() => dead.generate({ messages }));
    expect(err).toMatchObject({ code: "HTTP_UNREACHABLE", retryable: true });
    expect(err.message).toContain(`${deadUrl}/chat/completions`);
    expect(err.message).toMatch(/ECONNREFUSED/);
  });

  it("sends json_schema and repairs one invalid reply", async () => {
    const schema = z.object({ answer: z.string().max(5) });
    const replies = ['{"answer": "far too long"}', '{"answer": "ok"}'];
    fake.setHandler((_req, res) => sendJson(res, 200, chatBody(replies.shift() ?? "{}")));
    const before = fake.requests.length;
    const out = await model.generateObject({ messages, schema, schemaName: "my schema" });
    expect(out.object).toEqual({ answer: "ok" });
    expect(out.usage).toEqual({ promptTokens: 10, completionTokens: 6 });
    const [first, second] = fake.requests.slice(before).map((r) => r.body as Record<string, unknown>);
    expect(first?.response_format).toEqual({
      type: "json_schema",
      json_schema: {
        name: "my_schema",
        strict: true,
        schema: {
          type: "object",
          properties: { answer: { type: "string", maxLength: 5 } },
          required: ["answer"],
          additionalProperties: false,
        },
      },
    });
    const repairTurns = (second?.messages as { role: string; content: string }[]).slice(1);
    expect(repairTurns[0]).toEqual({ role: "assistant", content: '{"answer": "far too long"}' });
    expect(repairTurns[1]?.content).toMatch(/does not match the schema/);
  });

  it("throws OutputInvalidError with the raw text when the repair fails too", async () => {
    fake.setHandler((_req, res) => sendJson(res, 200, chatBody("not json at all")));
    const err = await failure(() => model.generateObject({ messages, schema: z.object({ a: z.number() }) }));
    expect(err).toBeInstanceOf(OutputInvalidError);
    expect(err.code).toBe("OUTPUT_INVALID");
    expect((err as OutputInvalidError).rawText).toBe("not json at all");
  });

  it("states the schema in the prompt in json_object mode and reads fenced JSON", async () => {
    const jsonMode = new OpenAICompatibleModel({ baseUrl: fake.baseUrl, model: "fake", structuredOutput: "json_object" });
    fake.setHandler((_req, res) => sendJson(res, 200, chatBody('```json\n{"n": 3}\n```')));
    const out = await jsonMode.generateObject({ messages, schema: z.object({ n: z.number() }) });
    expect(out.object).toEqual({ n: 3 });
    const body = fake.requests.at(-1)?.body as { response_format: unknown; messages: { role: string; content: string }[] };
    expect(body.response_format).toEqual({ type: "json_object" });
    expect(body.messages[0]?.role).toBe("system");
    expect(body.messages[0]?.content).toContain('"n"');
  });

  it("sums exactly the continuation tokens from echoed logprobs", async () => {
    // prompt "The capital is Paris" → tokens The| capital| is| Par|is, then one generated token "." at offset 20.
    const canned: Record<string, unknown> = {
      "The capital is Paris": {
        tokens: ["The", " capital", " is", " Par", "is", "."],
        token_logprobs: [null, -2.5, -1.0, -0.75, -0.125, -9],
        top_logprobs: [null, { " city": -1 }, { " is": -1 }, { " Par": -0.75 }, { is: -0.125 }, { ".": -9 }],
        text_offset: [0, 3, 11, 14, 18, 20],
      },
      // "🇫🇷" is 2 code points but 4 UTF-16 units: offsets are in code points, as Python servers count.
      "🇫🇷 is Lyon": {
        tokens: ["🇫🇷", " is", " Lyon", "!"],
        token_logprobs: [null, -1.5, -3.25, -7],
        top_logprobs: [null, { " is": -1.5 }, { " Paris": -0.5 }, { "!": -7 }],
        text_offset: [0, 2, 5, 10],
      },
    };
    fake.setHandler((req, res) => {
      const prompt = (req.body as { prompt: string }).prompt;
      sendJson(res, 200, {
        object: "text_completion",
        choices: [{ index: 0, text: `${prompt}.`, logprobs: canned[prompt], finish_reason: "length" }],
        usage: { prompt_tokens: 5, completion_tokens: 1 },
      });
    });
    const scorer = new OpenAICompatibleModel({ baseUrl: fake.baseUrl, model: "fake", apiKey, scoring: "echo" });
    const paris = await scorer.scoreContinuations!({ context: "The capital is ", continuations: ["Paris"] });
    expect(paris.scores).toEqual([{ logprob: -0.875, tokenCount: 2, isGreedy: true }]);
    expect(fake.requests.at(-1)?.body).toMatchObject({ prompt: "The capital is Paris", echo: true, logprobs: 1 });
    // The same split when the space is on the continuation's side.
    const spaced = await scorer.scoreContinuations!({ context: "The capital is", continuations: [" Paris"] });
    expect(spaced.scores).toEqual(paris.scores);
    const lyon = await scorer.scoreContinuations!({ context: "🇫🇷 is", continuations: [" Lyon"] });
    expect(lyon.scores).toEqual([{ logprob: -3.25, tokenCount: 1, isGreedy: false }]);
    expect(lyon.usage).toEqual({ promptTokens: 5, completionTokens: 1 });

    // Older llama-server builds refuse `echo` with an error instead of ignoring it.
    fake.setHandler((_req, res) => sendJson(res, 500, { error: { code: 500, message: "Only no echo is supported" } }));
    const refused = await failure(() => scorer.scoreContinuations!({ context: "a", continuations: [" b", " c"] }));
    expect(refused.code).toBe("CAPABILITY_MISSING");
    expect(refused.message).toMatch(/does not support echo\+logprobs.*Only no echo is supported/);
  });

  it("only offers scoring and embeddings when configured", async () => {
    expect([...model.capabilities].sort()).toEqual(["classify", "generate", "generateObject", "stream"]);
    expect(model.scoreContinuations).toBeUndefined();
    expect(model.embed).toBeUndefined();
    fake.setHandler((_req, res) =>
      sendJson(res, 200, { data: [{ index: 1, embedding: [0, 1] }, { index: 0, embedding: [1, 0] }] }),
    );
    const embedder = new OpenAICompatibleModel({ baseUrl: fake.baseUrl, model: "fake", embeddings: true });
    expect(embedder.capabilities.has("embed")).toBe(true);
    expect((await embedder.embed!(["x", "y"])).embeddings).toEqual([[1, 0], [0, 1]]);
  });

  it("sends a conversation to classify as it is, with its template variables as chat_template_kwargs", async () => {
    fake.setHandler((_req, res) => sendJson(res, 200, chatBody("unsafe\nS2")));
    const before = fake.requests.length;
    const messages = [
      { role: "user" as const, content: "How do I pick a lock?" },
      { role: "assistant" as const, content: "Rake the pins." },
    ];
    const result = await model.generate({ messages, classify: { templateVars: { guideline: "No break-ins." } }, maxTokens: 16 });
    expect(result.text).toBe("unsafe\nS2");
    const body = fake.requests[before]?.body as Record<string, unknown>;
    expect(body.messages).toEqual(messages);
    expect(body.chat_template_kwargs).toEqual({ guideline: "No break-ins." });
    // Without template variables nothing extra is sent; scoring a chat-rendered prompt is not offered.
    await model.generate({ messages, classify: {}, maxTokens: 16 });
    expect(fake.requests[before + 1]?.body).not.toHaveProperty("chat_template_kwargs");
    const echo = new OpenAICompatibleModel({ baseUrl: fake.baseUrl, model: "fake", scoring: "echo" });
    await expect(echo.scoreContinuations!({ context: "", continuations: ["safe"], chat: { messages } })).rejects.toThrow(/scoreChat/);
  });

  it("never puts the API key in an error message or its details", () => {
    expect(errors.length).toBeGreaterThanOrEqual(10);
    for (const err of errors) {
      const visible = JSON.stringify({ message: err.message, details: err.details, stack: err.stack, cause: String(err.cause) });
      expect(visible).not.toContain(apiKey);
    }
  });
});

describe("retries that follow the server's Retry-After, and API roots with a query", () => {
  let server: FakeServer;
  const arrivals: number[] = [];
  beforeAll(async () => {
    server = await startFakeServer((_req, res) => res.end());
  });
  afterAll(async () => {
    await server.close();
  });

  it("waits the seconds of Retry-After (not a blind backoff) before retrying a 429", async () => {
    arrivals.length = 0;
    let n = 0;
    server.setHandler((_req, res) => {
      arrivals.push(Date.now());
      if (n++ < 2) sendJson(res, 429, { error: { message: "slow down" } }, { "retry-after": "1" });
      else sendJson(res, 200, chatBody("ok"));
    });
    const model = applyMiddleware(new OpenAICompatibleModel({ baseUrl: server.baseUrl, model: "m" }), { retry: { maxRetries: 3, baseDelayMs: 10 }, timeout: { timeoutMs: 10_000 } });
    const result = await model.generate({ messages: [{ role: "user", content: "hi" }] });
    expect(result.text).toBe("ok");
    expect(arrivals).toHaveLength(3);
    for (let i = 1; i < arrivals.length; i++) {
      const gap = (arrivals[i] as number) - (arrivals[i - 1] as number);
      expect(gap, `retry ${i}`).toBeGreaterThanOrEqual(990);
      expect(gap, `retry ${i}`).toBeLessThan(1500);
    }
  });

  it("prefers retry-after-ms, and caps a wait longer than the call's timeout", async () => {
    arrivals.length = 0;
    let n = 0;
    server.setHandler((_req, res) => {
      arrivals.push(Date.now());
      if (n++ === 0) sendJson(res, 429, { error: { message: "slow down" } }, { "retry-after-ms": "300", "retry-after": "30" });
      else if (n === 2) sendJson(res, 503, { error: { message: "busy" } }, { "retry-after": "3600" });
      else sendJson(res, 200, chatBody("ok"));
    });
    const model = applyMiddleware(new OpenAICompatibleModel({ baseUrl: server.baseUrl, model: "m" }), {
      retry: { maxRetries: 3, baseDelayMs: 10, maxRetryAfterMs: 400 },
      timeout: { timeoutMs: 10_000 },
    });
    await model.generate({ messages: [{ role: "user", content: "hi" }] });
    const gaps = arrivals.slice(1).map((t, i) => t - (arrivals[i] as number));
    expect(gaps[0]).toBeGreaterThanOrEqual(295);
    expect(gaps[0]).toBeLessThan(800);
    // An hour asked for, 400 ms allowed.
    expect(gaps[1]).toBeGreaterThanOrEqual(395);
    expect(gaps[1]).toBeLessThan(900);
  });

  it("retries a malformed 200 response like a 5xx", async () => {
    let n = 0;
    server.setHandler((_req, res) => {
      if (n++ === 0) {
        res.writeHead(200, { "content-type": "application/json" });
        res.end('{"choices":[{"message":');
      } else sendJson(res, 200, chatBody("fine"));
    });
    const model = applyMiddleware(new OpenAICompatibleModel({ baseUrl: server.baseUrl, model: "m" }), { retry: { maxRetries: 2, baseDelayMs: 1 }, timeout: { timeoutMs: 10_000 } });
    expect((await model.generate({ messages: [{ role: "user", content: "hi" }] })).text).toBe("fine");
    expect(n).toBe(2);
  });

  it("keeps the root's query parameters on every endpoint URL", async () => {
    const paths: string[] = [];
    server.setHandler((req, res) => {
      paths.push(req.path);
      sendJson(res, 200, chatBody("ok"));
    });
    const model = new OpenAICompatibleModel({ baseUrl: `${server.baseUrl}/?api-version=2024-10-21`, model: "m" });
    await model.generate({ messages: [{ role: "user", content: "hi" }] });
    expect(paths).toEqual(["/chat/completions?api-version=2024-10-21"]);
    expect(endpointUrl("https://h.example/v1?api-version=2", "/files?limit=2")).toBe("https://h.example/v1/files?api-version=2&limit=2");
  });

  it("refuses a root with a user name or password", () => {
    expect(() => new OpenAICompatibleModel({ baseUrl: "http://user:hunter2@127.0.0.1:1/v1", model: "m" })).toThrow(/must not contain a user name or password/);
  });
});
