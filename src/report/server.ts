import { existsSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { IterAlignError, isIterAlignError } from "../spec/errors.js";
import type { RunStore } from "../store/run-store.js";
import { loadItemTraces, parseItemQuery } from "./item-index.js";
import { VIEWER_CSP, viewerPage } from "./render.js";
import { loadEvalItems, loadRun, runProgress, type LoadedRun } from "./run-view.js";

export interface ViewerOptions {
  readonly store: RunStore;
  /** Loopback by default. Another address exposes the runs (prompts, answers) to that network. */
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port?: number;
}

export interface Viewer {
  readonly url: string;
  close(): Promise<void>;
}

const StoredConfigSchema = z.object({ config: z.object({ runsDir: z.string().default("runs") }).passthrough(), baseDir: z.string() });
const ASSETS = new URL("../../dist/report-assets/", import.meta.url);
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

/** A run's directory, from its stored config (`<baseDir>/<runsDir>/<id>`). */
export function runDirOf(store: RunStore, runId: string): string {
  const run = store.getRun(runId);
  if (!run) throw new IterAlignError("STORE_NOT_FOUND", `run '${runId}' is not in the store`);
  const parsed = StoredConfigSchema.safeParse(JSON.parse(run.configJson) as unknown);
  if (!parsed.success) throw new IterAlignError("STORE_CORRUPT", `run '${runId}': its stored config names no run directory`);
  return path.resolve(parsed.data.baseDir, parsed.data.config.runsDir, runId);
}

/**
 * `iteralign view`: a local web server over a run store. It lists the runs and serves the report's pages for each,
 * reading from SQLite per request (items are paged from an index, so a 100,000-item run stays responsive) and
 * following a running run (the page polls its progress and reloads when its records change). Read-only: GET and
 * HEAD only; requests naming another host are refused (a web page elsewhere cannot reach it by DNS rebinding).
 */
export async function startViewer(options: ViewerOptions): Promise<Viewer> {
  const { store } = options;
  const host = options.host ?? "127.0.0.1";
  const allowedHosts = new Set([...LOOPBACK, host.includes(":") && !host.startsWith("[") ? `[${host}]` : host]);
  const loaded = new Map<string, { revision: number; run: LoadedRun; runDir: string }>();

  const runFor = (runId: string): { run: LoadedRun; runDir: string } => {
    const revision = store.recordsRevision(runId);
    const cachedRun = loaded.get(runId);
    if (cachedRun && cachedRun.revision === revision && store.getRun(runId)?.status === cachedRun.run.view.status) return cachedRun;
    const runDir = runDirOf(store, runId);
    const entry = { revision, run: loadRun({ store, runId, runDir }), runDir };
    loaded.set(runId, entry);
    return entry;
  };

  const api = (parts: string[], url: URL): unknown => {
    if (parts.length === 0) {
      return store.listRuns().map((r) => {
        let iterations = 0;
        try {
          const dir = runDirOf(store, r.id);
          while (existsSync(path.join(dir, "iterations", String(iterations).padStart(3, "0"), "metrics.json"))) iterations++;
        } catch {
          // A run without a readable config still lists, with 0 iterations.
        }
        return { runId: r.id, status: r.status, createdAt: r.createdAt, finishedAt: r.finishedAt, iterations };
      });
    }
    const [runId, what, ...rest] = parts as [string, string | undefined, ...string[]];
    if (what === "progress") return runProgress(store, runId);
    const { run, runDir } = runFor(runId);
    if (what === "view") return run.view;
    if (what === "items" && rest.length === 0) return run.index.query(parseItemQuery(url.searchParams));
    if (what === "items" && rest.length === 1) {
      const summary = run.index.summary(rest[0] as string);
      if (!summary) throw new IterAlignError("STORE_NOT_FOUND", `run '${runId}' has no item '${rest[0] as string}'`);
      return loadItemTraces(store, runId, [summary], { principleTitles: run.principleTitles, evidenceFor: run.evidenceFor })[0];
    }
    if (what === "eval" && rest.length === 2) return loadEvalItems(runDir, rest[0] as string, rest[1] as string);
    throw new IterAlignError("STORE_NOT_FOUND", `no such API path: /api/runs/${parts.join("/")}`);
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const security = {
      "content-security-policy": VIEWER_CSP,
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      "x-frame-options": "DENY",
      "cross-origin-resource-policy": "same-origin",
    };
    const send = (status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}): void => {
      res.writeHead(status, { ...security, "content-type": type, "content-length": Buffer.byteLength(body), ...extra });
      res.end(req.method === "HEAD" ? undefined : body);
    };
    const json = (status: number, value: unknown): void => send(status, "application/json; charset=utf-8", JSON.stringify(value), { "cache-control": "no-store" });
    const hostHeader = (req.headers.host ?? "").replace(/:\d+$/, "");
    if (!allowedHosts.has(hostHeader)) {
      json(421, { error: `this viewer answers for ${[...allowedHosts].join(", ")}, not '${hostHeader}'` });
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      json(405, { error: "the viewer is read-only" });
      return;
    }
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://viewer.invalid");
    } catch {
      json(400, { error: "bad URL" });
      return;
    }
    let parts: string[];
    try {
      parts = url.pathname.split("/").filter((p) => p !== "").map((p) => decodeURIComponent(p));
    } catch {
      json(400, { error: "bad URL encoding" });
      return;
    }
    try {
      if (parts[0] === "api" && parts[1] === "runs") {
        json(200, api(parts.slice(2), url));
      } else if (parts[0] === "assets" && parts.length === 2 && (parts[1] === "client.js" || parts[1] === "client.css")) {
        const file = fileURLToPath(new URL(parts[1], ASSETS));
        if (!existsSync(file)) throw new IterAlignError("USAGE", `the viewer's browser client is not built (${file}): run npm run build`);
        send(200, parts[1].endsWith(".js") ? "text/javascript; charset=utf-8" : "text/css; charset=utf-8", readFileSync(file), { "cache-control": "no-cache" });
      } else if (parts.length === 1 && parts[0] === "favicon.ico") {
        send(204, "image/x-icon", "");
      } else if (parts.length === 0) {
        send(200, "text/html; charset=utf-8", viewerPage(null), { "cache-control": "no-store" });
      } else if (parts[0] === "runs" && parts.length === 2) {
        const runId = parts[1] as string;
        if (!store.getRun(runId)) throw new IterAlignError("STORE_NOT_FOUND", `run '${runId}' is not in the store`);
        send(200, "text/html; charset=utf-8", viewerPage(runId), { "cache-control": "no-store" });
      } else {
        json(404, { error: "not found" });
      }
    } catch (err) {
      const code = isIterAlignError(err) ? err.code : undefined;
      const status = code === "STORE_NOT_FOUND" ? 404 : code === "USAGE" ? 400 : 500;
      json(status, { error: err instanceof Error ? err.message : String(err), ...(code ? { code } : {}) });
    }
  };

  const server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(new IterAlignError("USAGE", `cannot listen on ${host}:${options.port ?? 0}: ${err.code === "EADDRINUSE" ? "the port is in use (pick another with --port)" : err.message}`, { cause: err })),
    );
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${shownHost}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
