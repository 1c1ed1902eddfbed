/**
 * The load test, runnable from Node (loadtest/run.ts is its command line; the integration test
 * calls that): real WebSocket players (client/client.ts) play the arena at 20 inputs/s each
 * while the rooms are patched live through the admin API, and the run's figures go to a JSON
 * report and an SVG plot. The same scenario as loadtest/k6/arena.ts, measured the same way
 * (loadtest/shared/: the input tracker, frame peeking, steering, patch plan).
 *
 * Phases: start the target (or use --url), seat every player (in batches), play for the
 * duration with patch rounds every N seconds, stop sending and wait for the last acks (drain),
 * collect the server's figures (admin status, /metrics, /dashboard/data), leave, stop.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import { machine } from '../bench/lib.ts';
import { MoonpatchClient, type SocketFactory } from '../client/client.ts';
import { decodeServerMessage } from '../server/protocol/codec.ts';
import type { Value } from '../server/protocol/messages.ts';
import { peekFrame } from './shared/frames.ts';
import { actionLabel, nextPatchAction, patchOutcome, patchRequest, type PatchAction } from './shared/patch-plan.ts';
import { Steering } from './shared/steer.ts';
import { InputTracker, type TrackerSink } from './shared/tracker.ts';
import { Samples, Second, bucketsDiff, distribution, evaluateThresholds, histogramQuantile, parseHistogram, type Buckets, type Check, type Distribution } from './stats.ts';
import { renderPlot, type PlotMarker, type PlotPoint } from './svg.ts';
import { cpuSeconds, givenTarget, startTarget, type Target } from './target.ts';

export interface LoadTestOptions {
  players: number;
  /** Seconds of play, after every player is seated. */
  durationS: number;
  /** Seconds between patch rounds; 0 for none. */
  patchEveryS: number;
  /** Inputs per second per player. */
  hz: number;
  /** Players per room (rooms are filled evenly). */
  roomSize: number;
  game: string;
  /** A running server's WebSocket URL; without it a server is started for the run. */
  url?: string;
  /** Admin token of the server at `url` (patching and server figures need it). */
  adminToken?: string;
  /** Redis for the started server; without it a private one is started. */
  redisUrl?: string;
  /** Room id prefix; default a fresh `lt-<random>`. */
  roomPrefix?: string;
  /** Highest version the patcher goes to before rolling back; default the game's last. */
  topVersion?: number;
  /** Threshold: p99 input-to-ack, ms. */
  maxP99AckMs: number;
  /** Seconds to wait after the last input for its ack. */
  drainS: number;
  /** Players that keep a copy of the world and steer by it (the rest steer blindly). */
  observers: number;
  /** Where the JSON report and the SVG plot go. */
  out: string;
  svg: string;
  /** The command line, for the report. */
  command?: string;
  log?: (line: string) => void;
  /** Aborting ends the play phase early (the report is still written). */
  signal?: AbortSignal;
}

export interface PatchEvent {
  /** Seconds since the run started, when the request was sent. */
  t: number;
  room: string;
  action: string;
  ok: boolean;
  code: string;
  detail: string;
  /** Admin request round trip (staging + waiting for the swap tick), ms. */
  request_ms: number;
  /** The swap tick (script + commit), ms, when applied. */
  swap_tick_ms: number | null;
}

