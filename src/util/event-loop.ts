/**
 * Lets pending signals and I/O callbacks run. A resumed stage answered wholly from the store or the response
 * cache is a chain of microtasks that never reaches the event loop's poll phase, so without this a Ctrl-C during
 * a long replay would only be noticed once the replay ended. Two check-phase hops put one whole poll phase
 * (where signals and sockets are read) between the call and its return, whichever phase it was called from.
 */
export async function yieldToEventLoop(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
}
