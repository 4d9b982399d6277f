import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { toGrammarSchema } from "../../src/providers/llama-cpp/json-schema-grammar.js";
import type { LlamaCppModel } from "../../src/providers/llama-cpp/llama-cpp-model.js";
import { loadFixtureModel } from "../helpers/models.js";

const short = () => z.string().max(24);

/** Twenty schemas of the shapes the loop and benchmarks ask for, each with its own prompt. */
const CASES: Array<{ prompt: string; schema: z.ZodType }> = [
  { prompt: "Judge this answer.", schema: z.object({ pass: z.boolean() }) },
  { prompt: "Give a verdict and a reason.", schema: z.object({ verdict: z.enum(["pass", "fail"]), reason: short() }) },
  { prompt: "Rate the harm from 1 to 5.", schema: z.object({ score: z.number() }) },
  { prompt: "Count the refusals.", schema: z.object({ count: z.number().int() }) },
  {
    prompt: "Which of the three H's are violated?",
    schema: z.object({ violated: z.array(z.enum(["harmless", "honest", "helpful"])).max(3) }),
  },
  {
    prompt: "Classify the severity.",
    schema: z.object({ severity: z.enum(["none", "low", "medium", "high", "critical"]), confident: z.boolean() }),
  },
  { prompt: "Name a principle.", schema: z.object({ title: short(), principle: z.string().max(60) }) },
  {
    prompt: "Propose up to three constitutions.",
    schema: z.object({
      constitutions: z.array(z.object({ title: short(), text: short() })).min(1).max(3),
    }),
  },
  { prompt: "List failure ids.", schema: z.object({ ids: z.array(z.string().max(8)).max(4) }) },
  { prompt: "Answer with a letter.", schema: z.object({ answer: z.enum(["A", "B", "C", "D"]) }) },
  { prompt: "Is this a refusal?", schema: z.object({ label: z.enum(["full_compliance", "full_refusal", "partial_refusal"]) }) },
  { prompt: "Give optional notes.", schema: z.object({ notes: short().nullable() }) },
  { prompt: "Return a pair.", schema: z.object({ pair: z.tuple([z.number(), z.boolean()]) }) },
  { prompt: "Give the critique.", schema: z.object({ critique: z.object({ issue: short(), fix: short() }) }) },
  { prompt: "Date of the event?", schema: z.object({ when: z.iso.date() }) },
  { prompt: "Exact kind.", schema: z.object({ kind: z.literal("verdict"), ok: z.boolean() }) },
  { prompt: "Merge decision.", schema: z.object({ same: z.boolean(), merged: short(), keep: z.array(z.number().int()).max(3) }) },
  { prompt: "A bare list of labels.", schema: z.array(z.enum(["safe", "unsafe"])).min(1).max(4) },
  {
    prompt: "Either a pass or a failure record.",
    schema: z.union([
      z.object({ status: z.literal("pass") }),
      z.object({ status: z.literal("fail"), why: short() }),
    ]),
  },
  {
    prompt: "Tags and weights.",
    schema: z.object({ tags: z.array(z.object({ tag: z.string().max(10), weight: z.number() })).max(3), total: z.number() }),
  },
];

describe("generateObject constrains decoding to the schema", () => {
  let qwen: LlamaCppModel;
  let llama: LlamaCppModel;
  beforeAll(async () => {
    qwen = await loadFixtureModel("tiny-qwen2");
    llama = await loadFixtureModel("tiny-llama");
  });
  afterAll(async () => {
    await qwen.close();
    await llama.close();
  });

  it("has twenty distinct cases", () => {
    expect(new Set(CASES.map((c) => JSON.stringify(z.toJSONSchema(c.schema)))).size).toBe(20);
  });

  it.each(CASES.map((c, i) => [i, c] as const))("case %i: output is valid for its schema on random weights", async (i, c) => {
    const model = i % 2 === 0 ? qwen : llama;
    const result = await model.generateObject({
      messages: [{ role: "user", content: c.prompt }],
      schema: c.schema,
      maxTokens: 400,
      seed: i,
    });
    expect(c.schema.safeParse(result.object).success).toBe(true);
    expect(c.schema.parse(JSON.parse(result.text))).toEqual(result.object);
  });

  it("decodes several structured requests in parallel", async () => {
    const schema = z.object({ pass: z.boolean(), reason: short() });
    const results = await Promise.all(
      [0, 1, 2, 3].map((i) => llama.generateObject({ messages: [{ role: "user", content: `Case ${i}` }], schema, maxTokens: 200 })),
    );
    for (const r of results) expect(schema.safeParse(r.object).success).toBe(true);
  });

  it("reports truncated output as OUTPUT_TRUNCATED with the raw text", async () => {
    const schema = z.object({ text: z.string().min(200).max(400) });
    const err = await llama
      .generateObject({ messages: [{ role: "user", content: "Long" }], schema, maxTokens: 8 })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "OUTPUT_TRUNCATED" });
    expect((err as { rawText: string }).rawText.startsWith("{")).toBe(true);
  });
});

describe("JSON schema to grammar schema", () => {
  it("keeps what a grammar can enforce and drops what only validation can", () => {
    const schema = z.toJSONSchema(
      z.object({ n: z.number().min(1).max(5), s: z.string().max(3).regex(/a+/), e: z.enum(["x", "y"]), o: z.string().optional() }),
    );
    expect(toGrammarSchema(schema)).toEqual({
      type: "object",
      properties: {
        n: { type: "number" },
        s: { type: "string", maxLength: 3 },
        e: { enum: ["x", "y"] },
        o: { type: "string" },
      },
      required: ["n", "s", "e"],
    });
  });

  it("rejects schemas a grammar cannot express, naming where", () => {
    expect(() => toGrammarSchema({ allOf: [{ type: "string" }, { type: "number" }] })).toThrow(/at \$.*allOf/);
    expect(() => toGrammarSchema({ $ref: "http://example.com/s.json" })).toThrow(/local/);
  });
});
