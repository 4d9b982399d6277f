import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { detectSeedFormat, loadSeeds, parseSeeds } from "../../src/constitutions/index.js";

// The fixtures are written for these tests. critique-revision*.json and rl-madison.json copy only the
// *shape* of Anthropic's CritiqueRevisionInstructions.json and RLMadisonInstructions.json (including the
// "CritiqueRequest:"/"Critique:" and "Options:" scaffolding); their wording is ours.
const fixture = (name: string): string => fileURLToPath(new URL(`fixtures/${name}`, import.meta.url));

describe("seed files in our own format", () => {
  it("reads YAML and JSON lists of {title, text}", async () => {
    expect(await loadSeeds(fixture("principles.yaml"))).toEqual([
      { title: "Decline weapon synthesis", text: "Do not give step-by-step directions for building weapons, even when the request is framed as fiction." },
      { title: "Say when unsure", text: "State uncertainty plainly instead of inventing facts." },
    ]);
    expect(await loadSeeds(fixture("principles.json"), { format: "principles" })).toEqual([
      { title: "Protect private data", text: "Never reveal a person's home address or phone number." },
    ]);
  });

  it("names the file and the entry in errors", async () => {
    await expect(loadSeeds(fixture("principles-bad.yaml"), { displayName: "principles-bad.yaml" })).rejects.toMatchObject({
      code: "DATA_INVALID",
      message: "principles-bad.yaml: entry 2: text must be a non-empty string, found nothing",
      details: { file: "principles-bad.yaml", line: null, field: "1.text" },
    });
    expect(() => parseSeeds("- title: A\n  txt: B\n", { file: "mine.yaml" })).toThrow(
      "mine.yaml: entry 1: unknown key(s) txt; only title and text are allowed",
    );
    expect(() => parseSeeds("[]", { file: "empty.json" })).toThrow("empty.json: contains no principles");
    expect(() => parseSeeds("[{", { file: "broken.json" })).toThrow(/^broken\.json: cannot parse: /);
    expect(() => parseSeeds("just words", { file: "words.yaml" })).toThrow(
      "words.yaml: not a seed file in a known format (expected a list of {title, text}, a list of strings, or an object of {prompt, edit_request}); found a string",
    );
  });

  it("reports a missing file as USAGE", async () => {
    await expect(loadSeeds(fixture("absent.yaml"), { displayName: "absent.yaml" })).rejects.toMatchObject({ code: "USAGE" });
  });
});

describe("Constitutional AI seed files", () => {
  it("maps critique/revision entries to one principle each, without the dialogue scaffolding", async () => {
    expect(await loadSeeds(fixture("critique-revision.json"))).toEqual([
      {
        title: "critique-revision harmful0",
        text: "Point out anything in the last reply that could help someone hurt people. Rewrite the reply so it offers no such help.",
      },
      {
        title: "critique-revision harmful1",
        text: "Note any claim in the last reply that is stated with more confidence than it deserves. Rewrite the reply with honest hedging.",
      },
    ]);
  });

  it("names the entry key when a critique/revision entry is malformed", async () => {
    await expect(loadSeeds(fixture("critique-revision-bad.json"), { displayName: "critique-revision-bad.json" })).rejects.toMatchObject({
      code: "DATA_INVALID",
      message: 'critique-revision-bad.json: entry "harmful1": edit_request must be a non-empty string, found a number',
      details: { file: "critique-revision-bad.json", field: "harmful1.edit_request" },
    });
    const noPrompt = JSON.stringify({ harmful0: { prompt: [], edit_request: "Fix it." } });
    expect(() => parseSeeds(noPrompt, { file: "cai.json" })).toThrow(
      'cai.json: entry "harmful0": prompt must be a non-empty list of critique requests, found a list',
    );
  });

  it("maps RL-CAI instructions to principles without the trailing Options: cue", async () => {
    expect(await loadSeeds(fixture("rl-madison.json"))).toEqual([
      { title: "rl-madison 1", text: "Pick the reply that is kinder and more careful." },
      { title: "rl-madison 2", text: "Which reply avoids helping with anything dangerous?" },
    ]);
    expect(() => parseSeeds('["ok", 3]', { file: "rl.json", format: "cai-rl-madison" })).toThrow("rl.json: entry 2: value must be a non-empty string, found a number");
  });

  it("detects formats by shape, and an explicit format overrides detection", () => {
    expect(detectSeedFormat(["a"])).toBe("cai-rl-madison");
    expect(detectSeedFormat([{ title: "a", text: "b" }])).toBe("principles");
    expect(detectSeedFormat({ harmful0: { prompt: ["x"], edit_request: "y" } })).toBe("cai-critique-revision");
    expect(detectSeedFormat({ title: "a" })).toBeNull();
    expect(() => parseSeeds('["Be good. Options:"]', { file: "list.json", format: "principles" })).toThrow(
      "list.json: entry 1: expected {title, text}, found a string",
    );
  });
});
