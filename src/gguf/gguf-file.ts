import { closeSync, openSync, readSync, writeSync } from "node:fs";
import { IterAlignError } from "../spec/errors.js";

/** GGUF metadata value types, as numbered by the format. */
export enum GgufType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** ggml tensor types this project writes. */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q8_0 = 8,
}

/** Q8_0 packs 32 values as one f16 scale and 32 signed bytes. */
const Q8_0_BLOCK = 32;
const Q8_0_BYTES = 34;

export type GgufScalar = number | bigint | boolean | string;

/** A metadata value with its exact on-disk type, so a copied key round-trips byte for byte. */
export type GgufValue =
  | { type: Exclude<GgufType, GgufType.ARRAY>; value: GgufScalar }
  | { type: GgufType.ARRAY; itemType: Exclude<GgufType, GgufType.ARRAY>; value: GgufScalar[] };

export interface GgufHeader {
  readonly version: number;
  readonly tensorCount: bigint;
  readonly metadata: Map<string, GgufValue>;
}

const SCALAR_SIZE: Partial<Record<GgufType, number>> = {
  [GgufType.UINT8]: 1,
  [GgufType.INT8]: 1,
  [GgufType.BOOL]: 1,
  [GgufType.UINT16]: 2,
  [GgufType.INT16]: 2,
  [GgufType.UINT32]: 4,
  [GgufType.INT32]: 4,
  [GgufType.FLOAT32]: 4,
};

/** Sequential little-endian reader over a file, for GGUF headers (reads ahead in 1 MiB chunks). */
export class GgufReader {
  private buf: Buffer;
  private pos = 0;
  private fileOffset = 0;
  constructor(
    private readonly fd: number,
    private readonly file: string,
  ) {
    this.buf = Buffer.alloc(0);
  }
  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const keep = this.buf.subarray(this.pos);
    const chunk = Buffer.alloc(Math.max(n, 1 << 20));
    const read = readSync(this.fd, chunk, 0, chunk.length, this.fileOffset);
    this.fileOffset += read;
    this.buf = Buffer.concat([keep, chunk.subarray(0, read)]);
    this.pos = 0;
    if (this.buf.length < n) {
      throw new IterAlignError("MODEL_INVALID", `${this.file}: truncated GGUF file: it ends at byte ${this.fileOffset} inside the header`, {
        details: { path: this.file },
      });
    }
  }
  /** Bytes of the file consumed so far. */
  offset(): number {
    return this.fileOffset - this.buf.length + this.pos;
  }
  u8(): number {
    this.ensure(1);
    return this.buf.readUInt8(this.pos++);
  }
  u32(): number {
    this.ensure(4);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  u64(): bigint {
    this.ensure(8);
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    return v;
  }
  scalar(type: GgufType): GgufScalar {
    if (type !== GgufType.STRING) this.ensure(SCALAR_SIZE[type] ?? 8);
    const b = this.buf;
    const p = this.pos;
    switch (type) {
      case GgufType.UINT8:
        this.pos += 1;
        return b.readUInt8(p);
      case GgufType.INT8:
        this.pos += 1;
        return b.readInt8(p);
      case GgufType.UINT16:
        this.pos += 2;
        return b.readUInt16LE(p);
      case GgufType.INT16:
        this.pos += 2;
        return b.readInt16LE(p);
      case GgufType.UINT32:
        this.pos += 4;
        return b.readUInt32LE(p);
      case GgufType.INT32:
        this.pos += 4;
        return b.readInt32LE(p);
      case GgufType.FLOAT32:
        this.pos += 4;
        return b.readFloatLE(p);
      case GgufType.BOOL:
        this.pos += 1;
        return b.readUInt8(p) !== 0;
      case GgufType.UINT64:
        this.pos += 8;
        return b.readBigUInt64LE(p);
      case GgufType.INT64:
        this.pos += 8;
        return b.readBigInt64LE(p);
      case GgufType.FLOAT64:
        this.pos += 8;
        return b.readDoubleLE(p);
      case GgufType.STRING:
        return this.string();
      default:
        throw new IterAlignError("MODEL_INVALID", `${this.file}: unknown GGUF value type ${String(type)} (a damaged or unsupported file)`, {
          details: { path: this.file },
        });
    }
  }
  string(): string {
    const len = Number(this.u64());
    this.ensure(len);
    const s = this.buf.toString("utf8", this.pos, this.pos + len);
    this.pos += len;
    return s;
  }
}

