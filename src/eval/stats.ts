/** Statistics for reported numbers. */

/** z for a two-sided 95% interval. */
const Z95 = 1.959963984540054;

/**
 * Wilson score interval for a proportion `successes / n` (95%). Better than the normal approximation near 0
 * and 1 and for small n; [0, 1] when n is 0.
 */
export function wilsonInterval(successes: number, n: number, z: number = Z95): [number, number] {
  if (n <= 0) return [0, 1];
  if (successes < 0 || successes > n) throw new RangeError(`wilsonInterval: ${successes} successes of ${n}`);
  const p = successes / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / denom;
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

/** Mean of values; NaN for none. */
export function mean(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}
