import { AsyncLocalStorage } from "node:async_hooks";
import { IterAlignError } from "../../spec/errors.js";
import type { RateLimitObserver } from "../provider.js";
import type { Limiter } from "./concurrency.js";

/**
 * The limit of one HTTP endpoint, adapted to what the endpoint says:
 *
 * - Concurrency adapts between a floor and the configured ceiling: +1/limit per success (additive increase, about
 *   one more slot per window of successes), halved on a 429 or 529 (multiplicative decrease, at most once per
 *   second so a burst of 429s from one wave counts once).
 * - Requests are paced before they would be refused: a `Retry-After` / `retry-after-ms` pauses the endpoint; the
 *   OpenAI (`x-ratelimit-remaining-requests|tokens`, `x-ratelimit-reset-*`) and Anthropic
 *   (`anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{remaining,reset}`) headers give the
 *   budget left in the current window, and no request starts once it is spent, until the window resets.
 * - `rpm` / `tpm` from the config: at most that many requests / estimated tokens start in any 60-second window.
 */
export interface AdaptiveLimitOptions {
  /** Most calls in flight (the configured concurrency). */
  readonly ceiling: number;
  /** Fewest calls in flight the limit goes down to. Default 1. */
  readonly floor?: number;
  readonly rpm?: number;
  readonly tpm?: number;
  /** The window `rpm` and `tpm` count over. Default 60 000 ms (a minute); shorter in tests. */
  readonly windowMs?: number;
  /** Milliseconds now; injectable for tests. */
  readonly now?: () => number;
}

interface Waiter {
  readonly tokens: number;
  grant(number: number): void;
}

interface Budget {
  /** What is left in the window, after subtracting requests started since it was read. */
  remaining: number;
  /** When the window resets (ms); after it, the budget is unknown until the next response. */
  resetAt: number;
}

/** Parses OpenAI's durations (`1s`, `6m0s`, `20ms`, `1h2m3.5s`) or a number of seconds. */
export function parseResetDuration(value: string): number | undefined {
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed) * 1000;
  const parts = [...trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== trimmed) return undefined;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  return parts.reduce((ms, p) => ms + Number(p[1]) * (unit[p[2] as string] ?? 0), 0);
}

