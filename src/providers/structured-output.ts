import { z } from "zod";
import { OutputInvalidError } from "../spec/errors.js";
import type { ChatMessage, GenerateObjectRequest, GenerateObjectResult, GenerateResult, JsonSchema, TokenUsage } from "../spec/language-model.js";

/**
 * Structured output, once for every provider: the JSON schema sent, the parse and validation of the reply, one
 * repair turn with one repair prompt, and the typed error that keeps the raw text. A provider only offers its
 * native way to constrain decoding (a grammar, a `response_format`, a forced tool call), as a {@link JsonDecoder}.
 */

/** One decode of a JSON reply, under the provider's native constraint when it has one. */
export interface JsonDecoder {
  /** Names the model in errors, e.g. `qwen.gguf` or `gpt-4o at https://api.openai.com/v1`. */
  readonly label: string;
  /**
   * True when the provider enforces the schema while decoding (grammar, strict response format, tool input):
   * the messages are sent as they are. False: the schema is stated in a system message, since nothing else
   * tells the model.
   */
  readonly enforcesSchema: boolean;
  decode(messages: readonly ChatMessage[], jsonSchema: Record<string, unknown>): Promise<GenerateResult>;
}

/** The JSON schema of a request: the given one, or derived from the zod schema, without the `$schema` tag. */
export function requestJsonSchema(request: Pick<GenerateObjectRequest<unknown>, "schema" | "jsonSchema">): Record<string, unknown> {
  const derived: JsonSchema = request.jsonSchema ?? z.toJSONSchema(request.schema, { io: "output" });
  // `$schema` is metadata; some strict-mode validators reject keywords they do not know at the root.
  const { $schema: _ignored, ...rest } = derived;
  return rest;
}

/** A system instruction carrying the schema, for decoders that do not enforce it. */
export function withSchemaInstruction(messages: readonly ChatMessage[], jsonSchema: Record<string, unknown>): ChatMessage[] {
  const instruction = `Reply with only a JSON value that matches this JSON Schema, with no other text:\n${JSON.stringify(jsonSchema)}`;
  const first = messages[0];
  if (first?.role === "system") return [{ role: "system", content: `${first.content}\n\n${instruction}` }, ...messages.slice(1)];
  return [{ role: "system", content: instruction }, ...messages];
}

/** The one repair prompt: the model sees its reply and why it cannot be used. */
export function repairMessages(messages: readonly ChatMessage[], badText: string, problem: string): ChatMessage[] {
  return [
    ...messages,
    { role: "assistant", content: badText },
    { role: "user", content: `Your previous reply cannot be used because ${problem}\nReply again with only the corrected JSON, with no other text.` },
  ];
}

/** Result of reading a reply as the requested object. */
export type ParsedObject<T> = { ok: true; object: T } | { ok: false; problem: string; cause: unknown };

/**
 * Parses and validates a reply. Models without enforced output often wrap JSON in a Markdown fence or a
 * sentence, so when the whole text is not JSON the outermost `{...}` or `[...]` is tried.
 */
export function parseObject<T>(text: string, schema: z.ZodType<T>): ParsedObject<T> {
  let value: unknown;
  try {
    value = JSON.parse(extractJson(text));
  } catch (err) {
    return { ok: false, problem: `it is not valid JSON (${err instanceof Error ? err.message : String(err)})`, cause: err };
  }
  const checked = schema.safeParse(value);
  if (!checked.success) return { ok: false, problem: `it does not match the schema:\n${z.prettifyError(checked.error)}`, cause: checked.error };
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

/** The sum of two calls' usage (cache fields only when either has them). */
export function addUsage(a: TokenUsage, b: TokenUsage): TokenUsage {
  const cached = (a.cachedPromptTokens ?? 0) + (b.cachedPromptTokens ?? 0);
  const written = (a.cacheWritePromptTokens ?? 0) + (b.cacheWritePromptTokens ?? 0);
  return {
    promptTokens: a.promptTokens + b.promptTokens,
    completionTokens: a.completionTokens + b.completionTokens,
    ...(cached > 0 ? { cachedPromptTokens: cached } : {}),
    ...(written > 0 ? { cacheWritePromptTokens: written } : {}),
  };
}

/**
 * `generateObject` for any provider: decode, parse and validate; on an invalid reply, one repair turn; then a
 * typed error with the raw text. A reply cut off by the token limit is OUTPUT_TRUNCATED at once: a repair turn has
 * the same limit and would be cut off again.
 */
export async function generateObjectWith<T>(decoder: JsonDecoder, request: GenerateObjectRequest<T>): Promise<GenerateObjectResult<T>> {
  const jsonSchema = requestJsonSchema(request);
  const messages = decoder.enforcesSchema ? [...request.messages] : withSchemaInstruction(request.messages, jsonSchema);
  const truncated = (result: GenerateResult): OutputInvalidError =>
    new OutputInvalidError(
      `${decoder.label}: structured output hit its token limit (maxTokens, or the room left in the context) before the JSON was complete`,
      result.text,
      { truncated: true },
    );
  const first = await decoder.decode(messages, jsonSchema);
  if (first.finishReason === "length") throw truncated(first);
  const parsed = parseObject(first.text, request.schema);
  if (parsed.ok) return { ...first, object: parsed.object };
  const second = await decoder.decode(repairMessages(messages, first.text, parsed.problem), jsonSchema);
  const usage = addUsage(first.usage, second.usage);
  if (second.finishReason === "length") throw truncated(second);
  const repaired = parseObject(second.text, request.schema);
  if (repaired.ok) return { ...second, usage, object: repaired.object };
  throw new OutputInvalidError(`${decoder.label}: structured output is still invalid after one repair attempt: ${repaired.problem}`, second.text, {
    cause: repaired.cause,
  });
}
