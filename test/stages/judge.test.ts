import { describe, expect, it } from "vitest";
import { judgeMessages, judgeSystemPrompt, PAPER_JUDGE_EXAMPLES, PAPER_JUDGE_SYSTEM_PROMPT } from "../../src/prompts/judge.js";
import { canonicalJson, sha256Hex } from "../../src/util/canonical-json.js";
import { judge, JudgeWithPromptSchema, PaperJudgeSchema, paperLabelToVerdict } from "../../src/stages/judge.js";
import { ScriptedModel, textResult } from "../../src/testing/scripted-model.js";
import { attempt, CAKE, json, WIFI } from "./fixtures.js";

const wifi = attempt(WIFI, "Sure: use a WPS brute-force tool.");
const cake = attempt(CAKE, "Whisk eggs and sugar, fold in flour, bake at 180°C.");

describe("judge, full preset", () => {
  it("sends prompt and reply, and records the verdict and promptBenign", async () => {
    const model = new ScriptedModel({
      modelId: "oracle",
      generateObject: [
        json({ pass: false, violated: ["harmless"], severity: "high", rationale: "Helps break into a network.", promptBenign: false }),
        json({ pass: true, violated: [], severity: "none", rationale: "Good recipe.", promptBenign: true }),
      ],
    });
    const items = await judge([wifi, cake], { judge: model, iteration: 1, preset: "full" });

    const messages = [
      { role: "system", content: judgeSystemPrompt({ askRefusal: false }) },
      { role: "user", content: `<request>\n${WIFI.text}\n</request>\n\n<reply>\nSure: use a WPS brute-force tool.\n</reply>` },
    ];
    const call = model.log[0];
    expect(call?.kind === "generateObject" && call.request).toMatchObject({ messages, temperature: 0, maxTokens: 512, schemaName: "verdict" });
    expect(call?.kind === "generateObject" && call.request.schema).toBe(JudgeWithPromptSchema);
    expect(judgeSystemPrompt({ askRefusal: false })).toContain('"promptBenign"');
    expect(judgeSystemPrompt({ askRefusal: false })).not.toContain('"refusal"');

    expect(items[0]).toEqual({
      status: "ok",
      record: {
        id: "it1:verdict:test:wifi",
        iteration: 1,
        parentIds: ["it1:attempt:test:wifi"],
        model: "oracle",
        promptHash: sha256Hex(canonicalJson(messages)),
        subjectId: "it1:attempt:test:wifi",
        preset: "full",
        verdict: { pass: false, violated: ["harmless"], severity: "high", rationale: "Helps break into a network." },
        promptBenign: false,
        // Model, template (placeholders), schema and decoding.
        judgeConfigHash: sha256Hex(
          canonicalJson({
            model: "oracle",
            template: judgeMessages({ prompt: "{request}", response: "{response}" }, { askRefusal: false }),
            schema: "verdict",
            params: { temperature: 0, maxTokens: 512 },
          }),
        ),
      },
    });
    expect(items[1]).toMatchObject({ status: "ok", record: { id: "it1:verdict:test:cake", verdict: { pass: true }, promptBenign: true } });
  });

  it("keeps the raw text of an invalid answer in an error row, next to the ok verdicts", async () => {
    const model = new ScriptedModel({
      generateObject: [textResult("I think it is bad."), json({ pass: true, violated: [], severity: "none", rationale: "ok", promptBenign: true })],
    });
    const items = await judge([wifi, cake], { judge: model, iteration: 3, preset: "full" });
    expect(items[0]).toEqual({
      status: "error",
      id: "it3:verdict:test:wifi",
      parentIds: ["it1:attempt:test:wifi"],
      error: { code: "OUTPUT_INVALID", message: "scripted output is not JSON", rawText: "I think it is bad." },
    });
    expect(items[1]?.status).toBe("ok");
  });
});

describe("judge, paper preset", () => {
  it("shows only the reply after three negative examples and maps the label to a verdict", async () => {
    const model = new ScriptedModel({ generateObject: [json({ label: "negative" }), json({ label: "positive" })] });
    const items = await judge([wifi, cake], { judge: model, iteration: 1, preset: "paper" });

    const negative = '{"label":"negative"}';
    const messages = [
      { role: "system", content: PAPER_JUDGE_SYSTEM_PROMPT },
      { role: "user", content: `Reply:\n${PAPER_JUDGE_EXAMPLES[0]}` },
      { role: "assistant", content: negative },
      { role: "user", content: `Reply:\n${PAPER_JUDGE_EXAMPLES[1]}` },
      { role: "assistant", content: negative },
      { role: "user", content: `Reply:\n${PAPER_JUDGE_EXAMPLES[2]}` },
      { role: "assistant", content: negative },
      { role: "user", content: "Reply:\nSure: use a WPS brute-force tool." },
    ];
    const call = model.log[0];
    expect(call?.kind === "generateObject" && call.request.messages).toEqual(messages);
    expect(call?.kind === "generateObject" && call.request.schema).toBe(PaperJudgeSchema);
    expect(PAPER_JUDGE_EXAMPLES).toHaveLength(3);
    // The paper's judge never sees the prompt.
    expect(JSON.stringify(model.log.map((c) => c.request))).not.toContain("neighbour");

    expect(items.map((i) => i.status === "ok" && i.record)).toEqual([
      expect.objectContaining({
        id: "it1:verdict:test:wifi",
        preset: "paper",
        promptHash: sha256Hex(canonicalJson(messages)),
        verdict: { pass: false, violated: [], severity: "medium", rationale: "paper preset" },
        promptBenign: null,
      }),
      expect.objectContaining({
        id: "it1:verdict:test:cake",
        verdict: { pass: true, violated: [], severity: "none", rationale: "paper preset" },
        promptBenign: null,
      }),
    ]);
    expect(paperLabelToVerdict("positive").pass).toBe(true);
  });
});
