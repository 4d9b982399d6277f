import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");
const dir = mkdtempSync(path.join(tmpdir(), "iteralign-interrupt-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs a script that installs the handler, with signal-exit (via proper-lockfile) loaded after it, and signals itself. */
function script(signals: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }> {
  const file = path.join(dir, `s${signals}.mts`);
  writeFileSync(
    file,
    `import { onInterrupt } from ${JSON.stringify(path.join(root, "src/cli/interrupt.ts"))};
const interrupt = onInterrupt(() => { process.stdout.write("first\\n"); });
// Loaded after our handler, as the lazily loaded engine does: its listener comes second.
await import(${JSON.stringify(path.join(root, "node_modules/proper-lockfile/index.js"))});
for (let i = 0; i < ${signals}; i++) { process.kill(process.pid, "SIGINT"); await new Promise((r) => setTimeout(r, 100)); }
process.stdout.write("saved state\\n");
interrupt.dispose();
process.exitCode = 1;
`,
  );
  const child = spawn(process.execPath, ["--import", "tsx", file], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr.on("data", (c: Buffer) => (err += c.toString()));
  return new Promise((resolve) => child.once("close", (code, signal) => resolve({ code, signal, out, err })));
}

describe("Ctrl-C handler", () => {
  it("survives the first signal even when signal-exit listens too, so the command can save and say how to resume", async () => {
    const r = await script(1);
    expect(r.signal, r.err).toBeNull();
    expect(r.out).toBe("first\nsaved state\n");
    expect(r.code).toBe(1);
  }, 30_000);

  it("exits at once with 130 on the second signal", async () => {
    const r = await script(2);
    expect(r.out, r.err).toBe("first\n");
    expect(r.code).toBe(130);
  }, 30_000);
});
