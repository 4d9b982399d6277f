import type { z } from "zod";
import { IterAlignError } from "../../spec/errors.js";
import { ErrorBodySchema } from "../openai-compatible/schemas.js";

/** Longest server text quoted in an error. */
const EXCERPT_CHARS = 300;

/** What one HTTP exchange needs. */
export interface HttpCallOptions {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  /** Aborts the call (and any body still being read) after this many milliseconds. */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  /** Strings that must never appear in an error (API keys, auth header values). */
  readonly secrets: readonly string[];
  /** Sees every response (any status) before it is read: rate-limit headers. */
  readonly onResponse?: (response: Response) => void;
}

/**
 * The URL as it may be shown in errors: no user info, query or fragment, since those are where
 * credentials hide (`https://user:key@host`, `?api-key=...`).
 */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return "(invalid URL)";
  }
}

/** Replaces every occurrence of each secret with `[redacted]`. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s.length > 0) out = out.split(s).join("[redacted]");
  return out;
}

/**
 * One POST with a deadline. The deadline covers connecting, the status line and reading the body,
 * so a server that stalls mid-stream still ends in TIMEOUT. Every failure becomes a typed
 * IterAlignError naming the endpoint; secrets are scrubbed from anything quoted from the server.
 */
export class HttpCall {
  readonly endpoint: string;
  /** Aborts on the deadline or on the caller's signal. Pass it to everything that reads the response. */
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private readonly unlink: () => void;
  private timedOut = false;

  constructor(private readonly options: HttpCallOptions) {
    this.endpoint = displayUrl(options.url);
    this.signal = this.controller.signal;
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort(new Error("deadline"));
    }, options.timeoutMs);
    // The pending request keeps the process alive; the deadline alone should not.
    this.timer.unref();
    this.unlink = linkAbort(options.signal, this.controller);
  }

  /** Sends the JSON body; resolves with a 2xx response, throws a typed error otherwise. */
  async post(body: unknown): Promise<Response> {
    this.throwIfAborted();
    let response: Response;
    try {
      response = await fetch(this.options.url, {
        method: "POST",
        headers: this.options.headers,
        body: JSON.stringify(body),
        signal: this.signal,
      });
    } catch (err) {
      throw this.failure(err, "connect");
    }
    this.options.onResponse?.(response);
    if (!response.ok) throw await this.statusError(response);
    return response;
  }

  /** Reads the body as JSON and checks its shape; non-JSON or a wrong shape is HTTP_BAD_RESPONSE. */
  async json<S extends z.ZodType>(response: Response, schema: S): Promise<z.infer<S>> {
    let text: string;
    try {
      text = await response.text();
    } catch (err) {
      throw this.failure(err, "read");
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw this.badResponse(`is not JSON: ${this.excerpt(text)}`, text);
    }
    return this.check(schema, parsed, text);
  }

  /** Checks an already parsed value (e.g. one streamed event) against a schema. */
  check<S extends z.ZodType>(schema: S, value: unknown, raw: string): z.infer<S> {
    const result = schema.safeParse(value);
    if (!result.success) {
      const issues = result.error.issues
        .slice(0, 3)
        .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
        .join("; ");
      throw this.badResponse(`has an unexpected shape (${issues}): ${this.excerpt(raw)}`, raw);
    }
    return result.data;
  }

  /**
   * HTTP_BAD_RESPONSE naming the endpoint. Retryable like a 5xx: a malformed 200 (a proxy's error page, a
   * truncated body, a server bug under load) is usually a property of that one exchange, not of the request.
   */
  badResponse(problem: string, raw: string): IterAlignError {
    return new IterAlignError("HTTP_BAD_RESPONSE", `response from ${this.endpoint} ${problem}`, {
      retryable: true,
      details: { url: this.endpoint, bodyExcerpt: this.excerpt(raw) },
    });
  }

  /**
   * Maps an error thrown while connecting or reading to ABORTED (caller's signal), TIMEOUT (deadline)
   * or HTTP_UNREACHABLE; typed errors pass through.
   */
  failure(err: unknown, phase: "connect" | "read"): IterAlignError {
    if (err instanceof IterAlignError) return err;
    if (this.options.signal?.aborted) {
      return new IterAlignError("ABORTED", `request to ${this.endpoint} was aborted`, {
        details: { url: this.endpoint },
      });
    }
    if (this.timedOut) {
      return new IterAlignError(
        "TIMEOUT",
        `request to ${this.endpoint} took longer than ${String(this.options.timeoutMs)} ms`,
        { retryable: true, details: { url: this.endpoint, timeoutMs: this.options.timeoutMs } },
      );
    }
    const reason = this.redacted(networkReason(err));
    const message =
      phase === "connect"
        ? `cannot reach ${this.endpoint}: ${reason}`
        : `connection to ${this.endpoint} failed while reading the response: ${reason}`;
    return new IterAlignError("HTTP_UNREACHABLE", message, {
      cause: err,
      retryable: true,
      details: { url: this.endpoint, reason },
    });
  }

  /**
   * HTTP_STATUS for a non-2xx response: 429 and 5xx are retryable, other statuses are not. The server's
   * own error message (or a body excerpt) is quoted, and `retryAfterMs` is set when the server sent Retry-After.
   */
  async statusError(response: Response): Promise<IterAlignError> {
    let text = "";
    try {
      text = await response.text();
    } catch {
      // The status alone is still worth reporting; the body was only for context.
    }
    return this.statusErrorFromBody(response.status, text, retryAfterHeader(response.headers));
  }

  /** HTTP_STATUS from a status and a body text (also used for errors sent inside a stream). */
  statusErrorFromBody(status: number, text: string, retryAfter: string | null = null): IterAlignError {
    const serverMessage = errorMessageOf(text);
    const excerpt = this.excerpt(serverMessage ?? text);
    const retryAfterMs = parseRetryAfter(retryAfter);
    return new IterAlignError(
      "HTTP_STATUS",
      `${this.endpoint} answered HTTP ${String(status)}${excerpt ? `: ${excerpt}` : ""}`,
      {
        retryable: status === 429 || status >= 500,
        details: {
          url: this.endpoint,
          status,
          bodyExcerpt: this.excerpt(text),
          ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
        },
      },
    );
  }

  /** Stops the deadline timer and unhooks the caller's signal. Call when the response has been fully read. */
  dispose(): void {
    clearTimeout(this.timer);
    this.unlink();
  }

  /** Redacts and shortens server text for quoting in an error. */
  excerpt(text: string): string {
    const flat = this.redacted(text).replace(/\s+/g, " ").trim();
    return flat.length > EXCERPT_CHARS ? `${flat.slice(0, EXCERPT_CHARS)}…` : flat;
  }

  private redacted(text: string): string {
    return redact(text, this.options.secrets);
  }

  private throwIfAborted(): void {
    if (this.signal.aborted) throw this.failure(this.signal.reason, "connect");
  }
}