export interface LoadTestReport {
  benchmark: 'loadtest';
  command: string | null;
  started_at: string;
  machine: ReturnType<typeof machine>;
  /** 1-minute load average of the machine when the play phase started and ended (others' work shows here). */
  load_average: { start: number; end: number };
  options: Record<string, unknown>;
  target: { url: string; started_server: boolean; redis: string };
  players: { requested: number; joined: number; failed_joins: number; rooms: number; room_size: number; join_errors: Record<string, number> };
  duration_s: number;
  inputs: {
    sent: number;
    acked: number;
    rejected: number;
    lost: number;
    duplicated: number;
    anomalies: number;
    anomaly_detail: { ack_regressions: number; unknown_seqs: number; duplicate_seq_errors: number; client_double_settles: number; client_unsettled: number };
    rejected_codes: Record<string, number>;
    per_player_per_s: number;
  };
  latency_ms: { ack: Distribution; state: Distribution; join: Distribution };
  disconnects: { total: number; by_code: Record<string, number> };
  server: {
    missed_ticks_during_run: number | null;
    missed_ticks_total: number | null;
    tick_ms_p50: number | null;
    tick_ms_p99: number | null;
    tick_p99_above_top_bucket: boolean;
    /** p99 of how late ticks started against their slots (interpolated in the histogram's buckets), ms; null from a server without the metric. */
    tick_lateness_ms_p99: number | null;
    ticks: number | null;
    tick_histogram_ms: Record<string, number> | null;
    tick_p99_per_second_max: number | null;
    versions_at_end: Record<string, number>;
    cpu_s: number | null;
    redis_cpu_s: number | null;
    version_notices: number;
    log_warnings: number;
  };
  patches: { rounds: number; attempted: number; applied: number; failed: number; by_outcome: Record<string, number>; events: PatchEvent[] };
  load_generator: { cpu_s: number; event_loop_delay_ms: { p50: number; p99: number; max: number }; late_send_rounds: number; skipped_sends: number };
  series: { t: number; sent: number; acked: number; connected: number; ack_p50: number | null; ack_p99: number | null; state_p50: number | null; state_p99: number | null; server_tick_p99: number | null }[];
  thresholds: { passed: boolean; checks: Check[] };
  files: { json: string; svg: string };
}

export interface LoadTestResult {
  report: LoadTestReport;
  passed: boolean;
}

interface RoomStatus {
  room: string;
  versionNumber: number | null;
  missedTicks: number;
  players: number;
}

const JOIN_BATCH = 50;
const JOIN_TIMEOUT_MS = 30_000;
/** Send slots per input period: players are spread over them so inputs do not arrive as a wall. */
const SLOTS = 10;
const TICK_HISTOGRAM = 'moonpatch_tick_duration_seconds';
const LATENESS_HISTOGRAM = 'moonpatch_tick_lateness_seconds';

/** One player: a MoonpatchClient whose socket also shows every frame to an InputTracker. */
class Bot {
  readonly client: MoonpatchClient;
  readonly tracker: InputTracker;
  private readonly steering: Steering;
  private settledBits = new Uint8Array(1024);
  clientDoubleSettles = 0;
  versionNotices = 0;
  joined = false;
  joinedMs = 0;
  readonly disconnectCodes: number[] = [];

  constructor(
    readonly index: number,
    readonly room: string,
    url: string,
    game: string,
    hz: number,
    readonly observer: boolean,
    sink: TrackerSink,
  ) {
    this.tracker = new InputTracker(sink);
    this.steering = new Steering(hz);
    const bot = this;
    class TappedSocket extends WebSocket {
      constructor(u: string) {
        super(u);
        // Registered before the client's onmessage, so it sees each frame first, on arrival.
        this.on('message', (data: ArrayBuffer | Buffer) => bot.onFrame(data));
      }
    }
    this.client = new MoonpatchClient({
      url,
      room,
      game,
      name: `lt-${index}`,
      WebSocket: TappedSocket as unknown as SocketFactory,
      trackWorld: observer,
      // Do not give up: a player of a real game reconnects (and is counted as a disconnect).
      reconnectDelayMs: 100,
    });
    this.client.on('settled', (s) => {
      if (s.seq >= this.settledBits.length * 8) {
        const next = new Uint8Array(Math.max(this.settledBits.length * 2, (s.seq >> 3) + 1));
        next.set(this.settledBits);
        this.settledBits = next;
      }
      const bit = 1 << (s.seq & 7);
      if (this.settledBits[s.seq >> 3]! & bit) this.clientDoubleSettles++;
      this.settledBits[s.seq >> 3]! |= bit;
    });
    this.client.on('disconnect', (d) => this.disconnectCodes.push(d.code));
  }

