import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    // Engine tests share 2 cores; run files one at a time so timings and memory stay predictable.
    fileParallelism: false,
    reporters: ["default"],
  },
});
