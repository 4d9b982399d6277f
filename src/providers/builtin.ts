import { z } from "zod";
import { IterAlignError } from "../spec/errors.js";
import { AnthropicModelConfigSchema } from "./anthropic/config.js";
import { anthropicProvider } from "./anthropic/provider.js";
import { LlamaCppModelConfigSchema } from "./llama-cpp/config.js";
import { llamaCppProvider } from "./llama-cpp/provider.js";
import { OpenAICompatibleModelConfigSchema } from "./openai-compatible/config.js";
import { openAICompatibleProvider } from "./openai-compatible/provider.js";
import type { ProviderDefinition } from "./provider.js";

/**
 * The provider registry: one entry per provider, keyed by its `provider` id. Adding a provider is one definition
 * (config schema, factory, identity; see docs/adding-a-provider.md) and one line here.
 */
export const PROVIDERS = {
  "llama-cpp": llamaCppProvider,
  "openai-compatible": openAICompatibleProvider,
  anthropic: anthropicProvider,
} as const;

/** The registered provider ids. */
export const PROVIDER_IDS = Object.keys(PROVIDERS) as Array<keyof typeof PROVIDERS>;

/** A `models.<name>` entry: one of the registered providers' schemas, chosen by its `provider` field. */
export const ModelConfigSchema = z.discriminatedUnion("provider", [
  LlamaCppModelConfigSchema,
  OpenAICompatibleModelConfigSchema,
  AnthropicModelConfigSchema,
]);
export type ModelConfig = z.infer<typeof ModelConfigSchema>;

/** The definition of the provider that serves a config entry. */
export function providerOf(config: Pick<ModelConfig, "provider">): ProviderDefinition<ModelConfig> {
  const definition = (PROVIDERS as unknown as Record<string, ProviderDefinition<ModelConfig> | undefined>)[config.provider];
  if (!definition) throw new IterAlignError("CONFIG_INVALID", `unknown provider '${config.provider}' (known: ${PROVIDER_IDS.join(", ")})`);
  return definition;
}
