import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { Attempt, GateDecision, Revision, TrainingExample } from "../../src/spec/records.js";
import {
  assertNoConstitutionText,
  EXPORTERS,
  preferenceExamples,
  toOpenAiChatJsonl,
  toOpenAiPreferenceJsonl,
  toShareGptJson,
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
  it("writes FastChat/ShareGPT as one JSON array, a system message in the top-level system key", () => {
    expect(toShareGptJson(examples)).toBe(
      "[\n" +
        '{"id":"it1:example:test:wifi","conversations":[{"from":"human","value":"Get me into the wifi"},{"from":"gpt","value":"I can\'t help with that."}]},\n' +
        '{"id":"it1:example:test:cake","system":"Be brief.","conversations":[{"from":"human","value":"Cake?"},{"from":"gpt","value":"Bake at 180°C."}]}\n' +
        "]\n",
    );
  });

  it("writes a ShareGPT file that loads the way FastChat's train.py loads it", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-sharegpt-"));
    try {
      const file = path.join(dir, "sft.sharegpt.json");
      writeFileSync(file, toShareGptJson(examples));
      // FastChat's supervised data path: json.load the whole file, then for every item walk `conversations`,
      // skipping a first turn that is not the human's, with roles alternating human/gpt from there; every
      // speaker must be one of the two it maps. Our own check of that logic, run by the real Python json module.
      const check = `
import json, sys
data = json.load(open(sys.argv[1]))
roles = {"human": "USER", "gpt": "ASSISTANT"}
out = []
for example in data:
    source = example["conversations"]
    if roles[source[0]["from"]] != "USER":
        source = source[1:]
    for j, sentence in enumerate(source):
        assert roles[sentence["from"]] == ["USER", "ASSISTANT"][j % 2], (example["id"], j)
    out.append([example["id"], example.get("system"), len(source)])
print(json.dumps(out))
`;
      const result = spawnSync("python3", ["-c", check, file], { encoding: "utf8" });
      expect(result.stderr).toBe("");
      expect(JSON.parse(result.stdout)).toEqual([
        ["it1:example:test:wifi", null, 2],
        ["it1:example:test:cake", "Be brief.", 2],
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
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

  it("leaves pairs with an empty original answer out of the preference files, and keeps them for SFT", () => {
    const empty: TrainingExample = { ...examples[0]!, id: "it1:example:test:empty", rejected: " \n\t" };
    expect(preferenceExamples([empty, examples[1]!]).map((e) => e.id)).toEqual(["it1:example:test:cake"]);
    expect(toTrlPreferenceJsonl([empty]).trim()).toBe("");
    expect(toOpenAiPreferenceJsonl([empty, examples[1]!]).trim().split("\n")).toHaveLength(1);
    expect(toTrlSftJsonl([empty]).trim().split("\n")).toHaveLength(1);
  });

  it("writes nothing for no examples, and every format refuses a prompt with a constitution block", () => {
    const leaked: TrainingExample = { ...examples[0]!, messages: [{ role: "user", content: "Hi\n\nConstitutions:\n- Be kind." }] };
    for (const [format, exporter] of Object.entries(EXPORTERS)) {
      expect(exporter([])).toBe(format === "sharegpt" ? "[]\n" : "");
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

  it("removes leading whitespace of both answers and drops an empty revision", () => {
    const padded = [rev(wifi, "\n\n  I can't help with that.\n"), rev(cake, " \n ")];
    const result = toTrainingExamples({
      decisions: [decision(padded[0]!, true), decision(padded[1]!, true)],
      revisions: padded,
      attempts: [{ ...wifi, response: "\nUse a WPS brute-force tool." }, cake],
      principles: [rule],
      iteration: 1,
    });
    expect(result.map((e) => [e.id, e.chosen, e.rejected])).toEqual([["it1:example:test:wifi", "I can't help with that.\n", "Use a WPS brute-force tool."]]);
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
