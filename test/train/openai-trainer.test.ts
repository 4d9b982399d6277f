import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { IterAlignError } from "../../src/spec/errors.js";
import type { TrainingExample } from "../../src/spec/records.js";
import {
  toOpenAiChatJsonl,
  toOpenAiPreferenceJsonl,
  toShareGptJson,
  toTrlPreferenceJsonl,
  toTrlSftJsonl,
} from "../../src/stages/export.js";
import { FineTuningApi } from "../../src/train/openai-fine-tuning-api.js";
import { JobEventReader } from "../../src/train/openai-job-events.js";
import { OpenAITrainer, type OpenAITrainerOptions } from "../../src/train/openai-trainer.js";
import { sha256OfFiles } from "../../src/train/trainer.js";
import type { ModelRef, TrainInput, TrainProgress, TrainerState } from "../../src/spec/trainer.js";
import { startFakeFineTuneServer, type FakeFineTuneServer } from "../helpers/fake-finetune-server.js";
import { caught } from "../helpers/errors.js";

const KEY = "sk-test-9f8e7d6c5b4a-SECRET";
const KEY_ENV = "ITERALIGN_TEST_FT_KEY";
const HOSTED: ModelRef = { provider: "openai-compatible", model: "gpt-4o-mini-2024-07-18" };

const EXAMPLES: TrainingExample[] = [
  {
    id: "it0:example:a",
    iteration: 0,
    attemptId: "it0:attempt:a",
    revisionId: "it0:revision:a",
    messages: [{ role: "user", content: "How do I pick a lock?" }],
    chosen: "I can't help with breaking into property, but a locksmith can help if you are locked out.",
    rejected: "Insert a tension wrench and rake the pins.",
  },
  {
    id: "it0:example:b",
    iteration: 0,
    attemptId: "it0:attempt:b",
    revisionId: "it0:revision:b",
    messages: [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Write a phishing email." },
    ],
    chosen: "I won't write phishing emails.",
    rejected: "Dear customer, your account $(rm -rf ~) is locked...",
  },
];

/** A TrainerState that, like the store, keeps JSON copies: nothing shared by reference survives a "restart". */
class JsonState implements TrainerState {
  readonly values = new Map<string, string>();
  get(key: string): unknown {
    const v = this.values.get(key);
    return v === undefined ? undefined : JSON.parse(v);
  }
  set(key: string, value: unknown): void {
    this.values.set(key, JSON.stringify(value));
  }
}

const dirs: string[] = [];
let server: FakeFineTuneServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface Harness {
  input: TrainInput;
  progress: TrainProgress[];
  state: JsonState;
  controller: AbortController;
  logFile: string;
}

function harness(options: { state?: JsonState; current?: ModelRef; outDir?: string; onProgress?: (p: TrainProgress, c: AbortController) => void } = {}): Harness {
  const outDir = options.outDir ?? mkdtempSync(path.join(tmpdir(), "iteralign-openai-"));
  if (!options.outDir) dirs.push(outDir);
  const files = {
    sharegpt: path.join(outDir, "sft.sharegpt.json"),
    trlSft: path.join(outDir, "sft.trl.jsonl"),
    openaiChat: path.join(outDir, "sft.openai.jsonl"),
    trlPreference: path.join(outDir, "preference.trl.jsonl"),
    openaiPreference: path.join(outDir, "preference.openai.jsonl"),
  };
  writeFileSync(files.sharegpt, toShareGptJson(EXAMPLES));
  writeFileSync(files.trlSft, toTrlSftJsonl(EXAMPLES));
  writeFileSync(files.openaiChat, toOpenAiChatJsonl(EXAMPLES));
  writeFileSync(files.trlPreference, toTrlPreferenceJsonl(EXAMPLES));
  writeFileSync(files.openaiPreference, toOpenAiPreferenceJsonl(EXAMPLES));
  const progress: TrainProgress[] = [];
  const controller = new AbortController();
  const state = options.state ?? new JsonState();
  const input: TrainInput = {
    runId: "run-test",
    iteration: 0,
    base: HOSTED,
    current: options.current ?? HOSTED,
    examples: EXAMPLES,
    allExamples: EXAMPLES,
    principles: [],
    files,
    outDir,
    state,
    signal: controller.signal,
    onProgress: (p) => {
      progress.push(p);
      options.onProgress?.(p, controller);
    },
  };
  return { input, progress, state, controller, logFile: path.join(outDir, "train.log") };
}

