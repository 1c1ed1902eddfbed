/**
 * Figures for the load-test report: latency samples per second, percentiles, the server's tick
 * histogram from /metrics, and the thresholds that decide the exit code.
 */

/** Grows like an array of numbers, stored as float64 (a long run has millions of samples). */
export class Samples {
  private buf = new Float64Array(1024);
  length = 0;

  push(x: number): void {
    if (this.length === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.length++] = x;
  }

  /** A sorted copy. */
  sorted(): Float64Array {
    return this.buf.slice(0, this.length).sort();
  }
}

/** Nearest-rank percentile (0-100) of sorted values; NaN when empty. */
export function pct(sorted: Float64Array | readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export interface Distribution {
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
  n: number;
}

export function distribution(s: Samples): Distribution {
  const v = s.sorted();
  const r = (x: number) => (Number.isNaN(x) ? null : Math.round(x * 100) / 100);
  return { p50: r(pct(v, 50)), p95: r(pct(v, 95)), p99: r(pct(v, 99)), max: r(v.length ? v[v.length - 1]! : NaN), n: v.length };
}

/** One second of the run. */
export class Second {
  readonly ack = new Samples();
  readonly state = new Samples();
  sent = 0;
  acked = 0;
  connected = 0;
}

// ------------------------------------------------------------------------------------------
// Prometheus histogram (GET /metrics)
// ------------------------------------------------------------------------------------------

/** Cumulative bucket counts of one histogram, summed over its label sets: upper bound -> count. */
export type Buckets = Map<number, number>;

export function parseHistogram(text: string, name: string): Buckets {
  const out: Buckets = new Map();
  const prefix = `${name}_bucket{`;
  for (const line of text.split('\n')) {
    if (!line.startsWith(prefix)) continue;
    const le = /le="([^"]+)"/.exec(line)?.[1];
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (le === undefined || !Number.isFinite(value)) continue;
    const bound = le === '+Inf' ? Infinity : Number(le);
    out.set(bound, (out.get(bound) ?? 0) + value);
  }
  return out;
}

/** `after - before`, bucket by bucket (what happened between two scrapes). */
export function bucketsDiff(after: Buckets, before: Buckets): Buckets {
  const out: Buckets = new Map();
  for (const [le, n] of after) out.set(le, n - (before.get(le) ?? 0));
  return out;
}

/**
 * The q-quantile (0-1) of a cumulative histogram, interpolated inside its bucket as
 * Prometheus' histogram_quantile does. `above` when it falls in the +Inf bucket (then the
 * value is the largest finite bound). null when the histogram is empty.
 */
export function histogramQuantile(b: Buckets, q: number): { value: number; above: boolean; count: number } | null {
  const bounds = [...b.keys()].sort((x, y) => x - y);
  const total = b.get(Infinity) ?? (bounds.length ? b.get(bounds[bounds.length - 1]!)! : 0);
  if (!total) return null;
  const rank = q * total;
  let prevBound = 0;
  let prevCount = 0;
  for (const le of bounds) {
    const count = b.get(le)!;
    if (count >= rank) {
      if (le === Infinity) return { value: prevBound, above: true, count: total };
      const inBucket = count - prevCount;
      const value = inBucket > 0 ? prevBound + ((le - prevBound) * (rank - prevCount)) / inBucket : le;
      return { value, above: false, count: total };
    }
    prevBound = le;
    prevCount = count;
  }
  return { value: prevBound, above: true, count: total };
}

// ------------------------------------------------------------------------------------------
// Thresholds
// ------------------------------------------------------------------------------------------

export interface Check {
  name: string;
  value: number | null;
  /** The condition that passes, e.g. "== 0" or "<= 100". */
  want: string;
  ok: boolean;
}

export interface ThresholdInput {
  inputs: { sent: number; lost: number; duplicated: number; anomalies: number };
  disconnects: { total: number };
  players: { failed_joins: number };
  latency_ms: { ack: { p99: number | null } };
}

/** The checks that decide the exit code: nothing lost, nothing twice, nobody dropped, p99 ack. */
export function evaluateThresholds(r: ThresholdInput, maxP99AckMs: number): Check[] {
  const eq0 = (name: string, value: number): Check => ({ name, value, want: '== 0', ok: value === 0 });
  const p99 = r.latency_ms.ack.p99;
  return [
    { name: 'inputs sent', value: r.inputs.sent, want: '> 0', ok: r.inputs.sent > 0 },
    eq0('lost inputs', r.inputs.lost),
    eq0('duplicated inputs', r.inputs.duplicated),
    eq0('protocol anomalies', r.inputs.anomalies),
    eq0('disconnects', r.disconnects.total),
    eq0('failed joins', r.players.failed_joins),
    { name: 'p99 input-to-ack (ms)', value: p99, want: `<= ${maxP99AckMs}`, ok: p99 !== null && p99 <= maxP99AckMs },
  ];
}
