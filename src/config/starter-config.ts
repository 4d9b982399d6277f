/**
 * The commented config `iteralign init` writes. It is a real quick start: the target is a small open instruct
 * model that node-llama-cpp downloads once; the oracle is any OpenAI-compatible endpoint (vLLM, Ollama,
 * llama-server, OpenAI), or a second local GGUF.
 */
export const STARTER_CONFIG = `# iteralign configuration. Reference: README.md#configuration-reference
# Validate with: iteralign models check --config iteralign.yaml

models:
  # The model being aligned, run in-process by llama.cpp (no server needed).
  # 'model' is a local GGUF path (relative to this file) or an hf: URI, downloaded once into
  # ~/.cache/iteralign/models (override with ITERALIGN_MODELS_DIR).
  target:
    provider: llama-cpp
    model: hf:bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M
    contextSize: 4096     # tokens per parallel sequence
    sequences: 4          # prompts decoded together in one batch
    temperature: 0        # greedy, as in the IterAlign paper
    maxTokens: 500
    frequencyPenalty: 0.5

  # The stronger model that judges answers and proposes constitutions.
  # Local alternative: provider: llama-cpp with a bigger GGUF, e.g.
  #   model: hf:bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M
  oracle:
    provider: openai-compatible
    baseUrl: http://127.0.0.1:8000/v1   # vLLM; Ollama: http://127.0.0.1:11434/v1
    model: Qwen/Qwen2.5-7B-Instruct
    apiKeyEnv: OPENAI_API_KEY           # name of the variable holding the key; omit for local servers
    temperature: 0
    maxTokens: 1024
    concurrency: 8

roles:
  target: target
  oracle: oracle
  # judge: oracle       # defaults to the oracle
  # embedder: ...       # a model that offers embeddings (an openai-compatible entry with embeddings: true),
  #                     # for merging near-duplicate constitutions; without one, similar wording is used

engine:
  maxThreads: 0          # 0 = all cores

cache:
  enabled: true          # identical deterministic calls are answered from the store

store:
  path: .iteralign/iteralign.db
`;
