import type { Principle } from "../spec/records.js";
import type { PoolSnapshot } from "./pool.js";

/**
 * Renders a pool snapshot for people (Markdown) and for files kept with a run (JSON), and compares two
 * snapshots. Pure functions of their inputs: equal snapshots always render to identical bytes, so
 * rendered files can be hashed and diffed.
 */

/** Options for the renderers. */
export interface RenderConstitutionOptions {
  /** The iteration the snapshot belongs to. */
  readonly iteration: number;
}

/**
 * The snapshot as JSON: `{iteration, principles}` with each principle's keys in one fixed order
 * (not the order the object happened to be built in), 2-space indent and a trailing newline.
 */
export function renderConstitutionJson(snapshot: PoolSnapshot, options: RenderConstitutionOptions): string {
  const principles = snapshot.principles.map((p) => ({
    id: p.id,
    version: p.version,
    title: p.title,
    text: p.text,
    source: p.source,
    status: p.status,
    firstIteration: p.firstIteration,
    evidence: p.evidence,
    mergedFrom: p.mergedFrom,
  }));
  return `${JSON.stringify({ iteration: options.iteration, principles }, null, 2)}\n`;
}

/**
 * The snapshot as a readable Markdown document: active principles numbered in pool order (the order
 * the target sees them), then retired ones in their own section.
 */
export function renderConstitutionMarkdown(snapshot: PoolSnapshot, options: RenderConstitutionOptions): string {
  const active = snapshot.principles.filter((p) => p.status === "active");
  const retired = snapshot.principles.filter((p) => p.status === "retired");
  const lines = [`# Constitution (iteration ${options.iteration})`, "", `${count(active.length, "active principle")}, ${retired.length} retired.`, ""];
  lines.push("## Active principles", "");
  if (active.length === 0) lines.push("None.", "");
  active.forEach((p, i) => {
    const marker = `${i + 1}. `;
    const indent = " ".repeat(marker.length);
    lines.push(`${marker}**${escapeInline(p.title)}** (\`${p.id}\`)`, "", ...indentBlock(p.text, indent), "", `${indent}${facts(p)}`, "");
  });
  if (retired.length > 0) {
    lines.push("## Retired principles", "");
    for (const p of retired) {
      lines.push(`- **${escapeInline(p.title)}** (\`${p.id}\`)`, "", ...indentBlock(p.text, "  "), "", `  ${facts(p)}`, "");
    }
  }
  return `${lines.join("\n").trimEnd()}\n`;
}

/** A field {@link diffConstitutions} compares (status changes are reported as retired/reactivated). */
export type PrincipleField = "title" | "text" | "version" | "source" | "firstIteration" | "evidence" | "mergedFrom";

const COMPARED_FIELDS: readonly PrincipleField[] = ["title", "text", "version", "source", "firstIteration", "evidence", "mergedFrom"];

/** One principle present in both snapshots whose content differs. */
export interface PrincipleChange {
  readonly id: string;
  readonly before: Principle;
  readonly after: Principle;
  /** Which fields differ, in {@link PrincipleField} order. */
  readonly fields: readonly PrincipleField[];
}

/** What changed between two snapshots. Lists follow the `after` pool's order (`removed`: `before`'s). */
export interface ConstitutionDiff {
  readonly added: readonly Principle[];
  readonly changed: readonly PrincipleChange[];
  /** Active before, retired after. */
  readonly retired: readonly Principle[];
  /** Retired before, active after. */
  readonly reactivated: readonly Principle[];
  /** In `before` but missing from `after` (the pool never drops principles; hand-edited snapshots can). */
  readonly removed: readonly Principle[];
}

/** The diff and its Markdown rendering. */
export interface ConstitutionDiffResult {
  readonly diff: ConstitutionDiff;
  readonly markdown: string;
}

/** Compares two snapshots by principle id; see {@link ConstitutionDiff}. */
export function diffConstitutions(before: PoolSnapshot, after: PoolSnapshot): ConstitutionDiffResult {
  const old = new Map(before.principles.map((p) => [p.id, p]));
  const ids = new Set(after.principles.map((p) => p.id));
  const added: Principle[] = [];
  const changed: PrincipleChange[] = [];
  const retired: Principle[] = [];
  const reactivated: Principle[] = [];
  for (const p of after.principles) {
    const previous = old.get(p.id);
    if (previous === undefined) {
      added.push(p);
      continue;
    }
    const fields = COMPARED_FIELDS.filter((field) => JSON.stringify(previous[field]) !== JSON.stringify(p[field]));
    if (fields.length > 0) changed.push({ id: p.id, before: previous, after: p, fields });
    if (previous.status === "active" && p.status === "retired") retired.push(p);
    if (previous.status === "retired" && p.status === "active") reactivated.push(p);
  }
  const removed = before.principles.filter((p) => !ids.has(p.id));
  const diff: ConstitutionDiff = { added, changed, retired, reactivated, removed };
  return { diff, markdown: renderDiffMarkdown(diff) };
}

