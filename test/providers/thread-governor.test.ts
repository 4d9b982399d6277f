import { describe, expect, it } from "vitest";
import { governThreads, ownCpuDelta, threadsFor } from "../../src/providers/llama-cpp/thread-governor.js";

describe("adaptive engine threads", () => {
  it("keeps the cores other processes leave free, between 1 and the maximum", () => {
    expect(threadsFor(2, 0, 2)).toBe(2);
    expect(threadsFor(2, 0.3, 2)).toBe(2);
    expect(threadsFor(2, 0.9, 2)).toBe(1);
    expect(threadsFor(2, 1.6, 2)).toBe(1);
    expect(threadsFor(8, 3.2, 8)).toBe(5);
    expect(threadsFor(8, 0, 4)).toBe(4);
    expect(threadsFor(4, -0.2, 4)).toBe(4);
  });

  it("adjusts a thread budget while running and stops when told", async () => {
    const budget = { maxThreads: 0 };
    const stop = governThreads(budget, 2, 20);
    await new Promise((r) => setTimeout(r, 120));
    stop();
    // Whatever the machine's load, the budget was set to a count between 1 and the maximum.
    expect(budget.maxThreads).toBeGreaterThanOrEqual(1);
    expect(budget.maxThreads).toBeLessThanOrEqual(2);
    budget.maxThreads = 0;
    await new Promise((r) => setTimeout(r, 60));
    expect(budget.maxThreads).toBe(0);
  });

  it("counts the CPU time of its own native programs as its own, not as another process's", () => {
    const before = { wall: 0, busy: 0, own: 100, children: new Map([[11, 500], [12, 40]]) };
    // Node used 50 ms; program 11 used 900 ms more; program 12 exited (left out); program 13 started and used 300 ms.
    const after = { wall: 1000, busy: 2000, own: 150, children: new Map([[11, 1400], [13, 300]]) };
    expect(ownCpuDelta(before, after)).toBe(50 + 900 + 300);
  });
});
