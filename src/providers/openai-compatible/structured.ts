/** How structured output is requested from the server. */
export type StructuredOutputMode = "json_schema" | "json_object" | "none";

/** A schema name the OpenAI API accepts (`^[a-zA-Z0-9_-]{1,64}$`). */
export function schemaName(name: string | undefined): string {
  const cleaned = (name ?? "response").replace(/[^a-zA-Z0-9_-]/g, "_").slice(0, 64);
  return cleaned.length > 0 ? cleaned : "response";
}

/**
 * The `response_format` field for a mode (the server's native constraint), or undefined when none is sent. With
 * `json_schema` the server enforces the schema; the others leave the schema to the messages (see the core's
 * structured-output path).
 */
export function responseFormat(
  mode: StructuredOutputMode,
  name: string,
  jsonSchema: Record<string, unknown>,
): Record<string, unknown> | undefined {
  if (mode === "json_schema") return { type: "json_schema", json_schema: { name, schema: jsonSchema, strict: true } };
  if (mode === "json_object") return { type: "json_object" };
  return undefined;
}
