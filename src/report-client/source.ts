import { itemMatcher, PAGE_SIZE } from "../report/item-filter.js";
import type { EvalItemView, ItemPage, ItemQuery, ItemSummary, ItemTrace, RunProgress, RunView } from "../report/types.js";

/** One run as a static report embeds it. */
export interface StaticRun {
  readonly view: RunView;
  readonly items: readonly ItemSummary[];
  /** Traces in the order of `items`. */
  readonly traces: readonly ItemTrace[];
  /** Evaluation items by `<label>/<benchmark>`. */
  readonly evalItems: Readonly<Record<string, readonly EvalItemView[]>>;
}

export interface StaticData {
  readonly version: number;
  readonly generatedAt: string;
  readonly generator: string;
  readonly runs: readonly StaticRun[];
}

export interface RunListEntry {
  readonly runId: string;
  readonly status: string;
  readonly createdAt: string;
  readonly finishedAt: string | null;
  readonly iterations: number;
}

/** Where the page's data comes from: the embedded report, or `iteralign view`'s API. */
export interface Source {
  readonly live: boolean;
  /** Runs shown together (a comparison has two). */
  runCount(): number;
  view(run: number): Promise<RunView>;
  items(run: number, query: ItemQuery): Promise<ItemPage>;
  item(run: number, id: string): Promise<ItemTrace>;
  evalItems(run: number, label: string, benchmark: string): Promise<readonly EvalItemView[]>;
  progress(run: number): Promise<RunProgress | undefined>;
}

export class StaticSource implements Source {
  readonly live = false;
  private readonly evidence: Array<Map<string, Set<string>>>;

  constructor(private readonly data: StaticData) {
    this.evidence = data.runs.map((r) => new Map(r.view.principles.map((p) => [p.id, new Set(p.evidence)])));
  }

  runCount(): number {
    return this.data.runs.length;
  }

  private run(i: number): StaticRun {
    const run = this.data.runs[i];
    if (!run) throw new Error(`no run ${i}`);
    return run;
  }

  async view(run: number): Promise<RunView> {
    return this.run(run).view;
  }

  async items(run: number, q: ItemQuery): Promise<ItemPage> {
    const r = this.run(run);
    const all = r.items;
    const matches = all.filter(itemMatcher(q, this.evidence[run] ?? new Map()));
    const offset = q.offset ?? 0;
    const limit = q.limit ?? PAGE_SIZE;
    const sorted = (values: Iterable<string>): string[] => [...new Set(values)].sort();
    return {
      total: matches.length,
      offset,
      limit,
      items: matches.slice(offset, offset + limit),
      facets: {
        iterations: [...new Set(all.map((i) => i.iteration))].sort((a, b) => a - b),
        datasets: sorted(all.map((i) => i.dataset)),
        categories: sorted(all.flatMap((i) => (i.category === null ? [] : [i.category]))),
        gates: sorted(all.flatMap((i) => (i.gate === null ? [] : [i.gate]))),
      },
    };
  }

  async item(run: number, id: string): Promise<ItemTrace> {
    const r = this.run(run);
    const at = r.items.findIndex((i) => i.id === id);
    const trace = r.traces[at];
    if (at < 0 || !trace) throw new Error(`no item ${id}`);
    return trace;
  }

  async evalItems(run: number, label: string, benchmark: string): Promise<readonly EvalItemView[]> {
    return this.run(run).evalItems[`${label}/${benchmark}`] ?? [];
  }

  async progress(): Promise<undefined> {
    return undefined;
  }
}

/** `iteralign view`'s JSON API for one run (`/api/runs/<id>/...`). */
export class ApiSource implements Source {
  readonly live = true;

  constructor(private readonly runId: string) {}

  runCount(): number {
    return 1;
  }

  private async get<T>(path: string): Promise<T> {
    const response = await fetch(`/api/runs/${encodeURIComponent(this.runId)}${path}`, { headers: { accept: "application/json" } });
    if (!response.ok) {
      const body = (await response.json().catch(() => ({}))) as { error?: string };
      throw new Error(body.error ?? `${response.status} ${response.statusText}`);
    }
    return (await response.json()) as T;
  }

  view(): Promise<RunView> {
    return this.get("/view");
  }

  items(_run: number, q: ItemQuery): Promise<ItemPage> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== "") params.set(k, String(v));
    return this.get(`/items?${params.toString()}`);
  }

  item(_run: number, id: string): Promise<ItemTrace> {
    return this.get(`/items/${encodeURIComponent(id)}`);
  }

  evalItems(_run: number, label: string, benchmark: string): Promise<readonly EvalItemView[]> {
    return this.get(`/eval/${encodeURIComponent(label)}/${encodeURIComponent(benchmark)}`);
  }

  progress(): Promise<RunProgress> {
    return this.get("/progress");
  }
}

/** Reads the report's embedded data: base64 of gzipped JSON (no `<` in it, so it cannot end its script element). */
export async function readEmbedded(element: HTMLElement): Promise<StaticData> {
  const b64 = (element.textContent ?? "").trim();
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  const text = await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text();
  return JSON.parse(text) as StaticData;
}

export async function listRuns(): Promise<RunListEntry[]> {
  const response = await fetch("/api/runs", { headers: { accept: "application/json" } });
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  return (await response.json()) as RunListEntry[];
}
