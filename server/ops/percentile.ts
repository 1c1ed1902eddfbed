/**
 * The nearest-rank percentile, one definition for the dashboard's series, `moonpatch validate`'s
 * tick CPU and the benchmarks: the smallest value with at least a fraction `q` of them at or
 * below it.
 */

/** The `q`-th quantile (0-1) of `sorted`, which is in ascending order; 0 when it is empty. */
export function nearestRank(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}
