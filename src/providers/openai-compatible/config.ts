import { z } from "zod";
import { BaseUrlSchema } from "../../util/url.js";
import { callPolicyFields, generationDefaultFields, judgeFields } from "../model-config-fields.js";

/** A model entry with `provider: openai-compatible`: any server speaking OpenAI's chat completions API. */
export const OpenAICompatibleModelConfigSchema = z
  .object({
    provider: z.literal("openai-compatible").describe("Any OpenAI-style HTTP API: vLLM, Ollama, llama-server, OpenAI."),
    baseUrl: z
      .union([BaseUrlSchema, z.array(BaseUrlSchema).min(1)])
      .describe(
        "API root including `/v1`, e.g. `http://127.0.0.1:8000/v1`; or a list of replicas' roots (a pool: each request goes to the replica with the fewest in flight; a failing replica is taken out and probed back in).",
      ),
    revision: z
      .string()
      .min(1)
      .optional()
      .describe(
        "Identifies the weights behind `model` (a checkpoint hash or tag). Part of the response cache's key with the base URLs, so another server or a re-served checkpoint under the same name is never answered from the cache.",
      ),
    serverIdentity: z
      .boolean()
      .default(true)
      .describe(
        "Ask the server once (`GET /models`) what it serves under `model` (vLLM: the loaded path and an adapter's base; llama-server: size and parameter count) and key the response cache on it too. false: no such request.",
      ),
    batch: z
      .enum(["openai", "file"])
      .optional()
      .describe(
        "Send each stage's calls as one batch job: `openai` through the Batch API (`/files` + `/batches`), `file` as an OpenAI batch JSONL file that `vllm run-batch` (or any runner of that format) answers.",
      ),
    batchDir: z.string().optional().describe("`batch: file`: folder of the batch files (default: `batches` next to the store)."),
    batchPollMs: z.number().int().positive().default(10_000).describe("How often a batch job (or batch output file) is checked."),
    model: z.string().min(1).describe("Model name the server expects."),
    apiKeyEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
      .optional()
      .describe("Name of the environment variable holding the API key (keys never go in config files)."),
    structuredOutput: z
      .enum(["json_schema", "json_object", "none"])
      .default("json_schema")
      .describe("How structured output is requested from the server."),
    scoring: z
      .enum(["echo", "none"])
      .default("none")
      .describe("`echo`: log-likelihoods through /completions with echo+logprobs (vLLM supports it; llama-server does not)."),
    embeddings: z.boolean().default(false).describe("The server offers /embeddings for this model."),
    ...generationDefaultFields,
    ...callPolicyFields,
    ...judgeFields,
  })
  .strict();

export type OpenAICompatibleModelConfig = z.infer<typeof OpenAICompatibleModelConfigSchema>;
