import os from "node:os";

/**
 * Adaptive CPU threads for the embedded engine. ggml's worker threads busy-wait for each other at every step: when
 * another process keeps a core busy, a decode that uses every core waits on a thread that is not running, and on a
 * 2-core machine generation was measured 3x slower with 2 threads than with 1 (bench:loop). The governor watches
 * how much CPU other processes use (all cores' busy time, less this process's own) and keeps the engine's thread
 * budget at the cores they leave free, between 1 and `max`.
 */

/** CPU time of the whole machine and of this process, in milliseconds. */
interface CpuSample {
  readonly wall: number;
  readonly busy: number;
  readonly own: number;
}

function sample(): CpuSample {
  let busy = 0;
  for (const cpu of os.cpus()) busy += cpu.times.user + cpu.times.nice + cpu.times.sys + cpu.times.irq;
  const own = process.cpuUsage();
  return { wall: performance.now(), busy, own: (own.user + own.system) / 1000 };
}

/** Threads to use when other processes keep `othersCores` cores busy on a machine with `cores` cores. */
export function threadsFor(cores: number, othersCores: number, max: number): number {
  return Math.max(1, Math.min(max, cores - Math.round(Math.max(0, othersCores))));
}

/** Something whose thread budget can be changed at any time (node-llama-cpp's `Llama`). */
export interface ThreadBudget {
  maxThreads: number;
}

/** Starts adjusting `target.maxThreads` every `intervalMs`; returns a function that stops it. The timer never keeps the process alive. */
export function governThreads(target: ThreadBudget, max: number, intervalMs = 1000): () => void {
  const cores = Math.max(1, os.availableParallelism());
  let last = sample();
  const timer = setInterval(() => {
    const now = sample();
    const wall = now.wall - last.wall;
    if (wall > 0) {
      // Busy time of the machine's cores (ms) minus this process's own, over the interval: cores other processes use.
      const others = (now.busy - last.busy - (now.own - last.own)) / wall;
      const threads = threadsFor(cores, others, max);
      if (threads !== target.maxThreads) target.maxThreads = threads;
    }
    last = now;
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
