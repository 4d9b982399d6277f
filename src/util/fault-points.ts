/**
 * Fault injection for crash tests: `ITERALIGN_FAULT_AT=<marker id>[:<signal>]` makes the process send itself
 * the signal (default SIGKILL) right after the store has committed that marker, e.g.
 * `ITERALIGN_FAULT_AT=it1:done:judge:SIGINT`. Several points may be given, comma-separated; each fires once
 * per process. The tests use it to stop a real run exactly after every stage marker and check that
 * `--resume` writes what an uninterrupted run writes. Unset (the normal case), it does nothing.
 */
const fired = new Set<string>();

function parse(spec: string): Array<{ marker: string; signal: NodeJS.Signals }> {
  return spec
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .map((part) => {
      const match = /^(.*):(SIG[A-Z]+)$/.exec(part);
      return match ? { marker: match[1] as string, signal: match[2] as NodeJS.Signals } : { marker: part, signal: "SIGKILL" as const };
    });
}

/** Called after a marker is committed; signals this process when a fault is configured for it. */
export function faultPoint(marker: string): void {
  const spec = process.env.ITERALIGN_FAULT_AT;
  if (!spec) return;
  for (const point of parse(spec)) {
    if (point.marker !== marker || fired.has(marker)) continue;
    fired.add(marker);
    process.kill(process.pid, point.signal);
  }
}
