/**
 * Parses a model's answer to a lettered multiple-choice prompt ("A. ...\nB. ...") into a choice index.
 *
 * Real answers come in many shapes: a bare letter, a letter in parentheses or bold, "Answer: B", "The answer
 * is (C).", "I think it's C) because ...", lower case, an option number, the option's text echoed without its
 * letter, a reasoning block (`<think>...</think>`) before the answer, an explanation after it that mentions
 * other letters. The parser looks for the most explicit signal first and returns null when the answer names
 * no option, names several ("A and B"), or refuses. A null answer counts as wrong in every metric.
 */

/** Letters used to label options, in order. */
export const OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/** The letter of option `index` (0 → "A"). */
export function optionLetter(index: number): string {
  const letter = OPTION_LETTERS[index];
  if (letter === undefined) throw new RangeError(`no option letter for index ${index}`);
  return letter;
}

/** Which rule decided a parse (kept in per-item details to make parser behaviour auditable). */
export type LetterParseRule =
  | "bare-letter"
  | "marker"
  | "option-number"
  | "leading-letter"
  | "choice-phrase"
  | "parenthesized"
  | "choice-text"
  | "lone-letter";

export interface LetterParse {
  /** 0-based option index, or null when no single option could be read. */
  readonly index: number | null;
  /** The rule that decided, or why nothing was found. */
  readonly rule: LetterParseRule | "ambiguous" | "out-of-range" | "none";
}

/**
 * The option index a free-text answer picks among `nChoices` lettered options, or null. `choices` (the
 * options' texts, in the order they were shown) lets an answer that echoes an option's text without its letter
 * be matched.
 */
export function parseLetterChoice(text: string, nChoices: number, choices?: readonly string[]): number | null {
  return parseLetterChoiceDetailed(text, nChoices, choices).index;
}

