import { closeSync, openSync, statSync } from "node:fs";
import { IterAlignError } from "../spec/errors.js";
import { GgufReader, GgufType, readGgufHeaderFrom } from "./gguf-file.js";

/** Block size (values) and bytes per block of each ggml tensor type, by its number in the format. */
const TYPE_SIZES: Readonly<Record<number, readonly [number, number]>> = {
  0: [1, 4], // F32
  1: [1, 2], // F16
  2: [32, 18], // Q4_0
  3: [32, 20], // Q4_1
  6: [32, 22], // Q5_0
  7: [32, 24], // Q5_1
  8: [32, 34], // Q8_0
  9: [32, 36], // Q8_1
  10: [256, 84], // Q2_K
  11: [256, 110], // Q3_K
  12: [256, 144], // Q4_K
  13: [256, 176], // Q5_K
  14: [256, 210], // Q6_K
  15: [256, 292], // Q8_K
  16: [256, 66], // IQ2_XXS
  17: [256, 74], // IQ2_XS
  18: [256, 98], // IQ3_XXS
  19: [256, 50], // IQ1_S
  20: [32, 18], // IQ4_NL
  21: [256, 110], // IQ3_S
  22: [256, 82], // IQ2_S
  23: [256, 136], // IQ4_XS
  24: [1, 1], // I8
  25: [1, 2], // I16
  26: [1, 4], // I32
  27: [1, 8], // I64
  28: [1, 8], // F64
  29: [256, 56], // IQ1_M
  30: [1, 2], // BF16
  34: [256, 54], // TQ1_0
  35: [256, 66], // TQ2_0
  39: [32, 17], // MXFP4
};

/** What {@link checkGgufFile} found: enough to say the file is whole. */
export interface GgufCheck {
  readonly version: number;
  readonly tensors: number;
  readonly architecture: string | null;
  /** Bytes the header and tensor data need; the file has at least this many. */
  readonly expectedBytes: number;
}

function invalid(file: string, problem: string): IterAlignError {
  return new IterAlignError("MODEL_INVALID", `model file ${file}: ${problem}`, { details: { path: file } });
}

/**
 * Checks that a file is a whole GGUF model before the engine loads it, so a bad file fails with a message that
 * says what is wrong (an empty file, not a GGUF, a truncated download) instead of the engine's own. Reads the
 * header and tensor table only (a few MB at most), never the weights.
 */
export function checkGgufFile(file: string): GgufCheck {
  const size = statSync(file).size;
  if (size === 0) throw invalid(file, "empty file (0 bytes); a download or copy may have failed");
  if (size < 24) throw invalid(file, `only ${size} bytes, too short for a GGUF header (a truncated download?)`);
  const fd = openSync(file, "r");
  try {
    const reader = new GgufReader(fd, file);
    let header;
    try {
      header = readGgufHeaderFrom(reader, file);
    } catch (err) {
      if (err instanceof IterAlignError && /bad magic/.test(err.message)) {
        throw invalid(file, "not a GGUF file (it does not start with the bytes 'GGUF'); give a .gguf model, or convert it with llama.cpp's convert_hf_to_gguf.py");
      }
      throw err;
    }
    if (header.version < 2 || header.version > 3) throw invalid(file, `GGUF version ${header.version} is not supported (2 or 3 expected)`);
    const alignmentValue = header.metadata.get("general.alignment");
    const alignment = alignmentValue && alignmentValue.type !== GgufType.ARRAY ? Number(alignmentValue.value) : 32;
    const count = Number(header.tensorCount);
    let dataEnd = 0;
    for (let i = 0; i < count; i++) {
      const name = reader.string();
      const dims = reader.u32();
      let values = 1;
      for (let d = 0; d < dims; d++) values *= Number(reader.u64());
      const type = reader.u32();
      const offset = Number(reader.u64());
      const sizes = TYPE_SIZES[type];
      // An unknown (newer) type: its size is unknown, but its data still starts at `offset`.
      const bytes = sizes ? Math.ceil(values / sizes[0]) * sizes[1] : 0;
      if (!Number.isFinite(offset) || offset < 0) throw invalid(file, `tensor ${name} has an impossible offset`);
      dataEnd = Math.max(dataEnd, offset + bytes);
    }
    const dataStart = Math.ceil(reader.offset() / alignment) * alignment;
    const expectedBytes = dataStart + dataEnd;
    if (size < expectedBytes) {
      throw invalid(
        file,
        `truncated: its ${count} tensors need ${expectedBytes} bytes but the file has ${size} (${((100 * size) / expectedBytes).toFixed(1)}%); the download or copy was cut short`,
      );
    }
    const arch = header.metadata.get("general.architecture");
    return {
      version: header.version,
      tensors: count,
      architecture: arch && arch.type === GgufType.STRING ? String(arch.value) : null,
      expectedBytes,
    };
  } catch (err) {
    if (err instanceof IterAlignError && err.code === "MODEL_INVALID" && !err.message.startsWith(`model file ${file}`)) {
      throw invalid(file, err.message.replace(`${file}: `, "").replace(`${file} `, ""));
    }
    throw err;
  } finally {
    closeSync(fd);
  }
}
