import { describe, expect, it } from "vitest";
import { optionLetter, parseLetterChoice, parseLetterChoiceDetailed } from "../../src/eval/letter-parser.js";

const CHOICES = ["Paris", "Lyon", "Marseille", "Nice"];

// [answer, expected index (null: no single option)], four options A-D unless noted.
const SHAPES: ReadonlyArray<readonly [string, number | null]> = [
  ["B", 1],
  ["(B)", 1],
  ["B.", 1],
  ["B)", 1],
  ["[C]", 2],
  ["b", 1],
  ["(d)", 3],
  ["  C  \n", 2],
  ["**C**", 2],
  ["`A`", 0],
  ["Answer: B", 1],
  ["answer: b", 1],
  ["ANSWER: D", 3],
  ["The answer is (C).", 2],
  ["The correct answer is B.", 1],
  ["The best answer is D) Nice.", 3],
  ["Final answer: **A**", 0],
  ["My answer is C because the others are wrong.", 2],
  ["Option B", 1],
  ["Option 2", 1],
  ["Answer: 3", 2],
  ["4", 3],
  ["I think it's C) because Marseille is a port.", 2],
  ["I'd go with B.", 1],
  ["I choose (A).", 0],
  ["It is D.", 3],
  ["C) because it is the largest", 2],
  ["B. Lyon", 1],
  ["(A) Paris", 0],
  ["D - Nice", 3],
  ["B\n\nExplanation: Lyon is in France.", 1],
  ["Answer: C\nExplanation: A is wrong because Paris is the capital, and B is a smaller city.", 2],
  ["<think>A looks tempting, but B is right... actually C.</think> C", 2],
  ["<think>\nLet me compare A and B.\n</think>\n\nThe answer is B.", 1],
  ["<think>I need to think about A, B and C for a long time and the token limit cuts", null],
  ["A and B", null],
  ["Either B or C.", null],
  ["The answer is A or B.", null],
  ["B/C", null],
  ["Paris", 0],
  ["Marseille.", 2],
  ["I would say Marseille is the right one.", 2],
  ["I'm sorry, but I can't help with that.", null],
  ["I cannot answer this question.", null],
  ["As an AI language model, I don't have personal opinions.", null],
  ["I don't know.", null],
  ["", null],
  ["   ", null],
  ["E", null],
  ["Answer: F", null],
  ["The answer is a bit unclear to me.", null],
  ["A cat is an animal.", null],
  ["A", 0],
  ["A is correct.", 0],
  ["Sure! The correct option is (D).<|im_end|>", 3],
  ["> **Answer:** B", 1],
  ["Neither A nor B.", null],
  ["None of the above.", null],
  ["Both A and C are correct.", null],
  ["Not A. The answer is D.", 3],
  ["Is it A? No, I believe it's B.", 1],
];

describe("parseLetterChoice", () => {
  it(`covers ${SHAPES.length} answer shapes`, () => {
    expect(SHAPES.length).toBeGreaterThanOrEqual(30);
  });

  it.each(SHAPES)("%j → %s", (answer, expected) => {
    expect(parseLetterChoice(answer, 4, CHOICES)).toBe(expected);
  });

  it("reads an option's text only when the texts are given", () => {
    expect(parseLetterChoice("Paris", 4)).toBeNull();
    expect(parseLetterChoice("Paris", 4, CHOICES)).toBe(0);
  });

  it("prefers the longer of two nested option texts and refuses two unrelated ones", () => {
    const choices = ["Paris", "Paris, Texas", "Dallas"];
    expect(parseLetterChoice("It is in Paris, Texas.", 3, choices)).toBe(1);
    expect(parseLetterChoice("Both Paris and Dallas.", 3, choices)).toBeNull();
  });

  it("treats a numeric option text as text before treating it as an option number", () => {
    expect(parseLetterChoice("3", 3, ["1", "2", "3"])).toBe(2);
    expect(parseLetterChoice("3", 3, ["10", "20", "30"])).toBe(2);
  });

  it("matches an option whose text is 'None of the above' by its text", () => {
    expect(parseLetterChoice("None of the above", 3, ["Yes", "No", "None of the above"])).toBe(2);
  });

  it("rejects letters past the last option and says so", () => {
    expect(parseLetterChoiceDetailed("C", 2)).toEqual({ index: null, rule: "out-of-range" });
    expect(parseLetterChoiceDetailed("Answer: B", 2)).toEqual({ index: 1, rule: "marker" });
  });

  it("reports which rule decided", () => {
    expect(parseLetterChoiceDetailed("B", 4).rule).toBe("bare-letter");
    expect(parseLetterChoiceDetailed("The answer is (C).", 4).rule).toBe("marker");
    expect(parseLetterChoiceDetailed("A and B", 4).rule).toBe("ambiguous");
    expect(parseLetterChoiceDetailed("No idea.", 4).rule).toBe("none");
  });

  it("rejects a bad option count", () => {
    expect(() => parseLetterChoice("A", 0)).toThrow(RangeError);
    expect(() => parseLetterChoice("A", 27)).toThrow(RangeError);
  });

  it("labels options A, B, C ...", () => {
    expect([0, 1, 25].map(optionLetter)).toEqual(["A", "B", "Z"]);
    expect(() => optionLetter(26)).toThrow(RangeError);
  });
});
