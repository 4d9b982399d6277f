import { describe, expect, it } from "vitest";
import {
  applyTransforms,
  base64Transform,
  chainOfUtterancesTransform,
  homoglyphTransform,
  leetspeakTransform,
  PERSONAS,
  personaTransform,
  transformById,
} from "../../src/attacks/transforms.js";
import { CHAIN_OF_UTTERANCES_FINAL_LINE } from "../../src/datasets/chain-of-utterances.js";

const REQUEST = "How do I pick a pin tumbler lock?";

describe("static attack transforms", () => {
  it("base64: the UTF-8 request encoded under a decoding instruction, which decodes back exactly", () => {
    const out = base64Transform().apply("Ünïcode $& request");
    const lines = out.split("\n");
    expect(lines[0]).toMatch(/^The message below is encoded in base64\./);
    expect(lines[1]).toBe("");
    expect(Buffer.from(lines[2] as string, "base64").toString("utf8")).toBe("Ünïcode $& request");
  });

  it("leetspeak: letters to digits, every letter of the set in full, only a/e/o in light, case-insensitive", () => {
    expect(leetspeakTransform("full").apply("Steal a Bike, sell it")).toBe("57341 4 81k3, 5311 17");
    expect(leetspeakTransform("light").apply("Steal a Bike, sell it")).toBe("St34l 4 Bik3, s3ll it");
    expect(leetspeakTransform().id).toBe("leetspeak:full");
  });

  it("homoglyph: Cyrillic look-alikes at the given rate, the same text for the same seed", () => {
    const all = homoglyphTransform(1, 7).apply("peace OK cat");
    expect(all).toBe("\u0440\u0435\u0430\u0441\u0435 \u041e\u041a \u0441\u0430t");
    // Every letter with a look-alike was swapped (t has none); the text reads the same but is different code points.
    expect(all).not.toBe("peace OK cat");
    const half = homoglyphTransform(0.5, 3);
    const text = "a".repeat(400);
    const once = half.apply(text);
    expect(half.apply(text)).toBe(once);
    const swapped = [...once].filter((c) => c === "\u0430").length;
    expect(swapped).toBeGreaterThan(150);
    expect(swapped).toBeLessThan(250);
    expect(homoglyphTransform(0.5, 4).apply(text)).not.toBe(once);
    expect(() => homoglyphTransform(0)).toThrow(/rate/);
  });

  it("persona: the request inside the framing, once, with replacement patterns left alone", () => {
    const out = personaTransform("novelist").apply("Use $& and $1 here");
    expect(out).toBe((PERSONAS.novelist as string).split("{request}").join("Use $& and $1 here"));
    expect(out.endsWith("Use $& and $1 here")).toBe(true);
    expect(() => personaTransform("pirate")).toThrow(/unknown persona 'pirate' \(known: novelist/);
  });

  it("composes in order and records every step with its parameters", () => {
    const out = applyTransforms(REQUEST, [leetspeakTransform("light"), base64Transform(), personaTransform("historian")]);
    expect(out.original).toBe(REQUEST);
    expect(out.steps).toEqual([
      { strategy: "leetspeak:light", params: { level: "light" } },
      { strategy: "base64", params: {} },
      { strategy: "persona:historian", params: { persona: "historian" } },
    ]);
    const encoded = out.text.split("\n").at(-1) as string;
    expect(Buffer.from(encoded, "base64").toString("utf8")).toBe(leetspeakTransform("light").apply(REQUEST));
    expect(out.text.startsWith("As a historian of technology")).toBe(true);
  });

  it("names transforms as a config does, and refuses unknown ones", () => {
    expect(transformById("base64").id).toBe("base64");
    expect(transformById("leetspeak:light").apply("test")).toBe("t3st");
    expect(transformById("homoglyph:1", 0).apply("ox")).toBe("\u043e\u0445");
    expect(transformById("persona:opposite-day").id).toBe("persona:opposite-day");
    expect(transformById("chain-of-utterances").apply(REQUEST).endsWith(CHAIN_OF_UTTERANCES_FINAL_LINE)).toBe(true);
    expect(chainOfUtterancesTransform().apply(REQUEST)).toContain(REQUEST);
    expect(() => transformById("rot13")).toThrow(/unknown transform 'rot13'/);
    expect(() => transformById("leetspeak:heavy")).toThrow(/light or full/);
  });
});
