import { createInterface } from "node:readline";
import { configOrModel } from "../config-or-model.js";
import { resolveEvalModel } from "./eval.js";
import { createProviderModel, modelNameForRole } from "../../providers/registry.js";
import { IterAlignError } from "../../spec/errors.js";
import { ROLES, type ChatMessage, type LanguageModel, type Role } from "../../spec/language-model.js";
import type { CommandIo } from "../io.js";

/**
 * Interactive chat with the model of a role; tokens are written as they are decoded. Reads one message per
 * line, so it also works with piped input. `/reset` clears the history, `/exit` (or end of input) quits.
 */
export async function chatCommand(
  options: { config: string; role: string; model?: string; system?: string; maxTokens?: number },
  io: CommandIo,
): Promise<number> {
  const loaded = configOrModel(options.config, options.model);
  const { baseDir } = loaded;
  const chosen = options.model !== undefined ? resolveEvalModel(loaded.config, options.model) : undefined;
  const config = chosen?.config ?? loaded.config;
  const role = options.role as Role;
  if (!ROLES.includes(role)) throw new IterAlignError("USAGE", `--role must be one of ${ROLES.join(", ")}`);
  const name = chosen?.name ?? modelNameForRole(config, role);
  const entry = name ? config.models[name] : undefined;
  if (!name || !entry) throw new IterAlignError("USAGE", `no model is bound to the ${role} role`);
  const model: LanguageModel = await createProviderModel(name, entry, {
    baseDir,
    ...(config.engine.maxThreads !== undefined ? { maxThreads: config.engine.maxThreads } : {}),
  });
  const initial: ChatMessage[] = options.system ? [{ role: "system", content: options.system }] : [];
  let history: ChatMessage[] = [...initial];
  const rl = createInterface({ input: io.stdin, terminal: io.isTTY });
  const abort = new AbortController();
  const prompt = (): void => {
    if (io.isTTY) io.out("\n> ");
  };
  if (io.isTTY) io.out(`chatting with ${name} (${entry.provider}) as ${role}; /reset clears, /exit quits`);
  prompt();
  try {
    for await (const line of rl) {
      const text = line.trim();
      if (text === "") {
        prompt();
        continue;
      }
      if (text === "/exit" || text === "/quit") break;
      if (text === "/reset") {
        history = [...initial];
        io.out("(history cleared)\n");
        prompt();
        continue;
      }
      history.push({ role: "user", content: text });
      const result = await model.generate({
        messages: history,
        onText: (piece) => io.out(piece),
        signal: abort.signal,
        ...(options.maxTokens ? { maxTokens: options.maxTokens } : {}),
      });
      io.out("\n");
      if (result.finishReason === "length") io.err(`(stopped at ${result.usage.completionTokens} tokens)\n`);
      history.push({ role: "assistant", content: result.text });
      prompt();
    }
  } finally {
    rl.close();
    await model.close();
  }
  return 0;
}
