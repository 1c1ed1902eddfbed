/**
 * A room's recent tick times on the version it runs now: the last {@link TICK_WINDOW} committed
 * ticks (10 s at 20 Hz), for what people read off a room (`moonpatch status`, its A/B view by
 * version, the dashboard's rooms table). One tick's time says little on a shared machine (the
 * same tick measures twice as long a moment later); a window's median and 99th percentile
 * compare. Emptied when the room swaps versions, so that two versions run side by side (an A/B
 * pin, a canary) are compared on their own ticks. Prometheus has the same by version, as
 * histograms (ops/metrics.ts); this is for reading a room without one.
 *
 * Cost: a store per tick; the sort happens when a status is asked for (the admin API, and the
 * cluster's status beat every 2 s): a copy of 200 numbers, a few microseconds a room.
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
    const sorted = this.times.slice(0, n).sort();
    const rank = (p: number) => Math.round(sorted[Math.ceil(p * n) - 1]! * 1000) / 1000;
    return { p50: rank(0.5), p99: rank(0.99), n };
  }
}
