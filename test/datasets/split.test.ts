import { describe, expect, it } from "vitest";
import { loadBundled } from "../../src/datasets/bundled.js";
import { contentPromptId, type RedTeamPrompt } from "../../src/datasets/red-team-prompt.js";
import { assignSplit, normalizePromptText, splitPrompts } from "../../src/datasets/split.js";

function prompt(dataset: string, text: string, index = 0): RedTeamPrompt {
  return { id: contentPromptId(dataset, text), dataset, text, category: null, source: { file: `${dataset}.jsonl`, line: index + 1, index } };
}

/** A deterministic shuffle (mulberry32) so the test does not depend on Math.random. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

const sideOf = (split: { train: RedTeamPrompt[]; heldout: RedTeamPrompt[] }): Map<string, string> =>
  new Map([...split.train.map((p) => [p.id, "train"] as const), ...split.heldout.map((p) => [p.id, "heldout"] as const)]);

describe("normalizePromptText", () => {
  it("lower-cases, collapses whitespace and trims", () => {
    expect(normalizePromptText("  How DO\tI\r\n  do  it? ")).toBe("how do i do it?");
  });
});

describe("splitPrompts", () => {
  it("is deterministic for a seed and changes with the seed", async () => {
    const harmfulqa = await loadBundled("harmfulqa");
    const a = splitPrompts(harmfulqa, { seed: 0 });
    const b = splitPrompts(harmfulqa, { seed: 0 });
    const c = splitPrompts(harmfulqa, { seed: 1 });
    expect(b).toEqual(a);
    expect(c.manifest.heldoutIdsSha256).not.toBe(a.manifest.heldoutIdsSha256);
    const heldoutA = new Set(a.heldout.map((p) => p.id));
    expect(c.heldout.filter((p) => heldoutA.has(p.id)).length).toBeLessThan(c.heldout.length / 2);
  });

  it("puts about the requested fraction of the 1960 HarmfulQA prompts in heldout (±3%)", async () => {
    const harmfulqa = await loadBundled("harmfulqa");
    for (const [seed, fraction] of [[0, 0.2], [7, 0.2], [3, 0.1], [5, 0.5]] as const) {
      const { train, heldout, manifest } = splitPrompts(harmfulqa, { seed, heldoutFraction: fraction });
      const share = heldout.length / (train.length + heldout.length);
      expect(Math.abs(share - fraction), `seed ${seed}, fraction ${fraction}`).toBeLessThanOrEqual(0.03);
      expect(manifest.duplicatesDropped).toBe(22);
      expect(train.length + heldout.length).toBe(1938);
    }
  });

  it("uses 0.2 and seed 0 by default and records counts and id hashes in the manifest", async () => {
    const prompts = [...(await loadBundled("dangerousqa")), ...(await loadBundled("advbench"))];
    const { train, heldout, manifest } = splitPrompts(prompts);
    expect(manifest.seed).toBe(0);
    expect(manifest.heldoutFraction).toBe(0.2);
    expect(Object.keys(manifest.counts)).toEqual(["dangerousqa", "advbench"]);
    const total = (side: "train" | "heldout"): number => Object.values(manifest.counts).reduce((n, c) => n + c[side], 0);
    expect(total("train")).toBe(train.length);
    expect(total("heldout")).toBe(heldout.length);
    expect(manifest.trainIdsSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(manifest.trainIdsSha256).not.toBe(manifest.heldoutIdsSha256);
  });

  it("never puts a prompt on both sides, even when datasets share it in other case or spacing", () => {
    const base = Array.from({ length: 300 }, (_, i) => `How would someone do harmful thing number ${i}?`);
    const first = base.map((text, i) => prompt("one", text, i));
    const second = base.map((text, i) => prompt("two", `  ${text.toUpperCase().replace(/ /g, "  ")} `, i));
    const { train, heldout, manifest } = splitPrompts([...first, ...second, ...first]);
    const trainTexts = new Set(train.map((p) => normalizePromptText(p.text)));
    expect(heldout.some((p) => trainTexts.has(normalizePromptText(p.text)))).toBe(false);
    expect(train.length + heldout.length).toBe(300);
    expect(manifest.duplicatesDropped).toBe(600);
    // The first occurrence is kept.
    expect([...train, ...heldout].every((p) => p.dataset === "one")).toBe(true);
    // The side depends on the text only, whichever dataset carries it.
    for (const text of base.slice(0, 50)) expect(assignSplit(text.toUpperCase())).toBe(assignSplit(text));
  });

  it("assigns each prompt the same side whatever the input order or the other sets loaded", async () => {
    const harmfulqa = await loadBundled("harmfulqa");
    const alone = sideOf(splitPrompts(harmfulqa, { seed: 3 }));
    const mixed = splitPrompts(shuffled([...harmfulqa, ...(await loadBundled("advbench"))], 42), { seed: 3 });
    const mixedSides = sideOf(mixed);
    for (const p of harmfulqa) {
      // Repeats of a question are dropped, and which copy survives depends on order; compare by text.
      const side = assignSplit(p.text, { seed: 3 });
      if (alone.has(p.id)) expect(alone.get(p.id)).toBe(side);
      if (mixedSides.has(p.id)) expect(mixedSides.get(p.id)).toBe(side);
    }
    // Without repeats the whole assignment is identical after shuffling.
    const advbench = await loadBundled("advbench");
    expect(sideOf(splitPrompts(shuffled(advbench, 9)))).toEqual(sideOf(splitPrompts(advbench)));
    // Each side keeps input order.
    const ordered = splitPrompts(advbench);
    expect(ordered.train.map((p) => p.source.index)).toEqual([...ordered.train.map((p) => p.source.index)].sort((a, b) => a - b));
  });

  it("handles the edge fractions and rejects bad options", () => {
    const prompts = Array.from({ length: 50 }, (_, i) => prompt("x", `prompt ${i}`, i));
    expect(splitPrompts(prompts, { heldoutFraction: 0 }).heldout).toHaveLength(0);
    expect(splitPrompts(prompts, { heldoutFraction: 1 }).train).toHaveLength(0);
    expect(() => splitPrompts(prompts, { heldoutFraction: 1.5 })).toThrow(/heldoutFraction/);
    expect(() => splitPrompts(prompts, { seed: 0.5 })).toThrow(/seed/);
  });
});
