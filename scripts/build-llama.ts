/**
 * Builds llama.cpp programs from the source bundled with node-llama-cpp, once per machine, into the user cache.
 * Default: llama-server and iteralign's own programs (iteralign-scorer, iteralign-finetune).
 * Usage: npm run build:llama [-- llama-server iteralign-finetune ...]
 */
import { ensureLlamaBuild, type LlamaTool } from "../src/native/llama-build.js";

const requested = process.argv.slice(2).filter((a) => !a.startsWith("-")) as LlamaTool[];
const targets: LlamaTool[] = requested.length > 0 ? requested : ["llama-server", "iteralign-scorer", "iteralign-finetune"];
const started = Date.now();
const build = await ensureLlamaBuild({
  targets,
  onLine: (line) => {
    if (/^\[\s*\d+%\]|^cloning|^configuring|^waiting/.test(line)) process.stderr.write(`${line}\n`);
  },
});
process.stderr.write(`llama.cpp ${build.commit.slice(0, 12)} ready in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
for (const [tool, bin] of Object.entries(build.binaries)) process.stdout.write(`${tool}\t${bin}\n`);
