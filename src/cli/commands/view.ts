import { existsSync } from "node:fs";
import path from "node:path";
import { loadConfig } from "../../config/load-config.js";
import { startViewer } from "../../report/server.js";
import { IterAlignError } from "../../spec/errors.js";
import { SqliteRunStore } from "../../store/sqlite-run-store.js";
import { onInterrupt } from "../interrupt.js";
import type { CommandIo } from "../io.js";

export interface ViewCommandOptions {
  readonly config: string;
  readonly store?: string;
  readonly host?: string;
  readonly port?: number;
  /** Stops the server (tests); default: Ctrl-C or SIGTERM. */
  readonly signal?: AbortSignal;
  /** Told the address once listening (tests). */
  readonly onListening?: (url: string) => void;
}

/** `iteralign view`: serves the store's runs on a local web server until Ctrl-C. */
export async function viewCommand(options: ViewCommandOptions, io: CommandIo): Promise<number> {
  const storePath = options.store !== undefined ? path.resolve(options.store) : (() => {
    const loaded = loadConfig(options.config);
    return path.resolve(loaded.baseDir, loaded.config.store.path);
  })();
  if (!existsSync(storePath)) throw new IterAlignError("USAGE", `no run store at ${storePath} (run iteralign run first, or give --store)`);
  const host = options.host ?? "127.0.0.1";
  const store = new SqliteRunStore(storePath);
  try {
    const viewer = await startViewer({ store, host, port: options.port ?? 8080 });
    io.err(`serving ${storePath}\n`);
    if (!["127.0.0.1", "localhost", "::1"].includes(host)) io.err(`warning: listening on ${host}: anyone who can reach it can read these runs' prompts and answers\n`);
    io.out(`iteralign view: ${viewer.url} (Ctrl-C to stop)\n`);
    options.onListening?.(viewer.url);
    let interrupt: { dispose(): void } | undefined;
    await new Promise<void>((resolve) => {
      if (options.signal) {
        if (options.signal.aborted) resolve();
        else options.signal.addEventListener("abort", () => resolve(), { once: true });
      }
      interrupt = onInterrupt(() => resolve(), ["SIGINT", "SIGTERM"]);
    });
    await viewer.close();
    interrupt?.dispose();
    return 0;
  } finally {
    store.close();
  }
}
