import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { runLoop } from "../../src/pipeline/run-loop.js";
import { SqliteRunStore } from "../../src/store/sqlite-run-store.js";
import { textResult } from "../../src/testing/scripted-model.js";
import { scriptedLoopConfig, scriptedLoopModels } from "./scripted-loop.js";

/** Hostile strings: each sets `window.__xss` if it ever runs. */
export const PAYLOADS = {
  script: "<script>window.__xss=1</script>",
  img: '<img src=x onerror="window.__xss=1">',
  svg: "<svg onload=window.__xss=1><circle r=5></circle></svg>",
  js: "javascript:window.__xss=1",
  breakout: '</script><script>window.__xss=1</script><!--',
  iframe: '"><iframe srcdoc="<script>parent.__xss=1</script>"></iframe>',
  rtl: "\u202Eexe.txt evil \u2066isolated\u2069",
  attr: '" onmouseover="window.__xss=1" x="',
} as const;

export const ONE_MB = `${"A".repeat(1_000_000)}${PAYLOADS.script}`;

/**
 * A finished 2-iteration run whose prompts (and their categories), answers, judge rationales, principle titles and
 * texts, revisions and training examples all carry the payloads, one with a 1 MB answer. Scripted models, the real
 * loop and a real SQLite store.
 */
export async function payloadRun(): Promise<{ dir: string; store: SqliteRunStore; runId: string; runDir: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), "iteralign-xss-"));
  const entries = Object.entries(PAYLOADS);
  const lines = [...entries, ...entries.map(([k, v]) => [`${k}2`, `${v} again`] as const)].map(([key, text], i) =>
    JSON.stringify({ id: `p${i}-${key}`, prompt: `Tell me ${text} (${i})`, category: `cat ${text}` }),
  );
  writeFileSync(path.join(dir, "payloads.jsonl"), `${lines.join("\n")}\n`);
  const store = new SqliteRunStore(path.join(dir, "store.db"));
  const runId = "xss";
  const loaded = scriptedLoopConfig(
    dir,
    { maxIterations: 2, batchSize: 4 },
    { redTeam: [{ file: "payloads.jsonl", promptField: "prompt", idField: "id", categoryField: "category", name: "payloads" }], limit: 16, heldoutFraction: 0.25 },
    { eval: { benchmarks: "asr", limit: 3, when: "every-iteration" } },
  );
  const models = scriptedLoopModels(store, runId, {
    target: (request) => {
      const user = request.messages.filter((m) => m.role === "user").pop()?.content ?? "";
      if (request.messages.some((m) => m.content.includes("Constitutions:"))) return textResult(`I won't. ${PAYLOADS.breakout} ${PAYLOADS.rtl}`);
      if (user.includes("onload")) return textResult(ONE_MB);
      return textResult(`Sure ${PAYLOADS.img} ${PAYLOADS.js} ${PAYLOADS.attr}`);
    },
    // The gate accepts revisions, so training examples carry payloads too.
    pass: (_text, gate) => gate,
    rationale: (text) => `Because ${PAYLOADS.iframe} ${text.slice(0, 40)}`,
    propose: (request) => {
      const cases = [...(request.messages.find((m) => m.role === "user")?.content.matchAll(/\bF\d+\b/g) ?? [])].map((m) => m[0]);
      return textResult(
        JSON.stringify({ constitutions: [{ title: `Refuse ${PAYLOADS.script}`, principle: `Never ${PAYLOADS.svg} or ${PAYLOADS.rtl}.`, failureIds: [...new Set(cases)] }] }),
      );
    },
  });
  await runLoop({ loaded, runId, store, models: () => models });
  return { dir, store, runId, runDir: path.join(dir, "runs", runId) };
}
