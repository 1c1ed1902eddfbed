/**
 * The load test's plot, as a hand-written SVG: latency per second of the run (input-to-ack p50
 * and p99, input-to-state p99, and the server's tick p99 when known), with a vertical marker at
 * each patch round. No plotting library: lines are polylines in a fixed frame.
 */

export interface PlotPoint {
  /** Seconds since the run started (the point covers [t, t+1)). */
  t: number;
  ackP50: number | null;
  ackP99: number | null;
  stateP99: number | null;
  serverTickP99: number | null;
}

export interface PlotMarker {
  /** Seconds since the run started. */
  t: number;
  /** Short label, e.g. "v3" or "rollback". */
  label: string;
  /** How many rooms it applied to, and how many refused it. */
  applied: number;
  failed: number;
}

export interface PlotOptions {
  title: string;
  subtitle: string;
  durationS: number;
  /** A reference line (the p99 threshold), ms. */
  thresholdMs?: number;
}

const W = 960;
const H = 420;
const M = { left: 64, right: 180, top: 58, bottom: 48 };

const SERIES: { key: keyof Omit<PlotPoint, 't'>; label: string; color: string; dash?: string }[] = [
  { key: 'ackP50', label: 'input→ack p50', color: '#2f6fdf' },
  { key: 'ackP99', label: 'input→ack p99', color: '#d62f2f' },
  { key: 'stateP99', label: 'input→state p99', color: '#e08a00', dash: '6 3' },
  { key: 'serverTickP99', label: 'server tick p99', color: '#555555', dash: '2 3' },
];

export function renderPlot(points: readonly PlotPoint[], markers: readonly PlotMarker[], o: PlotOptions): string {
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const xMax = Math.max(1, o.durationS);
  let yMaxRaw = o.thresholdMs ?? 0;
  for (const p of points) for (const s of SERIES) yMaxRaw = Math.max(yMaxRaw, p[s.key] ?? 0);
  const yMax = niceCeil(yMaxRaw * 1.05 || 10);
  const x = (t: number) => M.left + (Math.min(t, xMax) / xMax) * pw;
  const y = (v: number) => M.top + ph - (Math.min(v, yMax) / yMax) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${M.left}" y="22" font-size="15" font-weight="bold">${esc(o.title)}</text>`);
  out.push(`<text x="${M.left}" y="40" fill="#444">${esc(o.subtitle)}</text>`);

  // Grid and axes.
  const yTicks = 5;
  for (let i = 0; i <= yTicks; i++) {
    const v = (yMax * i) / yTicks;
    out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${f(y(v))}" y2="${f(y(v))}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${M.left - 6}" y="${f(y(v) + 4)}" text-anchor="end" fill="#444">${fmt(v)}</text>`);
  }
  const xStep = niceStep(xMax / 10);
  for (let t = 0; t <= xMax + 1e-9; t += xStep) {
    out.push(`<line x1="${f(x(t))}" x2="${f(x(t))}" y1="${M.top + ph}" y2="${M.top + ph + 4}" stroke="#444"/>`);
    out.push(`<text x="${f(x(t))}" y="${M.top + ph + 17}" text-anchor="middle" fill="#444">${fmt(t)}</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${H - 10}" text-anchor="middle" fill="#222">seconds since the run started</text>`);
  out.push(`<text x="16" y="${M.top + ph / 2}" text-anchor="middle" fill="#222" transform="rotate(-90 16 ${M.top + ph / 2})">latency, ms (per second)</text>`);

  if (o.thresholdMs !== undefined && o.thresholdMs <= yMax) {
    out.push(`<line class="threshold" x1="${M.left}" x2="${M.left + pw}" y1="${f(y(o.thresholdMs))}" y2="${f(y(o.thresholdMs))}" stroke="#d62f2f" stroke-opacity="0.45" stroke-dasharray="10 5"/>`);
    out.push(`<text x="${M.left + pw + 6}" y="${f(y(o.thresholdMs) + 4)}" fill="#d62f2f" fill-opacity="0.8">p99 limit ${fmt(o.thresholdMs)} ms</text>`);
  }

  // Patch markers.
  for (const m of markers) {
    const mx = f(x(m.t));
    const color = m.failed === 0 ? '#1a9a3a' : m.applied === 0 ? '#b00060' : '#b07000';
    const what = `${m.label}: ${m.applied} applied, ${m.failed} refused`;
    out.push(`<g class="patch-marker" data-t="${m.t}" data-label="${esc(m.label)}" data-applied="${m.applied}" data-failed="${m.failed}">`);
    out.push(`<title>patch at ${fmt(m.t)} s: ${esc(what)}</title>`);
    out.push(`<line x1="${mx}" x2="${mx}" y1="${M.top}" y2="${M.top + ph}" stroke="${color}" stroke-width="1.5" stroke-dasharray="4 3"/>`);
    out.push(`<text x="${mx}" y="${M.top - 4}" text-anchor="middle" fill="${color}">${esc(m.label)}${m.failed ? ' ✗' : ''}</text>`);
    out.push('</g>');
  }

  // Series.
  for (const s of SERIES) {
    const segments: string[][] = [];
    let cur: string[] = [];
    for (const p of points) {
      const v = p[s.key];
      if (v === null || !Number.isFinite(v)) {
        if (cur.length) segments.push(cur);
        cur = [];
        continue;
      }
      cur.push(`${f(x(p.t + 0.5))},${f(y(v))}`);
    }
    if (cur.length) segments.push(cur);
    if (!segments.length) continue;
    for (const seg of segments) {
      out.push(`<polyline class="series" data-series="${s.key}" fill="none" stroke="${s.color}" stroke-width="1.8"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''} points="${seg.join(' ')}"/>`);
    }
  }

  // Legend.
  let ly = M.top + 8;
  const lx = M.left + pw + 14;
  for (const s of SERIES) {
    if (!points.some((p) => p[s.key] !== null)) continue;
    out.push(`<line x1="${lx}" x2="${lx + 24}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    out.push(`<text x="${lx + 30}" y="${ly + 4}">${esc(s.label)}</text>`);
    ly += 20;
  }
  if (markers.length) {
    out.push(`<line x1="${lx + 12}" x2="${lx + 12}" y1="${ly - 7}" y2="${ly + 7}" stroke="#1a9a3a" stroke-width="1.5" stroke-dasharray="4 3"/>`);
    out.push(`<text x="${lx + 30}" y="${ly + 4}">patch round</text>`);
    ly += 20;
    if (markers.some((m) => m.failed > 0)) out.push(`<text x="${lx + 30}" y="${ly + 4}" fill="#b00060">✗ = refused</text>`);
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function niceCeil(v: number): number {
  const e = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * e >= v) return m * e;
  return 10 * e;
}

function niceStep(v: number): number {
  if (v <= 1) return 1;
  return niceCeil(v);
}

function f(v: number): string {
  return (Math.round(v * 10) / 10).toString();
}

function fmt(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
