/**
 * A room's recent tick times on the version it runs now: the last {@link TICK_WINDOW} committed
 * ticks (10 s at 20 Hz), for what people read off a room (`moonpatch status`, its A/B view by
 * version, the dashboard's rooms table). One tick's time says little on a shared machine (the
 * same tick measures twice as long a moment later); a window's median and 99th percentile
 * compare. Emptied when the room swaps versions, so that two versions run side by side (an A/B
 * pin, a canary) are compared on their own ticks. Prometheus has the same by version, as
 * histograms (ops/metrics.ts); this is for reading a room without one.
 *
 * Cost: a store per tick, and, when a status is asked for (the admin API, the dashboard's poll,
 * the cluster's status beat every 2 s), a copy of the window and two selections in it, not a
 * sort: with hundreds of rooms per server every status reads them all on the main thread.
 * Measured with a scratch script on a 2-core EPYC: 4-6 us a room (2.5 ms for 500 rooms) against
 * 12-15 us for sorting a copy, which the first version did.
 */

/** Ticks kept per room. */
export const TICK_WINDOW = 200;

export interface TickWindowSummary {
  /** Median and 99th percentile (nearest rank) of the window's tick times, ms; 0 when empty. */
  p50: number;
  p99: number;
  /** Ticks in the window. */
  n: number;
}

export class TickWindow {
  private readonly times = new Float64Array(TICK_WINDOW);
  /** Ticks added since the last reset (the ring's write position is this modulo its size). */
  private added = 0;

  add(ms: number): void {
    this.times[this.added++ % TICK_WINDOW] = ms;
  }

  /** Forget the ticks so far (a new version runs from now on). */
  reset(): void {
    this.added = 0;
  }

  summary(): TickWindowSummary {
    const n = Math.min(this.added, TICK_WINDOW);
    if (n === 0) return { p50: 0, p99: 0, n: 0 };
    const a = scratch;
    a.set(this.times.subarray(0, n));
    // Nearest rank: the k-th smallest, k = ceil(p * n). After selecting the median, everything
    // from it up is at least as large, so the 99th percentile is selected in that part only.
    const k50 = Math.ceil(0.5 * n) - 1;
    const k99 = Math.ceil(0.99 * n) - 1;
    const p50 = select(a, 0, n - 1, k50);
    const p99 = select(a, k50, n - 1, k99);
    return { p50: round3(p50), p99: round3(p99), n };
  }
}

/** Shared by every window's summary (they run one at a time, on the main thread). */
const scratch = new Float64Array(TICK_WINDOW);

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** The k-th smallest of a[lo..hi] (Hoare's selection, in place): a[k] holds it after. */
function select(a: Float64Array, lo: number, hi: number, k: number): number {
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break; // between j and i: every element there equals the pivot
  }
  return a[k]!;
}
