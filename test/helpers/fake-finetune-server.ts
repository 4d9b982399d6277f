import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import { listenOnLocalPort } from "./listen.js";

/*
 * A local stand-in for the OpenAI fine-tuning API, implementing the documented endpoints the `openai` trainer
 * uses: POST /files (multipart, purpose=fine-tune), POST /fine_tuning/jobs, GET /fine_tuning/jobs,
 * GET /fine_tuning/jobs/{id}, POST /fine_tuning/jobs/{id}/cancel and GET /fine_tuning/jobs/{id}/events
 * (newest first, paged with `after` / `limit` / `has_more`). Jobs move validating_files → queued → running →
 * succeeded as they are polled, emitting message and metrics events on the way.
 */

/** A request as received; `path` has no `/v1` prefix and no query. */
export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface UploadedFile {
  readonly id: string;
  readonly filename: string;
  readonly purpose: string;
  readonly content: string;
}

export interface FakeJob {
  readonly id: string;
  /** The create request's JSON body, as sent. */
  readonly body: Record<string, unknown>;
  status: string;
  polls: number;
  stepsDone: number;
  fineTunedModel: string | null;
  error: { code: string; message: string; param: string | null } | null;
  readonly failWith: { code: string; message: string } | undefined;
  /** Oldest first. */
  readonly events: FakeEvent[];
  readonly createdAt: number;
  finishedAt: number | null;
}

export interface FakeEvent {
  readonly object: "fine_tuning.job.event";
  readonly id: string;
  readonly created_at: number;
  readonly level: "info" | "warn" | "error";
  readonly message: string;
  readonly type: "message" | "metrics";
  readonly data: Record<string, unknown> | null;
}

export interface FakeFineTuneOptions {
  /** When set, every request must carry `Authorization: Bearer <apiKey>`; a wrong one gets 401 quoting it. */
  readonly apiKey?: string;
  /** Polls (GET job) a job spends in each of validating_files, queued and running. Default 1. */
  readonly pollsPerStatus?: number;
  /** Training steps; one metrics event per poll while running, the rest when the job succeeds. Default 3. */
  readonly steps?: number;
}

export interface FakeFineTuneServer {
  /** API root, `http://127.0.0.1:<port>/v1`. */
  readonly baseUrl: string;
  readonly requests: RecordedRequest[];
  readonly files: Map<string, UploadedFile>;
  readonly jobs: Map<string, FakeJob>;
  /** The next job created fails while validating its file, with this error. */
  failNextJob(error: { code: string; message: string }): void;
  /** The next `times` requests to `route` (e.g. `POST /files`) get `status` (429 comes with Retry-After: 0). */
  failNext(route: string, status: number, times?: number): void;
  /** Requests to a route, e.g. `POST /files`. */
  count(route: string): number;
  close(): Promise<void>;
}

const TRAINING_LOSSES = [2.31, 1.74, 1.12, 0.86, 0.61, 0.45];

