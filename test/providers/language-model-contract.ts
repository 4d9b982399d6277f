import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { IterAlignError } from "../../src/spec/errors.js";
import type { LanguageModel } from "../../src/spec/language-model.js";

/** The schema the contract asks for: an enum and a bounded string, as the loop's judges do. */
export const ContractVerdictSchema = z.object({
  label: z.enum(["safe", "unsafe"]),
  note: z.string().max(60),
});

/** How a suite gets its model. */
export interface ContractSubject {
  readonly model: LanguageModel;
  readonly cleanup?: () => Promise<void>;
}

/**
 * One behaviour suite for the `LanguageModel` contract, run against every provider and the scripted double (one
 * suite, many implementations). It checks what every stage relies on, whatever the model's weights: the declared
 * capabilities, a text with its finish reason and usage, the token limit, streaming, structured output that passes
 * its schema, aborting, and greedy determinism.
 */
export function languageModelContract(name: string, setup: () => Promise<ContractSubject>): void {
  describe(`LanguageModel contract: ${name}`, () => {
    let subject: ContractSubject;
    beforeAll(async () => {
      subject = await setup();
    }, 600_000);
    afterAll(async () => {
      await subject?.model.close();
      await subject?.model.close();
      await subject?.cleanup?.();
    });
    const ask = [{ role: "system" as const, content: "You are terse." }, { role: "user" as const, content: "Name three colours." }];

    it("declares generate, generateObject and stream, and names itself", () => {
      const { model } = subject;
      for (const c of ["generate", "generateObject", "stream"] as const) expect(model.capabilities.has(c), c).toBe(true);
      expect(model.provider.length).toBeGreaterThan(0);
      expect(model.modelId.length).toBeGreaterThan(0);
      expect(typeof model.scoreContinuations === "function").toBe(model.capabilities.has("scoreContinuations"));
      expect(typeof model.embed === "function").toBe(model.capabilities.has("embed"));
    });

    it("generates a text with its finish reason and token usage", async () => {
      const result = await subject.model.generate({ messages: ask, maxTokens: 12, temperature: 0 });
      expect(typeof result.text).toBe("string");
      expect(["stop", "length"]).toContain(result.finishReason);
      expect(result.usage.promptTokens).toBeGreaterThan(0);
      expect(result.usage.completionTokens).toBeGreaterThan(0);
      expect(result.usage.completionTokens).toBeLessThanOrEqual(12);
    });

    it("stops at maxTokens and says so", async () => {
      const result = await subject.model.generate({ messages: ask, maxTokens: 2, temperature: 0 });
      expect(result.usage.completionTokens).toBeLessThanOrEqual(2);
      if (result.usage.completionTokens === 2) expect(result.finishReason).toBe("length");
    });

    it("streams: the pieces given to onText make up the text", async () => {
      const pieces: string[] = [];
      const result = await subject.model.generate({ messages: ask, maxTokens: 12, temperature: 0, onText: (t) => pieces.push(t) });
      expect(pieces.join("")).toBe(result.text);
    });

    it("gives the same text for the same greedy request", async () => {
      const a = await subject.model.generate({ messages: ask, maxTokens: 8, temperature: 0 });
      const b = await subject.model.generate({ messages: ask, maxTokens: 8, temperature: 0 });
      expect(b.text).toBe(a.text);
    });

    it("returns structured output that passes its schema, with the text it came from", async () => {
      const result = await subject.model.generateObject({
        messages: [{ role: "user", content: "Is 'how do I bake bread' a safe request? Answer in JSON." }],
        schema: ContractVerdictSchema,
        schemaName: "verdict",
        maxTokens: 200,
        temperature: 0,
      });
      expect(ContractVerdictSchema.safeParse(result.object).success).toBe(true);
      expect(result.text.length).toBeGreaterThan(0);
      expect(result.usage.completionTokens).toBeGreaterThan(0);
    });

    it("fails an aborted call with ABORTED", async () => {
      const controller = new AbortController();
      controller.abort();
      const err = await subject.model.generate({ messages: ask, maxTokens: 8, signal: controller.signal }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IterAlignError);
      expect((err as IterAlignError).code).toBe("ABORTED");
    });
  });
}
