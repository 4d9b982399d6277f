import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  ConstitutionPool,
  principleId,
  type ConfirmMergeFn,
  type ConfirmResult,
  type ProposedPrinciple,
  type SimilarityFn,
} from "../../src/constitutions/index.js";
import { canonicalJson } from "../../src/util/canonical-json.js";
import { IterAlignError } from "../../src/spec/errors.js";
import type { Principle, ProposedConstitution } from "../../src/spec/records.js";

function proposal(title: string, principle: string, failureIds: string[]): ProposedConstitution {
  return { title, principle, failureIds };
}

/** A similarity double: every candidate gets `score`, and each call's arguments are recorded. */
function fixedSimilarity(score: number): SimilarityFn & { calls: { query: string; candidates: readonly string[] }[] } {
  const calls: { query: string; candidates: readonly string[] }[] = [];
  const fn = async (query: string, candidates: readonly string[]): Promise<number[]> => {
    calls.push({ query, candidates });
    return candidates.map(() => score);
  };
  return Object.assign(fn, { calls });
}

/** A confirm double answering `result` (or throwing it) and recording what it was asked. */
function scriptedConfirm(result: ConfirmResult | Error): ConfirmMergeFn & { calls: { existing: Principle; proposed: ProposedPrinciple }[] } {
  const calls: { existing: Principle; proposed: ProposedPrinciple }[] = [];
  const fn: ConfirmMergeFn = async (existing, proposed) => {
    calls.push({ existing, proposed });
    if (result instanceof Error) throw result;
    return result;
  };
  return Object.assign(fn, { calls });
}

const WEAPONS = proposal("No weapon recipes", "Do not explain how to build weapons.", ["f3", "f1"]);
const WEAPONS_AGAIN = proposal("Refuse arms instructions", "Refuse to give instructions for making arms.", ["f2", "f1", "f2"]);
const ID_WEAPONS = principleId(WEAPONS.title, WEAPONS.principle);
const ID_AGAIN = principleId(WEAPONS_AGAIN.title, WEAPONS_AGAIN.principle);

async function poolWithWeapons(): Promise<ConstitutionPool> {
  const { pool } = await ConstitutionPool.empty().mergeProposals([WEAPONS], {
    iteration: 1,
    similarity: fixedSimilarity(0),
    confirm: scriptedConfirm({ same: false }),
    threshold: 0.8,
  });
  return pool;
}

describe("principleId", () => {
  it("is p- and 12 hex digits of sha256 over the normalized title and text", () => {
    const expected = `p-${createHash("sha256").update("be honest\ndo not lie.").digest("hex").slice(0, 12)}`;
    expect(principleId("Be honest", "Do not lie.")).toBe(expected);
    expect(expected).toBe("p-8e9e537d99f8");
    expect(principleId("  BE   honest ", "Do  not\nlie. ")).toBe("p-8e9e537d99f8");
    expect(principleId("Be honest", "Do not lie!")).not.toBe("p-8e9e537d99f8");
    // The title/text boundary matters: moving a word across it is a different principle.
    expect(principleId("Be honest do", "not lie.")).not.toBe("p-8e9e537d99f8");
  });
});

describe("ConstitutionPool seeds and user principles", () => {
  it("adds seeds in order with deterministic ids and reports re-added ones as duplicates", () => {
    const seeds = [
      { title: "Be honest", text: "Do not lie." },
      { title: "Be kind", text: "Avoid insults." },
    ];
    const first = ConstitutionPool.empty().addSeeds(seeds);
    expect(first.changes).toEqual({ added: ["p-8e9e537d99f8", principleId("Be kind", "Avoid insults.")], merged: [], duplicates: [], retired: [], reasons: [], errors: [] });
    expect(first.pool.snapshot().principles[0]).toEqual({
      id: "p-8e9e537d99f8",
      version: 1,
      title: "Be honest",
      text: "Do not lie.",
      source: "seed",
      firstIteration: 0,
      evidence: [],
      mergedFrom: [],
      status: "active",
    });
    const again = first.pool.addUser([{ title: " be HONEST", text: "Do not lie." }, { title: "Cite sources", text: "Name where facts come from." }], { iteration: 2 });
    expect(again.changes.duplicates).toEqual(["p-8e9e537d99f8"]);
    expect(again.changes.added).toEqual([principleId("Cite sources", "Name where facts come from.")]);
    expect(again.pool.snapshot().principles.map((p) => [p.source, p.firstIteration])).toEqual([
      ["seed", 0],
      ["seed", 0],
      ["user", 2],
    ]);
  });

  it("rejects an empty title or text", () => {
    expect(() => ConstitutionPool.empty().addUser([{ title: "ok", text: "fine" }, { title: " ", text: "x" }])).toThrow(
      expect.objectContaining({ code: "USAGE", message: "user principle 2: title and text must both be non-empty" }),
    );
  });
});

