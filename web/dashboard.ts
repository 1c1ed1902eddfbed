/**
 * The live ops dashboard: polls /dashboard/data every second and draws tick latency p50/p99
 * and how late ticks started (with patch markers) on a canvas, the rooms table and the recent
 * events. Served bundled as
 * /dashboard.js by server/net/http.ts.
 *
 * With several servers on one Redis, every other server's p99 is drawn too (from their beats,
 * see server/ops/dashboard-feed.ts), one colour each, named in the legend.
 *
 * For tests: `body[data-points]` is the number of series points drawn, `body[data-markers]` the
 * number of patch markers drawn, `body[data-servers]` the number of other servers' lines drawn
 * (`body[data-servers-late]`: of those, with their lateness line);
 * `#rooms tr` are the room rows and `#events li` the events.
 */
import type { DashboardEvent, DashboardSnapshot, SeriesPoint } from '../server/ops/dashboard-feed.ts';

const COLORS = { bg: '#171a23', grid: '#2a2f3d', axis: '#8a91a5', p50: '#6ea8ff', p99: '#ffb347', late: '#e4e4e4', ok: '#4cd07d', bad: '#ff5c5c' };
/** Other servers' p99 lines, in turn. */
const SERVER_COLORS = ['#c58cff', '#5fd4d4', '#ff8fb1', '#d4d45f', '#9fa8ff', '#ffb08a'];
const MIN_SPAN_MS = 30_000;
const MAX_SPAN_MS = 300_000;

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const canvas = $<HTMLCanvasElement>('chart');
const ctx = canvas.getContext('2d')!;
const status = $('status');
document.body.dataset.points = '0';
document.body.dataset.markers = '0';
document.body.dataset.servers = '0';

let last: DashboardSnapshot | null = null;

function markerColor(what: string): string | null {
  if (what === 'patch-applied') return COLORS.ok;
  if (what === 'patch-refused' || what === 'patch-rolled-back' || what === 'patch-rollback-refused') return COLORS.bad;
  return null;
}

