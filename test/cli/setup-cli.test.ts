import { describe, expect, it } from "vitest";
import { buildPercent } from "../../src/cli/commands/setup.js";
import { runCli } from "../helpers/cli.js";

describe("iteralign setup", () => {
  it("reads CMake's progress percentage", () => {
    expect(buildPercent("[ 45%] Building CXX object common/CMakeFiles/common.dir/arg.cpp.o")).toBe(45);
    expect(buildPercent("[100%] Built target llama-server")).toBe(100);
    expect(buildPercent("-- Configuring done")).toBeUndefined();
  });

  it("keeps what is built and lists each program's binary (built once by npm run build:llama)", async () => {
    const r = await runCli(["setup"]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/llama\.cpp [0-9a-f]{12} \(CPU\): llama-server, iteralign-scorer, iteralign-generate, iteralign-finetune already built/);
    for (const p of ["llama-server", "iteralign-scorer", "iteralign-generate", "iteralign-finetune"]) expect(r.out).toMatch(new RegExp(`^${p}\\s+/\\S+/build/bin/${p}$`, "m"));
    const check = await runCli(["setup", "--check", "llama-server"]);
    expect(check.code).toBe(0);
    expect(check.out).toMatch(/^llama-server\s+\//m);
  });

  it("exits 2 naming a program it does not know", async () => {
    const r = await runCli(["setup", "llama-bench"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("unknown program 'llama-bench': expected --cuda and program names (llama-server, llama-finetune, llama-batched-bench, llama-export-lora, llama-quantize, iteralign-scorer, iteralign-generate, iteralign-finetune)");
  });
});
