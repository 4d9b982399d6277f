import cliProgress from "cli-progress";

/** A progress bar with ETA and live tokens/s; silent when the stream is not a terminal. */
export interface Progress {
  update(done: number, tokensPerSecond?: number, label?: string): void;
  stop(): void;
}

/** Creates a bar on stderr (stdout stays clean for results). */
export function createProgress(title: string, total: number, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY || total <= 0) {
    return { update: () => undefined, stop: () => undefined };
  }
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: `${title} [{bar}] {value}/{total} | ETA {eta_formatted} | {tps} tok/s | {label}`,
      barCompleteChar: "=",
      barIncompleteChar: " ",
      hideCursor: true,
      etaBuffer: 20,
      fps: 5,
    },
    cliProgress.Presets.legacy,
  );
  bar.start(total, 0, { tps: "-", label: "" });
  return {
    update: (done, tps, label) =>
      bar.update(done, { tps: tps === undefined ? "-" : tps.toFixed(1), label: label ?? "" }),
    stop: () => bar.stop(),
  };
}
