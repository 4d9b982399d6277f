import { Readable } from "node:stream";
import { main } from "../../src/cli/main.js";
import type { CommandIo } from "../../src/cli/io.js";

/** Runs the CLI in-process with captured output and the given stdin text. */
export async function runCli(args: string[], stdin = ""): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const io: CommandIo = {
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
    stdin: Readable.from([stdin]),
    isTTY: false,
  };
  const code = await main(["node", "iteralign", ...args], io);
  return { code, out, err };
}
