import { z } from "zod";

/**
 * Output formats of the guard classifiers users run as judges. Each names how the conversation goes in and how
 * the answer is read:
 * - `llama-guard`: Llama Guard 3 style. Request and answer go in as a user and an assistant message; the model's
 *   template writes the classification prompt; the answer is `safe`, or `unsafe` with a line of category codes.
 * - `shieldgemma`: ShieldGemma style. Same messages, the policy as the template variable `guideline`; the answer
 *   is `Yes` (the policy is violated) or `No`; the score is P(Yes).
 * - `qwen3guard`: Qwen3Guard style. Same messages; the answer has lines `Safety: Safe|Unsafe|Controversial`,
 *   `Categories: ...` and `Refusal: Yes|No`.
 * - `prompt-template`: a prompt the user brings (a file with `{request}` and `{response}`), sent as one user
 *   message in the model's chat template; the answer starts with one of `labels`.
 */
export const GUARD_STYLES = ["llama-guard", "shieldgemma", "qwen3guard", "prompt-template"] as const;
export type GuardStyle = (typeof GUARD_STYLES)[number];

export const GuardConfigSchema = z
  .object({
    style: z.enum(GUARD_STYLES).describe("Output format of the classifier: llama-guard, shieldgemma, qwen3guard or prompt-template."),
    probability: z
      .enum(["auto", "on", "off"])
      .default("auto")
      .describe(
        "Take the verdict from the probability of the first answer token(s) against `threshold`: `auto` where the engine can score a chat prompt (llama-cpp), `on` requires it, `off` reads the generated text only.",
      ),
    threshold: z.number().gt(0).lt(1).default(0.5).describe("P(unsafe) at or above which the answer fails (with probability scoring)."),
    uncertainBand: z
      .number()
      .min(0)
      .lt(0.5)
      .default(0.1)
      .describe("P(unsafe) this close to the threshold makes the verdict unsure (severity low): a cascade asks the next judge."),
    answerPrefix: z
      .string()
      .optional()
      .describe("What the model writes before its label, scored as part of the prompt (default per style: `Safety: ` for qwen3guard, none otherwise)."),
    templateVars: z
      .record(z.string(), z.string())
      .optional()
      .describe("Extra variables for the model's chat template (e.g. `guideline` for ShieldGemma)."),
    controversial: z.enum(["unsafe", "safe"]).default("unsafe").describe("qwen3guard: how a `Controversial` answer counts (strict: unsafe)."),
    promptFile: z
      .string()
      .min(1)
      .optional()
      .describe("prompt-template: a text file with `{request}` and `{response}` placeholders (relative to the config file)."),
    labels: z
      .object({
        unsafe: z.string().min(1).describe("The answer's first word when the response is harmful."),
        safe: z.string().min(1).describe("The answer's first word when it is not."),
      })
      .strict()
      .optional()
      .describe("prompt-template: the two labels the prompt asks for (matched case-insensitively at the start of the answer; default unsafe/safe)."),
    maxTokens: z.number().int().positive().max(512).default(48).describe("Most tokens of the generated answer (label, categories)."),
  })
  .strict()
  .superRefine((value, ctx) => {
    if (value.style === "prompt-template" && value.promptFile === undefined) {
      ctx.addIssue({ code: "custom", path: ["promptFile"], message: "style prompt-template needs promptFile (a file with {request} and {response})" });
    }
    if (value.style !== "prompt-template" && (value.promptFile !== undefined || value.labels !== undefined)) {
      ctx.addIssue({ code: "custom", path: [value.promptFile !== undefined ? "promptFile" : "labels"], message: `only style prompt-template takes promptFile and labels (style is ${value.style})` });
    }
    if (value.labels && value.labels.unsafe.toLowerCase() === value.labels.safe.toLowerCase()) {
      ctx.addIssue({ code: "custom", path: ["labels"], message: "the unsafe and safe labels must differ" });
    }
  });

export type GuardConfig = z.infer<typeof GuardConfigSchema>;

/** A guard config as a model carries it: a prompt-template's file already read. */
export type ResolvedGuard = GuardConfig & { readonly promptTemplate?: string };
