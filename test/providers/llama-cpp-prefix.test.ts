import { describe, expect, it } from "vitest";
import { judgeMessages } from "../../src/prompts/judge.js";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { commonPrefixLength, removeStaleStates } from "../../src/providers/llama-cpp/group-scheduler.js";
import { loadFixtureModel } from "../helpers/models.js";

/**
 * Shared-prefix reuse on the real engine: the judge prompts of a decode group share the judge's instructions; with
 * reuse the prefix is evaluated once per group and its KV state handed to the group's other sequences.
 */
const cases = Array.from({ length: 6 }, (_, i) => ({
  prompt: `Question ${i}: how would someone do thing number ${i * 7}?`,
  response: `Answer ${i}: first this, then that${", and more".repeat(i)}.`,
}));

async function judgeAll(reuse: boolean) {
  const model = await loadFixtureModel("tiny-llama", { sequences: 4, contextSize: 2048, prefixReuse: reuse ? { minTokens: 64 } : false });
  try {
    const results = await Promise.all(
      cases.map((c) => model.generate({ messages: judgeMessages(c, { askRefusal: false }), temperature: 0, maxTokens: 32 })),
    );
    const prompts = cases.map((c) => model.renderChat(judgeMessages(c, { askRefusal: false })).tokens);
    return { results, stats: { ...model.promptEvaluation }, prompts };
  } finally {
    await model.close();
  }
}

describe("shared-prefix reuse (llama-cpp)", () => {
  it("evaluates each group's common prefix once and answers exactly as without reuse", async () => {
    const off = await judgeAll(false);
    const on = await judgeAll(true);
    expect(on.results.map((r) => r.text)).toEqual(off.results.map((r) => r.text));
    expect(on.results.every((r) => r.text.length > 0 && r.usage.completionTokens > 0)).toBe(true);
    expect(off.stats).toMatchObject({ sharedGroups: 0, reusedTokens: 0 });
    expect(off.stats.evaluatedTokens).toBe(off.stats.promptTokens);
    // Groups of 4 then 2 (the context's sequences): each evaluates its prefix once, plus every member's suffix.
    const groups = [on.prompts.slice(0, 4), on.prompts.slice(4)];
    const bound = groups.reduce((sum, g) => {
      const prefix = Math.min(commonPrefixLength(g), Math.min(...g.map((t) => t.length)) - 1);
      return sum + prefix + g.reduce((s, t) => s + t.length - prefix, 0);
    }, 0);
    expect(on.stats.sharedGroups).toBe(2);
    expect(on.stats.evaluatedTokens).toBe(bound);
    expect(on.stats.evaluatedTokens).toBeLessThan(on.stats.promptTokens / 2);
    // Usage still counts every prompt token; the members that read the prefix report it as cached.
    expect(on.results.map((r) => r.usage.promptTokens)).toEqual(off.results.map((r) => r.usage.promptTokens));
    const cached = on.results.map((r) => r.usage.cachedPromptTokens ?? 0);
    expect(off.results.every((r) => r.usage.cachedPromptTokens === undefined)).toBe(true);
    expect(cached[0]).toBe(0);
    expect(cached[4]).toBe(0);
    expect(cached.reduce((a, b) => a + b, 0)).toBe(on.stats.reusedTokens);
  }, 120_000);

  it("removes prefix state files of processes that no longer run, and only those", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "iteralign-prefix-states-"));
    try {
      const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout;
      const names = [`iteralign-prefix-${dead}-1.kv`, `iteralign-prefix-${process.pid}-3.kv`, "iteralign-prefix-notes.txt"];
      for (const n of names) writeFileSync(path.join(dir, n), "x");
      removeStaleStates(dir);
      expect(readdirSync(dir).sort()).toEqual([`iteralign-prefix-${process.pid}-3.kv`, "iteralign-prefix-notes.txt"].sort());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("finds the longest common prefix of token lists", () => {
    expect(commonPrefixLength([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]])).toBe(2);
    expect(commonPrefixLength([[1, 2], [3]])).toBe(0);
    expect(commonPrefixLength([[7, 8, 9]])).toBe(3);
    expect(commonPrefixLength([])).toBe(0);
  });
});
