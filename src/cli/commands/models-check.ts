import { configOrModel } from "../config-or-model.js";
import { resolveEvalModel } from "./eval.js";
import { createProviderModel, modelNameForRole } from "../../providers/registry.js";
import { errorText } from "../../util/error-text.js";
import { IterAlignError, isIterAlignError } from "../../spec/errors.js";
import { ROLES, type LanguageModel, type Role } from "../../spec/language-model.js";
import type { CommandIo } from "../io.js";
import { createProgress, type Progress } from "../progress.js";
import { renderTable } from "../../util/table.js";

const PROBE_PROMPT = "In two sentences, explain why the sky looks blue during the day.";
const PROBE_TOKENS = 48;

/** What one model check measured. */
export interface ModelCheck {
  readonly name: string;
  readonly provider: string;
  readonly roles: readonly Role[];
  readonly ok: boolean;
  readonly capabilities: readonly string[];
  readonly loadSeconds?: number;
  readonly promptTokensPerSecond?: number;
  readonly generationTokensPerSecond?: number;
  readonly error?: string;
}

/** Measures prompt and generation speed with one streamed greedy answer. */
async function measure(model: LanguageModel): Promise<{ prompt: number; generation: number }> {
  const started = performance.now();
  let firstText = 0;
  const result = await model.generate({
    messages: [{ role: "user", content: PROBE_PROMPT }],
    maxTokens: PROBE_TOKENS,
    temperature: 0,
    onText: () => {
      if (firstText === 0) firstText = performance.now();
    },
  });
  const ended = performance.now();
  const first = firstText || ended;
  const promptSeconds = Math.max((first - started) / 1000, 1e-6);
  const genSeconds = Math.max((ended - first) / 1000, 1e-6);
  return {
    prompt: result.usage.promptTokens / promptSeconds,
    generation: Math.max(result.usage.completionTokens - 1, 0) / genSeconds,
  };
}

/** Loads each configured model (or only those of `role`), prints capabilities and measured tokens/s. */
export async function modelsCheckCommand(
  options: { config: string; role?: string; model?: string; json?: boolean },
  io: CommandIo,
): Promise<number> {
  const loaded = configOrModel(options.config, options.model);
  const { baseDir } = loaded;
  const chosen = options.model !== undefined ? resolveEvalModel(loaded.config, options.model) : undefined;
  const config = chosen?.config ?? loaded.config;
  const rolesOf = (name: string): Role[] => ROLES.filter((r) => modelNameForRole(config, r) === name);
  let names = Object.keys(config.models);
  if (chosen) names = [chosen.name];
  if (options.role) {
    const role = options.role as Role;
    const bound = ROLES.includes(role) ? modelNameForRole(config, role) : undefined;
    if (!bound) throw new IterAlignError("USAGE", `--role ${options.role}: no model is bound to that role (roles: ${ROLES.join(", ")})`);
    names = [bound];
  }
  const progress = createProgress("checking models", names.length, { tty: io.errIsTTY ?? false, write: (t) => io.err(t) });
  const checks: ModelCheck[] = [];
  for (const [i, name] of names.entries()) {
    const entry = config.models[name];
    if (!entry) continue;
    progress.update(i, undefined, name);
    const loadStart = performance.now();
    let model: LanguageModel | undefined;
    try {
      let download: Progress | undefined;
      model = await createProviderModel(name, entry, {
        baseDir,
        ...(config.engine.maxThreads !== undefined ? { maxThreads: config.engine.maxThreads } : {}),
        onDownloadProgress: (_name, done, total) => {
          download ??= createProgress(`downloading ${name} (MB)`, Math.ceil(total / 1e6), { tty: io.errIsTTY ?? false, write: (t) => io.err(t) });
          download.update(Math.floor(done / 1e6));
        },
      });
      download?.stop();
      const loadSeconds = (performance.now() - loadStart) / 1000;
      const speed = await measure(model);
      checks.push({
        name,
        provider: entry.provider,
        roles: rolesOf(name),
        ok: true,
        capabilities: [...model.capabilities],
        loadSeconds,
        promptTokensPerSecond: speed.prompt,
        generationTokensPerSecond: speed.generation,
      });
      progress.update(i + 1, speed.generation, name);
    } catch (err) {
      checks.push({
        name,
        provider: entry.provider,
        roles: rolesOf(name),
        ok: false,
        capabilities: [],
        error: isIterAlignError(err) ? `[${err.code}] ${err.message}` : errorText(err),
      });
    } finally {
      await model?.close();
    }
  }
  progress.stop();
  // The trl trainer runs in a Python environment: checked with the models (python, packages, device).
  if (config.train.trainer === "trl" && options.model === undefined && options.role === undefined) {
    const { TrlTrainer } = await import("../../train/trl-trainer.js");
    const trainer = new TrlTrainer(config.train.trl ?? {}, { baseDir });
    try {
      const env = await trainer.checkEnvironment();
      checks.push({
        name: "train.trl",
        provider: `python ${env.python}`,
        roles: [],
        ok: true,
        capabilities: [...Object.entries(env.packages).map(([p, v]) => `${p} ${v}`), `device ${env.device.type}${env.device.bf16 ? " bf16" : ""}`],
      });
    } catch (err) {
      checks.push({ name: "train.trl", provider: trainer.python, roles: [], ok: false, capabilities: [], error: isIterAlignError(err) ? `[${err.code}] ${err.message}` : errorText(err) });
    }
  }
  if (options.json) {
    io.out(`${JSON.stringify(checks, null, 2)}\n`);
  } else {
    io.out(
      renderTable(
        ["model", "provider", "roles", "status", "capabilities", "load s", "prompt tok/s", "gen tok/s"],
        checks.map((c) => [
          c.name,
          c.provider,
          c.roles.join(",") || "-",
          c.ok ? "ok" : "FAILED",
          c.capabilities.join(","),
          c.loadSeconds?.toFixed(1) ?? "-",
          c.promptTokensPerSecond?.toFixed(1) ?? "-",
          c.generationTokensPerSecond?.toFixed(1) ?? "-",
        ]),
      ),
    );
    for (const c of checks) if (c.error) io.err(`${c.name}: ${c.error}\n`);
  }
  return checks.every((c) => c.ok) ? 0 : 1;
}
