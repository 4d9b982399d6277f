/**
 * Keeps a group of sequences in lockstep: each member waits here after receiving a token, and all members
 * continue together once every member still generating has arrived. They then queue their next tokens in
 * the same event-loop turn, so every decode batch holds exactly one step of each active member.
 *
 * Why: llama.cpp's results depend on which sequences share a decode batch, and node-llama-cpp forms batches
 * from whatever is queued when it dispatches. Without lockstep, parallel greedy decoding gave different
 * texts from run to run; with it, a group's batches depend on the group alone (docs/adr/0001).
 */
export class LockstepBarrier {
  private active: number;
  private waiting: Array<{ member: number; resolve: () => void }> = [];
  private prefillTurn = 0;
  private prefillWaiters = new Map<number, () => void>();

  constructor(members: number) {
    this.active = members;
  }

  /** Waits until every active member has arrived; members are released in member order. */
  arrive(member: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.waiting.push({ member, resolve });
      this.releaseIfComplete();
    });
  }

  /**
   * Prompts are evaluated one member at a time, in member order. llama.cpp reorders a multi-sequence batch's
   * outputs lazily, in place, on the first logits read, and node-llama-cpp reads logits for several sequences
   * from parallel threads: with several prompts in one batch, answers were seen starting with another
   * request's first token. One prompt per batch needs no reordering.
   */
  awaitPrefillTurn(member: number): Promise<void> {
    if (member <= this.prefillTurn) return Promise.resolve();
    return new Promise<void>((resolve) => this.prefillWaiters.set(member, resolve));
  }

  /** The member's prompt is evaluated (or it stopped): let the next member evaluate its prompt. */
  prefillDone(member: number): void {
    if (member !== this.prefillTurn) return;
    this.prefillTurn++;
    const next = this.prefillWaiters.get(this.prefillTurn);
    if (next) {
      this.prefillWaiters.delete(this.prefillTurn);
      next();
    }
  }

  /** A member that stops generating leaves the group; the others no longer wait for it. */
  leave(): void {
    this.active--;
    this.releaseIfComplete();
  }

  private releaseIfComplete(): void {
    if (this.waiting.length === 0 || this.waiting.length < this.active) return;
    const released = this.waiting.sort((a, b) => a.member - b.member);
    this.waiting = [];
    for (const w of released) w.resolve();
  }
}

/** node-llama-cpp's batch item, as its prioritization hook sees it. */
interface BatchItemLike {
  readonly tokens: readonly unknown[];
  readonly evaluationPriority: number;
}

/**
 * Orders a decode batch's items by their `evaluationPriority` (lockstep members carry their member index
 * there) and shares the batch's token slots fairly, as node-llama-cpp's default strategy does. The order of
 * items inside a batch changes llama.cpp's numerics; node-llama-cpp's queue order depends on timing.
 */
export function orderedFairShare<T extends BatchItemLike>(options: {
  items: readonly T[];
  size: number;
}): Array<{ item: T; processAmount: number }> {
  const items = [...options.items].sort((a, b) => a.evaluationPriority - b.evaluationPriority);
  let free = options.size;
  const share = Math.max(1, Math.floor(free / Math.max(items.length, 1)));
  const out: Array<{ item: T; processAmount: number }> = [];
  for (const item of items) {
    if (free === 0) break;
    const amount = Math.min(item.tokens.length, share, free);
    out.push({ item, processAmount: amount });
    free -= amount;
  }
  // Hand what is left to the clipped items, in order.
  for (const entry of out) {
    if (free === 0) break;
    const extra = Math.min(entry.item.tokens.length - entry.processAmount, free);
    entry.processAmount += extra;
    free -= extra;
  }
  return out;
}

/** The priority that encodes a lockstep member's place in a batch (node-llama-cpp types it 1..5). */
export function memberPriority(member: number): number {
  return 1 + member / 1024;
}
