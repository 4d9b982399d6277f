import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseDocument } from "yaml";
import type { z } from "zod";
import { IterAlignError } from "../spec/errors.js";
import { PROVIDER_IDS } from "../providers/builtin.js";
import { ConfigSchema, type IterAlignConfig } from "./config-schema.js";

/** A config file that could not be used; `problems` lists every problem with its path. */
export class ConfigError extends IterAlignError {
  readonly problems: readonly string[];
  constructor(file: string, problems: readonly string[], code: "CONFIG_INVALID" | "CONFIG_NOT_FOUND" = "CONFIG_INVALID") {
    super(code, `${file}:\n${problems.map((p) => `  ${p}`).join("\n")}`, { details: { file, problems } });
    this.name = "ConfigError";
    this.problems = problems;
  }
}

export interface LoadedConfig {
  readonly config: IterAlignConfig;
  /** Absolute path of the config file. */
  readonly file: string;
  /** Directory relative paths in the config are resolved against. */
  readonly baseDir: string;
  /** sha256 of the file's bytes, recorded with every run. */
  readonly hash: string;
}

/** Formats zod issues as `a.b.c: message` lines. */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    const where = issue.path.length > 0 ? issue.path.map(String).join(".") : "(top level)";
    const message = issue.message.replace(/^Invalid input: /, "");
    if (issue.code === "invalid_union" && "note" in issue && issue.note === "No matching discriminator") {
      return `${where}: expected 'provider' to be one of ${PROVIDER_IDS.join(", ")}`;
    }
    return `${where}: ${message}`;
  });
}

/** Validates an already-parsed config object; throws ConfigError listing every problem. */
export function parseConfig(raw: unknown, file = "(config)"): IterAlignConfig {
  const result = ConfigSchema.safeParse(raw ?? {});
  if (!result.success) throw new ConfigError(file, [...new Set([...formatIssues(result.error.issues), ...roleProblems(raw)])]);
  return result.data;
}

/**
 * Role references checked on the raw object: the schema's own check runs only when everything else is valid,
 * and a user fixing a config wants every problem at once.
 */
function roleProblems(raw: unknown): string[] {
  if (typeof raw !== "object" || raw === null) return [];
  const { models, roles } = raw as { models?: unknown; roles?: unknown };
  if (typeof models !== "object" || models === null || typeof roles !== "object" || roles === null) return [];
  const names = Object.keys(models);
  return Object.entries(roles)
    .flatMap(([role, value]): Array<[string, unknown]> => (Array.isArray(value) ? value.map((name, i): [string, unknown] => [`${role}.${i}`, name]) : [[role, value]]))
    .filter(([, name]) => typeof name === "string" && !names.includes(name))
    .map(([role, name]) => `roles.${role}: unknown model '${String(name)}' (defined: ${names.join(", ")})`);
}

/** Reads, parses (YAML or JSON) and validates a config file. */
export function loadConfig(file: string): LoadedConfig {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(absolute, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(
      absolute,
      [
        code === "ENOENT"
          ? `config file not found (create one with 'iteralign init --config ${file}')`
          : `cannot read config file: ${(err as Error).message}`,
      ],
      "CONFIG_NOT_FOUND",
    );
  }
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      absolute,
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        return `${pos ? `line ${pos.line}, column ${pos.col}: ` : ""}${e.message.split("\n")[0] ?? e.message}`;
      }),
    );
  }
  const config = parseConfig(doc.toJS(), absolute);
  return {
    config,
    file: absolute,
    baseDir: path.dirname(absolute),
    hash: createHash("sha256").update(text).digest("hex"),
  };
}
