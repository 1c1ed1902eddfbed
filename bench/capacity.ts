/**
 * Capacity benchmark (`npm run bench:capacity`): how many arena players one server process
 * holds at 20 Hz, and what the isolate costs. Prints a table per part and writes
 * bench/results/capacity.json.
 *
 *   npm run bench:capacity -- [--steps 250,500,750,1000,1500,2000,2500,3000] [--hold 10] [--settle 3]
 *                             [--room-size 50] [--keep-going] [--overhead-players 1000]
 *                             [--overhead-ticks 300] [--overhead-large-heap-mb 512]
 *                             [--no-overhead] [--no-capacity] [--quick] [--gen-cpu-prof-dir DIR]
 *
 * 1. sandbox_overhead_ratio (bench/sandbox-overhead.ts, in a child process of its own, before
 *    any load): the arena with --overhead-players players run tick by tick in an isolate and
 *    in-process without one (same bundle, runtime and host code), identical inputs and seed;
 *    mean tick time isolate / in-process, and a check that both ended with the same state. A
 *    third run, an isolate with a --overhead-large-heap-mb heap limit instead of the arena's
 *    64 MB, tells the boundary apart from the small heap's garbage collection.
 *
 * 2. max_players_20hz: this process runs the server (the real one, startServer: rooms, isolates,
 *    Redis commits, WebSocket front door) against a private Redis with AOF. A child process
 *    (bench/capacity-load.ts) opens real WebSocket players, --room-size to a room, each sending
 *    a move every 50 ms, and steps their number up (--steps). After each step has settled
 *    (--settle s) both sides measure for --hold seconds. A step passes when all of:
 *      - every player is seated and none was disconnected;
 *      - server tick p99 <= 50 ms (the tick period at 20 Hz; whole tick: script, commit, acks, broadcast);
 *      - input-to-state p99 < 100 ms (send -> first snap/delta whose tick includes the input);
 *      - missed ticks <= 1% and failed ticks <= 1% of the ticks due;
 *      - refused inputs <= 1% of those sent, and the inputs waiting for an ack did not grow by
 *        more than 1% of those sent (the server keeps up).
 *    Stepping stops at the first failure (--keep-going runs every step). max_players_20hz is
 *    the largest step that passed. The load generator's own CPU and event-loop delay are
 *    reported with each step: a failure while it was busy or late itself is marked as such,
 *    because the latency it measured then includes its own lateness.
 *
 * Room size matters more than anything else here: every player's record changes every tick,
 * and every player in a room receives every change, so broadcast bytes grow with
 * players x room size (at 20 Hz, ~3 KB/s per player per room-mate). --room-size 0 puts
 * everyone in one room (the arena allows 2,000 seats; this raises that to the largest step).
 *
 * --quick: a smoke check of a few seconds (steps 50,100, 2 s holds, 200-player overhead run).
 * A --quick, --no-overhead or --no-capacity run writes bench/results/capacity-partial.json (not
 * committed), so a smoke or profiling run never replaces the figures of a full one.
 */
