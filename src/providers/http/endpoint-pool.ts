/**
 * Replicas of one model behind several base URLs (vLLM or llama-server instances). Each request goes to the
 * healthy replica with the fewest requests in flight (ties in turn); a replica whose request fails at the
 * connection or server level is taken out with a backoff, probed in the background, and put back once it answers.
 * Requests that failed on it are retried by the retry middleware, which sends them to another replica.
 */

/** How a request on a replica ended, as far as the replica's health is concerned. */
export type ReplicaOutcome = "ok" | "down";

export interface EndpointPoolOptions {
  /** Checks whether a replica answers again; default: GET `<url>/models` answers below 500 within 3 s. */
  readonly probe?: (url: string) => Promise<boolean>;
  /** First backoff after a failure; doubles while the replica stays down. Default 500 ms. */
  readonly baseBackoffMs?: number;
  /** Longest backoff. Default 30 000 ms. */
  readonly maxBackoffMs?: number;
  /** Milliseconds now; injectable for tests. */
  readonly now?: () => number;
}

interface Replica {
  readonly url: string;
  inFlight: number;
  /** Requests sent to it, for reports. */
  sent: number;
  up: boolean;
  downUntil: number;
  backoffMs: number;
  probe: NodeJS.Timeout | undefined;
}

/** What {@link EndpointPool.stats} reports per replica. */
export interface ReplicaStats {
  readonly url: string;
  readonly sent: number;
  readonly inFlight: number;
  readonly up: boolean;
}

async function defaultProbe(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url.replace(/\/+$/, "")}/models`, { signal: AbortSignal.timeout(3000) });
    await response.body?.cancel();
    return response.status < 500;
  } catch {
    return false;
  }
}

export class EndpointPool {
  private readonly replicas: Replica[];
  private turn = 0;
  private readonly probe: (url: string) => Promise<boolean>;
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly now: () => number;
  private closed = false;

  constructor(urls: readonly string[], options: EndpointPoolOptions = {}) {
    if (urls.length === 0) throw new Error("EndpointPool needs at least one URL");
    this.replicas = urls.map((url) => ({ url, inFlight: 0, sent: 0, up: true, downUntil: 0, backoffMs: 0, probe: undefined }));
    this.probe = options.probe ?? defaultProbe;
    this.baseBackoffMs = options.baseBackoffMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.replicas.length;
  }

  /**
   * Picks a replica for one request; call `release` once it ended. With every replica down, the one that comes
   * back soonest is tried (a request is never refused by the pool itself).
   */
  acquire(): { readonly url: string; release(outcome: ReplicaOutcome): void } {
    const up = this.replicas.filter((r) => r.up);
    const candidates = up.length > 0 ? up : [...this.replicas].sort((a, b) => a.downUntil - b.downUntil).slice(0, 1);
    const fewest = Math.min(...candidates.map((r) => r.inFlight));
    // Among the least busy, the next one in round-robin order after the last one picked.
    const n = this.replicas.length;
    let replica = candidates[0] as Replica;
    for (let k = 0; k < n; k++) {
      const candidate = this.replicas[(this.turn + k) % n] as Replica;
      if (candidates.includes(candidate) && candidate.inFlight === fewest) {
        replica = candidate;
        break;
      }
    }
    this.turn = (this.replicas.indexOf(replica) + 1) % n;
    replica.inFlight++;
    replica.sent++;
    let released = false;
    return {
      url: replica.url,
      release: (outcome) => {
        if (released) return;
        released = true;
        replica.inFlight--;
        if (outcome === "down") this.markDown(replica);
        else if (!replica.up && this.replicas.length > 1) this.markUp(replica);
      },
    };
  }

  /** Per-replica counts (requests sent, in flight, health). */
  stats(): ReplicaStats[] {
    return this.replicas.map((r) => ({ url: r.url, sent: r.sent, inFlight: r.inFlight, up: r.up }));
  }

  /** Stops the background probes. */
  close(): void {
    this.closed = true;
    for (const r of this.replicas) if (r.probe) clearTimeout(r.probe);
  }

  private markDown(replica: Replica): void {
    // A single replica is never taken out: there is nowhere else to send the retry.
    if (this.replicas.length === 1) return;
    replica.backoffMs = replica.up ? this.baseBackoffMs : Math.min(this.maxBackoffMs, replica.backoffMs * 2);
    replica.up = false;
    replica.downUntil = this.now() + replica.backoffMs;
    this.scheduleProbe(replica);
  }

  private markUp(replica: Replica): void {
    replica.up = true;
    replica.backoffMs = 0;
    if (replica.probe) clearTimeout(replica.probe);
    replica.probe = undefined;
  }

  private scheduleProbe(replica: Replica): void {
    if (this.closed) return;
    if (replica.probe) clearTimeout(replica.probe);
    replica.probe = setTimeout(() => {
      replica.probe = undefined;
      void this.probe(replica.url).then((ok) => {
        if (this.closed || replica.up) return;
        if (ok) this.markUp(replica);
        else this.markDown(replica);
      });
    }, Math.max(0, replica.downUntil - this.now()));
    replica.probe.unref();
  }
}
