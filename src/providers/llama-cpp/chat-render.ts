import { JinjaTemplateChatWrapper, resolveChatWrapper, type ChatHistoryItem, type ChatWrapper, type LlamaModel } from "node-llama-cpp";
import { IterAlignError } from "../../spec/errors.js";
import type { ChatMessage } from "../../spec/language-model.js";

/**
 * How a GGUF's chat is rendered. Generation and training share these, so a fine-tuned model is trained on
 * exactly the prompts it is later asked.
 */

/** `auto`: node-llama-cpp's wrapper equivalent to the GGUF's template; `jinja`: the GGUF's Jinja template. */
export function chooseChatWrapper(model: LlamaModel, mode: "auto" | "jinja", file: string): ChatWrapper {
  const template = model.fileInfo.metadata?.tokenizer?.chat_template;
  if (mode === "jinja") {
    if (typeof template !== "string")
      throw new IterAlignError("MODEL_LOAD_FAILED", `${file} has no tokenizer.chat_template; use chatTemplate: auto`);
    return new JinjaTemplateChatWrapper({ template });
  }
  const wrapper = resolveChatWrapper(model);
  if (!wrapper) throw new IterAlignError("MODEL_LOAD_FAILED", `no chat template could be resolved for ${file}`);
  return wrapper;
}

/** The messages as node-llama-cpp chat history, with an open assistant turn to answer in. */
export function toChatHistory(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = messages.map((m) =>
    m.role === "system"
      ? { type: "system", text: m.content }
      : m.role === "user"
        ? { type: "user", text: m.content }
        : { type: "model", response: [m.content] },
  );
  history.push({ type: "model", response: [] });
  return history;
}
