import type { Migration } from "./index.js";

/** Cost accounting: each call's dollars at the model's price, and the prompt tokens its provider served from cache. */
export const migration: Migration = {
  version: 2,
  name: "call-cost",
  sql: `
ALTER TABLE llm_calls ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
ALTER TABLE llm_calls ADD COLUMN cached_prompt_tokens INTEGER NOT NULL DEFAULT 0;
`,
};
