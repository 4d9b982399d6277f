import uPlot from "uplot";
import { h, num, pct } from "./dom.js";

export interface ChartSeries {
  readonly label: string;
  readonly values: ReadonlyArray<number | null>;
  readonly color: string;
  /** Draw as a dashed reference line (e.g. the base model). */
  readonly dashed?: boolean;
}

export interface ChartSpec {
  /** Stable name, put on the figure as `data-chart` (tests and links find charts by it). */
  readonly name: string;
  readonly title: string;
  /** Label of each x position (iteration numbers, evaluation labels). */
  readonly xLabels: readonly string[];
  readonly series: readonly ChartSeries[];
  /** Values are proportions shown as percentages. */
  readonly percent?: boolean;
  /** Confidence bands: the series indices of [upper, lower] bounds, filled between (bounds are hidden from legends). */
  readonly bands?: ReadonlyArray<readonly [number, number]>;
  readonly yLabel?: string;
  /** What the x positions are (legend label); default "iteration". */
  readonly xName?: string;
}

export const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#db2777"];

const charts = new Set<{ plot: uPlot; host: HTMLElement }>();

/** Resizes every chart to its container (phone and desktop widths alike). */
export function resizeCharts(): void {
  for (const c of charts) {
    if (!c.host.isConnected) {
      c.plot.destroy();
      charts.delete(c);
      continue;
    }
    c.plot.setSize({ width: chartWidth(c.host), height: 220 });
  }
}

function chartWidth(host: HTMLElement): number {
  return Math.max(260, Math.min(900, (host.parentElement?.clientWidth ?? 600) - 8));
}

/**
 * A line chart with points (uPlot, drawn on a canvas) and, under it, the same numbers as a table: every point is
 * readable without the picture, and `data-points` on the figure counts the plotted values.
 */
export function lineChart(spec: ChartSpec): HTMLElement {
  const hidden = new Set((spec.bands ?? []).flatMap(([a, b]) => [a, b]));
  const points = spec.series.reduce((n, s, i) => n + (hidden.has(i) ? 0 : s.values.filter((v) => v !== null && Number.isFinite(v)).length), 0);
  const host = h("div", { class: "plot" });
  const format = (v: number | null): string => (spec.percent ? pct(v) : num(v, Number.isInteger(v ?? 0) ? 0 : 3));
  const dataTable = h(
    "table",
    { class: "chart-data" },
    h("thead", null, h("tr", null, h("th", null, ""), ...spec.series.map((s) => h("th", null, s.label)))),
    h(
      "tbody",
      null,
      ...spec.xLabels.map((x, i) => h("tr", null, h("th", null, x), ...spec.series.map((s) => h("td", { data: { value: String(s.values[i] ?? "") } }, format(s.values[i] ?? null))))),
    ),
  );
  const figure = h(
    "figure",
    { class: "chart", data: { chart: spec.name, points } },
    h("figcaption", null, spec.title),
    host,
    h("details", { class: "chart-table" }, h("summary", null, "numbers"), dataTable),
  );
  if (spec.xLabels.length === 0 || points === 0) {
    host.replaceWith(h("p", { class: "empty" }, "no data yet"));
    return figure;
  }
  const xs = spec.xLabels.map((_, i) => i);
  const data: uPlot.AlignedData = [xs, ...spec.series.map((s) => s.values.map((v) => (v === null ? null : v)))];
  const opts: uPlot.Options = {
    width: 600,
    height: 220,
    legend: { show: true },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: false, range: [-0.25, Math.max(0.25, xs.length - 0.75)] }, ...(spec.percent ? { y: { range: [0, 1] } } : {}) },
    axes: [
      { splits: () => xs, values: (_u, splits) => splits.map((i) => spec.xLabels[i] ?? ""), grid: { show: false } },
      { ...(spec.percent ? { values: (_u: uPlot, splits: number[]) => splits.map((v) => `${Math.round(v * 100)}%`) } : {}), ...(spec.yLabel ? { label: spec.yLabel } : {}), size: 56 },
    ],
    series: [
      { label: spec.xName ?? "iteration", value: (_u, i) => (i === null ? "" : (spec.xLabels[i] ?? "")) },
      ...spec.series.map((s, i) => ({
        label: s.label,
        stroke: s.color,
        width: hidden.has(i) ? 0 : 2,
        show: true,
        ...(hidden.has(i) ? { points: { show: false } } : { points: { show: true, size: 7, fill: s.color } }),
        ...(s.dashed ? { dash: [6, 4] } : {}),
        value: (_u: uPlot, v: number | null) => format(v),
      })),
    ],
    ...(spec.bands ? { bands: spec.bands.map(([upper, lower]) => ({ series: [upper + 1, lower + 1] as [number, number], fill: "rgba(37,99,235,0.12)" })) } : {}),
  };
  // Drawn once attached (uPlot measures its container).
  queueMicrotask(() => {
    if (!host.isConnected) return;
    opts.width = chartWidth(host);
    const plot = new uPlot(opts, data, host);
    charts.add({ plot, host });
  });
  return figure;
}
