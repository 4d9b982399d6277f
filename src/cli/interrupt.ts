/**
 * Ctrl-C handling for long commands. The first signal calls `onFirst` (stop after the calls in flight); a second
 * one exits at once with 130. The handler stays installed until `dispose()`: removing it from inside itself would
 * leave only other libraries' listeners for that very signal (signal-exit, loaded by proper-lockfile, re-raises
 * a signal when it finds itself the last listener), and the process would die by the signal before it could
 * save its state and say how to resume.
 */
export function onInterrupt(onFirst: (signal: NodeJS.Signals) => void, signals: readonly NodeJS.Signals[] = ["SIGINT"]): { dispose(): void } {
  let count = 0;
  const handler = (signal: NodeJS.Signals): void => {
    count += 1;
    if (count === 1) onFirst(signal);
    else {
      process.stderr.write("\nstopped at once (second interrupt)\n");
      process.exit(130);
    }
  };
  for (const signal of signals) process.on(signal, handler);
  return {
    dispose: () => {
      for (const signal of signals) process.off(signal, handler);
    },
  };
}
