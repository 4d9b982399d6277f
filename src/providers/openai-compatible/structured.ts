import { z } from "zod";
import type { ChatMessage, JsonSchema } from "../../spec/language-model.js";

/** How structured output is requested from the server. */
export type StructuredOutputMode = "json_schema" | "json_object" | "none";

/** The JSON schema for a request: the given one, or derived from the zod schema. */
export function requestJsonSchema(schema: z.ZodType, given: JsonSchema | undefined): Record<string, unknown> {
  const derived = given ?? z.toJSONSchema(schema, { io: "output" });
  // `$schema` is metadata; some strict-mode validators reject keywords they do not know at the root.
  const { $schema: _ignored, ...rest } = derived;
  return rest;
}

/** A schema name the OpenAI API accepts (`^[a-zA-Z0-9_-]{1,64}$`). */
export function schemaName(name: string | undefined): string {
  const cleaned = (name ?? "response").replace(/[^a-zA-Z0-9_-]/g, "_").slice(0, 64);
  return cleaned.length > 0 ? cleaned : "response";
}

/** The `response_format` field for a mode, or undefined when none is sent. */
export function responseFormat(
  mode: StructuredOutputMode,
  name: string,
  jsonSchema: Record<string, unknown>,
): Record<string, unknown> | undefined {
  if (mode === "json_schema") return { type: "json_schema", json_schema: { name, schema: jsonSchema, strict: true } };
  if (mode === "json_object") return { type: "json_object" };
  return undefined;
}

/**
 * Messages for a structured request. With `json_schema` the server enforces the schema, so the messages are
 * unchanged; otherwise the schema is stated in the system message because nothing else tells the model.
 */
export function structuredMessages(
  mode: StructuredOutputMode,
  messages: readonly ChatMessage[],
  jsonSchema: Record<string, unknown>,
): ChatMessage[] {
  if (mode === "json_schema") return [...messages];
  const instruction = `Reply with only a JSON value that matches this JSON Schema, with no other text:\n${JSON.stringify(jsonSchema)}`;
  const first = messages[0];
  if (first?.role === "system") {
    return [{ role: "system", content: `${first.content}\n\n${instruction}` }, ...messages.slice(1)];
  }
  return [{ role: "system", content: instruction }, ...messages];
}

/** Result of reading a reply as the requested object. */
export type ParsedObject<T> = { ok: true; object: T } | { ok: false; problem: string; cause: unknown };

/**
 * Parses and validates a reply. Models without enforced output often wrap JSON in a Markdown fence or
 * a sentence, so when the whole text is not JSON the outermost `{...}` or `[...]` is tried.
 */
export function parseObject<T>(text: string, schema: z.ZodType<T>): ParsedObject<T> {
  let value: unknown;
  try {
    value = JSON.parse(extractJson(text));
  } catch (err) {
    return { ok: false, problem: `it is not valid JSON (${err instanceof Error ? err.message : String(err)})`, cause: err };
  }
  const checked = schema.safeParse(value);
  if (!checked.success) {
    return { ok: false, problem: `it does not match the schema:\n${z.prettifyError(checked.error)}`, cause: checked.error };
  }
  return { ok: true, object: checked.data };
}

function extractJson(text: string): string {
  const trimmed = text.trim();
  const fenced = /^```(?:json)?\s*([\s\S]*?)\s*```$/i.exec(trimmed);
  if (fenced?.[1] !== undefined) return fenced[1];
  try {
    JSON.parse(trimmed);
    return trimmed;
  } catch {
    const open = trimmed.search(/[{[]/);
    const close = Math.max(trimmed.lastIndexOf("}"), trimmed.lastIndexOf("]"));
    return open >= 0 && close > open ? trimmed.slice(open, close + 1) : trimmed;
  }
}

/** The follow-up turn that asks the model to fix its previous reply. */
export function repairMessages(messages: readonly ChatMessage[], badText: string, problem: string): ChatMessage[] {
  return [
    ...messages,
    { role: "assistant", content: badText },
    {
      role: "user",
      content: `Your previous reply cannot be used because ${problem}\nReply again with only the corrected JSON, with no other text.`,
    },
  ];
}
