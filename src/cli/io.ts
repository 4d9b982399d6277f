/** Where a command writes; tests pass their own to capture output. */
export interface CommandIo {
  out(text: string): void;
  err(text: string): void;
  readonly stdin: NodeJS.ReadableStream;
  readonly isTTY: boolean;
  /** Whether stderr (where progress goes) is a terminal. */
  readonly errIsTTY?: boolean;
}

export const processIo: CommandIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  stdin: process.stdin,
  isTTY: Boolean(process.stdin.isTTY && process.stdout.isTTY),
  errIsTTY: Boolean(process.stderr.isTTY),
};