/** Reads the header and metadata of a GGUF file, keeping every value's type. */
export function readGgufHeader(file: string): GgufHeader {
  const fd = openSync(file, "r");
  try {
    return readGgufHeaderFrom(new GgufReader(fd, file), file);
  } finally {
    closeSync(fd);
  }
}

/** Reads the header and metadata from a reader positioned at the start of the file. */
export function readGgufHeaderFrom(r: GgufReader, file: string): GgufHeader {
  const magic = r.u32();
  if (magic !== 0x46554747) throw new IterAlignError("MODEL_INVALID", `${file} is not a GGUF file (bad magic)`, { details: { path: file } });
  const version = r.u32();
  const tensorCount = r.u64();
  const kvCount = Number(r.u64());
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = r.string();
    const type = r.u32() as GgufType;
    if (type === GgufType.ARRAY) {
      const itemType = r.u32() as Exclude<GgufType, GgufType.ARRAY>;
      const n = Number(r.u64());
      const value: GgufScalar[] = new Array<GgufScalar>(n);
      for (let j = 0; j < n; j++) value[j] = r.scalar(itemType);
      metadata.set(key, { type, itemType, value });
    } else {
      metadata.set(key, { type, value: r.scalar(type) });
    }
  }
  return { version, tensorCount, metadata };
}

export interface GgufTensor {
  readonly name: string;
  /** ggml order: dims[0] is the fastest-varying (row length). */
  readonly dims: readonly number[];
  readonly type: GgmlType;
  /** Fills the tensor's data; values are converted to the tensor's type. */
  readonly fill: (out: Float32Array) => void;
}

class Writer {
  private chunks: Buffer[] = [];
  size = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  u64(v: bigint | number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  string(s: string): void {
    const bytes = Buffer.from(s, "utf8");
    this.u64(bytes.length);
    this.push(bytes);
  }
  scalar(type: GgufType, v: GgufScalar): void {
    const b = Buffer.alloc(8);
    switch (type) {
      case GgufType.UINT8:
        b.writeUInt8(Number(v));
        return this.push(b.subarray(0, 1));
      case GgufType.INT8:
        b.writeInt8(Number(v));
        return this.push(b.subarray(0, 1));
      case GgufType.UINT16:
        b.writeUInt16LE(Number(v));
        return this.push(b.subarray(0, 2));
      case GgufType.INT16:
        b.writeInt16LE(Number(v));
        return this.push(b.subarray(0, 2));
      case GgufType.UINT32:
        b.writeUInt32LE(Number(v));
        return this.push(b.subarray(0, 4));
      case GgufType.INT32:
        b.writeInt32LE(Number(v));
        return this.push(b.subarray(0, 4));
      case GgufType.FLOAT32:
        b.writeFloatLE(Number(v));
        return this.push(b.subarray(0, 4));
      case GgufType.BOOL:
        b.writeUInt8(v ? 1 : 0);
        return this.push(b.subarray(0, 1));
      case GgufType.UINT64:
        b.writeBigUInt64LE(BigInt(v));
        return this.push(b);
      case GgufType.INT64:
        b.writeBigInt64LE(BigInt(v));
        return this.push(b);
      case GgufType.FLOAT64:
        b.writeDoubleLE(Number(v));
        return this.push(b);
      case GgufType.STRING:
        return this.string(String(v));
      default:
        throw new Error(`cannot write GGUF type ${String(type)}`);
    }
  }
  take(): Buffer {
    const out = Buffer.concat(this.chunks);
    this.chunks = [];
    return out;
  }
}

const ALIGNMENT = 32;

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

function float32ToFloat16Bits(f: number): number {
  // Round-to-nearest-even conversion, done on the float32 bit pattern.
  const f32 = f32Scratch;
  const u32 = u32Scratch;
  f32[0] = f;
  const x = u32[0] ?? 0;
  const sign = (x >>> 16) & 0x8000;
  let exp = ((x >>> 23) & 0xff) - 127 + 15;
  let mant = x & 0x7fffff;
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    mant = (mant | 0x800000) >>> (1 - exp);
    if (mant & 0x1000) mant += 0x2000;
    return sign | (mant >>> 13);
  }
  if (mant & 0x1000) {
    mant += 0x2000;
    if (mant & 0x800000) {
      mant = 0;
      exp += 1;
      if (exp >= 31) return sign | 0x7c00;
    }
  }
  return sign | (exp << 10) | (mant >>> 13);
}