import { fork, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { startServer, type RunningServer } from '../server/app.ts';
import { makeConfig } from '../server/config/config.ts';
import { channels, type BroadcastEvent, type TickCommittedEvent, type TickFailedEvent } from '../server/ops/events.ts';
import { silentLogger } from '../server/ops/logger.ts';
import { GameRegistry, loadGame, makeGame } from '../server/sandbox/games.ts';
import { cpuSeconds } from '../loadtest/target.ts';
import type { GrownReply, LoadCommand, LoadReply, MeasuredReply } from './capacity-load.ts';
import { benchInlineTickMaxMs, benchTickPhases, benchRedis, machine, parseArgs, round, sleep, startLoopMonitor, summary, writeResult } from './lib.ts';
import type { OverheadResult } from './sandbox-overhead.ts';

const args = parseArgs(process.argv.slice(2));
const QUICK = args.quick === 'true';
const STEPS = (args.steps ?? (QUICK ? '50,100' : '250,500,750,1000,1500,2000,2500,3000')).split(',').map((s) => Math.floor(Number(s)));
const HOLD_S = Number(args.hold ?? (QUICK ? 2 : 10));
const SETTLE_S = Number(args.settle ?? (QUICK ? 1 : 3));
const ROOM_SIZE = Math.floor(Number(args['room-size'] ?? 50));
const KEEP_GOING = args['keep-going'] === 'true';
const OVERHEAD_PLAYERS = Math.floor(Number(args['overhead-players'] ?? (QUICK ? 200 : 1000)));
const OVERHEAD_TICKS = Math.floor(Number(args['overhead-ticks'] ?? (QUICK ? 60 : 300)));
const OVERHEAD_WARMUP = Math.floor(Number(args['overhead-warmup'] ?? (QUICK ? 10 : 30)));
/** A third overhead run: an isolate with this heap limit instead of the arena's (0: none). */
const OVERHEAD_LARGE_HEAP_MB = Math.floor(Number(args['overhead-large-heap-mb'] ?? 512));
const RUN_OVERHEAD = args['no-overhead'] !== 'true';
const RUN_CAPACITY = args['no-capacity'] !== 'true';
const INPUT_HZ = 20;
const TICK_BUDGET_MS = 50;
const STATE_P99_LIMIT_MS = 100;
const ARENA_DIR = path.join(import.meta.dirname, '..', 'scripts', 'arena');
const TSX = ['--no-node-snapshot', '--import', 'tsx'];
/** Write a CPU profile of the load generator here (profile the server with `node --cpu-prof`). */
const GEN_PROFILE_DIR = args['gen-cpu-prof-dir'];

if (STEPS.some((s) => !Number.isInteger(s) || s < 1) || [HOLD_S, SETTLE_S].some((x) => !(x > 0)) || !(ROOM_SIZE >= 0)) {
  console.error('usage: npm run bench:capacity -- [--steps 250,500,...] [--hold S] [--settle S] [--room-size N (0: one room)] [--keep-going] [--quick] (see bench/capacity.ts)');
  process.exit(2);
}

// ---- part 1: sandbox overhead -----------------------------------------------------------------

async function runOverhead(): Promise<OverheadResult> {
  const script = path.join(import.meta.dirname, 'sandbox-overhead.ts');
  const argv = [...TSX, script, '--players', String(OVERHEAD_PLAYERS), '--ticks', String(OVERHEAD_TICKS), '--warmup', String(OVERHEAD_WARMUP), '--large-heap-mb', String(OVERHEAD_LARGE_HEAP_MB)];
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`sandbox-overhead exited with ${code}:\n${err}`);
  return JSON.parse(out.trim().split('\n').pop()!) as OverheadResult;
}

// ---- part 2: capacity -------------------------------------------------------------------------

interface StepChecks {
  seated: boolean;
  tick_p99_within_50ms: boolean;
  input_to_state_p99_under_100ms: boolean;
  missed_ticks_at_most_1pct: boolean;
  failed_ticks_at_most_1pct: boolean;
  inputs_refused_at_most_1pct: boolean;
  server_keeps_up_with_inputs: boolean;
}

