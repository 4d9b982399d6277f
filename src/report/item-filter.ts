import type { ItemQuery, ItemSummary } from "./types.js";

/**
 * Whether an item matches a query: the one filter the viewer's server and the static report's page both use.
 * `evidence` holds, per principle id, the item ids that are evidence for it.
 */
export function itemMatcher(q: ItemQuery, evidence: ReadonlyMap<string, ReadonlySet<string>>): (item: ItemSummary) => boolean {
  const text = q.text?.trim().toLowerCase();
  const evidenced = q.principle !== undefined && q.revised !== true ? evidence.get(q.principle) : undefined;
  const revised = (e: ItemSummary): boolean => e.stage === "self-correct" || e.stage === "gate" || e.stage === "exported";
  return (e) =>
    (q.iteration === undefined || e.iteration === q.iteration) &&
    (q.stage === undefined || e.stage === q.stage) &&
    (q.verdict === undefined || (q.verdict === "none" ? e.verdict === null : e.verdict === q.verdict)) &&
    (q.gate === undefined || e.gate === q.gate) &&
    (q.dataset === undefined || e.dataset === q.dataset) &&
    (q.category === undefined || e.category === q.category) &&
    (q.errors === undefined || e.hasError === q.errors) &&
    (q.revised === undefined || revised(e) === q.revised) &&
    (q.principle === undefined || e.principleIds.includes(q.principle) || evidenced?.has(e.id) === true) &&
    (text === undefined || text === "" || e.id.toLowerCase().includes(text) || e.promptStart.toLowerCase().includes(text));
}

/** Items shown per page by default, and at most. */
export const PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;