  private onFrame(data: ArrayBuffer | Buffer): void {
    const at = performance.now();
    const b = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const head = peekFrame(b);
    if (!head) return;
    switch (head.t) {
      case 'delta':
      case 'snap':
        if (head.tick >= 0) this.tracker.onState(head.tick, at);
        return;
      case 'ack':
      case 'err':
      case 'welcome': {
        const m = decodeServerMessage(b);
        if (m.t === 'ack') this.tracker.onAck(m.seq, m.tick, at);
        else if (m.t === 'welcome') this.tracker.onWelcome(m.seq, m.tick, at);
        else if (m.t === 'err') this.tracker.onErr(m.seq, m.code, at);
        return;
      }
      case 'ver':
        this.versionNotices++;
        return;
    }
  }

  /** Send the next input; false when not connected (nothing sent). */
  step(): boolean {
    if (!this.client.connected) return false;
    let me: { x: number; y: number } | undefined;
    if (this.observer) {
      me = (this.client.world.players as Record<string, { x: number; y: number }> | undefined)?.[this.client.playerId];
    }
    const at = performance.now();
    const seq = this.client.send(this.steering.next(me) as Value);
    this.tracker.onSend(seq, at);
    return true;
  }
}

export async function runLoadTest(o: LoadTestOptions): Promise<LoadTestResult> {
  const log = o.log ?? ((line: string) => console.log(line));
  const startedAt = new Date();
  const target: Target = o.url ? givenTarget(o.url, o.adminToken ?? null) : await startTarget({ redisUrl: o.redisUrl, players: o.players, log });
  try {
    return await run(o, target, log, startedAt);
  } finally {
    await target.stop();
  }
}

