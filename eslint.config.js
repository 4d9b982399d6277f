// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";

/**
 * Layers point one way: a module may import its own tier and the tiers below it, never above.
 * cli → pipeline → config → eval/train/report/testing → providers/stages/constitutions → store/datasets/prompts/gguf/native → spec/util
 */
const TIERS = [
  ["spec", "util"],
  ["gguf", "native", "store", "datasets", "prompts"],
  ["providers", "stages", "constitutions"],
  ["eval", "train", "report", "testing"],
  ["config"],
  ["pipeline"],
  ["cli"],
];

const layerRules = TIERS.map((tier, index) => {
  const above = TIERS.slice(index + 1).flat();
  return {
    files: tier.map((dir) => `src/${dir}/**/*.ts`),
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: above.map((dir) => ({
            group: [`**/${dir}/*`, `../${dir}/*`, `../../${dir}/*`],
            message: `layers point one way: src/${tier.join("|")} must not import src/${dir} (a higher layer)`,
          })),
        },
      ],
    },
  };
});

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "test/fixtures/models/", "bench/results/", "runs/", "coverage/"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/require-await": "off",
      "no-empty": ["error", { allowEmptyCatch: false }],
    },
  },
  ...layerRules,
  {
    // The browser client has its own tsconfig (DOM types, no Node).
    files: ["src/report-client/**/*.ts"],
    languageOptions: { parserOptions: { projectService: false, project: "./src/report-client/tsconfig.json", tsconfigRootDir: import.meta.dirname } },
  },
  {
    files: ["**/*.js", "**/*.mjs", "bin/**"],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      globals: { process: "readonly", console: "readonly", setTimeout: "readonly" },
      parserOptions: { projectService: false, project: null },
    },
  },
);
