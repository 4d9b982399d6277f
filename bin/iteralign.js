#!/usr/bin/env node
import { main } from "../dist/cli/main.js";

const code = await main(process.argv);
process.exitCode = code;
// The work is done: a stray handle (a download or socket that never answered and was given up on) must not keep
// the process alive. The timer is unref'd, so a process that ends on its own is not delayed by it.
setTimeout(() => process.exit(code), 2000).unref();