async function run(o: LoadTestOptions, target: Target, log: (line: string) => void, startedAt: Date): Promise<LoadTestResult> {
  const admin = adminClient(target);
  const roomPrefix = o.roomPrefix ?? `lt-${randomBytes(3).toString('hex')}`;
  const roomCount = Math.max(1, Math.ceil(o.players / Math.max(1, o.roomSize)));
  const rooms = Array.from({ length: roomCount }, (_, k) => `${roomPrefix}-${k}`);
  const ours = (r: RoomStatus) => r.room.startsWith(`${roomPrefix}-`);

  let top = 0;
  if (o.patchEveryS > 0) {
    if (!target.adminToken) log('no admin token: patching is off (pass --admin-token with --url)');
    else {
      const games = (await admin.get('/admin/games')) as { game: string; versions: { number: number }[] }[];
      const game = games.find((g) => g.game === o.game);
      if (!game) throw new Error(`the server has no game ${o.game}`);
      const last = Math.max(...game.versions.map((v) => v.number));
      top = o.topVersion ? Math.min(o.topVersion, last) : last;
      if (top < 2) log(`${o.game} has only version 1: nothing to patch`);
    }
  }

  // ---- latency sinks: overall and per second of the run --------------------------------
  let runStart = Number.POSITIVE_INFINITY;
  const seconds: Second[] = [];
  const secondAt = (at: number) => {
    const k = Math.max(0, Math.floor((at - runStart) / 1000));
    while (seconds.length <= k) seconds.push(new Second());
    return seconds[k]!;
  };
  const ackAll = new Samples();
  const stateAll = new Samples();
  const sink: TrackerSink = {
    ack(ms, at) {
      ackAll.push(ms);
      const s = secondAt(at);
      s.ack.push(ms);
      s.acked++;
    },
    state(ms, at) {
      stateAll.push(ms);
      secondAt(at).state.push(ms);
    },
  };

  // ---- seat the players ---------------------------------------------------------------------
  log(`loadtest: ${o.players} players in ${roomCount} room(s) of up to ${o.roomSize} -> ${target.url}, ${o.hz} inputs/s each, ${o.durationS} s` + (top >= 2 ? `, patch every ${o.patchEveryS} s (versions up to ${top}, then rollback)` : ''));
  const bots = Array.from({ length: o.players }, (_, i) => new Bot(i, rooms[i % roomCount]!, target.url, o.game, o.hz, i < o.observers, sink));
  const joinErrors: Record<string, number> = {};
  const joinMs = new Samples();
  const t0 = performance.now();
  for (let i = 0; i < bots.length && !o.signal?.aborted; i += JOIN_BATCH) {
    await Promise.all(
      bots.slice(i, i + JOIN_BATCH).map(async (b) => {
        const began = performance.now();
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([b.client.connect(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('TIMEOUT: no welcome')), JOIN_TIMEOUT_MS)))]);
          b.joined = true;
          joinMs.push(performance.now() - began);
        } catch (e) {
          const code = String((e as Error).message).split(':')[0]!;
          joinErrors[code] = (joinErrors[code] ?? 0) + 1;
          b.client.close();
        } finally {
          clearTimeout(timer);
        }
      }),
    );
  }
  const seated = bots.filter((b) => b.joined);
  log(`seated ${seated.length}/${o.players} in ${((performance.now() - t0) / 1000).toFixed(1)} s` + (Object.keys(joinErrors).length ? ` (failed: ${JSON.stringify(joinErrors)})` : ''));
  if (Object.keys(joinErrors).includes('connection closed')) log('hint: a server closes connections past MAX_CONNECTIONS_PER_ADDRESS (default 64) from one address');

  // ---- baselines ----------------------------------------------------------------------------
  const statusBefore = target.adminToken ? ((await admin.get('/admin/rooms?scope=cluster').catch(() => null)) as RoomStatus[] | null) : null;
  const histBefore = await scrapeTickHistograms(target);
  const cpuBefore = { server: cpuSeconds(target.serverPid), redis: cpuSeconds(target.redisPid), self: process.cpuUsage() };
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();

  // ---- play ---------------------------------------------------------------------------------
  runStart = performance.now();
  const runStartEpoch = Date.now();
  const loadStart = os.loadavg()[0]!;
  const runEnd = runStart + o.durationS * 1000;
  const period = 1000 / o.hz;
  const slots: Bot[][] = Array.from({ length: SLOTS }, () => []);
  seated.forEach((b, i) => slots[Math.floor((i * SLOTS) / seated.length)]!.push(b)); // phases spread over the period
  const due = slots.map((_, s) => runStart + (s * period) / SLOTS);
  let lateRounds = 0;
  let skippedSends = 0;
  const sendTimer = setInterval(() => {
    const now = performance.now();
    if (now >= runEnd || o.signal?.aborted) return;
    for (let s = 0; s < SLOTS; s++) {
      if (now < due[s]!) continue;
      if (now - due[s]! > period) {
        // The process fell behind by a whole period: skip ahead rather than send a burst.
        lateRounds++;
        due[s] = now;
      }
      const sec = secondAt(now);
      for (const b of slots[s]!) {
        if (b.step()) sec.sent++;
        else skippedSends++;
      }
      due[s]! += period;
    }
  }, Math.max(1, Math.floor(period / SLOTS / 2)));

  // Patch rounds.
  const patchEvents: PatchEvent[] = [];
  const markers: PlotMarker[] = [];
  const rounds: Promise<void>[] = [];
  const patchTimers: NodeJS.Timeout[] = [];
  let roundsRun = 0;
  let lastStatus: RoomStatus[] | null = statusBefore;
  if (top >= 2 && o.patchEveryS > 0) {
    for (let k = 1; k * o.patchEveryS < o.durationS; k++) {
      const at = k * o.patchEveryS;
      patchTimers.push(
        setTimeout(() => {
          if (o.signal?.aborted) return;
          roundsRun++;
          rounds.push(patchRound(at));
        }, runStart + at * 1000 - performance.now()),
      );
    }
  }
  async function patchRound(at: number): Promise<void> {
    let status: RoomStatus[];
    try {
      status = ((await admin.get('/admin/rooms?scope=cluster')) as RoomStatus[]).filter(ours);
    } catch (e) {
      patchEvents.push({ t: at, room: '*', action: 'status', ok: false, code: 'STATUS_FAILED', detail: String(e), request_ms: 0, swap_tick_ms: null });
      markers.push({ t: at, label: 'status?', applied: 0, failed: 1 });
      return;
    }
    const labels = new Set<string>();
    let applied = 0;
    let failed = 0;
    await Promise.all(
      status.map(async (r) => {
        const action: PatchAction = nextPatchAction(r.versionNumber, top);
        labels.add(actionLabel(action));
        const req = patchRequest(r.room, action);
        const began = performance.now();
        const sentAt = (began - runStart) / 1000;
        const { status: http, body } = await admin.post(req.path, req.body);
        const out = patchOutcome(http, body);
        const swap = (body as { swapTickMs?: unknown } | null)?.swapTickMs;
        patchEvents.push({
          t: round(sentAt, 3),
          room: r.room,
          action: actionLabel(action),
          ok: out.ok,
          code: out.code,
          detail: out.detail,
          request_ms: round(performance.now() - began, 1),
          swap_tick_ms: typeof swap === 'number' ? round(swap, 2) : null,
        });
        if (out.ok) applied++;
        else failed++;
      }),
    );
    markers.push({ t: at, label: [...labels].join('/'), applied, failed });
    log(`patch round at ${at} s: ${[...labels].join('/')} -> ${applied} applied, ${failed} refused` + (failed ? ` (${[...new Set(patchEvents.filter((e) => !e.ok && e.t >= at - 0.5).map((e) => e.code))].join(', ')})` : ''));
  }

  // Progress, once a second.
  let statusInFlight = false;
  const progress = setInterval(() => {
    const now = performance.now();
    const k = Math.floor((now - runStart) / 1000) - 1;
    const s = k >= 0 ? secondAt(runStart + k * 1000 + 1) : new Second();
    const connected = seated.filter((b) => b.client.connected).length;
    s.connected = connected;
    const pending = seated.reduce((n, b) => n + b.tracker.pending, 0);
    const disconnects = seated.reduce((n, b) => n + b.client.disconnects, 0);
    const ack = distribution(s.ack);
    const st = distribution(s.state);
    const versions = lastStatus ? summarizeVersions(lastStatus.filter(ours)) : '';
    const missed = lastStatus && statusBefore ? missedDuring(statusBefore.filter(ours), lastStatus.filter(ours)) : null;
    log(
      `t=${k + 1}s players=${connected}/${o.players} sent/s=${s.sent} acked/s=${s.acked} ack p50=${ms(ack.p50)} p99=${ms(ack.p99)} state p99=${ms(st.p99)} ` +
        `pending=${pending} disconnects=${disconnects}` + (missed !== null ? ` missed_ticks=${missed}` : '') + (versions ? ` versions=${versions}` : '') + (markers.length ? ` patches=${patchEvents.filter((e) => e.ok).length} ok/${patchEvents.filter((e) => !e.ok).length} refused` : ''),
    );
    if (target.adminToken && !statusInFlight) {
      statusInFlight = true;
      admin.get('/admin/rooms?scope=cluster').then(
        (r) => {
          lastStatus = r as RoomStatus[];
          statusInFlight = false;
        },
        () => (statusInFlight = false),
      );
    }
  }, 1000);

  await new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (performance.now() >= runEnd || o.signal?.aborted) {
        clearInterval(check);
        resolve();
      }
    }, 50);
  });
  const playedS = (performance.now() - runStart) / 1000;
  const loadEnd = os.loadavg()[0]!;
  clearInterval(sendTimer);
  for (const t of patchTimers) clearTimeout(t);
  await Promise.all(rounds);

  // ---- drain: wait for the last acks ------------------------------------------------------
  const drainUntil = performance.now() + o.drainS * 1000;
  while (performance.now() < drainUntil && seated.some((b) => b.tracker.pending > 0)) await sleep(50);
  clearInterval(progress);
  loopDelay.disable();

  // ---- the server's figures -----------------------------------------------------------------
  const statusAfter = target.adminToken ? ((await admin.get('/admin/rooms?scope=cluster').catch(() => null)) as RoomStatus[] | null) : null;
  const histAfter = await scrapeTickHistograms(target);
  const dashboard = await fetchJson(`${target.httpUrl}/dashboard/data`).catch(() => null) as { series?: { t: number; p99: number; ticks: number }[] } | null;
  const selfCpu = process.cpuUsage(cpuBefore.self);
  const serverCpu = diff(cpuSeconds(target.serverPid), cpuBefore.server);
  const redisCpu = diff(cpuSeconds(target.redisPid), cpuBefore.redis);
  const serverWarnings = target.output().split('\n').filter((l) => /"level":(40|50|60)/.test(l)).length;

  // ---- leave --------------------------------------------------------------------------------
  const lost = seated.reduce((n, b) => n + b.tracker.pending, 0);
  const clientUnsettled = seated.reduce((n, b) => n + b.client.unsettled, 0);
  for (const b of bots) {
    if (b.joined && b.client.connected) b.client.leave();
    else b.client.close();
  }
  await sleep(200);

  // ---- report -------------------------------------------------------------------------------
  const sum = (f: (b: Bot) => number) => seated.reduce((n, b) => n + f(b), 0);
  const disconnectCodes: Record<string, number> = {};
  for (const b of seated) for (const c of b.disconnectCodes) disconnectCodes[c] = (disconnectCodes[c] ?? 0) + 1;
  const rejectedCodes: Record<string, number> = {};
  for (const b of seated) for (const [c, n] of Object.entries(b.tracker.rejectedCodes)) rejectedCodes[c] = (rejectedCodes[c] ?? 0) + n;
  const anomalyDetail = {
    ack_regressions: sum((b) => b.tracker.ackRegressions),
    unknown_seqs: sum((b) => b.tracker.unknownSeqs),
    duplicate_seq_errors: sum((b) => b.tracker.duplicateSeqErrors),
    client_double_settles: sum((b) => b.clientDoubleSettles),
    client_unsettled: clientUnsettled,
  };
  const tickHist = histAfter && histBefore ? bucketsDiff(histAfter.tick, histBefore.tick) : (histAfter?.tick ?? null);
  const tickP50 = tickHist ? histogramQuantile(tickHist, 0.5) : null;
  const tickP99 = tickHist ? histogramQuantile(tickHist, 0.99) : null;
  // How late ticks started against their slots: the cadence the players felt.
  const lateHist = histAfter && histBefore ? bucketsDiff(histAfter.late, histBefore.late) : (histAfter?.late ?? null);
  const lateP99 = lateHist?.size ? histogramQuantile(lateHist, 0.99) : null;
  const serverSeries = new Map<number, number>();
  for (const p of dashboard?.series ?? []) {
    const k = Math.floor((p.t - runStartEpoch) / 1000);
    if (k >= 0 && k < Math.round(playedS) && p.ticks > 0) serverSeries.set(k, p.p99);
  }
  // The plot shows the play phase; acks that arrive while draining count in the totals only.
  const shownSeconds = Math.max(1, Math.round(playedS));
  const series = Array.from({ length: shownSeconds }, (_, k) => {
    const s = seconds[k] ?? new Second();
    const a = distribution(s.ack);
    const st = distribution(s.state);
    return { t: k, sent: s.sent, acked: s.acked, connected: s.connected, ack_p50: a.p50, ack_p99: a.p99, state_p50: st.p50, state_p99: st.p99, server_tick_p99: serverSeries.get(k) ?? null };
  });
  const byOutcome: Record<string, number> = {};
  for (const e of patchEvents) {
    const key = `${e.action} ${e.ok ? 'applied' : e.code}`;
    byOutcome[key] = (byOutcome[key] ?? 0) + 1;
  }
  const versionsAtEnd: Record<string, number> = {};
  for (const r of (statusAfter ?? []).filter(ours)) versionsAtEnd[`v${r.versionNumber ?? '?'}`] = (versionsAtEnd[`v${r.versionNumber ?? '?'}`] ?? 0) + 1;
  const delay = (q: number) => round(loopDelay.percentile(q) / 1e6, 2);
  const sent = sum((b) => b.tracker.sent);
  const report: LoadTestReport = {
    benchmark: 'loadtest',
    command: o.command ?? null,
    started_at: startedAt.toISOString(),
    machine: machine(),
    load_average: { start: round(loadStart, 2), end: round(loadEnd, 2) },
    options: { players: o.players, duration_s: o.durationS, patch_every_s: o.patchEveryS, hz: o.hz, room_size: o.roomSize, game: o.game, top_version: top || null, max_p99_ack_ms: o.maxP99AckMs, drain_s: o.drainS, observers: o.observers },
    target: { url: target.url, started_server: target.started.server, redis: target.started.redis },
    players: { requested: o.players, joined: seated.length, failed_joins: o.players - seated.length, rooms: roomCount, room_size: o.roomSize, join_errors: joinErrors },
    duration_s: round(playedS, 2),
    inputs: {
      sent,
      acked: sum((b) => b.tracker.acked),
      rejected: sum((b) => b.tracker.rejected),
      lost,
      duplicated: sum((b) => b.tracker.duplicated) + anomalyDetail.client_double_settles,
      anomalies: anomalyDetail.ack_regressions + anomalyDetail.unknown_seqs + anomalyDetail.duplicate_seq_errors,
      anomaly_detail: anomalyDetail,
      rejected_codes: rejectedCodes,
      per_player_per_s: seated.length && playedS > 0 ? round(sent / seated.length / playedS, 2) : 0,
    },
    latency_ms: { ack: distribution(ackAll), state: distribution(stateAll), join: distribution(joinMs) },
    disconnects: { total: sum((b) => b.client.disconnects), by_code: disconnectCodes },
    server: {
      missed_ticks_during_run: statusBefore && statusAfter ? missedDuring(statusBefore.filter(ours), statusAfter.filter(ours)) : null,
      missed_ticks_total: statusAfter ? statusAfter.filter(ours).reduce((n, r) => n + r.missedTicks, 0) : null,
      tick_ms_p50: tickP50 ? round(tickP50.value * 1000, 2) : null,
      tick_ms_p99: tickP99 ? round(tickP99.value * 1000, 2) : null,
      tick_p99_above_top_bucket: tickP99?.above ?? false,
      tick_lateness_ms_p99: lateP99 ? round(lateP99.value * 1000, 2) : null,
      ticks: tickP99?.count ?? null,
      tick_histogram_ms: tickHist ? histogramObject(tickHist) : null,
      tick_p99_per_second_max: serverSeries.size ? round(Math.max(...serverSeries.values()), 2) : null,
      versions_at_end: versionsAtEnd,
      cpu_s: serverCpu,
      redis_cpu_s: redisCpu,
      version_notices: sum((b) => b.versionNotices),
      log_warnings: serverWarnings,
    },
    patches: {
      rounds: roundsRun,
      attempted: patchEvents.length,
      applied: patchEvents.filter((e) => e.ok).length,
      failed: patchEvents.filter((e) => !e.ok).length,
      by_outcome: byOutcome,
      events: patchEvents.sort((a, b) => a.t - b.t || a.room.localeCompare(b.room)),
    },
    load_generator: {
      cpu_s: round((selfCpu.user + selfCpu.system) / 1e6, 2),
      event_loop_delay_ms: { p50: delay(50), p99: delay(99), max: round(loopDelay.max / 1e6, 2) },
      late_send_rounds: lateRounds,
      skipped_sends: skippedSends,
    },
    series,
    thresholds: { passed: false, checks: [] },
    files: { json: path.resolve(o.out), svg: path.resolve(o.svg) },
  };
  const checks = evaluateThresholds(report, o.maxP99AckMs);
  report.thresholds = { passed: checks.every((c) => c.ok), checks };

  // ---- files --------------------------------------------------------------------------------
  const points: PlotPoint[] = series.map((s) => ({ t: s.t, ackP50: s.ack_p50, ackP99: s.ack_p99, stateP99: s.state_p99, serverTickP99: s.server_tick_p99 }));
  const a = report.latency_ms.ack;
  const svg = renderPlot(points, markers, {
    title: `moonpatch load test: ${seated.length} players, ${roomCount} room(s), ${o.hz} inputs/s each, ${round(playedS, 1)} s`,
    subtitle: `input→ack p50 ${ms(a.p50)} / p99 ${ms(a.p99)} ms · lost ${lost} · duplicated ${report.inputs.duplicated} · disconnects ${report.disconnects.total} · patches ${report.patches.applied} applied, ${report.patches.failed} refused · ${report.thresholds.passed ? 'PASS' : 'FAIL'}`,
    durationS: Math.max(o.durationS, shownSeconds),
    thresholdMs: o.maxP99AckMs,
  });
  mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
  mkdirSync(path.dirname(path.resolve(o.svg)), { recursive: true });
  writeFileSync(o.out, JSON.stringify(report, null, 2) + '\n');
  writeFileSync(o.svg, svg);
  return { report, passed: report.thresholds.passed };
}