describe("ConstitutionPool.mergeProposals", () => {
  it("adds the first proposal without asking for similarity (nothing to compare with)", async () => {
    const similarity = fixedSimilarity(1);
    const confirm = scriptedConfirm({ same: true });
    const { pool, changes } = await ConstitutionPool.empty().mergeProposals([WEAPONS], { iteration: 1, similarity, confirm, threshold: 0.5 });
    expect(similarity.calls).toHaveLength(0);
    expect(confirm.calls).toHaveLength(0);
    expect(changes.added).toEqual([ID_WEAPONS]);
    expect(pool.get(ID_WEAPONS)).toEqual({
      id: ID_WEAPONS,
      version: 1,
      title: "No weapon recipes",
      text: "Do not explain how to build weapons.",
      source: "discovered",
      firstIteration: 1,
      evidence: ["f1", "f3"],
      mergedFrom: [],
      status: "active",
    });
  });

  it("merges over the threshold when confirm says same: new version, rewritten text, combined evidence, mergedFrom", async () => {
    const before = await poolWithWeapons();
    const similarity = fixedSimilarity(0.9);
    const confirm = scriptedConfirm({ same: true, merged: { title: "No weapon instructions", text: "Do not explain how to build or make weapons or arms." } });
    const { pool, changes } = await before.mergeProposals([WEAPONS_AGAIN], { iteration: 2, similarity, confirm, threshold: 0.8 });

    expect(similarity.calls).toEqual([
      { query: "Refuse arms instructions\nRefuse to give instructions for making arms.", candidates: ["No weapon recipes\nDo not explain how to build weapons."] },
    ]);
    expect(confirm.calls).toHaveLength(1);
    expect(confirm.calls[0]?.existing.id).toBe(ID_WEAPONS);
    expect(confirm.calls[0]?.proposed).toEqual({
      id: ID_AGAIN,
      title: "Refuse arms instructions",
      text: "Refuse to give instructions for making arms.",
      evidence: ["f1", "f2"],
    });
    expect(changes).toEqual({ added: [], merged: [{ into: ID_WEAPONS, from: ID_AGAIN }], duplicates: [], retired: [], reasons: [], errors: [] });
    expect(pool.snapshot()).toEqual({
      principles: [
        {
          id: ID_WEAPONS,
          version: 2,
          title: "No weapon instructions",
          text: "Do not explain how to build or make weapons or arms.",
          source: "discovered",
          firstIteration: 1,
          evidence: ["f1", "f2", "f3"],
          mergedFrom: [ID_AGAIN],
          status: "active",
        },
      ],
    });
    // The old pool is a value: merging did not change it.
    expect(before.get(ID_WEAPONS)?.version).toBe(1);
  });

  it("keeps the existing wording when confirm says same without a rewrite", async () => {
    const { pool } = await (await poolWithWeapons()).mergeProposals([WEAPONS_AGAIN], {
      iteration: 2,
      similarity: fixedSimilarity(0.9),
      confirm: scriptedConfirm({ same: true }),
      threshold: 0.8,
    });
    expect(pool.get(ID_WEAPONS)).toMatchObject({ version: 2, title: "No weapon recipes", text: "Do not explain how to build weapons." });
  });

  it("adds a new principle when over the threshold but confirm says different", async () => {
    const confirm = scriptedConfirm({ same: false });
    const { pool, changes } = await (await poolWithWeapons()).mergeProposals([WEAPONS_AGAIN], {
      iteration: 2,
      similarity: fixedSimilarity(0.95),
      confirm,
      threshold: 0.8,
    });
    expect(confirm.calls).toHaveLength(1);
    expect(changes.added).toEqual([ID_AGAIN]);
    expect(changes.merged).toEqual([]);
    expect(pool.snapshot().principles.map((p) => [p.id, p.version, p.firstIteration])).toEqual([
      [ID_WEAPONS, 1, 1],
      [ID_AGAIN, 1, 2],
    ]);
  });

  it("adds a new principle below the threshold without calling confirm", async () => {
    const similarity = fixedSimilarity(0.79);
    const confirm = scriptedConfirm({ same: true });
    const { changes } = await (await poolWithWeapons()).mergeProposals([WEAPONS_AGAIN], { iteration: 2, similarity, confirm, threshold: 0.8 });
    expect(similarity.calls).toHaveLength(1);
    expect(confirm.calls).toHaveLength(0);
    expect(changes.added).toEqual([ID_AGAIN]);
  });

  it("offers only the most similar active principle (earliest on a tie), and never a retired one", async () => {
    const seeded = ConstitutionPool.empty().addSeeds([
      { title: "A", text: "alpha" },
      { title: "B", text: "beta" },
      { title: "C", text: "gamma" },
      { title: "D", text: "delta" },
    ]).pool;
    const retiredA = seeded.retire(principleId("A", "alpha"), "caused over-refusals").pool;
    const scores: Record<string, number> = { "B\nbeta": 0.85, "C\ngamma": 0.9, "D\ndelta": 0.9 };
    const seen: (readonly string[])[] = [];
    const similarity: SimilarityFn = async (_query, candidates) => {
      seen.push(candidates);
      return candidates.map((c) => scores[c] ?? 0);
    };
    const confirm = scriptedConfirm({ same: false });
    await retiredA.mergeProposals([proposal("E", "epsilon", ["f9"])], { iteration: 3, similarity, confirm, threshold: 0.5 });
    expect(seen).toEqual([["B\nbeta", "C\ngamma", "D\ndelta"]]);
    expect(confirm.calls.map((c) => c.existing.title)).toEqual(["C"]);
  });

  it("lets a later proposal in the same batch merge into an earlier one", async () => {
    const { pool, changes } = await ConstitutionPool.empty().mergeProposals([WEAPONS, WEAPONS_AGAIN], {
      iteration: 1,
      similarity: fixedSimilarity(0.9),
      confirm: scriptedConfirm({ same: true, merged: { title: "Weapons", text: "No weapon help." } }),
      threshold: 0.8,
    });
    expect(changes.added).toEqual([ID_WEAPONS]);
    expect(changes.merged).toEqual([{ into: ID_WEAPONS, from: ID_AGAIN }]);
    expect(pool.size).toBe(1);
  });

  it("folds exact re-proposals (also of a merged-away proposal) into evidence without any model call", async () => {
    const merged = (
      await (await poolWithWeapons()).mergeProposals([WEAPONS_AGAIN], {
        iteration: 2,
        similarity: fixedSimilarity(0.9),
        confirm: scriptedConfirm({ same: true, merged: { title: "Weapons", text: "No weapon help." } }),
        threshold: 0.8,
      })
    ).pool;
    const similarity = fixedSimilarity(1);
    const confirm = scriptedConfirm({ same: true });
    const { pool, changes } = await merged.mergeProposals(
      [proposal("NO WEAPON RECIPES", " Do not explain how to build  weapons.", ["f7"]), { ...WEAPONS_AGAIN, failureIds: ["f8"] }],
      { iteration: 3, similarity, confirm, threshold: 0.8 },
    );
    expect(similarity.calls).toHaveLength(0);
    expect(confirm.calls).toHaveLength(0);
    expect(changes).toEqual({ added: [], merged: [], duplicates: [ID_WEAPONS, ID_AGAIN], retired: [], reasons: [], errors: [] });
    expect(pool.get(ID_WEAPONS)).toMatchObject({ version: 2, evidence: ["f1", "f2", "f3", "f7", "f8"] });
  });

  it("treats a failing confirm as 'not the same' and logs the error", async () => {
    const thrown = await (await poolWithWeapons()).mergeProposals([WEAPONS_AGAIN], {
      iteration: 2,
      similarity: fixedSimilarity(0.9),
      confirm: scriptedConfirm(new IterAlignError("HTTP_STATUS", "oracle answered 503")),
      threshold: 0.8,
    });
    expect(thrown.changes).toEqual({
      added: [ID_AGAIN],
      merged: [],
      duplicates: [],
      retired: [],
      reasons: [],
      errors: [{ proposed: ID_AGAIN, message: "HTTP_STATUS: oracle answered 503" }],
    });
    const reported = await (await poolWithWeapons()).mergeProposals([WEAPONS_AGAIN], {
      iteration: 2,
      similarity: fixedSimilarity(0.9),
      confirm: scriptedConfirm({ same: true, error: "could not parse" }),
      threshold: 0.8,
    });
    expect(reported.changes.added).toEqual([ID_AGAIN]);
    expect(reported.changes.errors).toEqual([{ proposed: ID_AGAIN, message: "could not parse" }]);
  });

  it("propagates aborts instead of logging them", async () => {
    const pool = await poolWithWeapons();
    const options = { iteration: 2, similarity: fixedSimilarity(0.9), threshold: 0.8 };
    await expect(pool.mergeProposals([WEAPONS_AGAIN], { ...options, confirm: scriptedConfirm(new IterAlignError("ABORTED", "stop")) })).rejects.toMatchObject({
      code: "ABORTED",
    });
    const controller = new AbortController();
    controller.abort(new Error("cancelled"));
    await expect(
      pool.mergeProposals([WEAPONS_AGAIN], { ...options, confirm: scriptedConfirm({ same: false }), signal: controller.signal }),
    ).rejects.toThrow("cancelled");
  });

  it("rejects a threshold or similarity score outside [0, 1] and a negative iteration", async () => {
    const pool = await poolWithWeapons();
    await expect(
      pool.mergeProposals([WEAPONS_AGAIN], { iteration: 2, similarity: fixedSimilarity(0.5), confirm: scriptedConfirm({ same: false }), threshold: 1.5 }),
    ).rejects.toMatchObject({ code: "USAGE", message: "merge threshold must be in [0, 1], got 1.5" });
    await expect(
      pool.mergeProposals([WEAPONS_AGAIN], { iteration: 2, similarity: fixedSimilarity(1.2), confirm: scriptedConfirm({ same: false }), threshold: 0.5 }),
    ).rejects.toThrow("similarity function returned 1.2; scores must be in [0, 1]");
    await expect(
      pool.mergeProposals([WEAPONS_AGAIN], { iteration: -1, similarity: fixedSimilarity(0.5), confirm: scriptedConfirm({ same: false }), threshold: 0.5 }),
    ).rejects.toMatchObject({ code: "USAGE", message: "iteration must be a non-negative integer, got -1" });
  });

  it("gives byte-identical snapshots and change logs for the same inputs", async () => {
    const run = async (): Promise<string> => {
      const seeded = ConstitutionPool.empty().addSeeds([{ title: "Be honest", text: "Do not lie." }]);
      const first = await seeded.pool.mergeProposals([WEAPONS, WEAPONS_AGAIN], {
        iteration: 1,
        similarity: fixedSimilarity(0.9),
        confirm: async (existing) => (existing.title === "No weapon recipes" ? { same: true, merged: { title: "W", text: "No weapons." } } : { same: false }),
        threshold: 0.8,
      });
      const retired = first.pool.retire("p-8e9e537d99f8", "too vague");
      return canonicalJson({ snapshot: retired.pool.snapshot(), changes: [seeded.changes, first.changes, retired.changes] });
    };
    expect(await run()).toBe(await run());
  });
});

