import { createHash } from "node:crypto";

/**
 * Contamination check: do training prompts overlap the evaluation sets? Three tests, from strict to loose:
 * - `exact`: the same text after normalization (case, Unicode compatibility forms, punctuation, spacing);
 * - `ngram`: a shared run of N normalized words (N = 13 by default, as lm-evaluation-harness's decontamination
 *   uses), which catches an evaluation question pasted inside a longer prompt;
 * - `near-duplicate`: estimated Jaccard similarity of the sets of character 5-grams of the normalized text
 *   (MinHash, 128 hashes, banded for candidates, then checked on the estimate) at or above a threshold (0.8 by
 *   default), which catches light rewording of short texts that share no 13 words in a row.
 * A text shorter than N words can only match exactly or as a near duplicate.
 */

/** A text to compare, with the id it is reported under. */
export interface TextItem {
  readonly id: string;
  readonly text: string;
}

/** An evaluation set: its name (`truthfulqa`, `xstest`, `heldout`, `mc:<file>`) and its texts. */
export interface EvalTextSet {
  readonly name: string;
  readonly items: readonly TextItem[];
}

export type MatchKind = "exact" | "ngram" | "near-duplicate";

/** One training text found in an evaluation set: the strictest test that matched, and with which item. */
export interface ContaminationMatch {
  readonly trainId: string;
  readonly set: string;
  readonly evalId: string;
  readonly kind: MatchKind;
  /** For `ngram`: the first shared n-gram; for `near-duplicate`: the estimated Jaccard similarity. */
  readonly evidence: string | number;
}

/** Per evaluation set: how many training texts matched it, by test. */
export interface SetContamination {
  readonly set: string;
  readonly evalItems: number;
  readonly matched: number;
  readonly byKind: Readonly<Record<MatchKind, number>>;
}

export interface ContaminationReport {
  readonly version: 1;
  readonly settings: { readonly ngram: number; readonly nearDuplicateThreshold: number; readonly minhashHashes: number };
  readonly trainItems: number;
  /** Training texts that matched at least one set. */
  readonly flagged: number;
  readonly sets: readonly SetContamination[];
  /** Every match, one per (training text, set), strictest test first. */
  readonly matches: readonly ContaminationMatch[];
}

export interface ContaminationOptions {
  /** Words in a shared run that counts as overlap; default 13. */
  readonly ngram?: number;
  /** Estimated Jaccard similarity at or above which two texts are near duplicates; default 0.8. */
  readonly nearDuplicateThreshold?: number;
}

/** Lowercased NFKC text with punctuation and symbols turned into spaces, split into words. */
export function normalizedWords(text: string): string[] {
  return text
    .normalize("NFKC")
    .toLowerCase()
    .replace(/[\p{P}\p{S}]+/gu, " ")
    .split(/\s+/u)
    .filter((w) => w.length > 0);
}

const HASHES = 128;
const BANDS = 32;
const ROWS = HASHES / BANDS;
const SHINGLE = 5;

