import { createHash } from "node:crypto";

/**
 * Thrown by {@link canonicalJson} for values that have no single faithful JSON form. A plain
 * `TypeError` (not an IterAlignError) because it always signals a programming error in the caller.
 */
export class CanonicalJsonError extends TypeError {
  /** JSONPath-like location of the offending value, e.g. `$.params.temperature`. */
  readonly path: string;
  constructor(path: string, problem: string) {
    super(`canonicalJson: ${problem} at ${path}`);
    this.name = "CanonicalJsonError";
    this.path = path;
  }
}

/**
 * Deterministic JSON: object keys sorted (by UTF-16 code units) at every depth, `undefined` object
 * fields dropped, no whitespace. Equal data always gives the same string, whatever the key insertion
 * order, so the result is safe to hash into a cache key.
 *
 * Rejects (with {@link CanonicalJsonError}) what plain `JSON.stringify` would silently change or drop:
 * functions, symbols, bigints, `NaN`/`Infinity`, `undefined` array items, cycles, and objects that are
 * neither plain nor have `toJSON` (a Map would otherwise become `{}` and collide with every other Map).
 */
export function canonicalJson(value: unknown): string {
  return write(value, "$", new Set<object>());
}

/** Lower-case hex SHA-256 of the UTF-8 bytes of `text` (64 characters). */
export function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

function write(value: unknown, path: string, ancestors: Set<object>): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value)) throw new CanonicalJsonError(path, `non-finite number ${String(value)}`);
      // JSON.stringify(-0) is "0", which is what we want: -0 and 0 are the same request.
      return JSON.stringify(value);
    case "undefined":
      throw new CanonicalJsonError(path, "undefined value");
    case "function":
    case "symbol":
    case "bigint":
      throw new CanonicalJsonError(path, `unsupported ${typeof value}`);
    case "object":
      break;
  }
  if (value === null) return "null";
  const obj = value;
  if (ancestors.has(obj)) throw new CanonicalJsonError(path, "circular reference");
  ancestors.add(obj);
  try {
    if (Array.isArray(obj)) {
      const items = (obj as unknown[]).map((item, i) => write(item, `${path}[${i}]`, ancestors));
      return `[${items.join(",")}]`;
    }
    const toJSON = (obj as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === "function") {
      // Honour toJSON (e.g. Date) the way JSON.stringify does, then canonicalise its output.
      return write((toJSON as (key: string) => unknown).call(obj, ""), path, ancestors);
    }
    const proto: unknown = Object.getPrototypeOf(obj);
    if (proto !== Object.prototype && proto !== null) {
      const name = (obj as { constructor?: { name?: string } }).constructor?.name ?? "unknown";
      throw new CanonicalJsonError(path, `non-plain object (${name})`);
    }
    const record = obj as Record<string, unknown>;
    const parts: string[] = [];
    for (const key of Object.keys(record).sort()) {
      const field = record[key];
      if (field === undefined) continue;
      parts.push(`${JSON.stringify(key)}:${write(field, `${path}.${key}`, ancestors)}`);
    }
    return `{${parts.join(",")}}`;
  } finally {
    ancestors.delete(obj);
  }
}

/**
 * `value` with the keys of every object sorted (by UTF-16 code units) at every depth, `undefined` fields
 * dropped. Used for every artifact a run writes, so a record's bytes never depend on the path that produced
 * it: built field by field by a stage, or re-read from the store (whose schemas emit keys in schema order).
 */
export function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map((item) => (item === undefined ? null : sortKeys(item)));
  if (value === null || typeof value !== "object") return value;
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === "function") return sortKeys((toJSON as (key: string) => unknown).call(value, ""));
  const record = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(record).sort()) {
    const field = record[key];
    if (field !== undefined) out[key] = sortKeys(field);
  }
  return out;
}

/** JSON text with sorted keys (see {@link sortKeys}); `indent` as JSON.stringify's `space`. */
export function stableJson(value: unknown, indent?: number): string {
  return JSON.stringify(sortKeys(value), null, indent);
}
