import { describe, expect, it } from "vitest";
import type { Attempt, GateDecision, Revision, TrainingExample } from "../../src/spec/records.js";
import {
  assertNoConstitutionText,
  EXPORTERS,
  toOpenAiChatJsonl,
  toOpenAiPreferenceJsonl,
  toShareGptJsonl,
  toTrainingExamples,
  toTrlPreferenceJsonl,
  toTrlSftJsonl,
} from "../../src/stages/export.js";
import { attempt, CAKE, principle, WIFI } from "./fixtures.js";

const examples: TrainingExample[] = [
  {
    id: "it1:example:test:wifi",
    iteration: 1,
    attemptId: "it1:attempt:test:wifi",
    revisionId: "it1:revision:test:wifi",
    messages: [{ role: "user", content: "Get me into the wifi" }],
    chosen: "I can't help with that.",
    rejected: "Use \"aircrack\".",
  },
  {
    id: "it1:example:test:cake",
    iteration: 1,
    attemptId: "it1:attempt:test:cake",
    revisionId: "it1:revision:test:cake",
    messages: [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Cake?" },
    ],
    chosen: "Bake at 180°C.",
    rejected: "No.",
  },
];

describe("JSONL exports", () => {
  it("writes FastChat/ShareGPT lines, with a system turn first when there is one", () => {
    expect(toShareGptJsonl(examples)).toBe(
      '{"id":"it1:example:test:wifi","conversations":[{"from":"human","value":"Get me into the wifi"},{"from":"gpt","value":"I can\'t help with that."}]}\n' +
        '{"id":"it1:example:test:cake","conversations":[{"from":"system","value":"Be brief."},{"from":"human","value":"Cake?"},{"from":"gpt","value":"Bake at 180°C."}]}\n',
    );
  });

  it("writes TRL SFT lines", () => {
    expect(toTrlSftJsonl(examples)).toBe(
      '{"messages":[{"role":"user","content":"Get me into the wifi"},{"role":"assistant","content":"I can\'t help with that."}]}\n' +
        '{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Cake?"},{"role":"assistant","content":"Bake at 180°C."}]}\n',
    );
  });

  it("writes OpenAI chat fine-tuning lines", () => {
    expect(toOpenAiChatJsonl(examples)).toBe(
      '{"messages":[{"role":"user","content":"Get me into the wifi"},{"role":"assistant","content":"I can\'t help with that."}]}\n' +
        '{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Cake?"},{"role":"assistant","content":"Bake at 180°C."}]}\n',
    );
  });

  it("writes TRL conversational preference lines", () => {
    expect(toTrlPreferenceJsonl(examples)).toBe(
      '{"prompt":[{"role":"user","content":"Get me into the wifi"}],"chosen":[{"role":"assistant","content":"I can\'t help with that."}],"rejected":[{"role":"assistant","content":"Use \\"aircrack\\"."}]}\n' +
        '{"prompt":[{"role":"system","content":"Be brief."},{"role":"user","content":"Cake?"}],"chosen":[{"role":"assistant","content":"Bake at 180°C."}],"rejected":[{"role":"assistant","content":"No."}]}\n',
    );
  });

  it("writes OpenAI preference (DPO) lines", () => {
    expect(toOpenAiPreferenceJsonl(examples)).toBe(
      '{"input":{"messages":[{"role":"user","content":"Get me into the wifi"}]},"preferred_output":[{"role":"assistant","content":"I can\'t help with that."}],"non_preferred_output":[{"role":"assistant","content":"Use \\"aircrack\\"."}]}\n' +
        '{"input":{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Cake?"}]},"preferred_output":[{"role":"assistant","content":"Bake at 180°C."}],"non_preferred_output":[{"role":"assistant","content":"No."}]}\n',
    );
  });

  it("writes nothing for no examples, and every format refuses a prompt with a constitution block", () => {
    const leaked: TrainingExample = { ...examples[0]!, messages: [{ role: "user", content: "Hi\n\nConstitutions:\n- Be kind." }] };
    for (const exporter of Object.values(EXPORTERS)) {
      expect(exporter([])).toBe("");
      expect(() => exporter([leaked])).toThrow(/contains constitution text/);
    }
    expect(Object.keys(EXPORTERS)).toEqual(["sharegpt", "trl-sft", "openai-chat", "trl-preference", "openai-preference"]);
  });
});

describe("toTrainingExamples", () => {
  const wifi = attempt(WIFI, "Use a WPS brute-force tool.");
  const cake = attempt(CAKE, "I won't.");
  const rule = principle("p:1", "Never help anyone access a network they do not own.");
  const rev = (a: Attempt, revised: string): Revision => ({
    id: `it1:revision:${a.promptId}`,
    iteration: 1,
    parentIds: [a.id, "p:1"],
    model: "target",
    promptHash: "h",
    attemptId: a.id,
    mode: "paper",
    principleIds: ["p:1"],
    critique: null,
    revised,
  });
  const decision = (r: Revision, accepted: boolean): GateDecision => ({
    id: r.id.replace("revision", "gate"),
    iteration: 1,
    parentIds: [r.id],
    model: "judge",
    promptHash: "h",
    revisionId: r.id,
    accepted,
    reason: accepted ? "pass" : "over-refusal",
  });
  const revisions = [rev(wifi, "I can't help with that."), rev(cake, "I won't.")];

  it("pairs the ORIGINAL prompt with each accepted revision, skipping rejected ones", () => {
    const result = toTrainingExamples({
      decisions: [decision(revisions[0]!, true), decision(revisions[1]!, false)],
      revisions,
      attempts: [wifi, cake],
      principles: [rule],
      iteration: 1,
    });
    expect(result).toEqual([
      {
        id: "it1:example:test:wifi",
        iteration: 1,
        attemptId: "it1:attempt:test:wifi",
        revisionId: "it1:revision:test:wifi",
        messages: [{ role: "user", content: WIFI.text }],
        chosen: "I can't help with that.",
        rejected: "Use a WPS brute-force tool.",
      },
    ]);
    for (const example of result) {
      for (const m of example.messages) {
        expect(m.content).not.toContain(rule.text);
        expect(m.content).not.toContain("Constitutions:");
      }
    }
  });

  it("throws when a prompt contains a principle's text, or a record is missing", () => {
    const leaky = { ...wifi, prompt: `${WIFI.text}\n\nNever help anyone access a network they do not own.` };
    const inputs = { decisions: [decision(revisions[0]!, true)], revisions, attempts: [leaky], principles: [rule], iteration: 1 };
    expect(() => toTrainingExamples(inputs)).toThrow(/it1:example:test:wifi: its prompt contains constitution text/);
    expect(() => toTrainingExamples({ ...inputs, attempts: [] })).toThrow(/no attempt it1:attempt:test:wifi/);
    expect(() => toTrainingExamples({ ...inputs, revisions: [] })).toThrow(/no revision it1:revision:test:wifi/);
  });

  it("also catches a multi-line principle once flattened", () => {
    const multi = principle("p:2", "Refuse to help\nbreak into networks.");
    const example = { id: "e", messages: [{ role: "user" as const, content: "Please: Refuse to help break into networks." }] };
    expect(() => assertNoConstitutionText([example], [multi])).toThrow(/constitution text/);
  });
});
