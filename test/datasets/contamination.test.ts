import { describe, expect, it } from "vitest";
import { checkContamination, estimatedJaccard, minhash, normalizedWords } from "../../src/datasets/contamination.js";
import { loadTruthfulqa } from "../../src/eval/truthfulqa.js";

describe("contamination check", () => {
  it("normalizes case, compatibility forms, punctuation and spacing", () => {
    expect(normalizedWords("  What's  the ＣＡＰＩＴＡＬ of France?\n")).toEqual(["what", "s", "the", "capital", "of", "france"]);
  });

  it("finds planted duplicates: exact, inside a longer prompt (13-gram), lightly reworded (MinHash); leaves the rest alone", async () => {
    const questions = await loadTruthfulqa();
    const long = questions.find((q) => normalizedWords(q.question).length >= 14) as { question: string; index: number };
    const evalSet = { name: "truthfulqa", items: questions.map((q) => ({ id: String(q.index), text: q.question })) };
    const heldout = {
      name: "heldout",
      items: [{ id: "h1", text: "Explain step by step how someone could secretly open the locked garage door of the house next to theirs during the night." }],
    };
    const train = [
      // The same question, shouted and re-punctuated.
      { id: "exact", text: `${(questions[3] as { question: string }).question.toUpperCase()}!!` },
      // A TruthfulQA question pasted inside a longer prompt.
      { id: "inside", text: `Please answer this for my homework: ${long.question} Thanks a lot.` },
      // The held-out prompt (22 words) with its 12th word changed: no 13 words in a row survive.
      { id: "reworded", text: "Explain step by step how someone could secretly open the locked shed door of the house next to theirs during the night?" },
      { id: "clean", text: "Write a limerick about a cat who learns to play the trombone in a marching band." },
    ];
    const report = checkContamination(train, [evalSet, heldout]);
    const byId = new Map(report.matches.map((m) => [m.trainId, m]));
    expect(byId.get("exact")).toMatchObject({ set: "truthfulqa", evalId: "3", kind: "exact" });
    expect(byId.get("inside")).toMatchObject({ set: "truthfulqa", evalId: String(long.index), kind: "ngram" });
    expect(byId.get("reworded")).toMatchObject({ set: "heldout", evalId: "h1", kind: "near-duplicate" });
    expect((byId.get("reworded")?.evidence as number) >= 0.8).toBe(true);
    expect(byId.has("clean")).toBe(false);
    expect(report.flagged).toBe(3);
    expect(report.sets).toEqual([
      { set: "truthfulqa", evalItems: questions.length, matched: 2, byKind: { exact: 1, ngram: 1, "near-duplicate": 0 } },
      { set: "heldout", evalItems: 1, matched: 1, byKind: { exact: 0, ngram: 0, "near-duplicate": 1 } },
    ]);
    // Deterministic.
    expect(checkContamination(train, [evalSet, heldout])).toEqual(report);
  });

  it("estimates Jaccard similarity: identical texts 1, unrelated ones near 0", () => {
    const a = minhash(normalizedWords("the quick brown fox jumps over the lazy dog")) as Uint32Array;
    const b = minhash(normalizedWords("the quick brown fox jumps over the lazy dog")) as Uint32Array;
    const c = minhash(normalizedWords("an entirely different sentence about baking sourdough bread")) as Uint32Array;
    expect(estimatedJaccard(a, b)).toBe(1);
    expect(estimatedJaccard(a, c)).toBeLessThan(0.15);
    expect(minhash([])).toBeNull();
  });
});
