import { createHash } from "node:crypto";
import { open } from "node:fs/promises";

/**
 * A cheap content fingerprint of a model file: sha256 over its size and 1 MiB samples at 16 evenly spaced
 * offsets. It changes when the weights change (a fine-tuned or re-quantized file at the same path) without
 * reading a multi-gigabyte file whole.
 */
export async function fingerprintFile(file: string): Promise<string> {
  const handle = await open(file, "r");
  try {
    const { size } = await handle.stat();
    const hash = createHash("sha256").update(`size:${size}\n`);
    const sample = Buffer.alloc(Math.min(1 << 20, size));
    const samples = 16;
    for (let i = 0; i < samples; i++) {
      const offset = Math.floor(((size - sample.length) * i) / (samples - 1));
      const { bytesRead } = await handle.read(sample, 0, sample.length, offset);
      hash.update(sample.subarray(0, bytesRead));
    }
    return hash.digest("hex");
  } finally {
    await handle.close();
  }
}
