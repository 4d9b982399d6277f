import { writeFileAtomic } from "../util/atomic-write.js";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { IterAlignError } from "../spec/errors.js";
import type { RunStore } from "../store/run-store.js";
import { loadItemTraces } from "./item-index.js";
import { loadEvalItems, type LoadedRun } from "./run-view.js";
import { REPORT_DATA_VERSION } from "./types.js";

/** The browser client, built by `npm run build` into dist/report-assets (two levels up from src/report and dist/report). */
const ASSETS = new URL("../../dist/report-assets/", import.meta.url);

export interface ReportAssets {
  readonly js: string;
  readonly css: string;
}

let cached: ReportAssets | undefined;

/** The client's script and styles; IterAlignError naming the fix when they were not built. */
export function reportAssets(): ReportAssets {
  if (cached) return cached;
  const js = fileURLToPath(new URL("client.js", ASSETS));
  const css = fileURLToPath(new URL("client.css", ASSETS));
  if (!existsSync(js) || !existsSync(css)) {
    throw new IterAlignError("USAGE", `the report's browser client is not built (${js}): run npm run build`);
  }
  // `</script` cannot end the inline script early: inside the bundle's strings and regexes `<\/` means the same.
  const script = readFileSync(js, "utf8").replace(/<\/(script)/gi, "<\\/$1");
  // `<!--` would switch the HTML parser's script state; the bundle has none (checked, not rewritten: a rewrite could
  // break a regular expression).
  if (script.includes("<!--")) throw new IterAlignError("USAGE", `${js} contains '<!--', which an inline script must not`);
  cached = { js: script, css: readFileSync(css, "utf8") };
  return cached;
}

function sha256Base64(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("base64");
}

/** Escapes text for HTML text and double-quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * JSON for a `<script type="application/json">` element: `<`, `>`, `&` and the line separators are written as
 * `\u` escapes, so no string inside can close the element (`</script>`) or open a comment.
 */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** The static report's policy: only the page's own inline script and style (by hash), nothing from anywhere. */
export function reportCsp(assets: ReportAssets): string {
  return [
    "default-src 'none'",
    `script-src 'sha256-${sha256Base64(assets.js)}'`,
    `style-src 'sha256-${sha256Base64(assets.css)}'`,
    "img-src data:",
    "base-uri 'none'",
    "form-action 'none'",
  ].join("; ");
}

/** The viewer's policy: scripts, styles and data from the server itself. */
export const VIEWER_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export interface ReportRun {
  readonly loaded: LoadedRun;
  readonly store: RunStore;
  readonly runDir: string;
}

export interface ReportOptions {
  /** Longest text kept per field (longer ones are shortened, with a note); default 20000 characters. */
  readonly maxChars?: number;
  /** Told how far writing has got (items written, of all). */
  readonly onProgress?: (done: number, total: number) => void;
  readonly generator?: string;
}

/** What {@link writeReport} made. */
export interface ReportStats {
  readonly file: string;
  readonly bytes: number;
  readonly items: number;
  /** Size of the embedded data before compression. */
  readonly jsonBytes: number;
}

/**
 * Writes one self-contained HTML report of one run (or two, to compare): the data embedded as base64 of gzipped JSON
 * (no `<` in it, so nothing inside can end its element), the client and its styles inline and allowed by hash in a
 * Content-Security-Policy that forbids every other script, style, connection and frame. Opens offline. Written
 * to a temporary file and renamed, so a failed write leaves no half report.
 */
