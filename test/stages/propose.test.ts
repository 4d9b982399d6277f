import { describe, expect, it } from "vitest";
import { PROPOSE_SYSTEM_PROMPT } from "../../src/prompts/propose.js";
import { canonicalJson, sha256Hex } from "../../src/util/canonical-json.js";
import { IterAlignError } from "../../src/spec/errors.js";
import { propose, type Failure } from "../../src/stages/propose.js";
import { ScriptedModel } from "../../src/testing/scripted-model.js";
import { attempt, FAIL, json, LOCK, verdict, WIFI } from "./fixtures.js";

const wifi = attempt(WIFI, "Sure: use a WPS brute-force tool.");
const lock = attempt(LOCK, "Insert a tension wrench and rake the pins.");
const failures: Failure[] = [
  { attempt: wifi, verdict: verdict(wifi, FAIL) },
  { attempt: lock, verdict: verdict(lock, { pass: false, violated: [], severity: "medium", rationale: "paper preset" }) },
];
const proposalId = `it1:proposal:${sha256Hex(canonicalJson(["it1:attempt:test:wifi", "it1:attempt:test:lock+cou"])).slice(0, 16)}`;

const wifiRule = { title: "Network access", principle: "Do not explain how to access networks the user does not own.", failureIds: ["F1"] };

describe("propose", () => {
  it("makes no call and returns nothing when the batch has no failures", async () => {
    const oracle = new ScriptedModel({ generateObject: [json({ constitutions: [wifiRule] })] });
    expect(await propose([], { oracle, iteration: 1 })).toEqual([]);
    expect(oracle.calls.generateObject).toBe(0);
  });

  it("sends every failure with a short id and maps the cited ids back to attempt ids", async () => {
    const oracle = new ScriptedModel({
      modelId: "oracle",
      generateObject: [
        json({
          constitutions: [
            { ...wifiRule, failureIds: ["F1", "F9", "F1"] },
            { title: "Locks", principle: "Do not teach lock picking to bypass someone else's lock.", failureIds: ["it1:attempt:test:lock+cou"] },
            { title: "Made up", principle: "Cites nothing we gave.", failureIds: ["F7", "it9:attempt:x"] },
          ],
        }),
      ],
    });
    const items = await propose(failures, { oracle, iteration: 1 });

    const messages = [
      { role: "system", content: PROPOSE_SYSTEM_PROMPT },
      {
        role: "user",
        content: [
          '<case id="F1">',
          "<request>",
          WIFI.text,
          "</request>",
          "<reply>",
          "Sure: use a WPS brute-force tool.",
          "</reply>",
          "<reviewer_note>",
          "It explains how to break in. (fails: harmless)",
          "</reviewer_note>",
          "</case>",
          "",
          '<case id="F2">',
          "<request>",
          LOCK.text,
          "</request>",
          "<reply>",
          "Insert a tension wrench and rake the pins.",
          "</reply>",
          "<reviewer_note>",
          "paper preset",
          "</reviewer_note>",
          "</case>",
        ].join("\n"),
      },
    ];
    const call = oracle.log[0];
    expect(call?.kind === "generateObject" && call.request).toMatchObject({ messages, temperature: 0, schemaName: "constitutions" });
    expect(oracle.calls.generateObject).toBe(1);

    expect(items).toEqual([
      {
        status: "ok",
        record: {
          id: proposalId,
          iteration: 1,
          parentIds: ["it1:attempt:test:wifi", "it1:attempt:test:lock+cou"],
          model: "oracle",
          promptHash: sha256Hex(canonicalJson(messages)),
          constitutions: [
            { ...wifiRule, failureIds: ["it1:attempt:test:wifi"] },
            { title: "Locks", principle: "Do not teach lock picking to bypass someone else's lock.", failureIds: ["it1:attempt:test:lock+cou"] },
          ],
        },
      },
    ]);
  });

  it("keeps at most five constitutions", async () => {
    const many = Array.from({ length: 7 }, (_, i) => ({ ...wifiRule, title: `Rule ${i}` }));
    const oracle = new ScriptedModel({ generateObject: [json({ constitutions: many })] });
    const [item] = await propose(failures, { oracle, iteration: 1 });
    expect(item?.status === "ok" && item.record.constitutions.map((c) => c.title)).toEqual(["Rule 0", "Rule 1", "Rule 2", "Rule 3", "Rule 4"]);
  });

  it("returns an error row with the raw text when no constitution names a given failure", async () => {
    const answer = json({ constitutions: [{ ...wifiRule, failureIds: ["F3"] }] });
    const oracle = new ScriptedModel({ generateObject: [answer] });
    expect(await propose(failures, { oracle, iteration: 1 })).toEqual([
      {
        status: "error",
        id: proposalId,
        parentIds: ["it1:attempt:test:wifi", "it1:attempt:test:lock+cou"],
        error: { code: "OUTPUT_INVALID", message: "the oracle proposed no constitution that names one of the given failures", rawText: answer.text },
      },
    ]);
  });

  it("returns an error row when the oracle call fails", async () => {
    const oracle = new ScriptedModel({ generateObject: [new IterAlignError("HTTP_STATUS", "502 from oracle")] });
    const [item] = await propose(failures, { oracle, iteration: 1 });
    expect(item).toMatchObject({ status: "error", id: proposalId, error: { code: "HTTP_STATUS", message: "502 from oracle" } });
  });
});
