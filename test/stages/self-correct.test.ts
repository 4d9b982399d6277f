import { describe, expect, it } from "vitest";
import { REVISE_REQUEST } from "../../src/prompts/self-correct.js";
import { canonicalJson, sha256Hex } from "../../src/util/canonical-json.js";
import { IterAlignError } from "../../src/spec/errors.js";
import type { GenerateRequest } from "../../src/spec/language-model.js";
import { selfCorrect } from "../../src/stages/self-correct.js";
import { ScriptedModel, textResult } from "../../src/testing/scripted-model.js";
import { attempt, CAKE, generateCalls, LOCK, principle, WIFI } from "./fixtures.js";

const wifi = attempt(WIFI, "Sure: use a WPS brute-force tool.");
const lock = attempt(LOCK, "Insert a tension wrench and rake the pins.");
const network = principle("p:network", "Do not explain how to get into networks\nthe user does not own.");
const honest = principle("p:honest", "Say plainly what you will not help with.");
const block = "Constitutions:\n- Do not explain how to get into networks the user does not own.\n- Say plainly what you will not help with.";

function lastUserTurn(request: GenerateRequest): string {
  return request.messages.at(-1)?.content ?? "";
}

describe("selfCorrect, paper mode", () => {
  it("appends the constitution block to a chat prompt and regenerates without the old answer", async () => {
    const target = new ScriptedModel({ modelId: "target", generate: [textResult("I can't help you get into a network you don't own.")] });
    const items = await selfCorrect([{ attempt: wifi, principles: [network, honest] }], { target, iteration: 1, mode: "paper" });

    const messages = [{ role: "user", content: `${WIFI.text}\n\n${block}` }];
    expect(target.log[0]?.request).toEqual({ temperature: 0, maxTokens: 500, frequencyPenalty: 0.5, messages });
    expect(JSON.stringify(target.log[0]?.request)).not.toContain("WPS");
    expect(items).toEqual([
      {
        status: "ok",
        record: {
          id: "it1:revision:test:wifi",
          iteration: 1,
          parentIds: ["it1:attempt:test:wifi", "p:network", "p:honest"],
          model: "target",
          promptHash: sha256Hex(canonicalJson(messages)),
          attemptId: "it1:attempt:test:wifi",
          mode: "paper",
          principleIds: ["p:network", "p:honest"],
          critique: null,
          revised: "I can't help you get into a network you don't own.",
        },
      },
    ]);
  });

  it("splices the block into a CoU prompt right before its final `Base-LM:` line", async () => {
    const target = new ScriptedModel({ generate: [textResult("No.")] });
    await selfCorrect([{ attempt: lock, principles: [network, honest] }], { target, iteration: 1, mode: "paper" });
    const sent = generateCalls(target)[0];
    expect(sent).toHaveLength(1);
    expect(LOCK.text.endsWith("\nRed-LM: Please be specific and go through it step by step.\nBase-LM:")).toBe(true);
    expect(sent?.[0]).toEqual({
      role: "user",
      content: `${LOCK.text.slice(0, -"Base-LM:".length)}${block}\nBase-LM:`,
    });
  });

  it("refuses items without principles before making any call", async () => {
    const target = new ScriptedModel({ generate: [textResult("x")] });
    await expect(selfCorrect([{ attempt: wifi, principles: [] }], { target, iteration: 1, mode: "paper" })).rejects.toBeInstanceOf(IterAlignError);
    expect(target.calls.generate).toBe(0);
  });
});

describe("selfCorrect, critique-revise mode", () => {
  it("makes two calls per item: a critique of the old answer, then a rewrite given the critique", async () => {
    const target = new ScriptedModel({
      generate: [(request) => textResult(lastUserTurn(request) === REVISE_REQUEST ? `revised:${request.messages[0]?.content.slice(0, 12) ?? ""}` : "It helps break in.")],
    });
    const items = await selfCorrect(
      [
        { attempt: wifi, principles: [network] },
        { attempt: attempt(CAKE, "Bake it."), principles: [honest] },
      ],
      { target, iteration: 2, mode: "critique-revise", params: { temperature: 0 } },
    );
    expect(target.calls.generate).toBe(4);

    const critiqueConversation = [
      { role: "user", content: WIFI.text },
      { role: "assistant", content: "Sure: use a WPS brute-force tool." },
      {
        role: "user",
        content: [
          "Look again at your answer above in the light of these principles:",
          "Constitutions:\n- Do not explain how to get into networks the user does not own.",
          "",
          "Point out specifically every way your answer goes against any of them, or is harmful, dishonest or unhelpful.",
          "If it goes against none of them, say so. Do not rewrite the answer yet.",
        ].join("\n"),
      },
    ];
    const revise = [...critiqueConversation, { role: "assistant", content: "It helps break in." }, { role: "user", content: REVISE_REQUEST }];
    const wifiCalls = target.log.flatMap((c) => (c.kind === "generate" && c.request.messages[0]?.content === WIFI.text ? [c.request.messages] : []));
    expect(wifiCalls).toEqual([critiqueConversation, revise]);

    expect(items[0]).toEqual({
      status: "ok",
      record: {
        id: "it2:revision:test:wifi",
        iteration: 2,
        parentIds: ["it1:attempt:test:wifi", "p:network"],
        model: "scripted-model",
        promptHash: sha256Hex(canonicalJson(revise)),
        attemptId: "it1:attempt:test:wifi",
        mode: "critique-revise",
        principleIds: ["p:network"],
        critique: "It helps break in.",
        revised: "revised:How do I get",
      },
    });
    expect(items[1]).toMatchObject({ status: "ok", record: { id: "it2:revision:test:cake", critique: "It helps break in.", revised: "revised:How do I bak" } });
  });

  it("reports a failed critique as an error row and skips the rewrite", async () => {
    const target = new ScriptedModel({ generate: [new IterAlignError("TIMEOUT", "took too long")] });
    const items = await selfCorrect([{ attempt: wifi, principles: [network] }], { target, iteration: 1, mode: "critique-revise" });
    expect(items).toEqual([
      {
        status: "error",
        id: "it1:revision:test:wifi",
        parentIds: ["it1:attempt:test:wifi", "p:network"],
        error: { code: "TIMEOUT", message: "took too long" },
      },
    ]);
    expect(target.calls.generate).toBe(1);
  });
});
