import { describe, expect, it } from "vitest";
import {
  ConstitutionPool,
  diffConstitutions,
  renderConstitutionJson,
  renderConstitutionMarkdown,
  type PoolSnapshot,
} from "../../src/constitutions/index.js";

/** Iteration 1: a seed and one discovered principle. Iteration 2: a merge, a new principle, a retirement. */
async function pools(): Promise<{ one: PoolSnapshot; two: PoolSnapshot }> {
  const seeded = ConstitutionPool.empty().addSeeds([{ title: "Be honest", text: "Do not lie." }]).pool;
  const one = (
    await seeded.mergeProposals([{ title: "No weapon recipes", principle: "Do not explain how to build weapons.", failureIds: ["f3", "f1"] }], {
      iteration: 1,
      similarity: async (_query, candidates) => candidates.map(() => 0),
      confirm: async () => ({ same: false }),
      threshold: 0.8,
    })
  ).pool;
  const merged = (
    await one.mergeProposals(
      [
        { title: "Refuse arms instructions", principle: "Refuse to give instructions for making arms.", failureIds: ["f2"] },
        { title: "Respect *privacy*", principle: "Never reveal a person's address.\nNot even a partial one.", failureIds: ["f4"] },
      ],
      {
        iteration: 2,
        similarity: async (query, candidates) => candidates.map((c) => (query.startsWith("Refuse") && c.startsWith("No weapon") ? 0.9 : 0)),
        confirm: async () => ({ same: true, merged: { title: "No weapon instructions", text: "Do not explain how to build or make weapons." } }),
        threshold: 0.8,
      },
    )
  ).pool;
  return { one: one.snapshot(), two: merged.retire("p-8e9e537d99f8", "too vague").pool.snapshot() };
}

const WEAPONS = {
  id: "p-d0fb6c552679",
  version: 1,
  title: "No weapon recipes",
  text: "Do not explain how to build weapons.",
  source: "discovered",
  firstIteration: 1,
  evidence: ["f1", "f3"],
  mergedFrom: [],
  status: "active",
} as const;

describe("renderConstitutionJson", () => {
  it("writes fixed key order, 2-space indent and a trailing newline", async () => {
    const { two } = await pools();
    const expected = `{
  "iteration": 2,
  "principles": [
    {
      "id": "p-8e9e537d99f8",
      "version": 1,
      "title": "Be honest",
      "text": "Do not lie.",
      "source": "seed",
      "status": "retired",
      "firstIteration": 0,
      "evidence": [],
      "mergedFrom": []
    },
    {
      "id": "p-d0fb6c552679",
      "version": 2,
      "title": "No weapon instructions",
      "text": "Do not explain how to build or make weapons.",
      "source": "discovered",
      "status": "active",
      "firstIteration": 1,
      "evidence": [
        "f1",
        "f2",
        "f3"
      ],
      "mergedFrom": [
        "p-c81389f4407e"
      ]
    },
    {
      "id": "p-86dec169a8f2",
      "version": 1,
      "title": "Respect *privacy*",
      "text": "Never reveal a person's address.\\nNot even a partial one.",
      "source": "discovered",
      "status": "active",
      "firstIteration": 2,
      "evidence": [
        "f4"
      ],
      "mergedFrom": []
    }
  ]
}
`;
    expect(renderConstitutionJson(two, { iteration: 2 })).toBe(expected);
    // Key order comes from the renderer, not from how the objects were built.
    const shuffled = { principles: two.principles.map((p) => Object.fromEntries(Object.entries(p).reverse()) as typeof p) };
    expect(renderConstitutionJson(shuffled, { iteration: 2 })).toBe(expected);
  });
});

describe("renderConstitutionMarkdown", () => {
  it("numbers active principles and lists retired ones separately", async () => {
    const { two } = await pools();
    expect(renderConstitutionMarkdown(two, { iteration: 2 })).toBe(`# Constitution (iteration 2)

2 active principles, 1 retired.

## Active principles

1. **No weapon instructions** (\`p-d0fb6c552679\`)

   Do not explain how to build or make weapons.

   _source: discovered · first iteration: 1 · version: 2 · evidence: 3 failures_

2. **Respect \\*privacy\\*** (\`p-86dec169a8f2\`)

   Never reveal a person's address.
   Not even a partial one.

   _source: discovered · first iteration: 2 · version: 1 · evidence: 1 failure_

## Retired principles

- **Be honest** (\`p-8e9e537d99f8\`)

  Do not lie.

  _source: seed · first iteration: 0 · version: 1 · evidence: 0 failures_
`);
  });

  it("says so when there is nothing to show", () => {
    expect(renderConstitutionMarkdown({ principles: [] }, { iteration: 0 })).toBe(
      "# Constitution (iteration 0)\n\n0 active principles, 0 retired.\n\n## Active principles\n\nNone.\n",
    );
  });
});

