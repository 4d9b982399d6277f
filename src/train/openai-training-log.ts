import { appendFileSync } from "node:fs";
import { redact } from "../providers/http/http-call.js";
import type { FineTuningEvent } from "./openai-fine-tuning-api.js";
import type { TrainProgress } from "../spec/trainer.js";

/**
 * The trainer's side of outDir/train.log: status lines and the job's events, each also reported as progress.
 * Appended line by line, so a crash keeps everything logged so far and a resumed run continues the same file.
 */
export class TrainingLog {
  /** The message of the newest error-level event (a failure reason when the job's `error` is empty). */
  lastError: string | undefined;

  constructor(
    private readonly file: string,
    private readonly onProgress: (progress: TrainProgress) => void,
    private readonly secrets: readonly string[],
  ) {}

  status(message: string): void {
    const clean = redact(message, this.secrets);
    this.append(`[${new Date().toISOString()}] iteralign: ${clean}`);
    this.onProgress({ type: "status", message: clean });
  }

  event(event: FineTuningEvent): void {
    const message = redact(event.message, this.secrets);
    const level = event.level ?? "info";
    if (level === "error") this.lastError = message;
    const line = `[${new Date(event.created_at * 1000).toISOString()}] ${level}: ${message}`;
    this.append(line);
    this.onProgress({ type: "log", line });
  }

  private append(line: string): void {
    appendFileSync(this.file, `${line}\n`);
  }
}
