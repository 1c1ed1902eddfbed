/**
 * The load test from Node (`npm run loadtest -- ...`); the same scenario as loadtest/k6/arena.ts.
 *
 *   npm run loadtest -- --players 1000 --duration 60 --patch-every 10
 *   npm run loadtest -- --url ws://127.0.0.1:8080 --admin-token "$(cat .data/admin-token)" --players 50
 *
 * Options:
 *   --players N        players (WebSocket connections), default 50
 *   --duration S       seconds of play once everyone is seated, default 30
 *   --patch-every S    a patch round every S seconds (0: none), default 10
 *   --hz N             inputs per second per player, default 20
 *   --room-size N      players per room, default 50 (rooms are filled evenly)
 *   --url URL          a running server (default: start one for the run, see below)
 *   --admin-token T    its admin token (default $ADMIN_TOKEN); patching needs it
 *   --redis URL        Redis for the started server (default $REDIS_URL, else a private one)
 *   --top-version N    highest version to patch to before rolling back (default: the last)
 *   --max-p99 MS       threshold on p99 input-to-ack, default 100
 *   --drain S          seconds to wait for the last acks, default 10
 *   --observers N      players that track the world and steer by it, default 2
 *   --room-prefix P    room ids P-0, P-1, ... (default lt-<random>: fresh rooms)
 *   --out FILE         JSON report, default bench/results/loadtest.json
 *   --svg FILE         plot, default: the report's path with .svg
 *
 * Without --url it starts server/main.ts as a child process on a free port with its own
 * REDIS_PREFIX, ADMIN_TOKEN and MAX_CONNECTIONS_PER_ADDRESS, on --redis / $REDIS_URL or on a
 * private redis-server started (and removed) for the run.
 *
 * Prints a progress line every second and a summary; exits 1 when a threshold fails (an input
 * lost or settled twice, a protocol anomaly, a disconnect, a failed join, p99 ack over
 * --max-p99), 2 when the run could not be made.
 */
import path from 'node:path';
import { parseArgs } from '../bench/lib.ts';
import { runLoadTest, type LoadTestReport } from './runner.ts';

const RESULTS = path.join(import.meta.dirname, '..', 'bench', 'results');

function numberArg(args: Record<string, string>, name: string, fallback: number, min = 0): number {
  const raw = args[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) {
    console.error(`--${name} must be a number >= ${min} (got ${raw})`);
    process.exit(2);
  }
  return n;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const args = parseArgs(argv);
  if (args.help) {
    console.log('usage: npm run loadtest -- [--players N] [--duration S] [--patch-every S] [--url URL --admin-token T] ... (see loadtest/run.ts)');
    return;
  }
  const out = path.resolve(args.out ?? path.join(RESULTS, 'loadtest.json'));
  const svg = path.resolve(args.svg ?? out.replace(/\.json$/, '') + '.svg');
  const abort = new AbortController();
  process.once('SIGINT', () => {
    console.log('SIGINT: ending the run early (the report is still written; Ctrl-C again to quit at once)');
    abort.abort();
    process.once('SIGINT', () => process.exit(130));
  });
  const { report, passed } = await runLoadTest({
    players: Math.floor(numberArg(args, 'players', 50, 1)),
    durationS: numberArg(args, 'duration', 30, 1),
    patchEveryS: numberArg(args, 'patch-every', 10),
    hz: numberArg(args, 'hz', 20, 0.1),
    roomSize: Math.floor(numberArg(args, 'room-size', 50, 1)),
    game: args.game ?? 'arena',
    url: args.url,
    adminToken: args['admin-token'] ?? process.env.ADMIN_TOKEN,
    redisUrl: args.redis ?? process.env.REDIS_URL,
    roomPrefix: args['room-prefix'],
    topVersion: args['top-version'] ? Math.floor(numberArg(args, 'top-version', 0, 1)) : undefined,
    maxP99AckMs: numberArg(args, 'max-p99', 100),
    drainS: numberArg(args, 'drain', 10),
    observers: Math.floor(numberArg(args, 'observers', 2)),
    out,
    svg,
    command: `npm run loadtest -- ${argv.join(' ')}`.trim(),
    signal: abort.signal,
  });
  printSummary(report);
  process.exit(passed ? 0 : 1);
}

function printSummary(r: LoadTestReport): void {
  const d = (x: { p50: number | null; p95: number | null; p99: number | null; max: number | null; n: number }) =>
    `p50 ${f(x.p50)}  p95 ${f(x.p95)}  p99 ${f(x.p99)}  max ${f(x.max)} ms  (n=${x.n})`;
  const lines = [
    '',
    `players         ${r.players.joined}/${r.players.requested} seated in ${r.players.rooms} room(s), ${r.duration_s} s, ${r.inputs.per_player_per_s} inputs/s each`,
    `input -> ack    ${d(r.latency_ms.ack)}`,
    `input -> state  ${d(r.latency_ms.state)}`,
    `join            ${d(r.latency_ms.join)}`,
    `inputs          sent ${r.inputs.sent}, acked ${r.inputs.acked}, rejected ${r.inputs.rejected}, lost ${r.inputs.lost}, duplicated ${r.inputs.duplicated}, anomalies ${r.inputs.anomalies}`,
    `disconnects     ${r.disconnects.total}${r.disconnects.total ? ' ' + JSON.stringify(r.disconnects.by_code) : ''}`,
    `server          missed ticks ${r.server.missed_ticks_during_run ?? '?'} during the run; tick p50 ${f(r.server.tick_ms_p50)} p99 ${r.server.tick_p99_above_top_bucket ? '>' : ''}${f(r.server.tick_ms_p99)} ms (/metrics, ${r.server.ticks ?? '?'} ticks), started late p99 ${f(r.server.tick_lateness_ms_p99)} ms; cpu ${f(r.server.cpu_s)} s, redis ${f(r.server.redis_cpu_s)} s`,
    `patches         ${r.patches.rounds} round(s): ${r.patches.applied} applied, ${r.patches.failed} refused ${Object.keys(r.patches.by_outcome).length ? JSON.stringify(r.patches.by_outcome) : ''}`,
    `machine         load average ${r.load_average.start} at the start, ${r.load_average.end} at the end (${r.machine.cpu_count} cores)`,
    `load generator  cpu ${r.load_generator.cpu_s} s, event-loop delay p99 ${r.load_generator.event_loop_delay_ms.p99} ms, late send rounds ${r.load_generator.late_send_rounds}`,
    `thresholds      ${r.thresholds.passed ? 'PASS' : 'FAIL'}: ${r.thresholds.checks.map((c) => `${c.ok ? 'ok' : 'FAILED'} ${c.name} ${c.value ?? '-'} (${c.want})`).join('; ')}`,
    `report          ${r.files.json}`,
    `plot            ${r.files.svg}`,
  ];
  console.log(lines.join('\n'));
}

function f(x: number | null): string {
  return x === null ? '-' : String(x);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
