import { readFileSync } from "node:fs";
import os from "node:os";
import { liveNativePids } from "../../native/json-lines-process.js";

/**
 * Adaptive CPU threads for the embedded engine. ggml's worker threads busy-wait for each other at every step: when
 * another process keeps a core busy, a decode that uses every core waits on a thread that is not running, and on a
 * 2-core machine generation was measured 3x slower with 2 threads than with 1 (bench:loop). The governor watches
 * how much CPU other processes use (all cores' busy time, less this process's own and its native programs') and keeps the engine's thread
 * budget at the cores they leave free, between 1 and `max`.
 */

/** CPU time of the whole machine and of this process, in milliseconds. */
export interface CpuSample {
  readonly wall: number;
  readonly busy: number;
  readonly own: number;
  /** CPU time of each native program of this process, by pid. */
  readonly children: ReadonlyMap<number, number>;
}

/** CPU time (ms) of a process from /proc (user + system, in clock ticks of 10 ms); undefined where unreadable. */
function processCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after the command name.
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/**
 * Per-pid CPU time of the native programs (`iteralign-generate`, `iteralign-scorer`) this process runs: their work is
 * the engine's own, not another process's, so the governor must not shrink the budget for it.
 */
function nativeCpu(): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of liveNativePids()) {
    const ms = processCpuMs(pid);
    if (ms !== undefined) out.set(pid, ms);
  }
  return out;
}

function sample(): CpuSample {
  let busy = 0;
  for (const cpu of os.cpus()) busy += cpu.times.user + cpu.times.nice + cpu.times.sys + cpu.times.irq;
  const own = process.cpuUsage();
  return { wall: performance.now(), busy, own: (own.user + own.system) / 1000, children: nativeCpu() };
}

/** CPU time this process and its native programs used between two samples (ms). */
export function ownCpuDelta(before: CpuSample, after: CpuSample): number {
  let delta = after.own - before.own;
  // A program started in the interval counts from 0; one that exited in it is left out (its last ticks are lost).
  for (const [pid, ms] of after.children) delta += ms - (before.children.get(pid) ?? 0);
  return delta;
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
      const others = (now.busy - last.busy - ownCpuDelta(last, now)) / wall;
      const threads = threadsFor(cores, others, max);
      if (threads !== target.maxThreads) target.maxThreads = threads;
    }
    last = now;
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