// ---------------------------------------------------------------------------------------------

function adminClient(target: Target) {
  const headers = { authorization: `Bearer ${target.adminToken ?? ''}`, 'content-type': 'application/json' };
  return {
    async get(p: string): Promise<unknown> {
      const res = await fetch(`${target.httpUrl}${p}`, { headers });
      if (!res.ok) throw new Error(`GET ${p}: HTTP ${res.status} ${await res.text()}`);
      return res.json();
    },
    async post(p: string, body: string): Promise<{ status: number; body: unknown }> {
      try {
        const res = await fetch(`${target.httpUrl}${p}`, { method: 'POST', headers, body, signal: AbortSignal.timeout(120_000) });
        const text = await res.text();
        let parsed: unknown = null;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = { msg: text };
        }
        return { status: res.status, body: parsed };
      } catch (e) {
        return { status: 0, body: { code: 'REQUEST_FAILED', msg: String(e) } };
      }
    },
  };
}

async function fetchJson(url: string): Promise<unknown> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return res.json();
}

/** The server's tick duration and tick lateness histograms (all games), or null when /metrics does not answer. */
async function scrapeTickHistograms(target: Target): Promise<{ tick: Buckets; late: Buckets } | null> {
  try {
    const res = await fetch(`${target.httpUrl}/metrics`);
    if (!res.ok) return null;
    const text = await res.text();
    return { tick: parseHistogram(text, TICK_HISTOGRAM), late: parseHistogram(text, LATENESS_HISTOGRAM) };
  } catch {
    return null;
  }
}

