import { chooseChatWrapper, toChatHistory } from "../providers/llama-cpp/chat-render.js";
import { writeFileSync } from "node:fs";
import {
  type ChatWrapper,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import { errorText, getEngine } from "../providers/llama-cpp/engine.js";
import { IterAlignError } from "../spec/errors.js";
import type { ChatMessage } from "../spec/language-model.js";
import type { TrainingExample } from "../spec/records.js";

/** One SFT example as the native trainer reads it: prompt + answer + end-of-turn tokens, 1 marks the answer. */
export interface TokenizedExample {
  readonly id: string;
  readonly tokens: readonly number[];
  readonly mask: readonly (0 | 1)[];
  /** Tokens the loss covers: the answer and the end-of-turn token (after truncation). */
  readonly answerTokens: number;
  /** True when the example was longer than `maxTokens` and its answer was cut. */
  readonly truncated: boolean;
}

export interface TokenizedExamples {
  readonly examples: TokenizedExample[];
  /** Examples left out because their prompt alone fills `maxTokens`, with the reason. */
  readonly skipped: { readonly id: string; readonly reason: string }[];
  /** The chat template used (node-llama-cpp wrapper name). */
  readonly chatTemplate: string;
  /** The token that ends an answer, as text (e.g. `<|im_end|>`). */
  readonly endOfTurn: string;
}

export interface TokenizeOptions {
  /** `auto` or `jinja`, as the target model's `chatTemplate` setting: training must render prompts the same way. */
  readonly chatTemplate: "auto" | "jinja";
  /** Longest example kept; a longer one loses the end of its answer. */
  readonly maxTokens: number;
}

/**
 * Renders and tokenizes SFT examples with the model's own chat template, exactly as `LlamaCppModel` renders a
 * prompt before generating (same wrapper choice, same `generateContextState` call), so the model is trained on
 * the tokens it will see. The answer (`chosen`) follows the prompt's tokens, then the end-of-turn token the
 * decoder stops on, so the model also learns to stop. Only answer and end-of-turn tokens get mask 1.
 * Loads the vocabulary only (no weights).
 */
export async function tokenizeExamples(
  modelFile: string,
  examples: readonly TrainingExample[],
  options: TokenizeOptions,
): Promise<TokenizedExamples> {
  const llama = await getEngine();
  let model: LlamaModel;
  try {
    model = await llama.loadModel({ modelPath: modelFile, vocabOnly: true });
  } catch (err) {
    throw new IterAlignError("MODEL_LOAD_FAILED", `cannot read the tokenizer of ${modelFile}: ${errorText(err)}`, { cause: err });
  }
  try {
    const wrapper = chooseChatWrapper(model, options.chatTemplate, modelFile);
    const out: TokenizedExample[] = [];
    const skipped: { id: string; reason: string }[] = [];
    let endOfTurn: Token | undefined;
    for (const example of examples) {
      const { prompt, end } = renderPrompt(model, wrapper, example.messages);
      endOfTurn ??= end;
      const answer = [...model.tokenize(example.chosen, false), end];
      const room = options.maxTokens - prompt.length;
      if (room < 1) {
        skipped.push({ id: example.id, reason: `its prompt has ${prompt.length} tokens, the context ${options.maxTokens}` });
        continue;
      }
      const kept = answer.slice(0, room);
      out.push({
        id: example.id,
        tokens: [...prompt, ...kept],
        mask: [...prompt.map(() => 0 as const), ...kept.map(() => 1 as const)],
        answerTokens: kept.length,
        truncated: kept.length < answer.length,
      });
    }
    return {
      examples: out,
      skipped,
      chatTemplate: wrapper.wrapperName,
      endOfTurn: endOfTurn === undefined ? "" : model.detokenize([endOfTurn], true),
    };
  } finally {
    await model.dispose();
  }
}

/** Writes the native trainer's input: one `{"tokens":[...],"mask":[...]}` line per example. */
export function writeTokenizedExamples(file: string, examples: readonly TokenizedExample[]): void {
  writeFileSync(file, examples.map((e) => `${JSON.stringify({ tokens: e.tokens, mask: e.mask })}\n`).join(""));
}

/**
 * The prompt's tokens (with the assistant turn opened, as for generation) and the end-of-turn token: the
 * template's own end-of-turn token when it is one of the decoder's stop tokens, else the first other special
 * stop token, else end-of-sequence.
 */
function renderPrompt(model: LlamaModel, wrapper: ChatWrapper, messages: readonly ChatMessage[]): { prompt: Token[]; end: Token } {
  const history = toChatHistory(messages);
  const state = wrapper.generateContextState({ chatHistory: history });
  const stops: Token[] = [];
  for (const trigger of state.stopGenerationTriggers) {
    const tokens = trigger.tokenize(model.tokenizer, "trimLeadingSpace");
    const first = tokens[0];
    if (tokens.length === 1 && first !== undefined && model.isSpecialToken(first)) stops.push(first);
  }
  const eot = model.tokens.eot;
  const eos = model.tokens.eos;
  const end = (eot !== null && stops.includes(eot) ? eot : undefined) ?? stops.find((t) => t !== eos) ?? eos ?? stops[0];
  if (end === undefined || end === null) {
    throw new IterAlignError("DATA_INVALID", "the model's chat template names no token that ends an answer");
  }
  return { prompt: state.contextText.tokenize(model.tokenizer), end };
}
