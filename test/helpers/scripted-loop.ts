import type { IterAlignConfig } from "../../src/config/config-schema.js";
import { parseConfig, type LoadedConfig } from "../../src/config/load-config.js";
import type { LoopModelSource } from "../../src/pipeline/run-loop.js";
import { createMeter } from "../../src/providers/middleware/accounting.js";
import { applyMiddleware } from "../../src/providers/middleware/compose.js";
import type { GenerateObjectRequest, GenerateRequest, GenerateResult, LanguageModel, Role } from "../../src/spec/language-model.js";
import type { RunStore } from "../../src/store/run-store.js";
import { ScriptedModel, textResult } from "../../src/testing/scripted-model.js";

/** The request text a judge prompt is about (between `<request>` tags), or "" for other prompts. */
export function judgedRequest(request: GenerateObjectRequest<unknown>): string {
  const user = request.messages.find((m) => m.role === "user")?.content ?? "";
  return /<request>\n([\s\S]*?)\n<\/request>/.exec(user)?.[1] ?? "";
}

/** The reply a judge prompt is about (between `<reply>` tags), or "". */
export function judgedReply(request: GenerateObjectRequest<unknown>): string {
  const user = request.messages.find((m) => m.role === "user")?.content ?? "";
  return /<reply>\n([\s\S]*?)\n<\/reply>/.exec(user)?.[1] ?? "";
}

/** How the scripted loop's models answer. */
export interface ScriptedLoopOptions {
  /** The target's answer to a red-team or revision prompt. Default: "Sure: step 1..." / "I can't help with that." */
  readonly target?: (request: GenerateRequest) => GenerateResult | Error;
  /** Whether the judge passes the answer to a request (`gate` true for the gate's re-judging). Default: never. */
  readonly pass?: (requestText: string, gate: boolean, replyText: string) => boolean | Error;
  /** Principles the oracle proposes for the batch's failures. Default: one citing every case. */
  readonly propose?: (request: GenerateObjectRequest<unknown>) => GenerateResult | Error;
  /** The judge's rationale (verdicts, gate verdicts, evaluation labels). Default: "Safe." / "Gives harmful help.". */
  readonly rationale?: (requestText: string, pass: boolean) => string;
  /** The attacker's requests (`loop.attacks`, schema `attacks`). Default: two per call, from the category and seed. */
  readonly attack?: (request: GenerateObjectRequest<unknown>) => GenerateResult | Error;
}

/**
 * A model source of scripted doubles for the loop's stage logic, wrapped in the real middleware (the response
 * cache and call log in `store`, accounting), as `iteralign run` wraps its models.
 */
export function scriptedLoopModels(store: RunStore, runId: string, options: ScriptedLoopOptions = {}): LoopModelSource & { readonly raw: Record<"target" | "oracle", ScriptedModel> } {
  const target = new ScriptedModel({
    modelId: "scripted-target",
    generate: [
      (request) => {
        const answer = options.target?.(request);
        if (answer instanceof Error) throw answer;
        if (answer) return answer;
        return textResult(request.messages.some((m) => m.content.includes("Constitutions:")) ? "I can't help with that." : "Sure: step 1...");
      },
    ],
  });
  const oracle = new ScriptedModel({
    modelId: "scripted-oracle",
    generateObject: [
      (request) => {
        const name = request.schemaName ?? "";
        if (name === "constitutions") {
          const answer = options.propose?.(request);
          if (answer instanceof Error) throw answer;
          if (answer) return answer;
          const cases = [...(request.messages.find((m) => m.role === "user")?.content.matchAll(/\bF\d+\b/g) ?? [])].map((m) => m[0]);
          return textResult(
            JSON.stringify({ constitutions: [{ title: "Refuse harm", principle: "Refuse to give instructions that enable harm.", failureIds: [...new Set(cases)] }] }),
          );
        }
        if (name === "verdict" || name === "gate_verdict") {
          const pass = options.pass?.(judgedRequest(request), name === "gate_verdict", judgedReply(request)) ?? false;
          if (pass instanceof Error) throw pass;
          return textResult(
            JSON.stringify({
              pass,
              violated: pass ? [] : ["harmless"],
              severity: pass ? "none" : "high",
              rationale: options.rationale?.(judgedRequest(request), pass) ?? (pass ? "Safe." : "Gives harmful help."),
              promptBenign: false,
              refusal: pass,
            }),
          );
        }
        if (name === "attacks") {
          const answer = options.attack?.(request);
          if (answer instanceof Error) throw answer;
          if (answer) return answer;
          const category = /Category: (.*)/.exec(request.messages[1]?.content ?? "")?.[1] ?? "";
          return textResult(JSON.stringify({ requests: [1, 2].map((k) => `Attack ${k} on ${category}, seed ${String(request.seed)}`) }));
        }
        if (name === "refined_attack") return textResult(JSON.stringify({ request: `Rewritten: ${/Goal: (.*)/.exec(request.messages[1]?.content ?? "")?.[1] ?? ""}` }));
        if (name === "escalation_plan") return textResult(JSON.stringify({ turns: ["A harmless opener.", "A step closer.", "The goal itself."] }));
        if (name === "translation") return textResult(JSON.stringify({ translation: `[translated] ${/<text>\n([\s\S]*?)\n<\/text>/.exec(request.messages[1]?.content ?? "")?.[1] ?? ""}` }));
        if (name === "attack_verdict") {
          return textResult(JSON.stringify({ reason: options.rationale?.(judgedRequest(request), false) ?? "Gives harmful help.", label: "harmful" }));
        }
        // Merge confirmations: never merge.
        return textResult(JSON.stringify({ same: false, title: "", text: "" }));
      },
    ],
  });
  const meter = createMeter();
  const wrap = (model: LanguageModel, role: Role): LanguageModel =>
    applyMiddleware(model, { cache: { log: store, runId, role }, retry: { maxRetries: 0 }, meter });
  const byRole: Record<Role, LanguageModel> = {
    target: wrap(target, "target"),
    oracle: wrap(oracle, "oracle"),
    judge: wrap(oracle, "judge"),
    embedder: wrap(oracle, "embedder"),
  };
  return {
    meter,
    raw: { target, oracle },
    forRole: async (role) => byRole[role],
    rebindRole: async () => undefined,
    close: async () => undefined,
  };
}

/** A loop config for scripted models (the model entries are never loaded: models are injected). */
export function scriptedLoopConfig(dir: string, loop: Record<string, unknown> = {}, data: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): LoadedConfig {
  const config: IterAlignConfig = parseConfig({
    models: { target: { provider: "llama-cpp", model: "unused.gguf" }, oracle: { provider: "llama-cpp", model: "unused.gguf" } },
    roles: { target: "target", oracle: "oracle" },
    data: { redTeam: [{ bundled: "dangerousqa" }], limit: 6, ...data },
    loop: { batchSize: 2, ...loop },
    runsDir: "runs",
    ...extra,
  });
  return { config, file: `${dir}/iteralign.yaml`, baseDir: dir, hash: "test" };
}
