import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { ensureLlamaBuild } from "../native/llama-build.js";

/** How to start a llama-server for a test. */
export interface LlamaServerOptions {
  readonly modelPath: string;
  /** Server slots (requests decoded together). Default 4. */
  readonly parallel?: number;
  /** Total context, shared by the slots. Default 4096. */
  readonly ctxSize?: number;
  readonly extraArgs?: readonly string[];
  /** How long to wait for GET /health to answer 200. Default 120000 ms. */
  readonly readyTimeoutMs?: number;
  /** Port to bind (e.g. to restart a server where its clients expect it). Default: a free one. */
  readonly port?: number;
  /** CPU threads. Default 1. */
  readonly threads?: number;
}

/** A running llama-server bound to 127.0.0.1. */
export interface RunningLlamaServer {
  /** OpenAI API root, e.g. `http://127.0.0.1:40123/v1`. */
  readonly baseUrl: string;
  readonly port: number;
  /** The command line it was started with. */
  readonly command: readonly string[];
  /** Kills the server and waits for it to exit. Idempotent. */
  stop(): Promise<void>;
}

const HOST = "127.0.0.1";
const STDERR_LINES = 30;

/**
 * A llama-server process for tests and benchmarks (and for anyone who wants a local OpenAI-compatible endpoint on
 * a GGUF without installing a server).
 *
 * Starts llama-server (built once per machine from node-llama-cpp's bundled llama.cpp source; waits for a
 * build another process is running) on a free port of 127.0.0.1 and resolves once it serves requests.
 */
export async function startLlamaServer(options: LlamaServerOptions): Promise<RunningLlamaServer> {
  const build = await ensureLlamaBuild({ targets: ["llama-server"] });
  const binary = build.binaries["llama-server"];
  if (binary === undefined) throw new Error("ensureLlamaBuild returned no llama-server binary");
  const port = options.port ?? (await freePort());
  const args = [
    "-m",
    options.modelPath,
    "--host",
    HOST,
    "--port",
    String(port),
    "-np",
    String(options.parallel ?? 4),
    "-c",
    String(options.ctxSize ?? 4096),
    "-t",
    String(options.threads ?? 1),
    ...(supportsFlag(binary, "--no-webui") ? ["--no-webui"] : []),
    ...(options.extraArgs ?? []),
  ];
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
  const tail: string[] = [];
  const keep = (buf: Buffer): void => {
    for (const line of buf.toString("utf8").split("\n")) {
      if (line.trim() === "") continue;
      tail.push(line);
      if (tail.length > STDERR_LINES) tail.shift();
    }
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const stop = (): Promise<void> => kill(child, exited);
  try {
    await waitHealthy(port, exited, options.readyTimeoutMs ?? 120_000);
  } catch (err) {
    await stop();
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(`llama-server (${[binary, ...args].join(" ")}) did not become ready: ${why}\n${tail.join("\n")}`, {
      cause: err,
    });
  }
  return { baseUrl: `http://${HOST}:${String(port)}/v1`, port, command: [binary, ...args], stop };
}

const flagCache = new Map<string, boolean>();

/** Whether this build's `--help` lists a flag (flags come and go between llama.cpp versions). */
function supportsFlag(binary: string, flag: string): boolean {
  const key = `${binary}\0${flag}`;
  let known = flagCache.get(key);
  if (known === undefined) {
    const help = spawnSync(binary, ["--help"], { encoding: "utf8", timeout: 30_000 });
    known = `${help.stdout}${help.stderr}`.split(/[\s,]+/).includes(flag);
    flagCache.set(key, known);
  }
  return known;
}

/** Asks the OS for a free port on 127.0.0.1 (released again before llama-server binds it). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error("no port assigned"))));
    });
  });
}

/** Polls GET /health until 200 (llama-server answers 503 while the model loads). */
async function waitHealthy(port: number, exited: Promise<number | null>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code));
  let last = "no answer yet";
  while (Date.now() < deadline) {
    if (exitCode !== undefined) throw new Error(`it exited with code ${String(exitCode)}`);
    try {
      const res = await fetch(`http://${HOST}:${String(port)}/health`, { signal: AbortSignal.timeout(2000) });
      if (res.status === 200) return;
      last = `GET /health answered ${String(res.status)}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${String(timeoutMs)} ms (${last})`);
}

async function kill(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}
