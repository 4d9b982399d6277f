import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

/** sha256 (hex) over the contents of files, in the order given, each prefixed by its byte length. */
export function sha256OfFiles(files: readonly string[]): string {
  const hash = createHash("sha256");
  for (const file of files) {
    const bytes = readFileSync(file);
    hash.update(`${bytes.length}\n`);
    hash.update(bytes);
  }
  return hash.digest("hex");
}