function histogramObject(b: Buckets): Record<string, number> {
  const out: Record<string, number> = {};
  let prev = 0;
  for (const le of [...b.keys()].sort((x, y) => x - y)) {
    const n = b.get(le)!;
    out[le === Infinity ? '+Inf' : `<=${round(le * 1000, 1)}`] = n - prev;
    prev = n;
  }
  return out;
}

function missedDuring(before: RoomStatus[], after: RoomStatus[]): number {
  const base = new Map(before.map((r) => [r.room, r.missedTicks]));
  return after.reduce((n, r) => n + r.missedTicks - (base.get(r.room) ?? 0), 0);
}

function summarizeVersions(rooms: RoomStatus[]): string {
  const count = new Map<string, number>();
  for (const r of rooms) count.set(`v${r.versionNumber ?? '?'}`, (count.get(`v${r.versionNumber ?? '?'}`) ?? 0) + 1);
  return [...count].map(([v, n]) => (rooms.length > 1 ? `${v}x${n}` : v)).join(',');
}

function diff(after: number | null, before: number | null): number | null {
  return after === null || before === null ? null : round(after - before, 2);
}

function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function ms(x: number | null): string {
  return x === null ? '-' : x.toFixed(1);
}

const sleep = (t: number) => new Promise<void>((r) => setTimeout(r, t));
