import path from "node:path";
import type { EvalTextSet } from "../datasets/contamination.js";
import type { RedTeamPrompt } from "../datasets/red-team-prompt.js";
import { loadMultipleChoiceJsonl } from "./custom-mc.js";
import type { McItem } from "./multiple-choice.js";
import { anthropicHhhItems, bigbenchItems, loadAnthropicHhh, loadBigbenchTask } from "./hhh.js";
import { bigbenchHhhFiles, parseBenchList } from "./registry.js";
import { loadTruthfulqa } from "./truthfulqa.js";
import { loadXstest } from "./xstest.js";

/** Where the evaluation sets of a run come from. */
export interface EvalTextSources {
  /** `eval.benchmarks` (empty: only the held-out split). */
  readonly benchmarks: string;
  /** The run's held-out red-team prompts (what `asr` measures on). */
  readonly heldout: readonly RedTeamPrompt[];
  readonly baseDir: string;
  readonly hhhFile?: string;
  readonly bigbenchDir?: string;
}

/**
 * The texts of every evaluation set a run uses, for the contamination check: the held-out split always, then each
 * listed benchmark's questions (TruthfulQA questions, XSTest prompts, the contexts of HHH and `mc:` items). `hhh`
 * without its files (not bundled) has nothing to compare and is left out.
 */
export async function evalTextSets(sources: EvalTextSources): Promise<EvalTextSet[]> {
  const sets: EvalTextSet[] = [{ name: "heldout", items: sources.heldout.map((p) => ({ id: p.id, text: p.text })) }];
  const specs = sources.benchmarks.trim() === "" ? [] : parseBenchList(sources.benchmarks);
  for (const spec of specs) {
    if (spec.name === "truthfulqa") {
      sets.push({ name: "truthfulqa", items: (await loadTruthfulqa()).map((q) => ({ id: String(q.index), text: q.question })) });
    } else if (spec.name === "xstest") {
      sets.push({ name: "xstest", items: (await loadXstest()).map((p) => ({ id: p.id, text: p.prompt })) });
    } else if (spec.name === "mc") {
      const items = await loadMultipleChoiceJsonl(path.resolve(sources.baseDir, spec.file));
      sets.push({ name: `mc:${spec.file}`, items: items.map((i) => ({ id: i.id, text: i.context })) });
    } else if (spec.name === "hhh") {
      const items: McItem[] = [];
      // Generative items carry the conversation as asked, without the scoring layout.
      if (sources.hhhFile) items.push(...anthropicHhhItems(await loadAnthropicHhh(path.resolve(sources.baseDir, sources.hhhFile)), "generative"));
      if (sources.bigbenchDir) for (const file of bigbenchHhhFiles(path.resolve(sources.baseDir, sources.bigbenchDir))) items.push(...bigbenchItems(await loadBigbenchTask(file)));
      if (items.length > 0) sets.push({ name: "hhh", items: items.map((i) => ({ id: i.id, text: i.context })) });
    }
    // asr measures on the held-out split, already in the list.
  }
  return sets;
}
