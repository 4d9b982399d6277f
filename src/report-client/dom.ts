/**
 * The only way this client makes DOM: elements with attributes from a fixed list and text as text nodes. Model
 * output (prompts, answers, principles, rationales) is untrusted: it only ever becomes a text node, never markup,
 * never an attribute that can run or navigate (hrefs are built here from `#` routes).
 */

type Child = Node | string | number | null | undefined | false;

export interface Attrs {
  readonly class?: string;
  readonly id?: string;
  /** An internal route (`#/items?...`) or a viewer page (`/runs/<id>`); anything else is refused. */
  readonly href?: string;
  readonly title?: string;
  readonly type?: string;
  readonly value?: string;
  readonly name?: string;
  readonly placeholder?: string;
  readonly colspan?: number;
  readonly for?: string;
  readonly role?: string;
  readonly "aria-label"?: string;
  readonly data?: Readonly<Record<string, string | number>>;
  readonly onclick?: (event: MouseEvent) => void;
  readonly onchange?: (event: Event) => void;
  readonly oninput?: (event: Event) => void;
  readonly onsubmit?: (event: SubmitEvent) => void;
  readonly selected?: boolean;
  readonly open?: boolean;
}

/** Creates an element. Strings and numbers become text nodes. */
export function h(tag: string, attrs: Attrs | null = null, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs) as Array<[keyof Attrs, unknown]>) {
      if (value === undefined || value === false) continue;
      if (key === "href") {
        const href = value as string;
        if (!href.startsWith("#") && !href.startsWith("/runs/")) throw new Error(`refusing a non-internal link: ${href.slice(0, 40)}`);
        el.setAttribute("href", href);
      } else if (key === "data") {
        for (const [k, v] of Object.entries(value as Record<string, string | number>)) el.dataset[k] = String(v);
      } else if (key === "onclick" || key === "onchange" || key === "oninput" || key === "onsubmit") {
        el.addEventListener(key.slice(2), value as EventListener);
      } else if (key === "selected" || key === "open") {
        if (value === true) el.setAttribute(key, "");
      } else {
        el.setAttribute(key, typeof value === "number" ? String(value) : (value as string));
      }
    }
  }
  append(el, ...children);
  return el;
}

export function append(el: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
}

/** Characters that reorder or hide text (bidi overrides and isolates, zero-width marks). */
const CONTROLS = /[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g;

/** Untrusted text for places that hold plain text only (a select's options): control characters as `[U+XXXX]`. */
export function visible(text: string): string {
  return text.replace(CONTROLS, (c) => `[U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0")}]`);
}

/**
 * Untrusted text, shown as text: in an isolated, pre-wrapped block (bidi overrides cannot reorder the page around
 * it), with invisible control characters made visible as `[U+202E]`.
 */
export function untrusted(text: string | null | undefined, tag = "div", truncatedFrom?: number): HTMLElement {
  const el = h(tag, { class: "text" });
  if (text === null || text === undefined) {
    el.classList.add("none");
    append(el, "(none)");
    return el;
  }
  let last = 0;
  for (const m of text.matchAll(CONTROLS)) {
    const at = m.index ?? 0;
    append(el, text.slice(last, at), h("span", { class: "ctl", title: "invisible control character" }, `[U+${(m[0].codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0")}]`));
    last = at + m[0].length;
  }
  append(el, text.slice(last));
  if (truncatedFrom !== undefined) append(el, h("span", { class: "truncated" }, ` … shortened from ${truncatedFrom.toLocaleString("en")} characters (the full text is in the run store and the run's files)`));
  return el;
}

/** A route link. */
export function link(route: string, ...children: Child[]): HTMLElement {
  return h("a", { href: route }, ...children);
}

/** Percent with one decimal, or a dash. */
export function pct(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? "–" : `${(100 * x).toFixed(1)}%`;
}

export function num(x: number | null | undefined, digits = 0): string {
  return x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function usd(x: number): string {
  return x === 0 ? "$0" : x < 0.01 ? `$${x.toFixed(4)}` : `$${x.toFixed(2)}`;
}

export function seconds(x: number | null): string {
  if (x === null) return "–";
  if (x < 60) return `${x.toFixed(1)} s`;
  if (x < 3600) return `${Math.floor(x / 60)} min ${Math.round(x % 60)} s`;
  return `${Math.floor(x / 3600)} h ${Math.round((x % 3600) / 60)} min`;
}

/** A table from headers and rows of cells. */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly Child[]>, attrs: Attrs = {}): HTMLElement {
  return h("table", attrs, h("thead", null, h("tr", null, ...headers.map((x) => h("th", null, x)))), h("tbody", null, ...rows.map((r) => h("tr", null, ...r.map((c) => h("td", null, c))))));
}