interface StepResult {
  players: number;
  rooms: number;
  seated: number;
  /** Joins of this step that failed, by error code. */
  join_errors: Record<string, number>;
  join_seconds: number;
  hold_s: number;
  passed: boolean;
  failed_checks: string[];
  checks: StepChecks;
  server: {
    ticks: number;
    ticks_due: number;
    missed_ticks: number;
    failed_ticks: number;
    failed_codes: Record<string, number>;
    /** Whole tick: drain, script, commit, acks, broadcast (TickCommittedEvent.totalMs). */
    tick_ms: ReturnType<typeof summary>;
    /** Isolate call, wall. */
    script_ms: ReturnType<typeof summary>;
    /** Isolate CPU time. */
    script_cpu_ms: ReturnType<typeof summary>;
    /** One fenced Redis round trip. */
    commit_ms: ReturnType<typeof summary>;
    /** How late ticks started against their slots (the cadence players feel). */
    late_ms: ReturnType<typeof summary>;
    tick_p99_within_cpu_budget: boolean;
    broadcast_bytes_per_s: number;
    broadcast_frame_bytes_per_recipient: ReturnType<typeof summary>;
    event_loop_delay_ms: { p50: number; p99: number; max: number };
    /** This process (server, its isolates' threads, the harness): 1.0 = one core. */
    cpu_cores: number;
    redis_cpu_cores: number | null;
  };
  /** Server, Redis and load generator together, cores (the machine has machine.cpu_count). */
  cpu_cores_all: number;
  clients: {
    sent_per_s: number;
    acked: number;
    rejected: number;
    rejected_codes: Record<string, number>;
    pending_growth: number;
    input_to_state_ms: MeasuredReply['state_ms'];
    input_to_ack_ms: MeasuredReply['ack_ms'];
    state_bytes_received_per_s: number;
    disconnects: number;
    disconnect_codes: Record<string, number>;
  };
  load_generator: { cpu_cores: number; event_loop_delay_ms: MeasuredReply['event_loop_delay_ms']; late_send_rounds: number; lagging: boolean };
}

/** The child process and its replies, one command at a time. */
class LoadGenerator {
  private waiting: ((r: LoadReply) => void) | null = null;

  constructor(private readonly child: ReturnType<typeof fork>) {
    child.on('message', (m: LoadReply) => {
      const w = this.waiting;
      this.waiting = null;
      w?.(m);
    });
    child.on('exit', (code) => {
      const w = this.waiting;
      this.waiting = null;
      w?.({ type: 'error', message: `load generator exited (${code})` });
    });
  }

