import { fixtureModelPath } from "../../src/gguf/fixture-models.js";
import { AnthropicModel } from "../../src/providers/anthropic/anthropic-model.js";
import { OpenAICompatibleModel } from "../../src/providers/openai-compatible/openai-compatible-model.js";
import { startAnthropicProtocolServer, upstreamAnswers } from "../../src/testing/anthropic-protocol-server.js";
import { startLlamaServer } from "../../src/testing/llama-server.js";
import { loadFixtureModel } from "../helpers/models.js";
import { ScriptedModel } from "../../src/testing/scripted-model.js";
import { languageModelContract } from "./language-model-contract.js";

const COLOURS = ["red", "green", "blue", "yellow"];

// The scripted double, scripted to behave like a model: a token per word, up to maxTokens.
languageModelContract("scripted double", async () => ({
  model: new ScriptedModel({
    generate: [
      (request) => {
        const n = Math.min(request.maxTokens ?? 3, 3);
        return {
          text: COLOURS.slice(0, n).join(" "),
          finishReason: n < 3 ? "length" : "stop",
          usage: { promptTokens: request.messages.reduce((t, m) => t + Math.ceil(m.content.length / 4), 0), completionTokens: n },
        };
      },
    ],
    generateObject: [() => ({ text: '{"label":"safe","note":"bread"}', finishReason: "stop", usage: { promptTokens: 20, completionTokens: 9 } })],
  }),
}));

languageModelContract("llama-cpp (embedded, tiny-qwen2)", async () => ({ model: await loadFixtureModel("tiny-qwen2", { sequences: 2 }) }));

languageModelContract("openai-compatible (llama-server, tiny-qwen2)", async () => {
  const server = await startLlamaServer({ modelPath: fixtureModelPath("tiny-qwen2"), parallel: 2, ctxSize: 4096 });
  return { model: new OpenAICompatibleModel({ baseUrl: server.baseUrl, model: "tiny-qwen2" }), cleanup: () => server.stop() };
});

languageModelContract("anthropic (Messages API protocol server over llama-server, tiny-qwen2)", async () => {
  const server = await startLlamaServer({ modelPath: fixtureModelPath("tiny-qwen2"), parallel: 2, ctxSize: 4096 });
  const api = await startAnthropicProtocolServer({ apiKey: "sk-ant-test", answer: upstreamAnswers(server.baseUrl) });
  return {
    model: new AnthropicModel({ baseUrl: api.baseUrl, model: "claude-test", apiKey: "sk-ant-test" }),
    cleanup: async () => {
      await api.close();
      await server.stop();
    },
  };
});