// Words that introduce the chosen option: "Answer: B", "the correct option is (C)", "Choice - D".
const MARKER =
  /\b(?:(?:final|correct|best|right|my)\s+)?(?:answer|choice|option|response|selection)(?:\s+(?:is|would\s+be|will\s+be|should\s+be|=))?\s*(?:[:=\-–—]\s*)?(?:\*\*)?(?:option\s+|choice\s+|letter\s+)?[([]?([A-Za-z])(?![A-Za-z0-9'])[)\].]?/gi;
// Verbs and phrases a chosen letter follows: "I think it's C", "I'd go with B", "I choose (A)".
const CHOICE_PHRASE =
  /\b(?:it'?s|it\s+is|that'?s|go(?:ing)?\s+with|choose|choosing|chose|pick|picking|select|selecting|opt\s+for|would\s+be|should\s+be|must\s+be)\s+(?:option\s+|letter\s+)?[([]?([A-Za-z])(?![A-Za-z0-9'])/gi;
// "Neither A nor B", "None of the above": the answer rejects the options.
const NONE = /\b(?:neither|none\s+of|all\s+of\s+the\s+above)\b/i;
// "A and B", "B or C", "A/B", "A, C": the answer names two options.
const TWO_LETTERS = /^\s*(?:\)|\])?\s*(?:,|and|or|&|\/|\+)\s*(?:\(|\[)?([A-Za-z])(?![A-Za-z0-9'])/i;
const NUMBER_MARKER =
  /\b(?:answer|choice|option|number|#)\s*(?:is|would\s+be|=)?\s*[:=\-–—]?\s*(?:number\s+|#)?(\d{1,2})(?![\d.,]\d)/i;

/** Like {@link parseLetterChoice}, and says which rule decided. */
export function parseLetterChoiceDetailed(text: string, nChoices: number, choices?: readonly string[]): LetterParse {
  if (!Number.isInteger(nChoices) || nChoices < 1 || nChoices > OPTION_LETTERS.length) {
    throw new RangeError(`parseLetterChoice: nChoices must be 1..${OPTION_LETTERS.length}, got ${nChoices}`);
  }
  const answer = normalize(text);
  if (answer === "") return { index: null, rule: "none" };
  const inRange = (letter: string): number | null => {
    const i = OPTION_LETTERS.indexOf(letter.toUpperCase());
    return i >= 0 && i < nChoices ? i : null;
  };
  const decided = (letter: string, rule: LetterParseRule): LetterParse => {
    const index = inRange(letter);
    return index === null ? { index: null, rule: "out-of-range" } : { index, rule };
  };

  // 1. The whole answer is one letter: "B", "(b)", "C.", "[D]", "B)".
  const bare = /^[([]?([A-Za-z])[)\].:]?$/.exec(answer);
  if (bare?.[1]) return decided(bare[1], "bare-letter");

  // 2. The whole answer is an option's text (checked before numbers: options may themselves be numbers).
  if (choices) {
    const exact = choices.findIndex((c) => comparable(c) !== "" && comparable(c) === comparable(answer));
    if (exact >= 0 && exact < nChoices) return { index: exact, rule: "choice-text" };
  }
  if (NONE.test(answer)) return { index: null, rule: "none" };

  // 3. An explicit marker: "Answer: B", "The correct answer is (C).", "Option D". The first marker decides, so
  //    an explanation after it ("Answer: C\nExplanation: A is wrong") does not; a lower-case letter counts only
  //    when nothing word-like follows it ("the answer is a bit unclear" names no option).
  for (const m of answer.matchAll(MARKER)) {
    const letter = m[1];
    if (!letter) continue;
    const after = answer.slice((m.index ?? 0) + m[0].length);
    if (letter === letter.toLowerCase() && !/^\s*(?:$|[).,;:!\]\n])/.test(after) && !/^[).\]]/.test(m[0].slice(-1))) continue;
    if (letter === "I" && /^\s+[a-z]/.test(after)) continue;
    if (letter === "A" && /^\s+(?!is\b|was\b|and\b|or\b)[a-z]/.test(after)) continue;
    if (namesSecondLetter(after, nChoices)) return { index: null, rule: "ambiguous" };
    return decided(letter, "marker");
  }

  // 4. An option number after a marker, or alone: "Option 2", "Answer: 3", "2".
  const numbered = /^(\d{1,2})[.)]?$/.exec(answer) ?? NUMBER_MARKER.exec(answer);
  if (numbered?.[1]) {
    const n = Number(numbered[1]);
    return n >= 1 && n <= nChoices ? { index: n - 1, rule: "option-number" } : { index: null, rule: "out-of-range" };
  }

  // 5. The answer starts with a letter set off by punctuation or a line end: "C) because ...", "B. Paris",
  //    "(A) Yes", "D - none", "B\n\nExplanation ...", "b)".
  const leading = /^[([]?([A-Za-z])(?:[)\]]|[.:\-–—](?=\s|$)|\s*\n|\s+(?:is|because|since|as)\b)/.exec(answer);
  if (leading?.[1] && !(leading[1] === "I" && /^I\s/.test(answer)) && !(leading[1] === "A" && /^A\s+(?:because|since|as)\b/.test(answer))) {
    const after = answer.slice(leading[0].length);
    if (namesSecondLetter(after, nChoices) && /^[^\n]*?(?:\band\b|\bor\b|&|\/)/.test(after.slice(0, 12))) {
      return { index: null, rule: "ambiguous" };
    }
    return decided(leading[1], "leading-letter");
  }

  // 6. A choosing phrase: "I think it's C) because", "I'd go with B", "I choose (A)".
  for (const m of answer.matchAll(CHOICE_PHRASE)) {
    const letter = m[1];
    // Only a capital letter: "I'd pick a few" names no option.
    if (!letter || letter !== letter.toUpperCase()) continue;
    const after = answer.slice((m.index ?? 0) + m[0].length);
    if ((letter === "A" || letter === "I") && /^\s+[a-z]/.test(after) && !/^\s+(?:is|was|because|since)\b/.test(after)) continue;
    if (namesSecondLetter(after, nChoices)) return { index: null, rule: "ambiguous" };
    return decided(letter, "choice-phrase");
  }

  // 7. Letters in parentheses or brackets anywhere: one distinct letter decides, several are ambiguous.
  const parenthesized = distinct([...answer.matchAll(/[([]([A-Za-z])[)\]]/g)].map((m) => (m[1] ?? "").toUpperCase()));
  if (parenthesized.length === 1) return decided(parenthesized[0] as string, "parenthesized");
  if (parenthesized.length > 1) return { index: null, rule: "ambiguous" };

  // 8. The option's text echoed without its letter.
  if (choices) {
    const hit = echoedChoice(answer, choices.slice(0, nChoices));
    if (hit !== null) return { index: hit, rule: "choice-text" };
  }

  // 9. Exactly one stand-alone capital letter that is not the article "A" or the pronoun "I".
  const lone = distinct(
    [...answer.matchAll(/(?<![A-Za-z0-9'’-])([A-Z])(?![A-Za-z0-9'’-])/g)]
      .filter((m) => {
        const letter = m[1] as string;
        const after = answer.slice((m.index ?? 0) + 1);
        if (letter === "I" && !/^\s*(?:[).\]:]|$)/.test(after)) return false;
        if (letter === "A" && /^\s+[a-z]/.test(after) && !/^\s+(?:is|was|seems|looks|and|or)\b/.test(after)) return false;
        return true;
      })
      .map((m) => m[1] as string),
  );
  if (lone.length === 1) return decided(lone[0] as string, "lone-letter");
  if (lone.length > 1 && lone.filter((l) => inRange(l) !== null).length > 1) return { index: null, rule: "ambiguous" };
  return { index: null, rule: "none" };
}

/** Reasoning blocks and formatting removed, whitespace trimmed. */
function normalize(text: string): string {
  let t = text;
  // Reasoning blocks: a closed block is dropped; an unclosed one (cut off by the token limit) leaves no answer.
  t = t.replace(/<(think|thinking|reasoning)>[\s\S]*?<\/\1>/gi, " ");
  t = t.replace(/<(think|thinking|reasoning)>[\s\S]*$/i, " ");
  t = t.replace(/<\|[^|>]*\|>/g, " "); // leftover special tokens such as <|im_end|>
  t = t.replace(/\*\*|__|`+/g, "");
  t = t.replace(/^[\s>#*-]+/, "");
  return t.trim();
}

/** True when the text right after a letter names a second, different in-range option ("and B", "/C"). */
function namesSecondLetter(after: string, nChoices: number): boolean {
  const m = TWO_LETTERS.exec(after);
  if (!m?.[1]) return false;
  const second = m[1];
  if (second === second.toLowerCase() && second !== "a") return false;
  const i = OPTION_LETTERS.indexOf(second.toUpperCase());
  // "a" right after "and"/"or" is the article unless it stands alone.
  if (second === "a" && !/^\s*(?:,|and|or|&|\/|\+)\s*[([]?a(?:\s*$|[).,\]])/i.test(after)) return false;
  return i >= 0 && i < nChoices;
}

function distinct(values: readonly string[]): string[] {
  return [...new Set(values)];
}

/** Lower case, letters and digits only, single spaces (for comparing answer text with option text). */
function comparable(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, " ")
    .trim();
}

/**
 * The option whose text the answer contains (on word boundaries). When several are contained, options that
 * are part of a longer contained option are dropped ("Paris" inside "Paris, Texas"); more than one left is
 * ambiguous.
 */
function echoedChoice(answer: string, choices: readonly string[]): number | null {
  const padded = ` ${comparable(answer)} `;
  const contained = choices
    .map((c, i) => ({ i, text: comparable(c) }))
    .filter((c) => c.text.length >= 2 && padded.includes(` ${c.text} `));
  const maximal = contained.filter((c) => !contained.some((o) => o !== c && o.text.length > c.text.length && ` ${o.text} `.includes(` ${c.text} `)));
  return maximal.length === 1 ? (maximal[0] as { i: number }).i : null;
}
