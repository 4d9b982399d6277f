import type { GbnfJsonSchema } from "node-llama-cpp";
import { IterAlignError } from "../../spec/errors.js";
import type { JsonSchema } from "../../spec/language-model.js";

type Json = Readonly<Record<string, unknown>>;

const GRAMMAR_FORMATS = new Set(["date-time", "time", "date"]);

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Converts a JSON schema (as zod's `toJSONSchema` writes it) to the subset node-llama-cpp can turn into a
 * grammar. Keywords a grammar cannot enforce (numeric bounds, patterns, other string formats) are dropped:
 * the result is validated against the full zod schema afterwards, so nothing is silently accepted.
 */
export function toGrammarSchema(schema: JsonSchema): GbnfJsonSchema {
  return convert(schema, "$") as GbnfJsonSchema;
}

function convert(node: unknown, at: string): unknown {
  if (node === true || (isObject(node) && Object.keys(node).filter((k) => k !== "description").length === 0)) {
    // "anything": let the grammar produce any JSON value.
    return { type: ["string", "number", "boolean", "null"] };
  }
  if (!isObject(node)) throw unsupported(at, "a schema must be an object");
  const description = typeof node.description === "string" ? { description: node.description } : {};
  const defs = isObject(node.$defs)
    ? { $defs: Object.fromEntries(Object.entries(node.$defs).map(([k, v]) => [k, convert(v, `${at}.$defs.${k}`)])) }
    : {};
  if (typeof node.$ref === "string") {
    if (!node.$ref.startsWith("#/$defs/")) throw unsupported(at, `only local '#/$defs/...' references are supported, got ${node.$ref}`);
    return { $ref: node.$ref, ...description, ...defs };
  }
  if ("const" in node) return { const: node.const, ...description };
  if (Array.isArray(node.enum)) return { enum: node.enum, ...description };
  const alternatives = Array.isArray(node.anyOf) ? node.anyOf : Array.isArray(node.oneOf) ? node.oneOf : undefined;
  if (alternatives) {
    return { oneOf: alternatives.map((s, i) => convert(s, `${at}.anyOf[${i}]`)), ...description, ...defs };
  }
  if (Array.isArray(node.allOf)) {
    if (node.allOf.length === 1) return convert(node.allOf[0], `${at}.allOf[0]`);
    throw unsupported(at, "'allOf' with several schemas cannot be turned into a grammar; merge them into one object");
  }
  const type = node.type;
  if (Array.isArray(type)) {
    if (!type.every((t) => typeof t === "string" && ["string", "number", "integer", "boolean", "null"].includes(t)))
      return { oneOf: type.map((t: unknown, i) => convert({ ...node, type: t }, `${at}.type[${i}]`)), ...description };
    return { type, ...description };
  }
  switch (type) {
    case "object": {
      const props = isObject(node.properties) ? node.properties : {};
      const properties = Object.fromEntries(
        Object.entries(props).map(([k, v]) => [k, convert(v, `${at}.properties.${k}`)]),
      );
      const additional =
        node.additionalProperties === undefined || node.additionalProperties === false
          ? Object.keys(properties).length === 0 && node.additionalProperties === undefined
            ? { additionalProperties: true }
            : {}
          : node.additionalProperties === true
            ? { additionalProperties: true }
            : { additionalProperties: convert(node.additionalProperties, `${at}.additionalProperties`) };
      const required = Array.isArray(node.required) ? { required: node.required } : {};
      return { type: "object", properties, ...required, ...additional, ...description, ...defs };
    }
    case "array": {
      const items = node.items === undefined || node.items === false ? {} : { items: convert(node.items, `${at}.items`) };
      const prefixItems = Array.isArray(node.prefixItems)
        ? { prefixItems: node.prefixItems.map((s, i) => convert(s, `${at}.prefixItems[${i}]`)) }
        : {};
      const bounds = {
        ...(typeof node.minItems === "number" ? { minItems: node.minItems } : {}),
        ...(typeof node.maxItems === "number" ? { maxItems: node.maxItems } : {}),
      };
      return { type: "array", ...items, ...prefixItems, ...bounds, ...description, ...defs };
    }
    case "string": {
      if (typeof node.format === "string" && GRAMMAR_FORMATS.has(node.format))
        return { type: "string", format: node.format, ...description };
      return {
        type: "string",
        ...(typeof node.minLength === "number" ? { minLength: node.minLength } : {}),
        ...(typeof node.maxLength === "number" ? { maxLength: node.maxLength } : {}),
        ...description,
      };
    }
    case "number":
    case "integer":
    case "boolean":
    case "null":
      return { type, ...description };
    default:
      throw unsupported(at, `unknown or missing 'type' (${JSON.stringify(type)})`);
  }
}

function unsupported(at: string, why: string): IterAlignError {
  return new IterAlignError("USAGE", `JSON schema at ${at} cannot be used for constrained decoding: ${why}`);
}
