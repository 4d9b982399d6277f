// Entry point equivalent to bin/iteralign.js, runnable from source with tsx.
import { main } from "../../src/cli/main.js";

process.exitCode = await main(process.argv);
