import path from "node:path";
import { describe, expect, it } from "vitest";
import { staticImports } from "../helpers/static-imports.js";

const root = path.resolve(import.meta.dirname, "../..");

describe("loading without the engine", () => {
  it("parsing a config loads neither node-llama-cpp nor any engine module", async () => {
    const { packages, files } = await staticImports(path.join(root, "src/config/load-config.ts"));
    expect([...packages]).not.toContain("node-llama-cpp");
    expect([...files].filter((f) => /llama-cpp\/(engine|llama-cpp-model|decode-loop|scoring)|train\/llama-cpp-(trainer|examples)\.ts/.test(f))).toEqual([]);
  });

  it("the CLI's entry loads node-llama-cpp only when a command needs it", async () => {
    const { packages } = await staticImports(path.join(root, "src/cli/main.ts"));
    expect([...packages]).not.toContain("node-llama-cpp");
  });
});
