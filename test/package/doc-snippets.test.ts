import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import ts from "typescript";
import { afterAll, describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");
/** Inside the package, so `import "iteralign"` resolves to the package itself through its `exports` (as a user's would). */
const dir = path.join(root, "test", ".doc-snippets");

interface Snippet {
  readonly file: string;
  readonly line: number;
  readonly code: string;
}

/** Every ```ts block of README.md and docs/*.md that imports the package. */
function snippets(): Snippet[] {
  const files = ["README.md", ...readdirSync(path.join(root, "docs")).filter((f) => f.endsWith(".md")).map((f) => path.join("docs", f))];
  const out: Snippet[] = [];
  for (const file of files) {
    const lines = readFileSync(path.join(root, file), "utf8").split("\n");
    for (let i = 0; i < lines.length; i++) {
      if (!/^```(ts|typescript)\s*$/.test(lines[i] ?? "")) continue;
      const start = i + 1;
      let end = start;
      while (end < lines.length && !(lines[end] ?? "").startsWith("```")) end++;
      const code = lines.slice(start, end).join("\n");
      if (/from "iteralign(\/[a-z-]+)?"/.test(code)) out.push({ file, line: start + 1, code });
      i = end;
    }
  }
  return out;
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("code in the docs", () => {
  const all = snippets();

  it("finds the examples (api.md and evaluation.md have some)", () => {
    expect(all.filter((s) => s.file === path.join("docs", "api.md")).length).toBeGreaterThanOrEqual(5);
    expect(all.some((s) => s.file === path.join("docs", "evaluation.md"))).toBe(true);
    for (const s of all) expect(s.code, `${s.file}:${s.line} imports a deep path`).not.toMatch(/from "iteralign\/dist/);
  });

  it("type-checks against the built package's declared exports (npm run build first)", () => {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const where = new Map<string, Snippet>();
    all.forEach((s, i) => {
      const file = path.join(dir, `snippet-${i}.ts`);
      // Each a module of its own (top-level await, no clashes between snippets).
      writeFileSync(file, `${s.code}\nexport {};\n`);
      where.set(file, s);
    });
    const program = ts.createProgram([...where.keys()], {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: ["node"],
    });
    const problems = ts.getPreEmitDiagnostics(program).map((d) => {
      const s = d.file ? where.get(path.resolve(d.file.fileName)) : undefined;
      const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : 0;
      const text = ts.flattenDiagnosticMessageText(d.messageText, "\n");
      return s ? `${s.file}:${s.line + line}: ${text}` : `${d.file?.fileName ?? "?"}: ${text}`;
    });
    expect(problems).toEqual([]);
  }, 120_000);

  it("runs the scripted-model example of api.md from the package and it prints what it says", () => {
    const s = all.find((x) => x.code.includes("new ScriptedModel") && x.code.includes("runEvaluation"));
    expect(s).toBeDefined();
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, "run-scripted.ts");
    writeFileSync(file, `${s?.code ?? ""}\nexport {};\n`);
    const r = spawnSync(process.execPath, ["--import", "tsx", file], { cwd: root, encoding: "utf8" });
    expect(r.stderr).toBe("");
    // The scripted model always prefers the first answer, which TruthfulQA lists as the true one.
    expect(r.stdout.trim()).toBe("mc1 1 over 10 questions; 10 scoring calls");
  });
});

describe("entry points", () => {
  it("importing iteralign and iteralign/testing does not load node-llama-cpp; iteralign/llama-cpp does", () => {
    const probe = `
      await import("iteralign"); await import("iteralign/testing"); await import("iteralign/stages");
      await import("iteralign/datasets"); await import("iteralign/constitutions");
      const { ModelSet, runLoop, runEvaluation, LlamaCppTrainer } = await import("iteralign");
      if (typeof ModelSet !== "function" || typeof runLoop !== "function" || typeof runEvaluation !== "function" || typeof LlamaCppTrainer !== "function") throw new Error("missing export");
    `;
    // node-llama-cpp is ESM (no require cache to look in): the loader's debug trace names every module it loads.
    const run = (code: string): { out: string; traced: boolean } => {
      const r = spawnSync(process.execPath, ["--input-type=module", "-e", code], { cwd: root, encoding: "utf8", maxBuffer: 1 << 28, env: { ...process.env, NODE_DEBUG: "esm" } });
      expect(r.status, r.stderr.slice(-2000)).toBe(0);
      return { out: r.stdout, traced: /node-llama-cpp/.test(r.stderr) };
    };
    expect(run(probe).traced).toBe(false);
    const engine = run(`const { LlamaCppModel } = await import("iteralign/llama-cpp"); if (typeof LlamaCppModel !== "function") throw new Error("missing");`);
    expect(engine.traced).toBe(true);
  }, 60_000);
});
