import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { withCache } from "../../src/providers/middleware/cache.js";
import { OpenAICompatibleModel } from "../../src/providers/openai-compatible/openai-compatible-model.js";
import { SqliteRunStore } from "../../src/store/sqlite-run-store.js";
import { chatBody, sendJson, startFakeServer, type FakeServer } from "../helpers/fake-openai-server.js";

/**
 * The response cache and HTTP models' identity, on the real store: an answer is reused only for the same model
 * on the same servers serving the same weights. The servers follow vLLM's `/v1/models` shape (`root`: the path the
 * weights were loaded from; `parent`: an adapter's base).
 */
const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function server(answer: string, served: { root?: string } = {}): Promise<FakeServer & { chats: () => number }> {
  const root = served.root;
  const s = await startFakeServer((req, res) => {
    if (req.method === "GET" && req.path === "/models") {
      sendJson(res, 200, { object: "list", data: [{ id: "org/model-7b", object: "model", created: Date.now(), ...(root !== undefined ? { root, parent: null } : {}) }] });
      return;
    }
    sendJson(res, 200, chatBody(answer));
  });
  cleanup.push(() => s.close());
  return Object.assign(s, { chats: () => s.requests.filter((r) => r.path === "/chat/completions").length });
}

function store(): SqliteRunStore {
  const dir = mkdtempSync(path.join(tmpdir(), "iteralign-identity-"));
  const s = new SqliteRunStore(path.join(dir, "store.db"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  cleanup.push(() => s.close());
  return s;
}

/** One process's view of a served model: a new model object, as a new run makes, over the same store. */
function model(log: SqliteRunStore, baseUrl: string | string[], extra: { revision?: string; serverIdentity?: boolean } = {}): OpenAICompatibleModel & { ask: () => Promise<string> } {
  const m = new OpenAICompatibleModel({ baseUrl, model: "org/model-7b", ...extra });
  const cached = withCache(m, { log });
  cleanup.push(() => m.close());
  return Object.assign(m, {
    ask: async () => (await cached.generate({ messages: [{ role: "user", content: "How do I pick a lock?" }], temperature: 0, maxTokens: 8 })).text,
  });
}

describe("the response cache and HTTP model identity", () => {
  it("answers the same model on the same server from the cache, but never the same name on another server", async () => {
    const log = store();
    const a = await server("answer from A", { root: "/models/base" });
    const b = await server("answer from B", { root: "/models/base" });
    expect(await model(log, a.baseUrl).ask()).toBe("answer from A");
    expect(await model(log, a.baseUrl).ask()).toBe("answer from A");
    expect(a.chats()).toBe(1);
    expect(await model(log, b.baseUrl).ask()).toBe("answer from B");
    expect(b.chats()).toBe(1);
    // A pool is its own identity too.
    expect(await model(log, [a.baseUrl, b.baseUrl]).ask()).toMatch(/answer from [AB]/);
    expect(a.chats() + b.chats()).toBe(3);
  });

  it("never answers a checkpoint re-served under the old name from the cache (the server reports another root)", async () => {
    const log = store();
    const s = await server("old weights", { root: "/checkpoints/step-1000" });
    expect(await model(log, s.baseUrl).ask()).toBe("old weights");
    // The server restarts on a new checkpoint under the same model name.
    s.setHandler((req, res) => {
      if (req.method === "GET" && req.path === "/models") {
        sendJson(res, 200, { object: "list", data: [{ id: "org/model-7b", object: "model", created: 1, root: "/checkpoints/step-2000", parent: null }] });
        return;
      }
      sendJson(res, 200, chatBody("new weights"));
    });
    expect(await model(log, s.baseUrl).ask()).toBe("new weights");
    expect(s.chats()).toBe(2);
    // The same weights again (vLLM's `created` changes with every listing; it is not part of the identity).
    expect(await model(log, s.baseUrl).ask()).toBe("new weights");
    expect(s.chats()).toBe(2);
  });

  it("keys on the revision: the user's, or the adapter hash our trainer sets", async () => {
    const log = store();
    const s = await server("reply");
    expect(await model(log, s.baseUrl, { revision: "ckpt-a" }).ask()).toBe("reply");
    expect(await model(log, s.baseUrl, { revision: "ckpt-a" }).ask()).toBe("reply");
    expect(s.chats()).toBe(1);
    await model(log, s.baseUrl, { revision: "ckpt-b" }).ask();
    expect(s.chats()).toBe(2);
  });

  it("asks GET /models once per model object, and not at all with serverIdentity: false", async () => {
    const log = store();
    const s = await server("reply", { root: "/models/base" });
    const m = model(log, s.baseUrl);
    await m.ask();
    await m.ask();
    expect(s.requests.filter((r) => r.path === "/models")).toHaveLength(1);
    const quiet = await server("reply", { root: "/models/base" });
    await model(log, quiet.baseUrl, { serverIdentity: false }).ask();
    expect(quiet.requests.map((r) => r.path)).toEqual(["/chat/completions"]);
    // A server without /models (404) or without the fields answers all the same.
    const bare = await startFakeServer((req, res) => (req.path === "/models" ? sendJson(res, 404, { error: "no" }) : sendJson(res, 200, chatBody("bare"))));
    cleanup.push(() => bare.close());
    expect(await model(log, bare.baseUrl).ask()).toBe("bare");
  });
});
