import { z } from "zod";

/** Shapes of the Anthropic Messages API (responses are checked; requests are built in anthropic-model.ts). */

export const AnthropicUsageSchema = z.object({
  input_tokens: z.number().int().nonnegative().optional(),
  output_tokens: z.number().int().nonnegative().optional(),
  cache_creation_input_tokens: z.number().int().nonnegative().nullable().optional(),
  cache_read_input_tokens: z.number().int().nonnegative().nullable().optional(),
});
export type AnthropicUsage = z.infer<typeof AnthropicUsageSchema>;

export const ContentBlockSchema = z.union([
  z.object({ type: z.literal("text"), text: z.string() }),
  z.object({ type: z.literal("tool_use"), id: z.string(), name: z.string(), input: z.unknown() }),
  z.object({ type: z.string() }).loose(),
]);

/** Body of a `POST /messages` answer (and of a batch result's `message`). */
export const MessageSchema = z.object({
  id: z.string(),
  type: z.literal("message"),
  role: z.literal("assistant"),
  content: z.array(ContentBlockSchema),
  model: z.string(),
  stop_reason: z.string().nullable(),
  usage: AnthropicUsageSchema,
});
export type AnthropicMessage = z.infer<typeof MessageSchema>;

/** The streamed events iteralign reads (others, such as `ping`, are skipped). */
export const StreamEventSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("message_start"), message: z.object({ usage: AnthropicUsageSchema }).loose() }),
  z.object({ type: z.literal("content_block_start"), index: z.number(), content_block: z.object({ type: z.string() }).loose() }),
  z.object({
    type: z.literal("content_block_delta"),
    index: z.number(),
    delta: z.union([
      z.object({ type: z.literal("text_delta"), text: z.string() }),
      z.object({ type: z.literal("input_json_delta"), partial_json: z.string() }),
      z.object({ type: z.string() }).loose(),
    ]),
  }),
  z.object({ type: z.literal("content_block_stop"), index: z.number() }),
  z.object({ type: z.literal("message_delta"), delta: z.object({ stop_reason: z.string().nullable().optional() }).loose(), usage: AnthropicUsageSchema.optional() }),
  z.object({ type: z.literal("message_stop") }),
  z.object({ type: z.literal("ping") }),
  z.object({ type: z.literal("error"), error: z.object({ type: z.string(), message: z.string() }) }),
]);

/** A Message Batch as the API describes it. */
export const MessageBatchSchema = z.object({
  id: z.string(),
  type: z.literal("message_batch"),
  processing_status: z.enum(["in_progress", "canceling", "ended"]),
  request_counts: z.object({
    processing: z.number(),
    succeeded: z.number(),
    errored: z.number(),
    canceled: z.number(),
    expired: z.number(),
  }),
  results_url: z.string().nullable(),
});
export type MessageBatch = z.infer<typeof MessageBatchSchema>;

/** One line of a batch's results file. */
export const BatchResultLineSchema = z.object({
  custom_id: z.string(),
  result: z.discriminatedUnion("type", [
    z.object({ type: z.literal("succeeded"), message: MessageSchema }),
    z.object({ type: z.literal("errored"), error: z.object({ error: z.object({ type: z.string(), message: z.string() }).optional() }).loose() }),
    z.object({ type: z.literal("canceled") }),
    z.object({ type: z.literal("expired") }),
  ]),
});