/** Milliseconds until a reset given as an RFC 3339 time (Anthropic) or a duration (OpenAI). */
function resetIn(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const duration = parseResetDuration(value);
  if (duration !== undefined) return duration;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export class AdaptiveLimiter implements Limiter, RateLimitObserver {
  readonly max: number;
  private readonly floor: number;
  private limit: number;
  private running = 0;
  private readonly queue: Waiter[] = [];
  private pausedUntil = 0;
  private lastDecrease = -Infinity;
  private readonly budgets = new Map<"requests" | "tokens", Budget>();
  private readonly starts: Array<{ at: number; tokens: number }> = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  /** Calls started so far; each call knows its start number, so its response's budget discounts later starts. */
  private started = 0;
  private readonly startNumber = new AsyncLocalStorage<number>();
  /** Start numbers of the calls in flight (the smallest bounds which answers still matter). */
  private readonly inFlight = new Set<number>();
  /** This window's answered calls: start number → the requests budget its response was stamped with. */
  private readonly stamped = new Map<number, number>();

  /** Calls refused with 429/529 so far, and how often the limit was lowered. */
  rateLimited = 0;
  decreases = 0;

  constructor(private readonly options: AdaptiveLimitOptions) {
    if (!Number.isInteger(options.ceiling) || options.ceiling < 1) {
      throw new IterAlignError("CONFIG_INVALID", `adaptive limit: ceiling must be a positive integer, got ${options.ceiling}`);
    }
    this.max = options.ceiling;
    this.floor = Math.min(options.floor ?? 1, options.ceiling);
    this.limit = options.ceiling;
    this.now = options.now ?? Date.now;
  }

  get active(): number {
    return this.running;
  }

  get pending(): number {
    return this.queue.length;
  }

  /** The current concurrency limit (between floor and ceiling). */
  get current(): number {
    return Math.floor(this.limit);
  }

  async run<T>(task: () => Promise<T>, signal?: AbortSignal, tokens = 0): Promise<T> {
    const number = await this.acquire(signal, tokens);
    this.inFlight.add(number);
    try {
      // The call's response is observed inside the task, so its headers are tied to this start number.
      const result = await this.startNumber.run(number, task);
      this.limit = Math.min(this.max, this.limit + 1 / Math.max(1, this.limit));
      return result;
    } finally {
      this.running--;
      this.inFlight.delete(number);
      this.pump();
    }
  }

  observe(response: { readonly status: number; readonly headers: Headers }): void {
    const now = this.now();
    const h = response.headers;
    if (response.status === 429 || response.status === 529) {
      this.rateLimited++;
      if (now - this.lastDecrease >= 1000) {
        this.limit = Math.max(this.floor, this.limit / 2);
        this.lastDecrease = now;
        this.decreases++;
      }
      const ms = h.get("retry-after-ms");
      const after = ms !== null && Number.isFinite(Number(ms)) ? Number(ms) : resetIn(h.get("retry-after"), now);
      if (after !== undefined) this.pausedUntil = Math.max(this.pausedUntil, now + after);
    }
    this.readBudget("requests", now, h.get("x-ratelimit-remaining-requests") ?? h.get("anthropic-ratelimit-requests-remaining"), h.get("x-ratelimit-reset-requests") ?? h.get("anthropic-ratelimit-requests-reset"));
    this.readBudget("tokens", now, h.get("x-ratelimit-remaining-tokens") ?? h.get("anthropic-ratelimit-tokens-remaining") ?? h.get("anthropic-ratelimit-input-tokens-remaining"), h.get("x-ratelimit-reset-tokens") ?? h.get("anthropic-ratelimit-tokens-reset") ?? h.get("anthropic-ratelimit-input-tokens-reset"));
    this.pump();
  }

  private readBudget(kind: "requests" | "tokens", now: number, remaining: string | null, reset: string | null): void {
    if (remaining === null) return;
    const left = Number(remaining);
    const inMs = resetIn(reset, now);
    if (!Number.isFinite(left) || inMs === undefined) return;
    const current = this.budgets.get(kind);
    const sameWindow = current !== undefined && now < current.resetAt && now + inMs <= current.resetAt + 1000;
    let uncounted = 0;
    if (kind === "requests") {
      if (!sameWindow) this.stamped.clear();
      uncounted = this.uncountedAt(left);
    }
    // Within one window the lowest estimate wins (the calls started since the last reading already came off it);
    // a later window replaces it.
    const budget = { remaining: left - uncounted, resetAt: now + inMs };
    if (current && sameWindow) current.remaining = Math.min(current.remaining, budget.remaining);
    else this.budgets.set(kind, budget);
  }

  /**
   * How many of this client's calls a response's budget stamp does not count yet. A rate limiter stamps a response
   * with the budget left when it admitted the request; calls started after it were not counted, unless they were
   * admitted before it (requests overtake each other on their way): those carry a higher stamp. (A server that
   * stamps later makes this cautious, never over budget.)
   */
  private uncountedAt(stamp: number): number {
    const number = this.startNumber.getStore();
    if (number === undefined) return Math.max(0, this.running - 1);
    this.stamped.set(number, stamp);
    let overtook = 0;
    for (const [other, otherStamp] of this.stamped) if (other > number && otherStamp > stamp) overtook++;
    // Answers of calls older than every call still in flight can no longer matter to a reading.
    const oldest = Math.min(...this.inFlight);
    for (const other of this.stamped.keys()) if (other < oldest) this.stamped.delete(other);
    return Math.max(0, this.started - 1 - number - overtook);
  }

  private acquire(signal: AbortSignal | undefined, tokens: number): Promise<number> {
    if (signal?.aborted) return Promise.reject(aborted(signal));
    return new Promise<number>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
        reject(aborted(signal as AbortSignal));
      };
      const waiter: Waiter = {
        tokens,
        grant: (number) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(number);
        },
      };
      this.queue.push(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.pump();
    });
  }

  /** Starts queued calls while a slot and the budgets allow; otherwise wakes up when the earliest one frees. */
  private pump(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.queue.length > 0 && this.running < Math.floor(this.limit)) {
      const now = this.now();
      const next = this.queue[0] as Waiter;
      const wait = this.waitBefore(now, next.tokens);
      if (wait > 0) {
        // Not unref'd: calls waiting for the endpoint's budget must keep the process alive.
        this.timer = setTimeout(() => this.pump(), wait);
        return;
      }
      this.queue.shift();
      this.running++;
      for (const budget of this.budgets.values()) budget.remaining -= 1;
      const tokenBudget = this.budgets.get("tokens");
      if (tokenBudget) tokenBudget.remaining -= Math.max(0, next.tokens - 1);
      this.starts.push({ at: now, tokens: next.tokens });
      next.grant(this.started++);
    }
  }

  /** Milliseconds before a call of `tokens` may start (0: now). */
  private waitBefore(now: number, tokens: number): number {
    let until = this.pausedUntil;
    for (const [kind, budget] of this.budgets) {
      if (now >= budget.resetAt) {
        this.budgets.delete(kind);
        continue;
      }
      const needed = kind === "tokens" ? Math.max(1, tokens) : 1;
      // A small margin past the reset, so the server's clock has surely rolled over too.
      if (budget.remaining < needed) until = Math.max(until, budget.resetAt + 50);
    }
    const window = this.options.windowMs ?? 60_000;
    while (this.starts.length > 0 && now - (this.starts[0] as { at: number }).at >= window) this.starts.shift();
    if (this.options.rpm !== undefined && this.starts.length >= this.options.rpm) {
      until = Math.max(until, (this.starts[this.starts.length - Math.floor(this.options.rpm)] as { at: number }).at + window);
    }
    if (this.options.tpm !== undefined) {
      let used = this.starts.reduce((n, s) => n + s.tokens, 0);
      for (const start of this.starts) {
        if (used + tokens <= this.options.tpm) break;
        used -= start.tokens;
        until = Math.max(until, start.at + window);
      }
    }
    return Math.max(0, until - now);
  }
}

function aborted(signal: AbortSignal): IterAlignError {
  return new IterAlignError("ABORTED", "aborted while waiting for the endpoint's rate limit", { cause: signal.reason });
}