function tensorBytes(t: GgufTensor): number {
  const n = t.dims.reduce((a, b) => a * b, 1);
  if (t.type === GgmlType.Q8_0) return (n / Q8_0_BLOCK) * Q8_0_BYTES;
  return t.type === GgmlType.F32 ? n * 4 : n * 2;
}

function encodeQ8_0(values: Float32Array): Buffer {
  if (values.length % Q8_0_BLOCK !== 0) throw new Error(`Q8_0 needs a multiple of ${Q8_0_BLOCK} values, got ${values.length}`);
  const out = Buffer.alloc((values.length / Q8_0_BLOCK) * Q8_0_BYTES);
  for (let b = 0, o = 0; b < values.length; b += Q8_0_BLOCK, o += Q8_0_BYTES) {
    let amax = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) amax = Math.max(amax, Math.abs(values[b + i] ?? 0));
    const d = amax / 127;
    const inv = d === 0 ? 0 : 1 / d;
    out.writeUInt16LE(float32ToFloat16Bits(d), o);
    for (let i = 0; i < Q8_0_BLOCK; i++) out.writeInt8(Math.round((values[b + i] ?? 0) * inv), o + 2 + i);
  }
  return out;
}

/**
 * Writes a GGUF v3 file: the metadata in the given order, then the tensors' data, each aligned to 32 bytes.
 * Tensor data is produced one tensor at a time so a large model never sits in memory whole.
 */
export function writeGguf(file: string, metadata: Map<string, GgufValue>, tensors: readonly GgufTensor[]): void {
  const w = new Writer();
  w.u32(0x46554747);
  w.u32(3);
  w.u64(tensors.length);
  w.u64(metadata.size);
  for (const [key, v] of metadata) {
    w.string(key);
    w.u32(v.type);
    if (v.type === GgufType.ARRAY) {
      w.u32(v.itemType);
      w.u64(v.value.length);
      for (const item of v.value) w.scalar(v.itemType, item);
    } else {
      w.scalar(v.type, v.value);
    }
  }
  let offset = 0;
  for (const t of tensors) {
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(offset);
    offset += Math.ceil(tensorBytes(t) / ALIGNMENT) * ALIGNMENT;
  }
  const headerPad = (ALIGNMENT - (w.size % ALIGNMENT)) % ALIGNMENT;
  w.push(Buffer.alloc(headerPad));
  const fd = openSync(file, "w");
  try {
    writeSync(fd, w.take());
    for (const t of tensors) {
      const n = t.dims.reduce((a, b) => a * b, 1);
      const values = new Float32Array(n);
      t.fill(values);
      let data: Buffer;
      if (t.type === GgmlType.F32) {
        data = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
      } else if (t.type === GgmlType.Q8_0) {
        data = encodeQ8_0(values);
      } else {
        const half = new Uint16Array(n);
        for (let i = 0; i < n; i++) half[i] = float32ToFloat16Bits(values[i] ?? 0);
        data = Buffer.from(half.buffer);
      }
      writeSync(fd, data);
      const pad = (ALIGNMENT - (data.length % ALIGNMENT)) % ALIGNMENT;
      if (pad > 0) writeSync(fd, Buffer.alloc(pad));
    }
  } finally {
    closeSync(fd);
  }
}

/** Name, shape and type of one tensor as a GGUF file lists it (ggml order: dims[0] varies fastest). */
export interface GgufTensorInfo {
  readonly name: string;
  readonly dims: readonly number[];
  readonly type: number;
}

/** The header, metadata and tensor list of a GGUF file (not the tensor data). */
export function readGgufTensorInfos(file: string): { header: GgufHeader; tensors: GgufTensorInfo[] } {
  const fd = openSync(file, "r");
  try {
    const r = new GgufReader(fd, file);
    const header = readGgufHeaderFrom(r, file);
    const tensors: GgufTensorInfo[] = [];
    for (let i = 0n; i < header.tensorCount; i++) {
      const name = r.string();
      const nDims = r.u32();
      const dims: number[] = [];
      for (let d = 0; d < nDims; d++) dims.push(Number(r.u64()));
      const type = r.u32();
      r.u64(); // offset of the data
      tensors.push({ name, dims, type });
    }
    return { header, tensors };
  } finally {
    closeSync(fd);
  }
}