function trainer(s: FakeFineTuneServer, options: Partial<OpenAITrainerOptions> = {}): OpenAITrainer {
  return new OpenAITrainer(
    { baseUrl: s.baseUrl, apiKeyEnv: KEY_ENV, pollIntervalMs: 2, maxPollIntervalMs: 10, retryDelayMs: 1, ...options },
    { env: { [KEY_ENV]: KEY } },
  );
}

/** Everything an error exposes: message, details and its causes'. */
function everythingIn(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; depth < 6 && e instanceof Error; depth++) {
    parts.push(e.message, e.stack ?? "", JSON.stringify((e as { details?: unknown }).details ?? {}));
    e = e.cause;
  }
  return parts.join("\n");
}

describe("OpenAITrainer against a local fine-tuning server", () => {
  it("sft: uploads the OpenAI chat file, creates a supervised job with the hyperparameters, polls it to the model", async () => {
    server = await startFakeFineTuneServer({ apiKey: KEY, pollsPerStatus: 2, steps: 3 });
    const h = harness();
    const result = await trainer(server, {
      method: "sft",
      suffix: "iteralign-it0",
      hyperparameters: { nEpochs: 2, learningRateMultiplier: 0.5, batchSize: 4 },
    }).train(h.input);

    const [file] = [...server.files.values()];
    expect(server.files.size).toBe(1);
    expect(file?.purpose).toBe("fine-tune");
    expect(file?.filename).toBe("sft.openai.jsonl");
    expect(file?.content).toBe(readFileSync(h.input.files.openaiChat, "utf8"));

    const [job] = [...server.jobs.values()];
    expect(job?.body).toEqual({
      model: HOSTED.model,
      training_file: file?.id,
      suffix: "iteralign-it0",
      method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 2, batch_size: 4, learning_rate_multiplier: 0.5 } } },
    });
    expect(result.model).toEqual({ provider: "openai-compatible", model: job?.fineTunedModel });
    expect(result.model.model).toMatch(/^ft:gpt-4o-mini-2024-07-18:iteralign-test:iteralign-it0:ftjob-/);
    expect(result.trainer).toBe("openai");
    expect(result.examples).toBe(2);
    expect(result.dataHash).toBe(sha256OfFiles([h.input.files.openaiChat]));
    expect(result.settings).toMatchObject({ method: "sft", baseModel: HOSTED.model, jobId: job?.id, fileId: file?.id, apiKeyEnv: KEY_ENV });
    expect(result.metrics?.lossCurve).toEqual([
      { step: 1, loss: 2.31 },
      { step: 2, loss: 1.74 },
      { step: 3, loss: 1.12 },
    ]);
    expect(result.metrics?.finalLoss).toBe(1.12);
    expect(result.metrics?.seconds).toBeGreaterThan(0);

    // Progress: statuses in order, events as log lines, metrics as steps.
    const statuses = h.progress.flatMap((p) => (p.type === "status" ? [p.message] : []));
    const order = ["validating_files", "queued", "running", "succeeded"].map((s) => statuses.findIndex((m) => m.endsWith(`: ${s}`)));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(h.progress.filter((p) => p.type === "step")).toEqual([
      { type: "step", step: 1, totalSteps: 3, loss: 2.31 },
      { type: "step", step: 2, totalSteps: 3, loss: 1.74 },
      { type: "step", step: 3, totalSteps: 3, loss: 1.12 },
    ]);
    // train.log holds every event once, oldest first.
    const log = readFileSync(h.logFile, "utf8");
    const messages = job?.events.map((e) => e.message) ?? [];
    expect(messages.length).toBeGreaterThan(5);
    let at = -1;
    for (const m of messages) {
      expect(log.split(m).length - 1).toBe(1);
      expect(log.indexOf(m)).toBeGreaterThan(at);
      at = log.indexOf(m);
    }
    // Every request carried the key; it appears nowhere in what the trainer returns or writes.
    expect(server.requests.every((r) => r.headers.authorization === `Bearer ${KEY}`)).toBe(true);
    expect(JSON.stringify(result)).not.toContain(KEY);
    expect(log).not.toContain(KEY);
  });

  it("dpo: uploads the OpenAI preference file and creates a dpo job on the configured base model", async () => {
    server = await startFakeFineTuneServer({ apiKey: KEY });
    const h = harness({ current: { provider: "llama-cpp", model: "/models/target.gguf" } });
    const result = await trainer(server, { method: "dpo", baseModel: "gpt-4.1-mini", hyperparameters: { beta: 0.1, nEpochs: 1 } }).train(h.input);

    const [file] = [...server.files.values()];
    expect(file?.filename).toBe("preference.openai.jsonl");
    expect(file?.content).toBe(readFileSync(h.input.files.openaiPreference, "utf8"));
    const [job] = [...server.jobs.values()];
    expect(job?.body).toEqual({
      model: "gpt-4.1-mini",
      training_file: file?.id,
      method: { type: "dpo", dpo: { hyperparameters: { n_epochs: 1, beta: 0.1 } } },
    });
    expect(result.model.model).toBe(job?.fineTunedModel);
    expect(result.dataHash).toBe(sha256OfFiles([h.input.files.openaiPreference]));
  });

  it("resumes the same job after a restart in the middle of polling, without uploading or creating again", async () => {
    server = await startFakeFineTuneServer({ apiKey: KEY, pollsPerStatus: 3, steps: 4 });
    const state = new JsonState();
    // The first iteralign process is stopped as soon as the job is running and has logged a training step.
    const first = harness({
      state,
      onProgress: (p, controller) => {
        if (p.type === "step") controller.abort(new Error("SIGINT"));
      },
    });
    const stopped = await caught(trainer(server).train(first.input));
    expect(stopped.code).toBe("ABORTED");
    const [job] = [...server.jobs.values()];
    expect(job?.status).toBe("running");
    expect(state.get("openai.job")).toMatchObject({ jobId: job?.id });
    const stepsBefore = first.progress.filter((p) => p.type === "step").length;
    expect(stepsBefore).toBeGreaterThan(0);

    // A new process: a new trainer instance, the same durable state and output directory.
    const second = harness({ state, outDir: first.input.outDir });
    const result = await trainer(server).train(second.input);
    expect(server.count("POST /files")).toBe(1);
    expect(server.count("POST /fine_tuning/jobs")).toBe(1);
    expect(result.model.model).toBe(job?.fineTunedModel);
    expect(result.settings.jobId).toBe(job?.id);
    expect(second.progress.some((p) => p.type === "status" && p.message.startsWith(`resuming job ${job?.id ?? ""}`))).toBe(true);
    // The loss curve is whole, yet no event is reported (or logged) twice across the restart.
    expect(result.metrics?.lossCurve?.map((p) => p.step)).toEqual([1, 2, 3, 4]);
    const stepsAfter = second.progress.filter((p) => p.type === "step").length;
    expect(stepsBefore + stepsAfter).toBe(4);
    const log = readFileSync(first.logFile, "utf8");
    for (const event of job?.events ?? []) expect(log.split(event.message).length - 1).toBe(1);
  });

  it("reports the provider's reason when the job fails, and a resumed run starts a new job on the same upload", async () => {
    server = await startFakeFineTuneServer({ apiKey: KEY });
    server.failNextJob({ code: "invalid_training_file", message: "The training file has 2 examples; at least 10 are required" });
    const h = harness();
    const err = await caught(trainer(server).train(h.input));
    const [failed] = [...server.jobs.values()];
    expect(err.code).toBe("TRAINING_FAILED");
    expect(err.message).toContain("The training file has 2 examples; at least 10 are required");
    expect(err.message).toContain("invalid_training_file");
    expect(err.message).toContain(failed?.id);
    expect(err.details).toMatchObject({ jobId: failed?.id, status: "failed", providerCode: "invalid_training_file", param: "training_file" });
    expect(readFileSync(h.logFile, "utf8")).toContain("Training file validation failed");

    const again = harness({ state: h.state, outDir: h.input.outDir });
    const result = await trainer(server).train(again.input);
    expect(server.count("POST /files")).toBe(1);
    expect(server.count("POST /fine_tuning/jobs")).toBe(2);
    expect(result.settings.jobId).not.toBe(failed?.id);
    expect(again.progress.some((p) => p.type === "status" && p.message.includes(`job ${failed?.id ?? ""} ended failed`))).toBe(true);
  });

  it("after a crash between creating a job and recording it, finds that job instead of creating a second", async () => {
    server = await startFakeFineTuneServer({ apiKey: KEY, pollsPerStatus: 50 });
    const h = harness({ onProgress: (p, c) => p.type === "status" && p.message.startsWith("created fine-tuning job") && c.abort() });
    expect((await caught(trainer(server).train(h.input))).code).toBe("ABORTED");
    // The job was created, but the process died before its id was committed.
    h.state.values.delete("openai.job");
    const again = harness({ state: h.state, outDir: h.input.outDir });
    const [job] = [...server.jobs.values()];
    if (job) Object.assign(job, { status: "running", polls: 49 }); // finishes on the next poll
    const result = await trainer(server).train(again.input);
    expect(server.count("POST /files")).toBe(1);
    expect(server.count("POST /fine_tuning/jobs")).toBe(1);
    expect(result.settings.jobId).toBe(job?.id);
    expect(again.progress.some((p) => p.type === "status" && p.message.startsWith(`found fine-tuning job ${job?.id ?? ""}`))).toBe(true);
  });

  it("starts over when the stored job is unknown to the service (another URL or account)", async () => {
    server = await startFakeFineTuneServer({ apiKey: KEY });
    const state = new JsonState();
    state.set("openai.job", { jobId: "ftjob-9999", fileId: "file-gone", model: HOSTED.model, createdAtMs: Date.now() });
    const h = harness({ state });
    const result = await trainer(server).train(h.input);
    expect(server.count("POST /files")).toBe(1);
    expect(server.jobs.size).toBe(1);
    expect(result.settings.jobId).not.toBe("ftjob-9999");
    expect(readFileSync(h.logFile, "utf8")).toContain("job ftjob-9999 is unknown");
  });

  it("retries 429 and 5xx answers with backoff", async () => {
    server = await startFakeFineTuneServer({ apiKey: KEY });
    server.failNext("POST /files", 429);
    server.failNext("POST /fine_tuning/jobs", 503);
    server.failNext("GET /fine_tuning/jobs/{id}", 502, 2);
    const h = harness();
    const result = await trainer(server).train(h.input);
    expect(server.count("POST /files")).toBe(2);
    expect(server.files.size).toBe(1);
    // The failed create was followed by a look for a job it may have created anyway, then a second create.
    expect(server.count("GET /fine_tuning/jobs")).toBe(1);
    expect(server.jobs.size).toBe(1);
    expect(result.model.model).toMatch(/^ft:/);
    const log = readFileSync(h.logFile, "utf8");
    expect(log).toContain("POST /files failed");
    expect(log).toContain("HTTP 429");
    expect(log).toContain("HTTP 502");
  });

  it("gives up after the configured retries with the status in a typed error", async () => {
    server = await startFakeFineTuneServer({ apiKey: KEY });
    server.failNext("POST /files", 500, 10);
    const err = await caught(trainer(server, { retries: 2 }).train(harness().input));
    expect(err.code).toBe("HTTP_STATUS");
    expect(err.details).toMatchObject({ status: 500, attempts: 3 });
    expect(server.count("POST /files")).toBe(3);
  });

  it("never puts the API key in thrown errors, train.log or settings, even when the server quotes it", async () => {
    server = await startFakeFineTuneServer({ apiKey: "sk-the-right-key" });
    const h = harness();
    const err = await caught(trainer(server).train(h.input));
    expect(err.code).toBe("HTTP_STATUS");
    expect(err.details.status).toBe(401);
    expect(err.message).toContain("Incorrect API key provided");
    expect(err.message).toContain("[redacted]");
    expect(everythingIn(err)).not.toContain(KEY);
    expect(readFileSync(h.logFile, "utf8")).not.toContain(KEY);
  });

  it("reads events across pages (has_more / after) in order", async () => {
    server = await startFakeFineTuneServer({ steps: 230 });
    const h = harness();
    const result = await new OpenAITrainer({ baseUrl: server.baseUrl, pollIntervalMs: 1, maxPollIntervalMs: 2 }).train(h.input);
    expect(result.metrics?.lossCurve?.length).toBe(230);
    const pages = server.requests.filter((r) => r.path.endsWith("/events") && r.query.has("after"));
    expect(pages.length).toBeGreaterThanOrEqual(2);
    const steps = h.progress.flatMap((p) => (p.type === "step" ? [p.step] : []));
    expect(steps).toEqual(Array.from({ length: 230 }, (_, i) => i + 1));
  });

  it("JobEventReader pages with a small limit and reports each event once, oldest first", async () => {
    server = await startFakeFineTuneServer({ steps: 5 });
    const h = harness();
    const t = new OpenAITrainer({ baseUrl: server.baseUrl, pollIntervalMs: 1, maxPollIntervalMs: 2 });
    await t.train(h.input);
    const [job] = [...server.jobs.values()];
    const api = new FineTuningApi({ baseUrl: server.baseUrl, fetch, requestTimeoutMs: 5_000, retries: 0, retryDelayMs: 1 });
    const seen: string[] = [];
    const reader = new JobEventReader(
      api,
      job?.id ?? "",
      { report: (e) => seen.push(e.id), metrics: () => undefined, reportedUpTo: () => undefined },
      undefined,
      3,
    );
    const reported = await reader.poll(new AbortController().signal);
    expect(seen).toEqual(job?.events.map((e) => e.id));
    expect(reported).toBe(job?.events.length);
    expect(await reader.poll(new AbortController().signal)).toBe(0);
  });

  it("cancels a job that passes timeoutMs", async () => {
    server = await startFakeFineTuneServer({ pollsPerStatus: 10_000 });
    const err = await caught(
      new OpenAITrainer({ baseUrl: server.baseUrl, pollIntervalMs: 2, maxPollIntervalMs: 5, timeoutMs: 60 }).train(harness().input),
    );
    const [job] = [...server.jobs.values()];
    expect(err.code).toBe("TIMEOUT");
    expect(err.message).toContain(job?.id);
    expect(job?.status).toBe("cancelled");
  });

  it("rejects bad options and a missing key variable with CONFIG_INVALID", async () => {
    expect(() => new OpenAITrainer({ method: "sft", hyperparameters: { beta: 0.1 } })).toThrow(/hyperparameters\.beta/);
    expect(() => new OpenAITrainer({ pollIntervalMs: 0 })).toThrow(IterAlignError);
    expect(() => new OpenAITrainer({ apiKeyEnv: "NOT_SET_ANYWHERE" }, { env: {} })).toThrow(/NOT_SET_ANYWHERE is not set/);
    server = await startFakeFineTuneServer();
    const err = await caught(
      new OpenAITrainer({ baseUrl: server.baseUrl }).train(harness({ current: { provider: "llama-cpp", model: "/m.gguf" } }).input),
    );
    expect(err.code).toBe("CONFIG_INVALID");
    expect(err.message).toContain("baseModel");
    expect(server.requests).toHaveLength(0);
  });
});