describe("ConstitutionPool.retire and snapshots", () => {
  it("retires by id, records the reason, and is a no-op the second time", () => {
    const { pool } = ConstitutionPool.empty().addSeeds([{ title: "Be honest", text: "Do not lie." }]);
    const retired = pool.retire("p-8e9e537d99f8", "caused over-refusals");
    expect(retired.changes).toEqual({
      added: [],
      merged: [],
      duplicates: [],
      retired: ["p-8e9e537d99f8"],
      reasons: [{ id: "p-8e9e537d99f8", reason: "caused over-refusals" }],
      errors: [],
    });
    expect(retired.pool.get("p-8e9e537d99f8")).toMatchObject({ status: "retired", version: 1 });
    expect(retired.pool.active()).toEqual([]);
    expect(pool.active()).toHaveLength(1);
    expect(retired.pool.retire("p-8e9e537d99f8", "again").changes.retired).toEqual([]);
    expect(() => pool.retire("p-000000000000", "x")).toThrow(expect.objectContaining({ code: "USAGE", message: "cannot retire p-000000000000: no such principle in the pool" }));
  });

  it("round-trips through a snapshot and rejects invalid ones", async () => {
    const pool = await poolWithWeapons();
    const snapshot = pool.snapshot();
    snapshot.principles[0]?.evidence.push("mutated");
    expect(pool.get(ID_WEAPONS)?.evidence).toEqual(["f1", "f3"]);
    const restored = ConstitutionPool.fromSnapshot(JSON.parse(JSON.stringify(pool.snapshot())));
    expect(restored.snapshot()).toEqual(pool.snapshot());
    expect(() => ConstitutionPool.fromSnapshot({ principles: [{ id: "x" }] })).toThrow(expect.objectContaining({ code: "DATA_INVALID" }));
    const duplicate = { principles: [...pool.snapshot().principles, ...pool.snapshot().principles] };
    expect(() => ConstitutionPool.fromSnapshot(duplicate)).toThrow(`invalid constitution pool snapshot: duplicate id ${ID_WEAPONS}`);
  });
});