  static start(url: string, roomPrefix: string): LoadGenerator {
    const script = path.join(import.meta.dirname, 'capacity-load.ts');
    const child = fork(script, ['--url', url, '--room-prefix', roomPrefix, '--room-size', String(ROOM_SIZE), '--hz', String(INPUT_HZ)], {
      execArgv: GEN_PROFILE_DIR ? [...TSX, '--cpu-prof', '--cpu-prof-dir', GEN_PROFILE_DIR] : TSX,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    return new LoadGenerator(child);
  }

  async request<T extends LoadReply>(cmd: LoadCommand): Promise<T> {
    const reply = new Promise<LoadReply>((resolve) => (this.waiting = resolve));
    this.child.send(cmd);
    const r = await reply;
    if (r.type === 'error') throw new Error(`load generator: ${r.message}`);
    return r as T;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.send({ cmd: 'stop' } satisfies LoadCommand);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/** What the server side sees during one measuring window. */
function serverWindow(server: RunningServer) {
  const committed: TickCommittedEvent[] = [];
  const failed: TickFailedEvent[] = [];
  const broadcasts: BroadcastEvent[] = [];
  const onCommit = (e: unknown) => void committed.push(e as TickCommittedEvent);
  const onFail = (e: unknown) => void failed.push(e as TickFailedEvent);
  const onBroadcast = (e: unknown) => void broadcasts.push(e as BroadcastEvent);
  channels.tickCommitted.subscribe(onCommit);
  channels.tickFailed.subscribe(onFail);
  channels.broadcast.subscribe(onBroadcast);
  const missedBefore = new Map(server.rooms.list().map((r) => [r.id, r.missedTicks]));
  const loop = startLoopMonitor();
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  return {
    end(redisPid: number, redisCpuBefore: number | null, budgetMs: number): StepResult['server'] {
      const elapsed = (performance.now() - t0) / 1000;
      const used = process.cpuUsage(cpu);
      const loopDelay = loop.stop();
      channels.tickCommitted.unsubscribe(onCommit);
      channels.tickFailed.unsubscribe(onFail);
      channels.broadcast.unsubscribe(onBroadcast);
      const rooms = server.rooms.list();
      const missed = rooms.reduce((n, r) => n + r.missedTicks - (missedBefore.get(r.id) ?? 0), 0);
      const redisAfter = cpuSeconds(redisPid);
      const failedCodes: Record<string, number> = {};
      for (const f of failed) failedCodes[f.code] = (failedCodes[f.code] ?? 0) + 1;
      const tick = summary(committed.map((e) => e.totalMs));
      return {
        ticks: committed.length,
        ticks_due: Math.round(rooms.length * elapsed * INPUT_HZ),
        missed_ticks: missed,
        failed_ticks: failed.length,
        failed_codes: failedCodes,
        tick_ms: tick,
        script_ms: summary(committed.map((e) => e.scriptMs)),
        script_cpu_ms: summary(committed.map((e) => e.cpuMs)),
        commit_ms: summary(committed.map((e) => e.commitMs)),
        late_ms: summary(committed.map((e) => e.lateMs)),
        tick_p99_within_cpu_budget: tick.p99 <= budgetMs,
        broadcast_bytes_per_s: Math.round(broadcasts.reduce((n, b) => n + b.bytes, 0) / elapsed),
        broadcast_frame_bytes_per_recipient: summary(broadcasts.filter((b) => b.recipients > 0).map((b) => Math.round(b.bytes / b.recipients))),
        event_loop_delay_ms: loopDelay,
        cpu_cores: round((used.user + used.system) / 1e6 / elapsed, 2),
        redis_cpu_cores: redisAfter !== null && redisCpuBefore !== null ? round((redisAfter - redisCpuBefore) / elapsed, 2) : null,
      };
    },
  };
}

async function runCapacity(cpuBudgetMs: number): Promise<{ steps: StepResult[]; roomCapacity: number }> {
  const redis = await benchRedis();
  const arena = await loadGame(ARENA_DIR);
  const maxStep = Math.max(...STEPS);
  const roomCapacity = ROOM_SIZE > 0 ? ROOM_SIZE : maxStep;
  const games = new GameRegistry();
  // The arena as it is, except for more seats when one room has to hold a bigger step.
  games.add(makeGame({ ...arena.manifest, maxPlayers: Math.max(arena.manifest.maxPlayers, roomCapacity) }, arena.files, arena.bundle));
  const prefix = `cap-${randomBytes(4).toString('hex')}`;
  const config = makeConfig({ port: 0, host: '127.0.0.1', redisPrefix: prefix, maxConnectionsPerAddress: 1_000_000, inlineTickMaxMs: benchInlineTickMaxMs(), tickPhases: benchTickPhases() });
  const server = await startServer({ ...config, redisUrl: redis.url }, silentLogger(), { games });
  const load = LoadGenerator.start(server.url, prefix);
  const steps: StepResult[] = [];
  try {
    for (const players of STEPS) {
      process.stdout.write(`capacity: ${players} players${ROOM_SIZE > 0 ? ` in rooms of ${ROOM_SIZE}` : ' in one room'}: seating...`);
      const grown = await load.request<GrownReply>({ cmd: 'grow', players });
      process.stdout.write(` ${grown.seated} seated in ${grown.seconds} s${grown.failed ? ` (${grown.failed} joins failed: ${JSON.stringify(grown.join_errors)})` : ''}; settling ${SETTLE_S} s, measuring ${HOLD_S} s...`);
      await sleep(SETTLE_S * 1000);
      const redisCpu = cpuSeconds(redis.pid);
      const window = serverWindow(server);
      const measured = await load.request<MeasuredReply>({ cmd: 'measure', seconds: HOLD_S });
      const srv = window.end(redis.pid, redisCpu, cpuBudgetMs);
      const step = evaluate(players, grown, measured, srv, server.rooms.list().length);
      steps.push(step);
      console.log(step.passed ? ' pass' : ` FAIL (${step.failed_checks.join(', ')})${step.load_generator.lagging ? ' [load generator lagging]' : ''}`);
      if (!step.passed && !KEEP_GOING) break;
    }
  } finally {
    await load.stop();
    await server.close();
    await redis.cleanup();
  }
  return { steps, roomCapacity };
}

function evaluate(players: number, grown: GrownReply, m: MeasuredReply, srv: StepResult['server'], rooms: number): StepResult {
  const pct = (n: number, of: number) => (of > 0 ? n / of : 0);
  const pendingGrowth = m.pending_end - m.pending_start;
  const checks: StepChecks = {
    seated: grown.seated === players && m.connected === players && m.disconnects === 0,
    tick_p99_within_50ms: srv.tick_ms.p99 <= TICK_BUDGET_MS,
    input_to_state_p99_under_100ms: m.state_ms.n > 0 && m.state_ms.p99 < STATE_P99_LIMIT_MS,
    missed_ticks_at_most_1pct: pct(srv.missed_ticks, srv.ticks_due) <= 0.01,
    failed_ticks_at_most_1pct: pct(srv.failed_ticks, srv.ticks_due) <= 0.01,
    inputs_refused_at_most_1pct: pct(m.rejected, m.sent) <= 0.01,
    server_keeps_up_with_inputs: m.sent > 0 && pct(pendingGrowth, m.sent) <= 0.01,
  };
  const failedChecks = Object.entries(checks).filter(([, ok]) => !ok).map(([k]) => k);
  return {
    players,
    rooms,
    seated: grown.seated,
    join_errors: grown.join_errors,
    join_seconds: grown.seconds,
    hold_s: m.seconds,
    passed: failedChecks.length === 0,
    failed_checks: failedChecks,
    checks,
    server: srv,
    cpu_cores_all: round(srv.cpu_cores + (srv.redis_cpu_cores ?? 0) + m.cpu_cores, 2),
    clients: {
      sent_per_s: Math.round(m.sent / m.seconds),
      acked: m.acked,
      rejected: m.rejected,
      rejected_codes: m.rejected_codes,
      pending_growth: pendingGrowth,
      input_to_state_ms: m.state_ms,
      input_to_ack_ms: m.ack_ms,
      state_bytes_received_per_s: m.state_bytes_per_s,
      disconnects: m.disconnects,
      disconnect_codes: m.disconnect_codes,
    },
    load_generator: {
      cpu_cores: m.cpu_cores,
      event_loop_delay_ms: m.event_loop_delay_ms,
      late_send_rounds: m.late_send_rounds,
      // Busy (most of a core) or late (its event loop, its send rounds): what it measured then
      // includes its own lateness, and a failure may be the generator's, not the server's.
      lagging: m.cpu_cores >= 0.9 || m.event_loop_delay_ms.p99 > 25 || m.late_send_rounds > 0,
    },
  };
}

// ---- output -----------------------------------------------------------------------------------

function table(rows: (string | number)[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  return rows.map((r) => r.map((v, c) => (c === 0 ? String(v).padEnd(widths[c]!) : String(v).padStart(widths[c]!))).join('  ')).join('\n');
}

const mb = (bytes: number) => round(bytes / 1e6, 1);

async function main(): Promise<void> {
  const arena = await loadGame(ARENA_DIR);
  const cpuBudgetMs = arena.manifest.cpuBudgetMs;

  let overhead: OverheadResult | null = null;
  if (RUN_OVERHEAD) {
    console.log(`sandbox overhead: ${OVERHEAD_PLAYERS} players, ${OVERHEAD_TICKS} ticks (+${OVERHEAD_WARMUP} warm-up), isolate vs in-process, taking turns...`);
    overhead = await runOverhead();
    const o = overhead;
    const rows: (string | number)[][] = [
      ['tick (ms)', 'mean', 'p50', 'p99', 'max', 'ratio (mean)'],
      [`isolate, ${o.isolate_memory_limit_mb} MB (arena)`, o.isolate_ms.mean, o.isolate_ms.p50, o.isolate_ms.p99, o.isolate_ms.max, o.ratio.mean],
      ['  its CPU', o.isolate_cpu_ms.mean, o.isolate_cpu_ms.p50, o.isolate_cpu_ms.p99, o.isolate_cpu_ms.max, ''],
    ];
    const lh = o.large_heap;
    if (lh) {
      rows.push([`isolate, ${lh.memory_limit_mb} MB`, lh.isolate_ms.mean, lh.isolate_ms.p50, lh.isolate_ms.p99, lh.isolate_ms.max, lh.ratio.mean]);
      rows.push(['  its CPU', lh.isolate_cpu_ms.mean, lh.isolate_cpu_ms.p50, lh.isolate_cpu_ms.p99, lh.isolate_cpu_ms.max, '']);
    }
    rows.push(['in-process', o.in_process_ms.mean, o.in_process_ms.p50, o.in_process_ms.p99, o.in_process_ms.max, 1]);
    console.log(table(rows));
    console.log(
      o.same_state_hash
        ? `sandbox_overhead_ratio ${o.ratio.mean} (mean isolate / mean in-process; target < 1.15). Same game: every run made the same changes every tick and ends with the same world after ${o.warmup_ticks + o.ticks_measured} ticks (sha256 ${o.state_hash.slice(0, 16)}…)`
        : 'STATE DIFFERS between the runs: they did not run the same game, the comparison is void (sandbox_overhead_ratio null)',
    );
  }

  let capacity: { steps: StepResult[]; roomCapacity: number } | null = null;
  if (RUN_CAPACITY) {
    capacity = await runCapacity(cpuBudgetMs);
    const rows: (string | number)[][] = [
      ['players', 'rooms', 'tick p50', 'tick p99', `p99<=${cpuBudgetMs}`, 'script p99', 'commit p99', 'state p50', 'state p99', 'ack p99', 'missed', 'failed', 'bcast MB/s', 'srv cpu', 'gen cpu', 'result'],
    ];
    for (const s of capacity.steps) {
      rows.push([
        s.players, s.rooms, s.server.tick_ms.p50, s.server.tick_ms.p99, s.server.tick_p99_within_cpu_budget ? 'yes' : 'no', s.server.script_ms.p99, s.server.commit_ms.p99,
        s.clients.input_to_state_ms.p50, s.clients.input_to_state_ms.p99, s.clients.input_to_ack_ms.p99,
        s.server.missed_ticks, s.server.failed_ticks, mb(s.server.broadcast_bytes_per_s), s.server.cpu_cores, s.load_generator.cpu_cores,
        s.passed ? 'pass' : `FAIL${s.load_generator.lagging ? '*' : ''}`,
      ]);
    }
    console.log(table(rows));
    console.log(`(ms; tick = whole server tick, budget ${TICK_BUDGET_MS} ms; p99<=${cpuBudgetMs}: tick p99 within the arena's cpuBudgetMs; state = input-to-state, ack = input-to-ack, on the wire; cpu in cores; * = load generator lagging: busy or late itself)`);
  }

  const steps = capacity?.steps ?? [];
  const passed = steps.filter((s) => s.passed);
  const max = passed.length ? Math.max(...passed.map((s) => s.players)) : 0;
  const firstFail = steps.find((s) => !s.passed) ?? null;
  const result = {
    benchmark: 'capacity',
    /** A --quick smoke run: its figures are not the capacity. */
    quick: QUICK,
    command: `bench/capacity.ts ${process.argv.slice(2).join(' ')}`.trim(),
    max_players_20hz: capacity ? max : null,
    sandbox_overhead_ratio: overhead?.same_state_hash ? overhead.ratio.mean : null,
    inline_tick_max_ms: benchInlineTickMaxMs(),
    tick_phases: benchTickPhases(),
    machine: machine(),
    tick_hz: INPUT_HZ,
    tick_budget_ms: TICK_BUDGET_MS,
    input_to_state_p99_limit_ms: STATE_P99_LIMIT_MS,
    arena_cpu_budget_ms: cpuBudgetMs,
    capacity: capacity && {
      room_size: ROOM_SIZE > 0 ? ROOM_SIZE : 'one room',
      room_seats: capacity.roomCapacity,
      steps_requested: STEPS,
      hold_s: HOLD_S,
      settle_s: SETTLE_S,
      first_failure: firstFail && { players: firstFail.players, failed_checks: firstFail.failed_checks, load_generator_lagging: firstFail.load_generator.lagging },
      steps,
      how_players_were_simulated:
        `Real WebSocket connections (ws, loopback) from one child process (bench/capacity-load.ts), ${ROOM_SIZE > 0 ? `${ROOM_SIZE} per room, rooms filled one after the other` : 'all in one room'}; ` +
        `each joins the arena through the wire protocol and sends { move: [dx, dy] } (sometimes with boost) ${INPUT_HZ} times a second, spread over the 50 ms period. ` +
        'Players keep no world copy and never decode snapshots or deltas: each frame\'s type and tick are read from its first bytes, and only welcome/ack/err are decoded. ' +
        'Every player measures input-to-ack and input-to-state (send until the first snap/delta whose tick is at least the tick of the ack covering the input). ' +
        'The server is the real one (startServer: rooms, isolates, Redis commits with AOF on a private redis-server, the WebSocket front door) in this process; its figures come from the engine\'s diagnostics channels.',
      pass_criteria:
        'all players seated, no disconnects; server tick p99 (whole tick) <= 50 ms; input-to-state p99 < 100 ms; missed and failed ticks <= 1% of ticks due; refused inputs <= 1% of sent; inputs awaiting an ack grow by <= 1% of sent.',
    },
    sandbox_overhead: overhead && {
      ...overhead,
      method:
        'bench/sandbox-overhead.ts, a process of its own: the arena bundle (bundleGame, as the server builds it) run in an isolated-vm isolate (GameSandbox.create) and in-process ' +
        '(bench/in-process-sandbox.ts: the same bundle evaluated in the host\'s own V8 context with vm.runInThisContext, lockdown included, wrapped in the same GameSandbox host code, ' +
        'the isolated-vm Reference.apply calls replaced by direct calls making the same buffer copies). Both get identical tick calls (same events, seed, tick numbers, clock), ' +
        'taking turns at running first; times are the wall time of GameSandbox.tick. The isolate keeps the arena\'s memory limit; the CPU budget is raised so that no tick is interrupted. ' +
        'large_heap (when run): the same isolate with a larger heap limit, which tells the isolate boundary apart from the garbage collection a small heap limit causes (V8 sizes the young generation from it). ' +
        'The host code runs in the same locked-down process for all runs. ' +
        'same_state_hash: both produced the same changes every tick (outcome_hash) and hold the same world at the end (world_hash).',
    },
    notes:
      'Figures from a shared 2-core machine are noisy; the load generator shares those cores with the server. ' +
      'max_players_20hz is the largest step that passed; the steps above it are listed with the checks they failed.',
    measured_at: new Date().toISOString(),
  };
  // Only a run of both parts at full length is "the" capacity figure; a smoke or one-part run
  // (e.g. profiling one step) goes to a file of its own instead of overwriting it.
  const file = writeResult(QUICK || !RUN_OVERHEAD || !RUN_CAPACITY ? 'capacity-partial' : 'capacity', result);
  console.log(`max_players_20hz ${result.max_players_20hz ?? '-'}${firstFail ? ` (${firstFail.players} failed: ${firstFail.failed_checks.join(', ')})` : ''}, sandbox_overhead_ratio ${result.sandbox_overhead_ratio ?? '-'}`);
  console.log(`capacity bench: wrote ${file}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
