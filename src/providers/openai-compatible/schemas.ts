import { z } from "zod";

/*
 * Shapes of the OpenAI-compatible response bodies iteralign reads. Only the fields used are declared
 * (zod strips the rest), and optional/nullable is generous because servers differ: vLLM, llama-server,
 * Ollama and the OpenAI API all omit or null different fields.
 */

/** `usage` of a completion, chat completion or embeddings response. */
export const UsageSchema = z.object({
  prompt_tokens: z.number().int().nonnegative(),
  // Embeddings responses carry no completion_tokens.
  completion_tokens: z.number().int().nonnegative().optional(),
  prompt_tokens_details: z.object({ cached_tokens: z.number().int().nonnegative().nullable().optional() }).nullable().optional(),
});
export type Usage = z.infer<typeof UsageSchema>;

/** Body of `POST /chat/completions` without streaming. */
export const ChatCompletionSchema = z.object({
  choices: z
    .array(
      z.object({
        // null when the model refused or called a tool; iteralign treats that as empty text.
        message: z.object({ content: z.string().nullable().optional() }),
        finish_reason: z.string().nullable().optional(),
      }),
    )
    .min(1),
  usage: UsageSchema.nullable().optional(),
});
export type ChatCompletion = z.infer<typeof ChatCompletionSchema>;

/** One `data:` event of a streamed chat completion. The last one may carry only `usage`. */
export const ChatCompletionChunkSchema = z.object({
  choices: z.array(
    z.object({
      delta: z.object({ content: z.string().nullable().optional() }).nullable().optional(),
      finish_reason: z.string().nullable().optional(),
    }),
  ),
  usage: UsageSchema.nullable().optional(),
});
export type ChatCompletionChunk = z.infer<typeof ChatCompletionChunkSchema>;

/** `logprobs` of a legacy `/completions` choice (the shape `echo` + `logprobs` produce). */
export const CompletionLogprobsSchema = z.object({
  tokens: z.array(z.string()),
  // The first prompt token has no conditional probability, so its entry is null.
  token_logprobs: z.array(z.number().nullable()),
  top_logprobs: z.array(z.record(z.string(), z.number()).nullable()).nullable().optional(),
  text_offset: z.array(z.number().int().nonnegative()),
});
export type CompletionLogprobs = z.infer<typeof CompletionLogprobsSchema>;

/**
 * Body of `POST /completions`. `logprobs` is checked separately with CompletionLogprobsSchema, because a
 * different shape there means the server does not do echo scoring, not that the response is broken.
 */
export const CompletionSchema = z.object({
  choices: z.array(z.object({ text: z.string(), logprobs: z.unknown() })).min(1),
  usage: UsageSchema.nullable().optional(),
});
export type Completion = z.infer<typeof CompletionSchema>;

/** Body of `POST /embeddings`. */
export const EmbeddingsSchema = z.object({
  data: z.array(z.object({ index: z.number().int().nonnegative(), embedding: z.array(z.number()) })),
});
export type Embeddings = z.infer<typeof EmbeddingsSchema>;

/** Error bodies: OpenAI's `{error: {message}}`, and the `{error: "text"}` some servers send. */
export const ErrorBodySchema = z.object({
  error: z.union([
    z.object({ message: z.string(), code: z.union([z.number(), z.string()]).nullable().optional() }),
    z.string(),
  ]),
});