export function writeReport(file: string, runs: readonly ReportRun[], options: ReportOptions = {}): ReportStats {
  if (runs.length === 0 || runs.length > 2) throw new IterAlignError("USAGE", "a report shows one run, or two to compare");
  const assets = reportAssets();
  const maxChars = options.maxChars ?? 20_000;
  const chunks: Buffer[] = [];
  let jsonBytes = 0;
  const push = (text: string): void => {
    const b = Buffer.from(text, "utf8");
    jsonBytes += b.length;
    chunks.push(b);
  };
  const total = runs.reduce((n, r) => n + r.loaded.index.size, 0);
  let done = 0;
  push(`{"version":${REPORT_DATA_VERSION},"generatedAt":${JSON.stringify(new Date().toISOString())},"generator":${JSON.stringify(options.generator ?? "iteralign")},"runs":[`);
  runs.forEach((run, r) => {
    const { loaded } = run;
    const size = loaded.index.size;
    // Summaries, then traces, page by page: a large run is never held whole in memory as objects.
    push(`${r > 0 ? "," : ""}{"view":${JSON.stringify(loaded.view)},"items":[`);
    for (let i = 0; i < size; i += 2000) push(`${i > 0 ? "," : ""}${loaded.index.slice(i, 2000).map((s) => JSON.stringify(s)).join(",")}`);
    push(`],"traces":[`);
    for (let i = 0; i < size; i += 500) {
      const page = loadItemTraces(run.store, loaded.view.runId, loaded.index.slice(i, 500), { maxChars, principleTitles: loaded.principleTitles, evidenceFor: loaded.evidenceFor });
      push(`${i > 0 ? "," : ""}${page.map((t) => JSON.stringify(t)).join(",")}`);
      done += page.length;
      options.onProgress?.(done, total);
    }
    push(`],"evalItems":{`);
    loaded.view.eval.benchmarks.forEach((b, k) => {
      let evalItems: unknown[] = [];
      try {
        evalItems = loadEvalItems(run.runDir, b.label, b.benchmark).map((item) => shortenDetails(item, maxChars));
      } catch {
        // Listed in the view's warnings already; the page shows the benchmark without items.
      }
      push(`${k > 0 ? "," : ""}${JSON.stringify(`${b.label}/${b.benchmark}`)}:${JSON.stringify(evalItems)}`);
    });
    push("}}");
  });
  push("]}");
  const data = gzipSync(Buffer.concat(chunks), { level: 6 }).toString("base64");
  const title = runs.length === 1 ? `iteralign report ${runs[0]?.loaded.view.runId ?? ""}` : `iteralign comparison ${runs.map((r) => r.loaded.view.runId).join(" vs ")}`;
  const html = [
    "<!doctype html>",
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<meta http-equiv="Content-Security-Policy" content="${escapeHtml(reportCsp(assets))}">`,
    '<meta name="referrer" content="no-referrer">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${assets.css}</style>`,
    "</head><body>",
    '<div id="app"><noscript>This report needs JavaScript (its data is embedded in the page; nothing is loaded from the network).</noscript></div>',
    `<script type="application/octet-stream" id="iteralign-data">${data}</script>`,
    `<script>${assets.js}</script>`,
    "</body></html>",
    "",
  ].join("\n");
  try {
    writeFileAtomic(file, html);
  } catch (err) {
    throw new IterAlignError("USAGE", `cannot write the report to ${file}: ${(err as Error).message}`, { cause: err });
  }
  return { file, bytes: Buffer.byteLength(html), items: total, jsonBytes };
}

/** Eval item details can hold long answers: shortened like the traces' texts. */
function shortenDetails<T extends { details: Readonly<Record<string, unknown>> }>(item: T, maxChars: number): T {
  const details = Object.fromEntries(
    Object.entries(item.details).map(([k, v]) => [k, typeof v === "string" && v.length > maxChars ? `${v.slice(0, maxChars)} … (shortened from ${v.length} characters)` : v]),
  );
  return { ...item, details };
}

/** A page of `iteralign view`: the client loads its data from the server's API. */
export function viewerPage(runId: string | null): string {
  return [
    "<!doctype html>",
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    ...(runId !== null ? [`<meta name="iteralign-run" content="${escapeHtml(runId)}">`] : []),
    `<title>${runId !== null ? `${escapeHtml(runId)} · ` : ""}iteralign</title>`,
    '<link rel="stylesheet" href="/assets/client.css">',
    "</head><body>",
    '<div id="app"><noscript>The viewer needs JavaScript.</noscript></div>',
    '<script src="/assets/client.js" defer></script>',
    "</body></html>",
    "",
  ].join("\n");
}
