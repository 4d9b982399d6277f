import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { STARTER_CONFIG } from "../../config/starter-config.js";
import { IterAlignError } from "../../spec/errors.js";
import type { CommandIo } from "../io.js";

/** Writes the commented starter config; refuses to overwrite without `force`. */
export function initCommand(options: { config: string; force?: boolean }, io: CommandIo): number {
  const file = path.resolve(options.config);
  if (existsSync(file) && !options.force) {
    throw new IterAlignError("USAGE", `${file} already exists; pass --force to overwrite it`);
  }
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, STARTER_CONFIG);
  io.out(`wrote ${file}\nnext: edit the models, then run 'iteralign models check --config ${options.config}'\n`);
  return 0;
}
