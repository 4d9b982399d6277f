import { z } from "zod";
import { IterAlignError } from "../../spec/errors.js";
import { endpointUrl } from "../../util/url.js";
import { backoffDelayMs } from "../middleware/retry.js";
import { HttpCall, displayUrl } from "./http-call.js";

/** Connection settings and retry policy of {@link RestClient}. */
export interface RestClientOptions {
  /** API root including the version segment, e.g. `https://api.openai.com/v1`. */
  readonly baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>`; redacted from every error. */
  readonly apiKey?: string;
  /** Extra headers (an API version); values of auth-like headers are secrets too. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly fetch: typeof fetch;
  /** Deadline of one HTTP exchange (an upload included). */
  readonly requestTimeoutMs: number;
  /** Retries of a call that failed for a transient reason (429, 5xx, network, per-call timeout). */
  readonly retries: number;
  /** Backoff cap of the first retry; doubles per retry up to 30 s. A server's Retry-After wins. */
  readonly retryDelayMs: number;
  /** Told about each retry (for a log). */
  readonly onRetry?: (message: string) => void;
}

const MAX_RETRY_DELAY_MS = 30_000;

/**
 * A fetch-based client of a REST API with JSON bodies, multipart uploads and raw downloads (files, fine-tuning
 * jobs, batch jobs). Every failure is a typed IterAlignError naming the endpoint (never the key); transient
 * failures are retried with full-jitter backoff (or the server's Retry-After), and the caller's signal ends both a
 * request and a backoff wait at once with ABORTED.
 */
export class RestClient {
  protected readonly root: string;
  protected readonly secrets: readonly string[];

  constructor(protected readonly options: RestClientOptions) {
    this.root = options.baseUrl.replace(/\/+$/, "");
    this.secrets = [
      ...(options.apiKey ? [options.apiKey] : []),
      ...Object.entries(options.headers ?? {})
        .filter(([name]) => /auth|key|token|secret/i.test(name))
        .map(([, value]) => value),
    ];
  }

  /** The API root as it may appear in logs and records. */
  get displayBaseUrl(): string {
    return displayUrl(this.root);
  }

  /** A JSON request with retries; `body` is rebuilt per attempt. */
  get<S extends z.ZodType>(pathAndQuery: string, schema: S, signal: AbortSignal): Promise<z.infer<S>> {
    return this.request("GET", pathAndQuery, schema, signal);
  }

  /** `POST` of a JSON body with retries. */
  post<S extends z.ZodType>(pathAndQuery: string, body: unknown, schema: S, signal: AbortSignal, policy: { retries?: number } = {}): Promise<z.infer<S>> {
    return this.request("POST", pathAndQuery, schema, signal, () => JSON.stringify(body), policy);
  }

  /** `POST /files` (multipart) of bytes under a file name, for a `purpose`. */
  upload<S extends z.ZodType>(pathAndQuery: string, purpose: string, name: string, bytes: Uint8Array, schema: S, signal: AbortSignal): Promise<z.infer<S>> {
    return this.request("POST", pathAndQuery, schema, signal, () => {
      const form = new FormData();
      form.append("purpose", purpose);
      form.append("file", new Blob([bytes], { type: "application/jsonl" }), name);
      return form;
    });
  }

  /** `GET` of a raw body (a results file), with retries. `url` may be absolute (a results URL the API gave). */
  async text(pathOrUrl: string, signal: AbortSignal): Promise<string> {
    const raw = await this.request("GET", pathOrUrl, z.string(), signal, undefined, {}, true);
    return raw;
  }

  /** One call with retries. `body` is rebuilt per attempt. */
  protected async request<S extends z.ZodType>(
    method: "GET" | "POST",
    pathAndQuery: string,
    schema: S,
    signal: AbortSignal,
    body?: () => string | FormData,
    policy: { retries?: number } = {},
    raw = false,
  ): Promise<z.infer<S>> {
    const retries = policy.retries ?? this.options.retries;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once(method, pathAndQuery, schema, signal, body?.(), raw);
      } catch (err) {
        if (!this.shouldRetry(err, attempt, signal, retries)) throw this.finalError(err, attempt);
        await this.backoff(err, attempt, `${method} ${pathAndQuery.split("?")[0] ?? ""}`, signal);
      }
    }
  }

  private async once<S extends z.ZodType>(
    method: "GET" | "POST",
    pathAndQuery: string,
    schema: S,
    signal: AbortSignal,
    body: string | FormData | undefined,
    raw: boolean,
  ): Promise<z.infer<S>> {
    const url = /^https?:\/\//.test(pathAndQuery) ? pathAndQuery : endpointUrl(this.root, pathAndQuery);
    const headers: Record<string, string> = { ...this.options.headers, accept: raw ? "*/*" : "application/json" };
    if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`;
    if (typeof body === "string") headers["content-type"] = "application/json";
    const call = new HttpCall({
      url,
      headers,
      timeoutMs: this.options.requestTimeoutMs,
      signal,
      secrets: this.secrets,
    });
    try {
      let response: Response;
      try {
        response = await this.options.fetch(url, {
          method,
          headers,
          ...(body !== undefined ? { body } : {}),
          signal: call.signal,
        });
      } catch (err) {
        throw call.failure(err, "connect");
      }
      if (!response.ok) throw await call.statusError(response);
      if (raw) {
        try {
          return (await response.text()) as z.infer<S>;
        } catch (err) {
          throw call.failure(err, "read");
        }
      }
      return await call.json(response, schema);
    } finally {
      call.dispose();
    }
  }

  protected shouldRetry(err: unknown, attempt: number, signal: AbortSignal, retries = this.options.retries): boolean {
    return err instanceof IterAlignError && err.retryable && !signal.aborted && attempt < retries;
  }

  /** The error to throw: after retries, marked non-retryable with the attempt count so no layer retries again. */
  protected finalError(err: unknown, attempt: number): unknown {
    if (!(err instanceof IterAlignError) || attempt === 0) return err;
    return new IterAlignError(err.code, `${err.message} (after ${String(attempt + 1)} attempts)`, {
      cause: err,
      details: { ...err.details, attempts: attempt + 1 },
      retryable: false,
    });
  }

  protected async backoff(err: unknown, attempt: number, what: string, signal: AbortSignal): Promise<void> {
    const retryAfter = err instanceof IterAlignError ? err.details.retryAfterMs : undefined;
    const delay =
      typeof retryAfter === "number"
        ? Math.min(retryAfter, MAX_RETRY_DELAY_MS)
        : backoffDelayMs(attempt, { baseDelayMs: this.options.retryDelayMs, maxDelayMs: MAX_RETRY_DELAY_MS, random: Math.random });
    const reason = err instanceof Error ? err.message : String(err);
    this.options.onRetry?.(`${what} failed (${reason}); retry ${String(attempt + 1)} in ${String(delay)} ms`);
    await abortableSleep(delay, signal);
  }
}

/** Waits `ms`; rejects with ABORTED as soon as `signal` aborts. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const aborted = (): IterAlignError => new IterAlignError("ABORTED", "aborted while waiting", { cause: signal.reason });
    if (signal.aborted) {
      reject(aborted());
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(aborted());
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
