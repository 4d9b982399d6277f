import type { EvalEntryView, IterationView, ItemQuery, ItemStage, ItemTrace, PrincipleView, RunProgress, RunView, StageUsageView } from "../report/types.js";
import { COLORS, lineChart, resizeCharts } from "./charts.js";
import { wordDiff } from "./diff.js";
import { append, h, link, num, pct, seconds, table, untrusted, usd, visible } from "./dom.js";
import { ApiSource, listRuns, readEmbedded, StaticSource, type Source } from "./source.js";

/**
 * The report's and the viewer's page: hash routes (`#/overview`, `#/items?...`, `#/item/<id>`, ...), each page
 * built from the data source with DOM calls only (dom.ts). `?run=1` picks the second run of a comparison.
 */

interface Route {
  readonly page: string;
  readonly arg: string;
  readonly params: URLSearchParams;
}

function parseRoute(): Route {
  const hash = location.hash.replace(/^#\/?/, "");
  const [pathPart = "", query = ""] = hash.split("?", 2);
  const [page = "overview", ...rest] = pathPart.split("/");
  return { page: page || "overview", arg: rest.map(decodeURIComponent).join("/"), params: new URLSearchParams(query) };
}

/** A route to a page of run `run`. */
function route(page: string, arg = "", params: Record<string, string | number | undefined> = {}, run = currentRun): string {
  const q = new URLSearchParams();
  if (run > 0) q.set("run", String(run));
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") q.set(k, String(v));
  const s = q.toString();
  return `#/${page}${arg ? `/${encodeURIComponent(arg)}` : ""}${s ? `?${s}` : ""}`;
}

let source: Source;
let currentRun = 0;
let main: HTMLElement;
let liveTimer: number | undefined;
let lastRevision: number | undefined;

async function boot(): Promise<void> {
  main = document.getElementById("app") as HTMLElement;
  const embedded = document.getElementById("iteralign-data");
  const api = document.querySelector<HTMLMetaElement>('meta[name="iteralign-run"]');
  try {
    if (embedded) {
      source = new StaticSource(await readEmbedded(embedded));
    } else if (api?.content) {
      source = new ApiSource(api.content);
    } else {
      await runList();
      return;
    }
    window.addEventListener("hashchange", () => void render());
    window.addEventListener("resize", () => resizeCharts());
    await render();
    if (source.live) startLive();
  } catch (err) {
    showError(err);
  }
}

function showError(err: unknown): void {
  main.replaceChildren(h("section", { class: "error" }, h("h2", null, "Could not show this"), untrusted(err instanceof Error ? err.message : String(err))));
}

async function render(): Promise<void> {
  const r = parseRoute();
  currentRun = Math.min(Math.max(0, Number(r.params.get("run") ?? 0) || 0), source.runCount() - 1);
  const view = await source.view(currentRun);
  document.title = `${view.runId} · iteralign`;
  const nav = h(
    "nav",
    { class: "tabs", "aria-label": "pages" },
    ...[
      ["overview", "Overview"],
      ["iterations", "Iterations"],
      ["constitution", "Constitution"],
      ["items", "Items"],
      ["eval", "Evaluation"],
      ...(source.runCount() > 1 ? [["compare", "Compare"]] : []),
    ].map(([page, label]) => h("a", { href: route(page as string), class: r.page === page || (r.page === "principle" && page === "constitution") || (r.page === "item" && page === "items") ? "active" : "" }, label as string)),
  );
  const runSwitch =
    source.runCount() > 1
      ? h(
          "div",
          { class: "run-switch" },
          "run: ",
          ...(await Promise.all([...Array(source.runCount()).keys()].map(async (i) => h("a", { href: route(r.page === "compare" ? "overview" : r.page, "", {}, i), class: i === currentRun ? "active" : "" }, (await source.view(i)).runId)))),
        )
      : null;
  const header = h(
    "header",
    null,
    h("h1", null, "iteralign run ", h("span", { class: "run-id" }, view.runId), " ", h("span", { class: `status status-${view.status}` }, view.status)),
    runSwitch,
    nav,
  );
  const content = h("main", { id: "page", data: { page: r.page } });
  main.replaceChildren(header, h("div", { id: "live" }), content);
  try {
    switch (r.page) {
      case "iterations":
        pageIterations(content, view);
        break;
      case "constitution":
        pageConstitution(content, view);
        break;
      case "principle":
        await pagePrinciple(content, view, r.arg);
        break;
      case "items":
        await pageItems(content, view, r.params);
        break;
      case "item":
        await pageItem(content, view, r.arg);
        break;
      case "eval":
        await pageEval(content, view, r.arg, r.params);
        break;
      case "compare":
        await pageCompare(content);
        break;
      default:
        pageOverview(content, view);
    }
  } catch (err) {
    content.replaceChildren(h("section", { class: "error" }, h("h2", null, "Could not show this page"), untrusted(err instanceof Error ? err.message : String(err))));
  }
  // The page is complete (its data loaded): tests and scripts wait for this.
  content.dataset.ready = "true";
  window.scrollTo(0, 0);
}

// --- Overview -------------------------------------------------------------------------------------------------------

function pageOverview(el: HTMLElement, v: RunView): void {
  const card = (label: string, value: string | HTMLElement): HTMLElement => h("div", { class: "card" }, h("div", { class: "card-label" }, label), h("div", { class: "card-value" }, value));
  const last = v.iterations[v.iterations.length - 1];
  append(
    el,
    v.warnings.length > 0 ? h("section", { class: "warnings" }, h("h2", null, "Warnings"), h("ul", null, ...v.warnings.map((w) => h("li", null, untrusted(w, "span"))))) : null,
    h(
      "section",
      { class: "cards" },
      card("status", v.status),
      card("stop reason", v.stopReason ?? (v.error ? "failed" : "–")),
      card("iterations", String(v.iterations.length)),
      card("red-team items", num(v.totals.items)),
      card("errors", num(v.totals.errors)),
      card("failure rate (last)", pct(last?.metrics.failureRate)),
      card("active principles", String(last?.activePrinciples ?? 0)),
      card("tokens", num(v.totals.promptTokens + v.totals.completionTokens)),
      card("model time", seconds(v.totals.seconds)),
      card("cost", usd(v.totals.costUsd)),
      card("trainer", v.trainer),
    ),
    v.error ? h("section", { class: "error" }, h("h2", null, "Run error"), untrusted(v.error)) : null,
    h("section", null, h("h2", null, "Run"), table(["", ""], [
      ["run id", v.runId],
      ["started", v.createdAt],
      ["finished", v.finishedAt ?? "–"],
      ["config sha256", h("code", null, v.configHash)],
      ["split", v.split.train === null ? "–" : `${v.split.train} train, ${v.split.heldout ?? 0} held out (${Object.entries(v.split.counts).map(([d, c]) => `${d}: ${c.train}/${c.heldout}`).join(", ")})`],
    ], { class: "kv" })),
    v.calibration
      ? h(
          "section",
          { class: "calibration" },
          h("h2", null, "Judge calibration"),
          h("p", null, `${v.calibration.judge} (${v.calibration.preset} prompt) against the human labels of ${v.calibration.data}: ${v.calibration.n} items judged${v.calibration.errors ? `, ${v.calibration.errors} errors` : ""}; positive = harmful.`),
          table(["accuracy", "precision", "recall", "F1", "Cohen's kappa"], [[pct(v.calibration.accuracy), pct(v.calibration.precision), pct(v.calibration.recall), num(v.calibration.f1, 3), num(v.calibration.kappa, 3)]]),
        )
      : null,
    h("section", null, h("h2", null, "Models and roles"), table(["name", "provider", "model", "roles"], v.models.map((m) => [m.name, m.provider, untrusted(m.model, "span"), m.roles.join(", ")]))),
    h("section", null, h("h2", null, "Stages (all iterations)"), stageTable(v.stageTotals)),
    h("section", null, h("h2", null, "Config"), h("details", null, h("summary", null, "the config this run used (secrets redacted)"), untrusted(JSON.stringify(v.config, null, 2), "pre"))),
  );
}

function stageTable(stages: readonly StageUsageView[]): HTMLElement {
  return table(
    ["stage", "items", "errors", "time", "prompt tokens", "completion tokens", "tokens/s", "cost"],
    stages.map((s) => [
      s.stage,
      num(s.items),
      s.errors > 0 ? h("span", { class: "bad" }, num(s.errors)) : "0",
      seconds(s.seconds),
      num(s.promptTokens),
      num(s.completionTokens),
      s.seconds && s.seconds > 0 && s.promptTokens !== null && s.completionTokens !== null ? num((s.promptTokens + s.completionTokens) / s.seconds, 1) : "–",
      usd(s.costUsd),
    ]),
    { class: "stages" },
  );
}

// --- Iterations -----------------------------------------------------------------------------------------------------

function iterationCharts(its: readonly IterationView[]): HTMLElement[] {
  const x = its.map((i) => String(i.iteration));
  const m = its.map((i) => i.metrics);
  const reasons = [...new Set(m.flatMap((x) => Object.keys(x.gateRejections)))].sort();
  return [
    lineChart({
      name: "failure-rate",
      title: "Failure rate of the red-team answers, and failures fixed by revision",
      xLabels: x,
      percent: true,
      series: [
        { label: "failure rate", values: m.map((x) => x.failureRate), color: COLORS[1] as string },
        { label: "fixed / failures", values: m.map((x) => (x.failures > 0 ? x.fixed / x.failures : null)), color: COLORS[2] as string },
      ],
    }),
    lineChart({
      name: "gate",
      title: "Gate: pass rate and rejections by reason",
      xLabels: x,
      series: [
        { label: "revisions", values: m.map((x) => x.revisions), color: COLORS[0] as string },
        { label: "accepted", values: m.map((x) => x.fixed), color: COLORS[2] as string },
        ...reasons.map((reason, i) => ({ label: `rejected: ${reason}`, values: m.map((x) => x.gateRejections[reason] ?? 0), color: COLORS[(i + 3) % COLORS.length] as string })),
      ],
    }),
    lineChart({
      name: "gate-pass-rate",
      title: "Gate pass rate",
      xLabels: x,
      percent: true,
      series: [{ label: "gate pass rate", values: m.map((x) => x.gatePassRate), color: COLORS[2] as string }],
    }),
    lineChart({
      name: "principles",
      title: "Principles: active after the iteration, added, merged, retired",
      xLabels: x,
      series: [
        { label: "active", values: its.map((i) => i.activePrinciples), color: COLORS[0] as string },
        { label: "added", values: m.map((x) => x.principlesAdded), color: COLORS[2] as string },
        { label: "merged", values: m.map((x) => x.principlesMerged), color: COLORS[4] as string },
        { label: "retired", values: m.map((x) => x.principlesRetired), color: COLORS[1] as string },
      ],
    }),
  ];
}

/** A panel's agreement in one cell: the lowest pairwise kappa, and how many verdicts the judges disagreed on. */
function agreementCell(a: RunView["iterations"][number]["metrics"]["judgeAgreement"]): string {
  if (!a) return "–";
  const kappas = a.pairs.map((p) => p.kappa).filter((k): k is number => k !== null);
  return `${kappas.length > 0 ? num(Math.min(...kappas), 2) : "–"}, ${a.disagreements} disagreements`;
}

function pageIterations(el: HTMLElement, v: RunView): void {
  if (v.iterations.length === 0) {
    append(el, h("p", { class: "empty" }, "No iteration has finished yet."));
    return;
  }
  const contaminationShown = v.iterations.some((it) => it.metrics.contaminated !== undefined);
  const agreementShown = v.iterations.some((it) => it.metrics.judgeAgreement !== undefined);
  append(
    el,
    h("section", { class: "charts" }, ...iterationCharts(v.iterations)),
    h(
      "section",
      null,
      h("h2", null, "Per iteration"),
      table(
        ["iteration", "prompts", "failures", "failure rate", "revisions", "gate pass", "fixed", "examples", "principles (+/merged/retired)", "errors", "cost", "training", ...(contaminationShown ? ["contaminated (dropped)"] : []), ...(agreementShown ? ["judge agreement (min κ)"] : [])],
        v.iterations.map((it) => [
          link(route("items", "", { iteration: it.iteration }), String(it.iteration)),
          num(it.metrics.prompts),
          link(route("items", "", { iteration: it.iteration, verdict: "fail" }), num(it.metrics.failures)),
          pct(it.metrics.failureRate),
          num(it.metrics.revisions),
          pct(it.metrics.gatePassRate),
          link(route("items", "", { iteration: it.iteration, stage: "exported" }), num(it.metrics.fixed)),
          num(it.metrics.trainingExamples),
          `${it.activePrinciples} (+${it.metrics.principlesAdded}/${it.metrics.principlesMerged}/${it.metrics.principlesRetired})`,
          it.metrics.errors > 0 ? h("span", { class: "bad" }, num(it.metrics.errors)) : "0",
          usd(it.metrics.costUsd),
          it.training ? `${it.training.trainer}: ${it.training.examples} examples${it.training.finalLoss !== undefined ? `, loss ${it.training.finalLoss.toFixed(3)}` : ""}` : "–",
          ...(contaminationShown ? [it.metrics.contaminated !== undefined ? `${it.metrics.contaminated} (${it.metrics.decontaminated ?? 0})` : "–"] : []),
          ...(agreementShown ? [agreementCell(it.metrics.judgeAgreement)] : []),
        ]),
        { class: "iterations" },
      ),
    ),
    ...(v.iterations.some((it) => it.metrics.attacks !== undefined) ? [attacksSection(v)] : []),
    ...v.iterations.map((it) =>
      h("section", { class: "iteration" }, h("details", null, h("summary", null, `Iteration ${it.iteration}: stages`), stageTable(it.stages), it.training ? untrusted(`next target: ${it.training.model}`) : null)),
    ),
  );
}

/** `n of m` pairs of a tally, sorted by name (strategy, category and source names come from the config and data). */
function tallyText(t: Readonly<Record<string, { readonly n?: number; readonly succeeded?: number; readonly attempts?: number; readonly failures?: number }>>): string {
  const names = Object.keys(t).sort();
  if (names.length === 0) return "–";
  return names.map((k) => {
    const x = t[k] as { n?: number; succeeded?: number; attempts?: number; failures?: number };
    return `${k} ${x.succeeded ?? x.failures ?? 0}/${x.n ?? x.attempts ?? 0}`;
  }).join(", ");
}

/** loop.attacks: per iteration, the batch's make-up, what the attacker wrote, attack success and replays. */
function attacksSection(v: RunView): HTMLElement {
  return h(
    "section",
    { class: "attacks" },
    h("h2", null, "Attacks"),
    h("p", null, "Held-out attacks are measured against the iteration's target and never trained on; failures by source count the batch's own prompts."),
    table(
      ["iteration", "batch (train split / replay / fresh)", "written", "accepted", "dropped", "held-out success by strategy", "held-out success by category", "failures by source", "replays (still failing / fixed / regressed)"],
      v.iterations.map((it) => {
        const a = it.metrics.attacks;
        if (!a) return [String(it.iteration), "–", "–", "–", "–", "–", "–", "–", "–"];
        const dropped = Object.keys(a.dropped).sort().map((k) => `${k} ${a.dropped[k] ?? 0}`).join(", ");
        return [
          String(it.iteration),
          `${a.batch.static} / ${a.batch.replay} / ${a.batch.fresh}`,
          num(a.generated),
          num(a.accepted),
          dropped === "" ? "–" : dropped,
          tallyText(a.heldoutByStrategy),
          tallyText(a.heldoutByCategory),
          tallyText(a.bySource),
          `${a.replay.stillFailing} / ${a.replay.fixed} / ${a.replay.regressions}`,
        ];
      }),
      { class: "attacks" },
    ),
  );
}

// --- Constitution ---------------------------------------------------------------------------------------------------

function pageConstitution(el: HTMLElement, v: RunView): void {
  const active = v.principles.filter((p) => p.status === "active").length;
  const withEfficacy = v.principles.some((p) => p.efficacy !== undefined);
  append(
    el,
    h("p", null, `${v.principles.length} principles, ${active} active. Each links to its versions, the failures that motivated it, and the revisions written under it.`),
    table(
      ["principle", "status", "source", "since", "versions", "evidence", "revisions", "accepted", ...(withEfficacy ? ["fixes / trials", "over-refusals"] : [])],
      v.principles.map((p) => [
        link(route("principle", p.id), untrusted(p.title || p.id, "span")),
        h("span", { class: `status status-${p.status}`, ...(p.retiredReason ? { title: p.retiredReason } : {}) }, p.status),
        p.source,
        `iteration ${p.firstIteration}`,
        String(p.versions.length),
        String(p.evidence.length),
        String(p.revisions),
        String(p.accepted),
        ...(withEfficacy ? [p.efficacy ? `${p.efficacy.fixes} / ${p.efficacy.trials}` : "–", p.efficacy ? String(p.efficacy.overRefusals) : "–"] : []),
      ]),
      { class: "principles" },
    ),
  );
}

function principleLink(v: RunView, id: string): HTMLElement {
  const p = v.principles.find((x) => x.id === id);
  return link(route("principle", id), untrusted(p?.title || id, "span"));
}

function itemList(ids: readonly string[], empty: string, total = ids.length): HTMLElement {
  if (ids.length === 0) return h("p", { class: "empty" }, empty);
  const shown = ids.slice(0, 200);
  return h("ul", { class: "item-links" }, ...shown.map((id) => h("li", null, link(route("item", id), untrusted(id, "span")))), total > shown.length ? h("li", null, `… and ${total - shown.length} more`) : null);
}

async function pagePrinciple(el: HTMLElement, v: RunView, id: string): Promise<void> {
  const p: PrincipleView | undefined = v.principles.find((x) => x.id === id);
  if (!p) {
    append(el, h("p", { class: "error" }, "No such principle."));
    return;
  }
  const efficacyNote = p.efficacy
    ? h("p", { class: "efficacy" }, `Leave-one-out: ${p.efficacy.fixes} fixes and ${p.efficacy.overRefusals} over-refusals in ${p.efficacy.trials} trials (${p.efficacy.uses} uses over the run).`)
    : null;
  const retiredNote = p.retiredReason ? h("p", { class: "bad" }, "Retired: ", untrusted(p.retiredReason, "span")) : null;
  append(el, efficacyNote, retiredNote);
  const [revised, accepted] = await Promise.all([
    source.items(currentRun, { principle: p.id, revised: true, limit: 100 }),
    source.items(currentRun, { principle: p.id, revised: true, stage: "exported", limit: 100 }),
  ]);
  const versions = p.versions.map((ver, i) => {
    const prev = p.versions[i - 1];
    const diff = prev ? wordDiff(prev.text, ver.text) : null;
    return h(
      "div",
      { class: "version" },
      h("h3", null, `version ${ver.version} (iteration ${ver.iteration}, ${ver.status})`),
      untrusted(ver.title, "div"),
      diff
        ? h("div", { class: "text diff" }, ...diff.map((d) => h(d.kind === "same" ? "span" : d.kind === "added" ? "ins" : "del", null, d.text)))
        : untrusted(ver.text),
    );
  });
  append(
    el,
    h("h2", null, untrusted(p.title || p.id, "span")),
    h("p", null, `${p.id} · ${p.status} · ${p.source} · since iteration ${p.firstIteration}`),
    untrusted(p.text),
    p.mergedFrom.length > 0 ? h("p", null, "merged from: ", ...p.mergedFrom.flatMap((m) => [principleLink(v, m), " "])) : null,
    p.mergedInto ? h("p", null, "merged into: ", principleLink(v, p.mergedInto)) : null,
    h("section", null, h("h2", null, `Versions (${p.versions.length})`), ...versions),
    h("section", null, h("h2", null, `Evidence: the failures it was discovered from (${p.evidence.length})`), itemList(p.evidence, "none (a seed or user principle)")),
    h(
      "section",
      null,
      h("h2", null, `Revisions written under it (${p.revisions})`),
      itemList(revised.items.map((i) => i.id), "none yet", revised.total),
      p.revisions > 0 ? link(route("items", "", { principle: p.id, revised: "true" }), "browse them with filters") : null,
    ),
    h(
      "section",
      null,
      h("h2", null, `Accepted by the gate, exported as training examples (${p.accepted})`),
      itemList(accepted.items.map((i) => i.id), "none", accepted.total),
      p.accepted > 0 ? link(route("items", "", { principle: p.id, revised: "true", stage: "exported" }), "browse them with filters") : null,
    ),
  );
}

// --- Items ----------------------------------------------------------------------------------------------------------

const STAGES: readonly ItemStage[] = ["red-team", "judge", "self-correct", "gate", "exported"];

async function pageItems(el: HTMLElement, v: RunView, params: URLSearchParams): Promise<void> {
  const q: ItemQuery = {
    ...(params.get("iteration") ? { iteration: Number(params.get("iteration")) } : {}),
    ...(params.get("stage") ? { stage: params.get("stage") as ItemStage } : {}),
    ...(params.get("verdict") ? { verdict: params.get("verdict") as ItemQuery["verdict"] & string } : {}),
    ...(params.get("gate") ? { gate: params.get("gate") as string } : {}),
    ...(params.get("dataset") ? { dataset: params.get("dataset") as string } : {}),
    ...(params.get("category") ? { category: params.get("category") as string } : {}),
    ...(params.get("principle") ? { principle: params.get("principle") as string } : {}),
    ...(params.get("text") ? { text: params.get("text") as string } : {}),
    ...(params.get("errors") ? { errors: params.get("errors") === "true" } : {}),
    ...(params.get("revised") ? { revised: params.get("revised") === "true" } : {}),
    offset: Number(params.get("offset") ?? 0) || 0,
    limit: 50,
  };
  const page = await source.items(currentRun, q);
  const current = (name: string): string => params.get(name) ?? "";
  const select = (name: string, label: string, options: ReadonlyArray<readonly [string, string]>): HTMLElement =>
    h(
      "label",
      null,
      `${label} `,
      h("select", { name, "aria-label": label }, h("option", { value: "" }, "all"), ...options.map(([value, text]) => h("option", { value, selected: current(name) === value }, text))),
    );
  const form = h(
    "form",
    {
      class: "filters",
      onsubmit: (e) => {
        e.preventDefault();
        const data = new FormData(e.target as HTMLFormElement);
        const next: Record<string, string> = {};
        for (const [k, val] of data) if (typeof val === "string" && val !== "") next[k] = val;
        location.hash = route("items", "", next);
      },
      onchange: (e) => {
        if ((e.target as HTMLElement).tagName === "SELECT") (e.currentTarget as HTMLFormElement).requestSubmit();
      },
    },
    select("iteration", "iteration", page.facets.iterations.map((i) => [String(i), String(i)] as const)),
    select("stage", "reached", STAGES.map((s) => [s, s] as const)),
    select("verdict", "verdict", [["fail", "fail"], ["pass", "pass"], ["error", "error"], ["none", "not judged"]]),
    select("gate", "gate", page.facets.gates.map((g) => [g, g] as const)),
    select("errors", "errors", [["true", "with errors"], ["false", "without errors"]]),
    select("revised", "revised", [["true", "revised"], ["false", "not revised"]]),
    select("dataset", "dataset", page.facets.datasets.map((d) => [d, visible(d)] as const)),
    page.facets.categories.length > 0 ? select("category", "category", page.facets.categories.map((c) => [c, visible(c)] as const)) : null,
    select("principle", "principle", v.principles.map((p) => [p.id, visible(`${p.id}: ${(p.title || "").slice(0, 40)}`)] as const)),
    h("label", null, "search ", h("input", { name: "text", type: "search", value: current("text"), placeholder: "prompt or id" })),
    h("button", { type: "submit" }, "filter"),
  );
  const from = page.total === 0 ? 0 : page.offset + 1;
  const to = Math.min(page.total, page.offset + page.items.length);
  const pageParams = Object.fromEntries([...params].filter(([k]) => k !== "run" && k !== "offset"));
  const pager = h(
    "div",
    { class: "pager" },
    page.offset > 0 ? link(route("items", "", { ...pageParams, offset: Math.max(0, page.offset - page.limit) }), "← previous") : null,
    h("span", { class: "count" }, ` ${from}–${to} of ${num(page.total)} items `),
    page.offset + page.limit < page.total ? link(route("items", "", { ...pageParams, offset: page.offset + page.limit }), "next →") : null,
  );
  append(
    el,
    form,
    pager,
    table(
      ["item", "iteration", "dataset", "prompt", "verdict", "reached", "gate"],
      page.items.map((i) => [
        link(route("item", i.id), untrusted(i.promptId, "span")),
        String(i.iteration),
        untrusted(i.dataset + (i.category ? ` / ${i.category}` : ""), "span"),
        untrusted(i.promptStart, "span"),
        h("span", { class: `verdict verdict-${i.verdict ?? "none"}` }, i.verdict ?? "–"),
        h("span", null, i.stage, i.hasError ? h("span", { class: "bad" }, " · error") : null),
        i.gate ?? "–",
      ]),
      { class: "items", data: { total: page.total } },
    ),
  );
}

function section(title: string, ...children: Array<HTMLElement | string | null>): HTMLElement {
  return h("section", { class: "trace-step" }, h("h2", null, title), ...children);
}

async function pageItem(el: HTMLElement, v: RunView, id: string): Promise<void> {
  const t: ItemTrace = await source.item(currentRun, id);
  const cut = (field: string): number | undefined => t.truncated[field];
  append(
    el,
    h("p", { class: "crumbs" }, link(route("items", "", { iteration: t.iteration }), `iteration ${t.iteration}`), " · ", untrusted(`${t.dataset}${t.category ? ` / ${t.category}` : ""}`, "span"), " · ", untrusted(t.id, "code")),
    t.errors.length > 0 ? section("Errors", h("ul", null, ...t.errors.map((e) => h("li", null, `${e.stage}: [${e.code}] `, untrusted(e.message, "span"))))) : null,
    section("Prompt", untrusted(t.prompt, "div", cut("prompt"))),
    section(`Answer${t.targetModel ? "" : ""}`, untrusted(t.response, "div", cut("response")), t.finishReason ? h("p", { class: "meta" }, `finish: ${t.finishReason}`) : null, t.targetModel ? h("p", { class: "meta" }, "model: ", untrusted(t.targetModel, "span")) : null),
    section(
      "Verdict",
      t.judge
        ? h(
            "div",
            null,
            h("p", null, h("span", { class: `verdict verdict-${t.judge.pass ? "pass" : "fail"}` }, t.judge.pass ? "pass" : "fail"), ` · severity ${t.judge.severity}`, t.judge.violated.length > 0 ? ` · violates ${t.judge.violated.join(", ")}` : "", t.judge.promptBenign === true ? " · prompt judged benign" : ""),
            untrusted(t.judge.rationale, "div", cut("rationale")),
          )
        : h("p", { class: "empty" }, "not judged"),
    ),
    t.evidenceFor.length > 0 ? section("Evidence for", h("ul", null, ...t.evidenceFor.map((p) => h("li", null, principleLink(v, p.id))))) : null,
    section(
      "Revision",
      t.revision
        ? h(
            "div",
            null,
            h("p", null, `mode ${t.revision.mode}, under: `, ...t.revision.principles.flatMap((p) => [principleLink(v, p.id), " "])),
            t.revision.critique !== null ? h("div", null, h("h3", null, "critique"), untrusted(t.revision.critique, "div", cut("critique"))) : null,
            h("h3", null, "revised answer"),
            untrusted(t.revision.revised, "div", cut("revised")),
          )
        : h("p", { class: "empty" }, t.verdict === "pass" ? "not needed: the answer passed" : "none"),
    ),
    section(
      "Gate",
      t.gateVerdict ? h("div", null, h("p", null, `judge: ${t.gateVerdict.pass ? "pass" : "fail"}${t.gateVerdict.refusal ? ", a refusal" : ""}`), untrusted(t.gateVerdict.rationale, "div", cut("gateRationale"))) : null,
      t.gateDecision ? h("p", null, "decision: ", h("span", { class: `verdict verdict-${t.gateDecision.accepted ? "pass" : "fail"}` }, t.gateDecision.accepted ? "accepted" : `rejected (${t.gateDecision.reason})`)) : h("p", { class: "empty" }, "no gate decision"),
    ),
    section(
      "Training example",
      t.example
        ? h(
            "div",
            { class: "example" },
            h("p", { class: "meta" }, "id: ", untrusted(t.example.id, "code")),
            ...t.example.messages.map((m) => h("div", { class: "message" }, h("div", { class: "role" }, m.role), untrusted(m.content))),
            h("h3", null, "chosen"),
            untrusted(t.example.chosen),
            h("h3", null, "rejected"),
            untrusted(t.example.rejected),
          )
        : h("p", { class: "empty" }, "not exported"),
    ),
  );
}

// --- Evaluation -----------------------------------------------------------------------------------------------------

function metricKey(m: { benchmark: string; name: string; category?: string | undefined }): string {
  return `${m.benchmark} ${m.name}${m.category ? ` (${m.category})` : ""}`;
}

function evalCharts(entries: readonly EvalEntryView[]): HTMLElement[] {
  const x = entries.map((e) => e.label);
  const keys = [...new Set(entries.flatMap((e) => e.metrics.filter((m) => !m.category && m.name !== "errors").map(metricKey)))];
  return keys.map((key, k) => {
    const find = (e: EvalEntryView): EvalEntryView["metrics"][number] | undefined => e.metrics.find((m) => metricKey(m) === key);
    const first = entries.map(find).find((m) => m !== undefined);
    const base = entries.find((e) => e.iteration === null);
    const baseValue = base ? (find(base)?.value ?? null) : null;
    const proportion = entries.every((e) => {
      const m = find(e);
      return m === undefined || (m.value >= 0 && m.value <= 1);
    });
    return lineChart({
      name: `eval-${key}`,
      xName: "evaluation",
      title: `${key}${first ? (first.higherIsBetter ? " (higher is better)" : " (lower is better)") : ""}, with 95% intervals`,
      xLabels: x,
      percent: proportion,
      series: [
        { label: key, values: entries.map((e) => find(e)?.value ?? null), color: COLORS[k % COLORS.length] as string },
        ...(baseValue !== null ? [{ label: "base", values: entries.map(() => baseValue), color: "#6b7280", dashed: true }] : []),
        { label: "95% upper", values: entries.map((e) => find(e)?.ci95?.[1] ?? null), color: "rgba(37,99,235,0.3)" },
        { label: "95% lower", values: entries.map((e) => find(e)?.ci95?.[0] ?? null), color: "rgba(37,99,235,0.3)" },
      ],
      bands: [[baseValue !== null ? 2 : 1, baseValue !== null ? 3 : 2]],
    });
  });
}

async function pageEval(el: HTMLElement, v: RunView, arg: string, params: URLSearchParams): Promise<void> {
  if (arg) {
    const [label = "", benchmark = ""] = arg.split("/");
    const items = await source.evalItems(currentRun, label, benchmark);
    const shown = items.slice(0, Number(params.get("limit") ?? 1000));
    append(
      el,
      h("p", { class: "crumbs" }, link(route("eval"), "Evaluation"), ` · ${label} · ${benchmark}: ${items.length} items`),
      table(
        ["item", "category", "prediction", "label", "correct", "details"],
        shown.map((i) => [
          untrusted(i.id, "span"),
          i.category === undefined ? "–" : untrusted(i.category, "span"),
          i.prediction === null ? "–" : untrusted(String(i.prediction), "span"),
          i.label === null ? "–" : untrusted(String(i.label), "span"),
          i.correct === undefined ? "–" : h("span", { class: `verdict verdict-${i.correct ? "pass" : "fail"}` }, i.correct ? "yes" : "no"),
          h("details", null, h("summary", null, "details"), untrusted(JSON.stringify(i.details, null, 2), "pre")),
        ]),
        { class: "eval-items" },
      ),
      items.length > shown.length ? h("p", null, `showing ${shown.length} of ${items.length}; `, link(route("eval", `${label}/${benchmark}`, { limit: items.length }), "show all")) : null,
    );
    return;
  }
  const entries = v.eval.entries;
  if (entries.length === 0) {
    append(el, h("p", { class: "empty" }, "This run has no evaluations (eval.benchmarks is empty)."));
    return;
  }
  const keys = [...new Set(entries.flatMap((e) => e.metrics.map(metricKey)))];
  const base = entries.find((e) => e.iteration === null);
  append(
    el,
    h("section", { class: "charts" }, ...evalCharts(entries)),
    h(
      "section",
      null,
      h("h2", null, "Metrics by evaluation (value, 95% interval, change from the base)"),
      table(
        ["metric", ...entries.map((e) => e.label)],
        keys.map((key) => [
          key,
          ...entries.map((e) => {
            const m = e.metrics.find((x) => metricKey(x) === key);
            if (!m) return "–";
            const b = base?.metrics.find((x) => metricKey(x) === key);
            const delta = b && e !== base ? m.value - b.value : null;
            const better = delta === null || delta === 0 ? "" : (delta > 0) === m.higherIsBetter ? "good" : "bad";
            return h(
              "span",
              null,
              num(m.value, 3),
              m.ci95 ? h("span", { class: "ci" }, ` [${num(m.ci95[0], 3)}, ${num(m.ci95[1], 3)}]`) : null,
              delta !== null ? h("span", { class: `delta ${better}` }, ` ${delta >= 0 ? "+" : ""}${num(delta, 3)}`) : null,
              ` n=${m.n}`,
            );
          }),
        ]),
        { class: "eval-metrics" },
      ),
    ),
    h(
      "section",
      null,
      h("h2", null, "Items per benchmark"),
      table(
        ["evaluation", "benchmark", "mode", "scoring", "items"],
        v.eval.benchmarks.map((b) => [b.label, link(route("eval", `${b.label}/${b.benchmark}`), b.benchmark), b.mode, b.scoringPath ?? "–", num(b.items)]),
      ),
    ),
  );
}

// --- Compare --------------------------------------------------------------------------------------------------------

function flatten(value: unknown, prefix = "", out = new Map<string, string>()): Map<string, string> {
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else {
    out.set(prefix, JSON.stringify(value));
  }
  return out;
}

async function pageCompare(el: HTMLElement): Promise<void> {
  const views = await Promise.all([...Array(source.runCount()).keys()].map((i) => source.view(i)));
  const [a, b] = views as [RunView, RunView];
  const n = Math.max(a.iterations.length, b.iterations.length);
  const x = [...Array(n).keys()].map(String);
  const rate = (v: RunView): Array<number | null> => x.map((_, i) => v.iterations[i]?.metrics.failureRate ?? null);
  const last = (v: RunView): EvalEntryView | undefined => v.eval.entries[v.eval.entries.length - 1];
  const la = last(a);
  const lb = last(b);
  const keys = [...new Set([...(la?.metrics ?? []), ...(lb?.metrics ?? [])].map(metricKey))];
  const fa = flatten(a.config);
  const fb = flatten(b.config);
  const differing = [...new Set([...fa.keys(), ...fb.keys()])].filter((k) => fa.get(k) !== fb.get(k)).sort();
  append(
    el,
    table(["", a.runId, b.runId], [
      ["status", a.status, b.status],
      ["stop reason", a.stopReason ?? "–", b.stopReason ?? "–"],
      ["iterations", String(a.iterations.length), String(b.iterations.length)],
      ["items", num(a.totals.items), num(b.totals.items)],
      ["errors", num(a.totals.errors), num(b.totals.errors)],
      ["active principles", String(a.principles.filter((p) => p.status === "active").length), String(b.principles.filter((p) => p.status === "active").length)],
      ["tokens", num(a.totals.promptTokens + a.totals.completionTokens), num(b.totals.promptTokens + b.totals.completionTokens)],
      ["cost", usd(a.totals.costUsd), usd(b.totals.costUsd)],
      ["trainer", a.trainer, b.trainer],
    ], { class: "compare" }),
    h("section", { class: "charts" }, lineChart({ name: "compare-failure-rate", title: "Failure rate per iteration", xLabels: x, percent: true, series: [{ label: a.runId, values: rate(a), color: COLORS[0] as string }, { label: b.runId, values: rate(b), color: COLORS[1] as string }] })),
    h(
      "section",
      null,
      h("h2", null, `Last evaluation: ${la?.label ?? "–"} vs ${lb?.label ?? "–"}`),
      keys.length === 0
        ? h("p", { class: "empty" }, "no evaluations")
        : table(["metric", a.runId, b.runId, "difference (b − a)"], keys.map((key) => {
            const ma = la?.metrics.find((m) => metricKey(m) === key);
            const mb = lb?.metrics.find((m) => metricKey(m) === key);
            const cell = (m: typeof ma): string => (m ? `${num(m.value, 3)}${m.ci95 ? ` [${num(m.ci95[0], 3)}, ${num(m.ci95[1], 3)}]` : ""}` : "–");
            return [key, cell(ma), cell(mb), ma && mb ? num(mb.value - ma.value, 3) : "–"];
          })),
    ),
    h("section", null, h("h2", null, `Config differences (${differing.length})`), differing.length === 0 ? h("p", null, "same config") : table(["setting", a.runId, b.runId], differing.map((k) => [k, untrusted(fa.get(k) ?? "–", "span"), untrusted(fb.get(k) ?? "–", "span")]))),
  );
}

// --- Live (viewer) --------------------------------------------------------------------------------------------------

function startLive(): void {
  const tick = async (): Promise<void> => {
    try {
      const p = await source.progress(currentRun);
      if (p) {
        showProgress(p);
        if (lastRevision !== undefined && p.revision !== lastRevision) await render();
        lastRevision = p.revision;
        if (p.status !== "running") {
          if (liveTimer !== undefined) window.clearInterval(liveTimer);
          liveTimer = undefined;
          return;
        }
      }
    } catch {
      // The server went away or is busy: try again on the next tick.
    }
  };
  void tick();
  liveTimer = window.setInterval(() => void tick(), 2000);
}

function showProgress(p: RunProgress): void {
  const box = document.getElementById("live");
  if (!box) return;
  if (p.status !== "running") {
    box.replaceChildren();
    return;
  }
  const lastStages = p.stages.filter((s) => s.iteration === Math.max(...p.stages.map((x) => x.iteration)));
  box.replaceChildren(
    h(
      "div",
      { class: "live" },
      h("strong", null, "running"),
      ` · ${p.iterations} iterations finished · stages done in the current iteration: `,
      lastStages.length === 0 ? "none yet" : lastStages.map((s) => `${s.stage} (${s.items} items${s.errors ? `, ${s.errors} errors` : ""}${s.seconds !== null ? `, ${s.seconds.toFixed(1)} s` : ""})`).join(", "),
    ),
  );
}

async function runList(): Promise<void> {
  const runs = await listRuns();
  main.replaceChildren(
    h("header", null, h("h1", null, "iteralign runs")),
    h(
      "main",
      { id: "page", data: { page: "runs" } },
      runs.length === 0
        ? h("p", { class: "empty" }, "The store has no runs yet.")
        : table(
            ["run", "status", "started", "finished", "iterations"],
            runs.map((r) => [h("a", { href: `/runs/${encodeURIComponent(r.runId)}` }, r.runId), h("span", { class: `status status-${r.status}` }, r.status), r.createdAt, r.finishedAt ?? "–", String(r.iterations)]),
            { class: "runs" },
          ),
    ),
  );
}

void boot();