export async function startFakeFineTuneServer(options: FakeFineTuneOptions = {}): Promise<FakeFineTuneServer> {
  const pollsPerStatus = options.pollsPerStatus ?? 1;
  const steps = options.steps ?? 3;
  const requests: RecordedRequest[] = [];
  const files = new Map<string, UploadedFile>();
  const jobs = new Map<string, FakeJob>();
  const injected = new Map<string, { status: number; times: number }>();
  let nextJobFailure: { code: string; message: string } | undefined;
  let counter = 0;
  let clock = 1_700_000_000;
  const nextId = (prefix: string): string => `${prefix}-${String(++counter).padStart(4, "0")}`;
  const tick = (): number => ++clock;

  const addEvent = (job: FakeJob, message: string, extra: Partial<Pick<FakeEvent, "level" | "type" | "data">> = {}): void => {
    job.events.push({
      object: "fine_tuning.job.event",
      id: nextId("ftevent"),
      created_at: tick(),
      level: extra.level ?? "info",
      message,
      type: extra.type ?? "message",
      data: extra.data ?? null,
    });
  };
  const addStep = (job: FakeJob): void => {
    job.stepsDone++;
    const loss = TRAINING_LOSSES[(job.stepsDone - 1) % TRAINING_LOSSES.length] ?? 0.5;
    addEvent(job, `Step ${String(job.stepsDone)}/${String(steps)}: training loss=${loss.toFixed(4)}`, {
      type: "metrics",
      data: { step: job.stepsDone, train_loss: loss, total_steps: steps, train_mean_token_accuracy: 0.5 },
    });
  };

  /** One poll's worth of progress. */
  const advance = (job: FakeJob): void => {
    if (["succeeded", "failed", "cancelled"].includes(job.status)) return;
    job.polls++;
    if (job.polls % pollsPerStatus === 0) {
      if (job.status === "validating_files") {
        if (job.failWith) {
          job.status = "failed";
          job.error = { ...job.failWith, param: "training_file" };
          job.finishedAt = tick();
          addEvent(job, `Training file validation failed: ${job.failWith.message}`, { level: "error" });
          return;
        }
        job.status = "queued";
        addEvent(job, "Files validated, moving job to queued state");
      } else if (job.status === "queued") {
        job.status = "running";
        addEvent(job, "Fine-tuning job started");
      } else if (job.status === "running") {
        while (job.stepsDone < steps) addStep(job);
        const suffix = typeof job.body.suffix === "string" ? job.body.suffix : "";
        job.fineTunedModel = `ft:${String(job.body.model)}:iteralign-test:${suffix}:${job.id}`;
        addEvent(job, `New fine-tuned model created: ${job.fineTunedModel}`);
        addEvent(job, "The job has successfully completed");
        job.status = "succeeded";
        job.finishedAt = tick();
        return;
      }
    }
    if (job.status === "running" && job.stepsDone < steps) addStep(job);
  };

  const jobJson = (job: FakeJob): Record<string, unknown> => ({
    object: "fine_tuning.job",
    id: job.id,
    model: job.body.model,
    created_at: job.createdAt,
    finished_at: job.finishedAt,
    fine_tuned_model: job.fineTunedModel,
    organization_id: "org-test",
    result_files: [],
    status: job.status,
    validation_file: null,
    training_file: job.body.training_file,
    method: job.body.method,
    trained_tokens: job.status === "succeeded" ? 1234 : null,
    error: job.error,
    seed: 42,
  });

  const handle = (req: RecordedRequest, res: ServerResponse): void => {
    const route = `${req.method} ${req.path.replace(/\/(ftjob-\d+)/, "/{id}")}`;
    const fault = injected.get(route);
    if (fault && fault.times > 0) {
      fault.times--;
      const headers: Record<string, string> = fault.status === 429 ? { "retry-after": "0" } : {};
      send(res, fault.status, { error: { message: `injected ${String(fault.status)}`, type: "server_error", code: null } }, headers);
      return;
    }
    if (options.apiKey !== undefined) {
      const presented = req.headers.authorization ?? "";
      if (presented !== `Bearer ${options.apiKey}`) {
        // Like real services, quote the key it got: the client must redact it.
        send(res, 401, { error: { message: `Incorrect API key provided: ${presented}`, type: "invalid_request_error", code: "invalid_api_key" } });
        return;
      }
    }
    const jobMatch = /^\/fine_tuning\/jobs\/(ftjob-\d+)(\/events|\/cancel)?$/.exec(req.path);
    if (req.method === "POST" && req.path === "/files") return uploadFile(req, res);
    if (req.method === "POST" && req.path === "/fine_tuning/jobs") return createJob(req, res);
    if (req.method === "GET" && req.path === "/fine_tuning/jobs") {
      const list = [...jobs.values()].reverse().map(jobJson);
      return send(res, 200, { object: "list", data: list, has_more: false });
    }
    const job = jobMatch ? jobs.get(jobMatch[1] ?? "") : undefined;
    if (jobMatch && !job) return send(res, 404, { error: { message: `No such job: ${jobMatch[1] ?? ""}`, code: null } });
    if (job && req.method === "GET" && jobMatch?.[2] === undefined) {
      advance(job);
      return send(res, 200, jobJson(job));
    }
    if (job && req.method === "GET" && jobMatch?.[2] === "/events") return listEvents(job, req.query, res);
    if (job && req.method === "POST" && jobMatch?.[2] === "/cancel") {
      if (!["succeeded", "failed", "cancelled"].includes(job.status)) {
        job.status = "cancelled";
        job.finishedAt = tick();
        addEvent(job, "Fine-tuning job cancelled");
      }
      return send(res, 200, jobJson(job));
    }
    send(res, 404, { error: { message: `no route ${req.method} ${req.path}`, code: null } });
  };

  const uploadFile = (req: RecordedRequest, res: ServerResponse): void => {
    const parts = parseMultipart(req.body, req.headers["content-type"] ?? "");
    const purpose = parts.get("purpose")?.data.toString("utf8");
    const file = parts.get("file");
    if (purpose !== "fine-tune" || !file || file.filename === undefined) {
      return send(res, 400, { error: { message: "expected multipart fields purpose=fine-tune and file", code: null } });
    }
    const uploaded: UploadedFile = { id: nextId("file"), filename: file.filename, purpose, content: file.data.toString("utf8") };
    files.set(uploaded.id, uploaded);
    send(res, 200, {
      object: "file",
      id: uploaded.id,
      bytes: file.data.length,
      created_at: tick(),
      filename: uploaded.filename,
      purpose,
      status: "processed",
    });
  };

  const createJob = (req: RecordedRequest, res: ServerResponse): void => {
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(req.body.toString("utf8")) as Record<string, unknown>;
    } catch {
      return send(res, 400, { error: { message: "body is not JSON", code: null } });
    }
    if (typeof body.model !== "string" || typeof body.training_file !== "string" || !files.has(body.training_file)) {
      return send(res, 400, { error: { message: "invalid model or training_file", param: "training_file", code: null } });
    }
    const job: FakeJob = {
      id: nextId("ftjob"),
      body,
      status: "validating_files",
      polls: 0,
      stepsDone: 0,
      fineTunedModel: null,
      error: null,
      failWith: nextJobFailure,
      events: [],
      createdAt: tick(),
      finishedAt: null,
    };
    nextJobFailure = undefined;
    jobs.set(job.id, job);
    addEvent(job, `Created fine-tuning job: ${job.id}`);
    addEvent(job, `Validating training file: ${body.training_file}`);
    send(res, 200, jobJson(job));
  };

  const listEvents = (job: FakeJob, query: URLSearchParams, res: ServerResponse): void => {
    const newestFirst = [...job.events].reverse();
    const after = query.get("after");
    const start = after === null ? 0 : newestFirst.findIndex((e) => e.id === after) + 1;
    if (after !== null && start === 0) return send(res, 400, { error: { message: `unknown event ${after}`, code: null } });
    const limit = Number(query.get("limit") ?? "20");
    const page = newestFirst.slice(start, start + limit);
    send(res, 200, { object: "list", data: page, has_more: start + limit < newestFirst.length });
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://127.0.0.1");
      const recorded: RecordedRequest = {
        method: req.method ?? "",
        path: url.pathname.replace(/^\/v1/, ""),
        query: url.searchParams,
        headers: req.headers,
        body: Buffer.concat(chunks),
      };
      requests.push(recorded);
      handle(recorded, res);
    });
  });
  const port = await listenOnLocalPort(server);
  return {
    baseUrl: `http://127.0.0.1:${String(port)}/v1`,
    requests,
    files,
    jobs,
    failNextJob: (error) => {
      nextJobFailure = error;
    },
    failNext: (route, status, times = 1) => {
      injected.set(route, { status, times });
    },
    count: (route) => requests.filter((r) => `${r.method} ${r.path.replace(/\/(ftjob-\d+)/, "/{id}")}` === route).length,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

/** The fields of a multipart/form-data body by name (RFC 7578): each part's filename, if any, and bytes. */
export function parseMultipart(body: Buffer, contentType: string): Map<string, { filename?: string; data: Buffer }> {
  const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  const fields = new Map<string, { filename?: string; data: Buffer }>();
  const token = boundary?.[1] ?? boundary?.[2];
  if (token === undefined) return fields;
  const delimiter = Buffer.from(`--${token}`);
  let start = body.indexOf(delimiter);
  while (start >= 0) {
    const partStart = start + delimiter.length;
    // `--` right after a delimiter closes the body.
    if (body.subarray(partStart, partStart + 2).toString() === "--") break;
    const next = body.indexOf(delimiter, partStart);
    if (next < 0) break;
    // The part is CRLF headers CRLF CRLF data CRLF, between two delimiters.
    const part = body.subarray(partStart + 2, next - 2);
    const headerEnd = part.indexOf("\r\n\r\n");
    if (headerEnd >= 0) {
      const headers = part.subarray(0, headerEnd).toString("utf8");
      const disposition = /content-disposition:[^\r\n]*/i.exec(headers)?.[0] ?? "";
      const name = /\bname="([^"]*)"/i.exec(disposition)?.[1];
      const filename = /\bfilename="([^"]*)"/i.exec(disposition)?.[1];
      if (name !== undefined) {
        fields.set(name, { ...(filename !== undefined ? { filename } : {}), data: part.subarray(headerEnd + 4) });
      }
    }
    start = next;
  }
  return fields;
}
