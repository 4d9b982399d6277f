/**
 * Regenerates schema/iteralign.schema.json and the configuration reference in README.md from the zod schema.
 * `--check` exits 1 when either file is out of date (run by the tests).
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { configJsonSchema, configReferenceMarkdown, spliceReference } from "../src/config/config-docs.js";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const readmePath = path.join(root, "README.md");
const schemaPath = path.join(root, "schema", "iteralign.schema.json");
const readme = readFileSync(readmePath, "utf8");
const nextReadme = spliceReference(readme, configReferenceMarkdown());
const nextSchema = `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
const currentSchema = existsSync(schemaPath) ? readFileSync(schemaPath, "utf8") : "";
if (process.argv.includes("--check")) {
  const stale = [nextReadme !== readme ? "README.md" : "", nextSchema !== currentSchema ? "schema/iteralign.schema.json" : ""].filter(Boolean);
  if (stale.length > 0) {
    process.stderr.write(`out of date: ${stale.join(", ")}; run npm run docs:config\n`);
    process.exit(1);
  }
} else {
  writeFileSync(readmePath, nextReadme);
  writeFileSync(schemaPath, nextSchema);
}
