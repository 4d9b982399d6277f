/**
 * `npm run build:llama [-- [--cuda] [programs...]]`: `iteralign setup` from a checkout (see src/cli/commands/setup.ts).
 */
import { main } from "../src/cli/main.js";

process.exitCode = await main([process.argv[0] ?? "node", "iteralign", "setup", ...process.argv.slice(2)]);
