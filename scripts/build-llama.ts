/**
 * Builds llama.cpp programs from the source bundled with node-llama-cpp, once per machine, into the user cache.
 * Default: llama-server and iteralign's own programs (iteralign-scorer, iteralign-finetune), for the CPU.
 * `--cuda` builds for NVIDIA GPUs (needs the CUDA toolkit's nvcc) into a separate directory; its default target is
 * iteralign-finetune, the only program that uses the GPU.
 * Usage: npm run build:llama [-- [--cuda] llama-server iteralign-finetune ...]
 */
import { ensureLlamaBuild, parseBuildLlamaArgs } from "../src/native/llama-build.js";
import { IterAlignError } from "../src/spec/errors.js";

/** Prints an IterAlignError's message (a missing tool, a bad argument) without a stack trace, and exits. */
function fail(err: unknown): never {
  if (!(err instanceof IterAlignError)) throw err;
  process.stderr.write(`build:llama: ${err.code}: ${err.message}\n`);
  process.exit(err.code === "USAGE" ? 2 : 1);
}

let parsed: ReturnType<typeof parseBuildLlamaArgs>;
try {
  parsed = parseBuildLlamaArgs(process.argv.slice(2));
} catch (err) {
  fail(err);
}
const { targets, gpu } = parsed;
const started = Date.now();
const build = await ensureLlamaBuild({
  targets,
  gpu,
  onLine: (line) => {
    if (/^\[\s*\d+%\]|^cloning|^configuring|^waiting/.test(line)) process.stderr.write(`${line}\n`);
  },
}).catch(fail);
process.stderr.write(
  `llama.cpp ${build.commit.slice(0, 12)} (${gpu === "cuda" ? "CUDA" : "CPU"}) ready in ${((Date.now() - started) / 1000).toFixed(0)} s\n`,
);
for (const [tool, bin] of Object.entries(build.binaries)) process.stdout.write(`${tool}\t${bin}\n`);
