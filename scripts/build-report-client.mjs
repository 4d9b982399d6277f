// Bundles the report's browser client (src/report-client, with uPlot) into dist/report-assets/: client.js (one
// IIFE, no imports at run time) and client.css (uPlot's styles and ours). Run by `npm run build`.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const out = path.join(root, "dist", "report-assets");
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [path.join(root, "src", "report-client", "main.ts")],
  bundle: true,
  format: "iife",
  minify: true,
  target: ["chrome105", "firefox113", "safari16.4"],
  outfile: path.join(out, "client.js"),
  legalComments: "inline",
  banner: { js: "/*! iteralign report client (Apache-2.0). Includes uPlot, MIT License, Copyright (c) 2022 Leon Sorokin, https://github.com/leeoniya/uPlot */" },
  logLevel: "warning",
});
const css = [
  "/* uPlot (MIT License, Copyright (c) 2022 Leon Sorokin) */",
  readFileSync(path.join(root, "node_modules", "uplot", "dist", "uPlot.min.css"), "utf8"),
  readFileSync(path.join(root, "src", "report-client", "style.css"), "utf8"),
].join("\n");
writeFileSync(path.join(out, "client.css"), css);