/** Markdown for a {@link ConstitutionDiff}: one section per non-empty list, or "No changes.". */
export function renderDiffMarkdown(diff: ConstitutionDiff): string {
  const lines = ["# Constitution changes", ""];
  const section = (heading: string, items: readonly Principle[]): void => {
    if (items.length === 0) return;
    lines.push(`## ${heading} (${items.length})`, "");
    for (const p of items) lines.push(`- **${escapeInline(p.title)}** (\`${p.id}\`): ${oneLine(p.text)}`);
    lines.push("");
  };
  section("Added", diff.added);
  if (diff.changed.length > 0) {
    lines.push(`## Changed (${diff.changed.length})`, "");
    for (const change of diff.changed) lines.push(...changeLines(change));
    lines.push("");
  }
  section("Retired", diff.retired);
  section("Reactivated", diff.reactivated);
  section("Removed", diff.removed);
  if (lines.length === 2) lines.push("No changes.");
  return `${lines.join("\n").trimEnd()}\n`;
}

function changeLines({ before, after, fields }: PrincipleChange): string[] {
  const lines = [`- **${escapeInline(after.title)}** (\`${after.id}\`)`];
  for (const field of fields) {
    switch (field) {
      case "title":
        lines.push(`  - title: ${escapeInline(before.title)} → ${escapeInline(after.title)}`);
        break;
      case "text":
        lines.push("  - text:", `    - before: ${oneLine(before.text)}`, `    - after: ${oneLine(after.text)}`);
        break;
      case "evidence":
        lines.push(`  - evidence: ${count(before.evidence.length, "failure")} → ${count(after.evidence.length, "failure")}`);
        break;
      case "mergedFrom": {
        const fresh = after.mergedFrom.filter((id) => !before.mergedFrom.includes(id));
        lines.push(`  - merged from: ${fresh.length > 0 ? fresh.map((id) => `\`${id}\``).join(", ") : "(list edited)"}`);
        break;
      }
      default:
        lines.push(`  - ${field}: ${String(before[field])} → ${String(after[field])}`);
    }
  }
  return lines;
}

function facts(p: Principle): string {
  return `_source: ${p.source} · first iteration: ${p.firstIteration} · version: ${p.version} · evidence: ${count(p.evidence.length, "failure")}_`;
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

/**
 * Indents every line of a (possibly multi-line) model-written text so it stays inside its list item, with its
 * Markdown and HTML escaped: a principle is shown as the words the oracle wrote, never as markup.
 */
function indentBlock(text: string, indent: string): string[] {
  return text.split(/\r?\n/).map((line) => (line.trim() === "" ? "" : `${indent}${escapeMarkdown(line.trim())}`));
}

/** Diff bullets are one line each; newlines in a principle would break the list. Escaped (model text). */
function oneLine(text: string): string {
  return escapeMarkdown(flat(text));
}

function flat(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

/**
 * Escapes model-written text for Markdown: every ASCII punctuation character with a meaning in CommonMark or
 * GitHub Markdown (emphasis, code, links, images, HTML tags and entities, tables, headings, strikethrough) gets a
 * backslash, and so does a line-leading list or setext marker. The text reads the same; nothing renders as
 * markup, a link (bare URLs included) or HTML.
 */
export function escapeMarkdown(text: string): string {
  return text
    .replace(/[\\`*_{}[\]()#+!|<>~&$]/g, (c) => `\\${c}`)
    .replace(/^(\s*)([-=:])/gm, "$1\\$2")
    .replace(/^(\s*\d+)([.])/gm, "$1\\$2")
    // GitHub turns bare URLs into links; an escaped colon or dot keeps them text.
    .replace(/:\/\//g, "\\://")
    .replace(/\bwww\./gi, (m) => `${m.slice(0, 3)}\\.`);
}

/** Escapes characters that would turn an oracle-written title into markup (emphasis, links, HTML). */
function escapeInline(text: string): string {
  return escapeMarkdown(flat(text));
}