/** A round step for an axis covering `range` with about `count` ticks. */
function niceStep(range: number, count: number): number {
  const raw = range / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

function drawChart(snap: DashboardSnapshot): void {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = COLORS.bg;
  ctx.fillRect(0, 0, w, h);

  const pad = { left: 56, right: 12, top: 12, bottom: 30 };
  const plotW = w - pad.left - pad.right;
  const plotH = h - pad.top - pad.bottom;
  const points = snap.series.filter((p) => p.ticks > 0);
  const end = snap.now;
  const first = points[0]?.t ?? end;
  const start = end - Math.min(MAX_SPAN_MS, Math.max(MIN_SPAN_MS, end - first));
  const inRange = points.filter((p) => p.t >= start);
  const others = snap.servers
    .map((s) => ({ node: s.node, points: s.series.filter((p) => p.ticks > 0 && p.t >= start && p.t <= end) }))
    .filter((s) => s.points.length > 0);
  const maxMs = Math.max(1, ...inRange.map((p) => Math.max(p.p99, lateOf(p))), ...others.flatMap((s) => s.points.map((p) => Math.max(p.p99, lateOf(p)))));
  const yStep = niceStep(maxMs, 5);
  const yMax = Math.ceil((maxMs * 1.1) / yStep) * yStep;
  const x = (t: number) => pad.left + ((t - start) / (end - start)) * plotW;
  const y = (ms: number) => pad.top + plotH - (ms / yMax) * plotH;

  // Grid and axes.
  ctx.font = '11px ui-monospace, monospace';
  ctx.lineWidth = 1;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let v = 0; v <= yMax + 1e-9; v += yStep) {
    ctx.strokeStyle = COLORS.grid;
    ctx.beginPath();
    ctx.moveTo(pad.left, Math.round(y(v)) + 0.5);
    ctx.lineTo(pad.left + plotW, Math.round(y(v)) + 0.5);
    ctx.stroke();
    ctx.fillStyle = COLORS.axis;
    ctx.fillText(`${+v.toFixed(3)} ms`, pad.left - 6, y(v));
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  const xStep = niceStep((end - start) / 1000, 6) * 1000;
  for (let ago = 0; ago <= end - start; ago += xStep) {
    const px = x(end - ago);
    ctx.fillStyle = COLORS.axis;
    ctx.fillText(ago === 0 ? 'now' : `-${Math.round(ago / 1000)}s`, px, pad.top + plotH + 8);
  }
  ctx.strokeStyle = COLORS.axis;
  ctx.beginPath();
  ctx.moveTo(pad.left + 0.5, pad.top);
  ctx.lineTo(pad.left + 0.5, pad.top + plotH + 0.5);
  ctx.lineTo(pad.left + plotW, pad.top + plotH + 0.5);
  ctx.stroke();

  // Patch markers.
  let markers = 0;
  ctx.lineWidth = 2;
  for (const e of snap.events) {
    const color = markerColor(e.what);
    if (!color || e.time < start || e.time > end) continue;
    const px = Math.round(x(e.time));
    ctx.strokeStyle = color;
    ctx.setLineDash([5, 3]);
    ctx.beginPath();
    ctx.moveTo(px, pad.top);
    ctx.lineTo(px, pad.top + plotH);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = color;
    ctx.beginPath();
    ctx.moveTo(px - 5, pad.top);
    ctx.lineTo(px + 5, pad.top);
    ctx.lineTo(px, pad.top + 7);
    ctx.fill();
    markers++;
  }

  // Latency lines (a point at the middle of its second).
  const line = (pts: SeriesPoint[], pick: (p: SeriesPoint) => number, color: string, width = 2) => {
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = width;
    ctx.beginPath();
    pts.forEach((p, i) => (i === 0 ? ctx.moveTo : ctx.lineTo).call(ctx, x(p.t + 500), y(pick(p))));
    ctx.stroke();
    if (pts.length === 1) ctx.fillRect(x(pts[0]!.t + 500) - 2, y(pick(pts[0]!)) - 2, 4, 4);
  };
  // How late ticks started (the second's worst), dashed: a hitch players feel that durations
  // miss. Other servers' in their colour, when their beats carry it.
  let othersLate = 0;
  others.forEach((s, i) => {
    const color = SERVER_COLORS[i % SERVER_COLORS.length]!;
    line(s.points, (p) => p.p99, color, 1.5);
    if (!s.points.some((p) => p.late !== undefined)) return;
    ctx.setLineDash([2, 3]);
    line(s.points, lateOf, color, 1);
    ctx.setLineDash([]);
    othersLate++;
  });
  ctx.setLineDash([4, 3]);
  line(inRange, lateOf, COLORS.late, 1);
  ctx.setLineDash([]);
  line(inRange, (p) => p.p99, COLORS.p99);
  line(inRange, (p) => p.p50, COLORS.p50);

  $('self-legend').lastChild!.textContent = snap.node ? `p99 (${snap.node}, this server)` : 'p99';
  $('servers-legend').replaceChildren(
    ...others.map((s, i) => {
      const span = document.createElement('span');
      const swatch = document.createElement('i');
      swatch.style.background = SERVER_COLORS[i % SERVER_COLORS.length]!;
      span.append(swatch, `p99, late start dashed (${s.node})`);
      span.dataset.node = s.node;
      return span;
    }),
  );
  document.body.dataset.points = String(inRange.length);
  document.body.dataset.markers = String(markers);
  document.body.dataset.servers = String(others.length);
  document.body.dataset.serversLate = String(othersLate);
}

/** A point's lateness, ms; 0 when it has none (or another server's beat sent junk). */
function lateOf(p: SeriesPoint): number {
  return typeof p.late === 'number' && Number.isFinite(p.late) && p.late >= 0 ? p.late : 0;
}

function cell(tr: HTMLTableRowElement, text: string, num = false): void {
  const td = tr.insertCell();
  td.textContent = text;
  if (num) td.className = 'num';
}

function renderRooms(snap: DashboardSnapshot): void {
  const body = $<HTMLTableSectionElement>('rooms');
  body.replaceChildren();
  for (const r of [...snap.rooms].sort((a, b) => a.room.localeCompare(b.room))) {
    const tr = body.insertRow();
    tr.dataset.room = r.room;
    if (r.degraded) tr.className = 'degraded';
    cell(tr, r.room + (r.pinned ? ' (pinned)' : '') + (r.degraded ? ' (degraded)' : ''));
    cell(tr, r.node ?? '');
    cell(tr, r.game);
    cell(tr, r.versionNumber === null ? r.version : `v${r.versionNumber}`, true);
    cell(tr, String(r.schema), true);
    cell(tr, `${r.connected} / ${r.players}`, true);
    cell(tr, String(r.tick), true);
    // Other servers' rooms from before the window carry only their last tick.
    const t = r.tickMs ?? { p50: r.lastTickMs, p99: r.lastTickMs };
    cell(tr, `${t.p50.toFixed(2)} / ${t.p99.toFixed(2)}`, true);
    // Absent from servers older than the measure.
    cell(tr, typeof r.cpuCores === 'number' ? `${(r.cpuCores * 100).toFixed(1)}%` : '–', true);
    cell(tr, r.lastPatch ? `${r.lastPatch.kind} → ${versionName(snap, r.lastPatch.to)} @${r.lastPatch.tick}${r.lastPatch.reason ? ` (${r.lastPatch.reason})` : ''}` : '–');
  }
}

function eventClass(e: DashboardEvent): string {
  if (e.kind === 'error') return 'bad';
  return markerColor(e.what) === COLORS.ok ? 'ok' : markerColor(e.what) ? 'bad' : 'info';
}

/** A version as the command line names it: `v2 71a38285c8af`, or the hash alone when unknown here. */
function versionName(snap: DashboardSnapshot, hash: string): string {
  const n = snap.versionNumbers?.[hash];
  return n === undefined ? hash : `v${n} ${hash}`;
}

function renderEvents(snap: DashboardSnapshot): void {
  const list = $('events');
  list.replaceChildren(
    ...[...snap.events].reverse().map((e) => {
      const li = document.createElement('li');
      li.className = `${e.kind} ${eventClass(e)}`;
      const time = document.createElement('span');
      time.className = 'time';
      time.textContent = new Date(e.time).toLocaleTimeString();
      const what = document.createElement('span');
      what.className = 'what';
      what.textContent =
        e.what === 'events-refused' ? `${e.count} event${e.count === 1 ? '' : 's'} refused by the scripts: ${e.code}` : e.what === 'tick-failed' ? `tick ${e.tick} failed: ${e.code}` : e.what;
      // What was thrown, and what else is known (the player a tick stopped in, a patch's reason).
      const rest = [e.message, e.detail].filter(Boolean).join('; ');
      li.append(time, what, ` ${e.roomId} ${versionName(snap, e.version)}${rest ? ` — ${rest}` : ''}`);
      return li;
    }),
  );
}

async function poll(): Promise<void> {
  try {
    const res = await fetch('/dashboard/data', { cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    last = (await res.json()) as DashboardSnapshot;
    // The current second is still filling: report the last whole one.
    const thisSecond = Math.floor(last.now / 1000) * 1000;
    const recent = last.series.filter((p) => p.t < thisSecond).at(-1);
    const totals = last.series.reduce((a, p) => ({ ticks: a.ticks + p.ticks, failed: a.failed + p.failed }), { ticks: 0, failed: 0 });
    status.textContent = `updated ${new Date(last.now).toLocaleTimeString()} · ${last.rooms.length} room(s)${recent ? ` · ${recent.ticks} ticks/s` : ''}`;
    status.dataset.kind = 'ok';
    $('totals').textContent = `${totals.ticks} ticks, ${totals.failed} failed in window`;
    drawChart(last);
    renderRooms(last);
    renderEvents(last);
  } catch (e) {
    status.textContent = `cannot reach the server (${String(e)})`;
    status.dataset.kind = 'bad';
  }
}

window.addEventListener('resize', () => last && drawChart(last));
/** Poll every second; the next request starts only after the previous one settled. */
const loop = (): void => void poll().finally(() => setTimeout(loop, 1000));
loop();