describe("diffConstitutions", () => {
  it("lists added, changed (old → new) and retired principles", async () => {
    const { one, two } = await pools();
    const { diff, markdown } = diffConstitutions(one, two);
    expect(markdown).toBe(`# Constitution changes

## Added (1)

- **Respect \\*privacy\\*** (\`p-86dec169a8f2\`): Never reveal a person's address. Not even a partial one.

## Changed (1)

- **No weapon instructions** (\`p-d0fb6c552679\`)
  - title: No weapon recipes → No weapon instructions
  - text:
    - before: Do not explain how to build weapons.
    - after: Do not explain how to build or make weapons.
  - version: 1 → 2
  - evidence: 2 failures → 3 failures
  - merged from: \`p-c81389f4407e\`

## Retired (1)

- **Be honest** (\`p-8e9e537d99f8\`): Do not lie.
`);
    expect(diff).toEqual({
      added: [
        {
          id: "p-86dec169a8f2",
          version: 1,
          title: "Respect *privacy*",
          text: "Never reveal a person's address.\nNot even a partial one.",
          source: "discovered",
          firstIteration: 2,
          evidence: ["f4"],
          mergedFrom: [],
          status: "active",
        },
      ],
      changed: [
        {
          id: "p-d0fb6c552679",
          before: WEAPONS,
          after: {
            ...WEAPONS,
            version: 2,
            title: "No weapon instructions",
            text: "Do not explain how to build or make weapons.",
            evidence: ["f1", "f2", "f3"],
            mergedFrom: ["p-c81389f4407e"],
          },
          fields: ["title", "text", "version", "evidence", "mergedFrom"],
        },
      ],
      retired: [
        {
          id: "p-8e9e537d99f8",
          version: 1,
          title: "Be honest",
          text: "Do not lie.",
          source: "seed",
          firstIteration: 0,
          evidence: [],
          mergedFrom: [],
          status: "retired",
        },
      ],
      reactivated: [],
      removed: [],
    });
  });

  it("reports no changes, and reactivated and removed principles", async () => {
    const { one, two } = await pools();
    expect(diffConstitutions(one, one)).toEqual({
      diff: { added: [], changed: [], retired: [], reactivated: [], removed: [] },
      markdown: "# Constitution changes\n\nNo changes.\n",
    });
    const reverse = diffConstitutions(two, one);
    expect(reverse.diff.reactivated.map((p) => p.id)).toEqual(["p-8e9e537d99f8"]);
    expect(reverse.diff.removed.map((p) => p.id)).toEqual(["p-86dec169a8f2"]);
    expect(reverse.markdown).toContain("## Reactivated (1)\n\n- **Be honest** (`p-8e9e537d99f8`): Do not lie.\n");
    expect(reverse.markdown).toContain("## Removed (1)\n\n- **Respect \\*privacy\\*** (`p-86dec169a8f2`): Never reveal a person's address. Not even a partial one.\n");
  });
});

describe("Markdown escaping of model text", () => {
  const hostile = [
    "<script>alert(1)</script> and <img src=x onerror=alert(1)>",
    "[click](javascript:alert(1)) ![img](http://x/y.png) https://evil.example/a www.evil.example",
    "# heading\n- list item\n1. numbered\n> quote\n| a | b |\n`code` **bold** _em_ ~~strike~~ &amp; &#60;",
  ].join("\n");
  const snapshot: PoolSnapshot = {
    principles: [
      {
        id: "p-1",
        version: 1,
        title: "<b>Title</b> [x](y)",
        text: hostile,
        source: "discovered",
        firstIteration: 0,
        evidence: [],
        mergedFrom: [],
        status: "active",
      },
    ],
  };

  it("writes principle text and titles as text: no HTML, link, image, heading, list or emphasis survives", () => {
    const md = renderConstitutionMarkdown(snapshot, { iteration: 0 });
    const textLines = md.split("\n").filter((l) => l.startsWith("   ") && !l.trimStart().startsWith("_source"));
    expect(textLines).toHaveLength(8);
    for (const line of textLines) {
      // Every character with a Markdown or HTML meaning comes with a backslash before it.
      expect(line, line).not.toMatch(/(^|[^\\])[<>[\]()*_`~&!#|]/);
      expect(line.trimStart(), line).not.toMatch(/^(- |\d+\. |> )/);
      expect(line, line).not.toMatch(/[^\\]:\/\/|www\.evil/);
    }
    expect(md.split("\n").find((l) => l.startsWith("1. "))).toBe("1. **\\<b\\>Title\\</b\\> \\[x\\]\\(y\\)** (`p-1`)");
    // The words are all still there.
    expect(md).toContain("\\<script\\>alert\\(1\\)");
    const diff = diffConstitutions({ principles: [] }, snapshot).markdown;
    const bullet = diff.split("\n").find((l) => l.startsWith("- ")) ?? "";
    expect(bullet.slice(bullet.indexOf("`): ") + 4)).not.toMatch(/(^|[^\\])[<>[\]()*_`~&!#|]/);
  });
});