/**
 * Aborts `controller` when `signal` aborts; returns the function that unhooks it. Used instead of
 * AbortSignal.any, which on Node 20 keeps every combined signal alive as long as a long-lived caller signal.
 */
export function linkAbort(signal: AbortSignal | undefined, controller: AbortController): () => void {
  if (!signal) return () => undefined;
  if (signal.aborted) {
    controller.abort(signal.reason);
    return () => undefined;
  }
  const onAbort = (): void => controller.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}

/** The server's `error.message` when the body is an OpenAI-style error, else undefined. */
export function errorMessageOf(text: string): string | undefined {
  try {
    const parsed = ErrorBodySchema.safeParse(JSON.parse(text));
    if (!parsed.success) return undefined;
    return typeof parsed.data.error === "string" ? parsed.data.error : parsed.data.error.message;
  } catch {
    return undefined;
  }
}

/** fetch reports network failures as `TypeError: fetch failed` with the system error as the cause. */
function networkReason(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e instanceof Error; depth++) {
    const code = (e as { code?: unknown }).code;
    parts.push(typeof code === "string" ? `${code} ${e.message}` : e.message);
    e = e.cause;
  }
  return parts.length > 0 ? parts.join(": ") : String(err);
}

/**
 * The server's requested wait, as a `Retry-After`-style value: `retry-after-ms` (milliseconds, OpenAI and
 * Azure send it) wins over `Retry-After` (seconds or an HTTP date).
 */
export function retryAfterHeader(headers: Headers): string | null {
  const ms = headers.get("retry-after-ms");
  if (ms !== null && Number.isFinite(Number(ms)) && Number(ms) >= 0) return String(Number(ms) / 1000);
  return headers.get("retry-after");
}

/** Milliseconds to wait from a `Retry-After` value (delta-seconds or an HTTP date); undefined when unusable. */
export function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.round(seconds * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
