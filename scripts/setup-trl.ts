/**
 * `npm run setup:trl`: the trl trainer's Python environment in the cache, as `iteralign setup trl` makes it (used by
 * the README's test command, so the tests of the trl trainer run real TRL).
 */
import { main } from "../src/cli/main.js";

process.exitCode = await main([process.argv[0] ?? "node", "iteralign", "setup", "trl", ...process.argv.slice(2)]);
