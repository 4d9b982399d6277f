import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadMultipleChoiceJsonl, multipleChoiceJsonlBenchmark } from "../../src/eval/custom-mc.js";
import { mc1FromLogprobs, mc2FromLogprobs } from "../../src/eval/multiple-choice.js";
import type { LlamaCppModel } from "../../src/providers/llama-cpp/llama-cpp-model.js";
import { IterAlignError } from "../../src/spec/errors.js";
import { CapabilityMissingError } from "../../src/spec/language-model.js";
import { loadFixtureModel } from "../helpers/models.js";
import { modelDouble } from "./fixtures/doubles.js";

const FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "custom-mc.jsonl");
const GOOD = { context: "Q: 1+1?\nA:", choices: ["2", "3"], label: 0 };

describe("multiple-choice JSONL loader", () => {
  it("reads label and labels, ids (default: the line number), categories; skips blank lines", async () => {
    const items = await loadMultipleChoiceJsonl(FILE);
    expect(items.map((i) => [i.id, i.labels, i.category])).toEqual([
      ["capital", [0], "geography"],
      ["2", [0, 2], "math"],
      ["7", [0], "biology"],
    ]);
    expect(items[1]!.question).toBe("Which of these is a prime number?");
  });

  // [line content, the field the error must name, a phrase of the problem]
  const BAD: ReadonlyArray<readonly [string, string, string]> = [
    ["{nope", "not JSON", "not JSON"],
    ["[1, 2]", "JSON object", "JSON object"],
    [JSON.stringify({ ...GOOD, context: 5 }), "field 'context'", "must be a string"],
    [JSON.stringify({ ...GOOD, context: "  " }), "field 'context'", "is empty"],
    [JSON.stringify({ ...GOOD, choices: "2" }), "field 'choices'", "array of strings"],
    [JSON.stringify({ ...GOOD, choices: ["2"] }), "field 'choices'", "at least 2"],
    [JSON.stringify({ ...GOOD, choices: ["2", ""] }), "field 'choices[1]'", "non-empty string"],
    [JSON.stringify({ ...GOOD, choices: ["2", "2"] }), "field 'choices'", "same choice twice"],
    [JSON.stringify({ context: "c", choices: ["a", "b"] }), "field 'label'", "missing"],
    [JSON.stringify({ ...GOOD, label: 2 }), "field 'label'", "choice index 0..1"],
    [JSON.stringify({ ...GOOD, label: "0" }), "field 'label'", "choice index"],
    [JSON.stringify({ ...GOOD, labels: [0] }), "field 'labels'", "not both"],
    [JSON.stringify({ context: "c", choices: ["a", "b", "c"], labels: [] }), "field 'labels'", "non-empty array"],
    [JSON.stringify({ context: "c", choices: ["a", "b", "c"], labels: [0, 3] }), "field 'labels[1]'", "choice index"],
    [JSON.stringify({ context: "c", choices: ["a", "b"], labels: [0, 1] }), "field 'labels'", "every choice is true"],
    [JSON.stringify({ ...GOOD, id: { x: 1 } }), "field 'id'", "string or a number"],
    [JSON.stringify({ ...GOOD, category: 3 }), "field 'category'", "must be a string"],
  ];

  it.each(BAD)("a bad line (%s) names file:line and the field", async (line, field, problem) => {
    const dir = mkdtempSync(path.join(tmpdir(), "mc-"));
    const file = path.join(dir, "bench.jsonl");
    writeFileSync(file, `${JSON.stringify(GOOD)}\n\n${line}\n`);
    const err = await loadMultipleChoiceJsonl(file).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(IterAlignError);
    const e = err as IterAlignError;
    expect(e.code).toBe("DATA_INVALID");
    expect(e.message.startsWith(`${file}:3: `)).toBe(true);
    expect(e.message).toContain(field);
    expect(e.message).toContain(problem);
    expect(e.details).toMatchObject({ file, line: 3 });
  });

  it("rejects a repeated id, naming both lines", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "mc-"));
    const file = path.join(dir, "bench.jsonl");
    writeFileSync(file, `${JSON.stringify({ ...GOOD, id: "a" })}\n${JSON.stringify({ ...GOOD, id: "a" })}\n`);
    await expect(loadMultipleChoiceJsonl(file)).rejects.toThrow(`${file}:2: field 'id': 'a' is also the id on line 1`);
  });

  it("rejects an empty file", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "mc-"));
    const file = path.join(dir, "empty.jsonl");
    writeFileSync(file, "\n\n");
    await expect(loadMultipleChoiceJsonl(file)).rejects.toThrow(/no items/);
  });
});

