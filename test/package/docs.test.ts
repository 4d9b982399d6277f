import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");

describe("generated docs", () => {
  it("the config reference in README.md and schema/iteralign.schema.json match the config schema (generate-config-docs --check)", () => {
    const r = spawnSync(process.execPath, ["--import", "tsx", "scripts/generate-config-docs.ts", "--check"], { cwd: root, encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });
});
