import { createServer, type Server } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { resolveModelPath } from "../../src/providers/llama-cpp/engine.js";
import { IterAlignError } from "../../src/spec/errors.js";
import { caught } from "../helpers/errors.js";
import { listenOnLocalPort } from "../helpers/listen.js";

/**
 * A model server that misbehaves on purpose: `silent` accepts connections and never answers; `stall` sends the
 * headers and the first bytes of the file, then nothing more.
 */
let mode: "silent" | "stall" = "silent";
const sockets = new Set<Socket>();
let server: Server;
let port: number;
const SIZE = 1 << 20;

beforeAll(async () => {
  server = createServer((req, res) => {
    if (mode === "silent") return;
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(SIZE), "accept-ranges": "none" });
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    res.write(Buffer.alloc(4096, 1));
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  port = await listenOnLocalPort(server);
});
afterEach(() => {
  for (const s of sockets) s.destroy();
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe("model downloads that hang", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "iteralign-dl-"));
  const previous = process.env.ITERALIGN_MODELS_DIR;
  beforeAll(() => {
    process.env.ITERALIGN_MODELS_DIR = dir;
  });
  afterAll(() => {
    if (previous === undefined) delete process.env.ITERALIGN_MODELS_DIR;
    else process.env.ITERALIGN_MODELS_DIR = previous;
    rmSync(dir, { recursive: true, force: true });
  });

  it("fail with TIMEOUT when the server never starts sending", async () => {
    mode = "silent";
    const started = Date.now();
    const err = await caught(resolveModelPath(`http://127.0.0.1:${port}/silent.gguf`, { timeouts: { connectTimeoutMs: 400, idleTimeoutMs: 5000 } }));
    expect(err).toBeInstanceOf(IterAlignError);
    expect((err).code).toBe("TIMEOUT");
    expect((err).message).toContain("did not start sending within 400 ms");
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("fail with TIMEOUT when the server stops sending midway", async () => {
    mode = "stall";
    const started = Date.now();
    const err = await caught(resolveModelPath(`http://127.0.0.1:${port}/stall.gguf`, { timeouts: { connectTimeoutMs: 3000, idleTimeoutMs: 400 } }));
    expect(err).toBeInstanceOf(IterAlignError);
    expect((err).code).toBe("TIMEOUT");
    expect((err).message).toMatch(/no data for 400 ms after 4096 bytes; the server stopped sending/);
    expect(Date.now() - started).toBeLessThan(8000);
  });
});