describe("multipleChoiceJsonlBenchmark (model double)", () => {
  it("is named mc:<file name>, needs scoreContinuations (loglik) or generate (generative)", async () => {
    const bench = multipleChoiceJsonlBenchmark({ file: FILE });
    expect(bench.name).toBe("mc:custom-mc");
    expect(multipleChoiceJsonlBenchmark({ file: FILE, name: "mine" }).name).toBe("mc:mine");
    expect(bench.requires("loglik")).toEqual(["scoreContinuations"]);
    expect(bench.requires("generative")).toEqual(["generate"]);
    const model = modelDouble({ capabilities: ["generate"] });
    await expect(bench.run({ model }, { mode: "loglik" })).rejects.toBeInstanceOf(CapabilityMissingError);
    expect(model.calls.generate).toHaveLength(0);
  });

  it("MC1 counts any true choice; MC2 is reported with one or several true choices", async () => {
    // The double's shortest continuation wins, the first on ties: " Lyon." (1, false), " 2" (0, true among
    // [0, 2]), " Six." (1, false).
    const model = modelDouble();
    const result = await multipleChoiceJsonlBenchmark({ file: FILE }).run({ model }, { mode: "loglik" });
    expect(model.calls.score[0]!.continuations).toEqual([" Paris.", " Lyon.", " Marseille."]);
    expect(result.items.map((i) => [i.prediction, i.label, i.correct])).toEqual([
      [1, 0, false],
      [0, "0|2", true],
      [1, 0, false],
    ]);
    const overall = result.metrics.filter((m) => m.category === undefined);
    expect(overall.map((m) => m.name)).toEqual(["mc1", "mc2"]);
    expect(overall[0]!.value).toBeCloseTo(1 / 3, 12);
    expect(result.metrics.filter((m) => m.category !== undefined).map((m) => `${m.category}:${m.name}`)).toEqual([
      "biology:mc1",
      "biology:mc2",
      "geography:mc1",
      "geography:mc2",
      "math:mc1",
      "math:mc2",
    ]);
  });

  it("generative: the item's question (when given) above the lettered options", async () => {
    const model = modelDouble({ answer: () => "B" });
    const result = await multipleChoiceJsonlBenchmark({ file: FILE }).run({ model }, { mode: "generative", limit: 2 });
    const prompts = model.calls.generate.map((r) => r.messages[0]!.content);
    expect(prompts.some((p) => p.includes("Question: Which of these is a prime number?"))).toBe(true);
    expect(prompts.some((p) => p.includes("Question: Q: What is the capital of France?\nA:"))).toBe(true);
    expect(result.metrics.filter((m) => m.category === undefined).map((m) => m.name)).toEqual(["mc1", "unparsed"]);
  });
});

describe("multipleChoiceJsonlBenchmark on the tiny model", () => {
  let model: LlamaCppModel;
  beforeAll(async () => {
    model = await loadFixtureModel("tiny-qwen2");
  });
  afterAll(async () => {
    await model.close();
  });

  it("MC1 and MC2 recomputed from the per-choice scores equal the reported ones", async () => {
    const result = await multipleChoiceJsonlBenchmark({ file: FILE }).run({ model }, { mode: "loglik" });
    let mc1 = 0;
    let mc2 = 0;
    for (const item of result.items) {
      const d = item.details as { choices: Array<{ logprob: number; tokenCount: number }>; mc1Labels: number[]; mc2Labels: number[] };
      const lls = d.choices.map((c) => c.logprob);
      const all = lls.map((_, i) => i);
      for (const c of d.choices) expect(c.tokenCount).toBeGreaterThan(0);
      if (mc1FromLogprobs(lls, { choices: all, labels: d.mc1Labels }).correct) mc1++;
      mc2 += mc2FromLogprobs(lls, { choices: all, labels: d.mc2Labels });
    }
    const get = (name: string) => result.metrics.find((m) => m.name === name && m.category === undefined)!;
    expect(get("mc1").value).toBeCloseTo(mc1 / 3, 12);
    expect(get("mc2").value).toBeCloseTo(mc2 / 3, 12);
    expect(get("mc1").mode).toBe("loglik");
  });

  it("generative end to end: answers kept, unparsed ones wrong", async () => {
    const result = await multipleChoiceJsonlBenchmark({ file: FILE, maxTokens: 8 }).run({ model }, { mode: "generative" });
    for (const item of result.items) {
      expect(typeof (item.details as { answer: unknown }).answer).toBe("string");
      if (item.prediction === null) expect(item.correct).toBe(false);
    }
    const unparsed = result.metrics.find((m) => m.name === "unparsed" && m.category === undefined)!;
    expect(unparsed.value).toBe(result.items.filter((i) => i.prediction === null).length / 3);
  });
});