/** 32-bit FNV-1a of a string. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Fixed seeds of the MinHash family (a and b of `a*x + b`), derived from a hash so every run uses the same ones. */
const SEEDS: ReadonlyArray<readonly [number, number]> = (() => {
  const bytes = createHash("sha256").update("iteralign minhash seeds").digest();
  const out: Array<[number, number]> = [];
  let state = bytes.readUInt32LE(0) || 1;
  const next = (): number => {
    // xorshift32
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
  for (let i = 0; i < HASHES; i++) out.push([next() | 1, next()]);
  return out;
})();

/** MinHash signature of the set of character 5-grams of the words joined by spaces (the whole text when shorter); null for no words. */
export function minhash(words: readonly string[]): Uint32Array | null {
  if (words.length === 0) return null;
  const text = words.join(" ");
  const shingles = new Set<number>();
  if (text.length < SHINGLE) shingles.add(fnv1a(text));
  else for (let i = 0; i + SHINGLE <= text.length; i++) shingles.add(fnv1a(text.slice(i, i + SHINGLE)));
  const sig = new Uint32Array(HASHES).fill(0xffffffff);
  for (const x of shingles) {
    for (let k = 0; k < HASHES; k++) {
      const [a, b] = SEEDS[k] as readonly [number, number];
      const v = (Math.imul(a, x) + b) >>> 0;
      if (v < (sig[k] as number)) sig[k] = v;
    }
  }
  return sig;
}

/** Share of equal positions of two signatures: the estimate of their sets' Jaccard similarity. */
export function estimatedJaccard(a: Uint32Array, b: Uint32Array): number {
  let same = 0;
  for (let k = 0; k < HASHES; k++) if (a[k] === b[k]) same++;
  return same / HASHES;
}

interface IndexedSet {
  readonly name: string;
  readonly size: number;
  readonly exact: Map<string, string>;
  readonly ngrams: Map<string, string>;
  readonly bands: Map<string, string[]>;
  readonly signatures: Map<string, Uint32Array>;
}

function indexSet(set: EvalTextSet, n: number): IndexedSet {
  const exact = new Map<string, string>();
  const ngrams = new Map<string, string>();
  const bands = new Map<string, string[]>();
  const signatures = new Map<string, Uint32Array>();
  for (const item of set.items) {
    const words = normalizedWords(item.text);
    if (words.length === 0) continue;
    const key = words.join(" ");
    if (!exact.has(key)) exact.set(key, item.id);
    for (let i = 0; i + n <= words.length; i++) {
      const gram = words.slice(i, i + n).join(" ");
      if (!ngrams.has(gram)) ngrams.set(gram, item.id);
    }
    const sig = minhash(words) as Uint32Array;
    signatures.set(item.id, sig);
    for (let b = 0; b < BANDS; b++) {
      const bandKey = `${b}:${Array.from(sig.subarray(b * ROWS, (b + 1) * ROWS)).join(",")}`;
      const list = bands.get(bandKey);
      if (list) list.push(item.id);
      else bands.set(bandKey, [item.id]);
    }
  }
  return { name: set.name, size: set.items.length, exact, ngrams, bands, signatures };
}

/**
 * Indexes of evaluation sets, kept per set object and n-gram size: a run checks every iteration's examples against
 * the same sets (loaded once), so each set is hashed once per run, not once per iteration.
 */
const INDEXES = new WeakMap<EvalTextSet, Map<number, IndexedSet>>();

function indexedSet(set: EvalTextSet, n: number): IndexedSet {
  let byN = INDEXES.get(set);
  if (!byN) {
    byN = new Map();
    INDEXES.set(set, byN);
  }
  let index = byN.get(n);
  if (!index) {
    index = indexSet(set, n);
    byN.set(n, index);
  }
  return index;
}

function matchOne(words: readonly string[], set: IndexedSet, n: number, threshold: number): Omit<ContaminationMatch, "trainId" | "set"> | null {
  if (words.length === 0) return null;
  const exactId = set.exact.get(words.join(" "));
  if (exactId !== undefined) return { evalId: exactId, kind: "exact", evidence: words.join(" ").slice(0, 200) };
  for (let i = 0; i + n <= words.length; i++) {
    const gram = words.slice(i, i + n).join(" ");
    const evalId = set.ngrams.get(gram);
    if (evalId !== undefined) return { evalId, kind: "ngram", evidence: gram };
  }
  const sig = minhash(words) as Uint32Array;
  let best: { evalId: string; score: number } | null = null;
  const seen = new Set<string>();
  for (let b = 0; b < BANDS; b++) {
    const candidates = set.bands.get(`${b}:${Array.from(sig.subarray(b * ROWS, (b + 1) * ROWS)).join(",")}`);
    for (const id of candidates ?? []) {
      if (seen.has(id)) continue;
      seen.add(id);
      const score = estimatedJaccard(sig, set.signatures.get(id) as Uint32Array);
      if (score >= threshold && (best === null || score > best.score)) best = { evalId: id, score };
    }
  }
  return best ? { evalId: best.evalId, kind: "near-duplicate", evidence: best.score } : null;
}

/** Checks every training text against every evaluation set. Deterministic: same inputs, same report. */
export function checkContamination(train: readonly TextItem[], sets: readonly EvalTextSet[], options: ContaminationOptions = {}): ContaminationReport {
  const n = options.ngram ?? 13;
  const threshold = options.nearDuplicateThreshold ?? 0.8;
  const indexed = sets.map((s) => indexedSet(s, n));
  const matches: ContaminationMatch[] = [];
  const perSet = new Map(indexed.map((s) => [s.name, { set: s.name, evalItems: s.size, matched: 0, byKind: { exact: 0, ngram: 0, "near-duplicate": 0 } }]));
  const flagged = new Set<string>();
  for (const item of train) {
    const words = normalizedWords(item.text);
    for (const set of indexed) {
      const m = matchOne(words, set, n, threshold);
      if (!m) continue;
      matches.push({ trainId: item.id, set: set.name, ...m });
      const counts = perSet.get(set.name) as { matched: number; byKind: Record<MatchKind, number> };
      counts.matched++;
      counts.byKind[m.kind]++;
      flagged.add(item.id);
    }
  }
  return {
    version: 1,
    settings: { ngram: n, nearDuplicateThreshold: threshold, minhashHashes: HASHES },
    trainItems: train.length,
    flagged: flagged.size,
    sets: [...perSet.values()],
    matches,
  };
}
