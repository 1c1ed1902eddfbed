/**
 * Core benchmark (`npm run bench`): one arena room, N simulated players (default 1,000) each
 * sending an input at 20 Hz, ticking at 20 Hz on its real clock against a real Redis with AOF.
 * Prints and writes bench/results/core.json: tick time split into script and commit, the cost
 * of rolling back a tick, and bytes per broadcast.
 *
 * Players are simulated in-process at the room's seat API (the same calls a WebSocket session
 * makes after decoding a frame), and their connections are counting stubs: this measures the
 * tick, not 1,000 sockets on the same two cores. Socket load is the load test's job.
 *
 *   npm run bench -- --players 1000 --seconds 30 [--turn-every 1] [--dump FILE]
 *
 * --dump FILE also writes every measured tick (number, script wall, isolate CPU, commit) as
 * JSON lines, to look for what the slow ones have in common (a checkpoint, a collection).
 *
 * With --turn-every 1 (the default, the worst case) every input changes its player's
 * direction, so every player record changes every tick; --turn-every 20 turns once a second.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startServer } from '../server/app.ts';
import { makeConfig } from '../server/config/config.ts';
import { channels, type BroadcastEvent, type TickCommittedEvent, type TickFailedEvent } from '../server/ops/events.ts';
import { silentLogger } from '../server/ops/logger.ts';
import { bundleGame } from '../server/sandbox/bundler.ts';
import { GameRegistry, loadGame, makeGame, readGameFiles } from '../server/sandbox/games.ts';
import { GameSandbox } from '../server/sandbox/sandbox.ts';
import { MsgpackWriter } from '../server/sandbox/runtime/msgpack.ts';
import { benchInlineTickMaxMs, benchRedis, machine, parseArgs, round, sleep, summary, writeResult } from './lib.ts';
import { simulatePlayers } from './sim.ts';

const args = parseArgs(process.argv.slice(2));
const PLAYERS = Number(args.players ?? 1000);
const SECONDS = Number(args.seconds ?? 30);
const INPUT_HZ = 20;
/** Each player turns every this many inputs (1: every input changes its direction). */
const TURN_EVERY = Number(args['turn-every'] ?? 1);
const ARENA_DIR = path.join(import.meta.dirname, '..', 'scripts', 'arena');

/** The arena plus one extra input, `{ benchFail: true }`, that makes that tick throw at its end. */
async function benchGames(): Promise<GameRegistry> {
  const arena = await loadGame(ARENA_DIR);
  const files = await readGameFiles(ARENA_DIR);
  files.set(
    'bench-main.ts',
    `import * as arena from './main';
export const init = arena.init, join = arena.join, leave = arena.leave;
export function input(world: any, p: any, msg: any) {
  if (msg && msg.benchFail) { world.benchFail = true; return; }
  arena.input(world, p, msg);
}
export function tick(world: any, dt: number) {
  arena.tick(world, dt);
  if (world.benchFail) throw new Error('bench: this tick fails on purpose, after all its work');
}
`,
  );
  const bundle = await bundleGame({ name: 'arena-bench', entry: 'bench-main.ts', files });
  const registry = new GameRegistry();
  registry.add(makeGame({ ...arena.manifest, name: 'arena-bench', maxPlayers: PLAYERS + 10, cpuBudgetMs: 100 }, files, bundle));
  return registry;
}

/**
 * What undoing a full 1,000-player tick costs, two ways, in a sandbox of its own loaded with the
 * room's committed world:
 *
 * - a failed tick (the `tick` hook throws after all its work): the isolate undoes the tick's
 *   writes inside the same call, so its cost beyond the tick's own time is the failing call's
 *   time minus the same call succeeding. Each round runs the same events both ways, in
 *   alternating order, and the difference of each pair is one sample (wall and isolate CPU);
 * - a tick that ran but whose commit failed: undone by a call of its own (GameSandbox.rollback),
 *   wall time (what the room waits, hand-off to the isolate's thread included) and CPU.
 */
async function measureRollback(records: Uint8Array, bundleGames: GameRegistry, ids: string[]) {
  const game = bundleGames.get('arena-bench');
  const sandbox = await GameSandbox.create(game.bundle, { memoryLimitMb: 256, cpuBudgetMs: 1000 });
  await sandbox.load(records);
  const w = new MsgpackWriter();
  const separate = { wall: [] as number[], cpu: [] as number[] };
  const failedExtra = { wall: [] as number[], cpu: [] as number[] };
  let tick = 100_000;
  const run = async (events: Uint8Array, i: number) => {
    const t0 = performance.now();
    const out = await sandbox.tick({ events, seed: 7, tick: tick++, nowMs: 1e9 + i * 50, dtSeconds: 0.05, runInit: false });
    return { out, wall: performance.now() - t0 };
  };
  for (let i = 0; i < 200; i++) {
    const moves = ids.map((id, j) => [3, id, id, i + 1, { move: [Math.cos(i + j), Math.sin(i + j)] }]);
    w.reset();
    w.value(moves);
    const ok = w.bytes().slice();
    w.reset();
    w.value([...moves, [3, ids[0], ids[0], i + 1, { benchFail: true }]]);
    const failing = w.bytes().slice();

    const failFirst = i % 2 === 1;
    const first = await run(failFirst ? failing : ok, i);
    if (!failFirst) {
      const t0 = performance.now();
      separate.cpu.push(await sandbox.rollback());
      separate.wall.push(performance.now() - t0);
    }
    const second = await run(failFirst ? ok : failing, i);
    if (failFirst) {
      const t0 = performance.now();
      separate.cpu.push(await sandbox.rollback());
      separate.wall.push(performance.now() - t0);
    }
    const [good, bad] = failFirst ? [second, first] : [first, second];
    if (!good.out.ok || bad.out.ok) throw new Error('rollback probe: the ticks did not succeed and fail as planned');
    failedExtra.wall.push(bad.wall - good.wall);
    failedExtra.cpu.push(bad.out.cpuMs - good.out.cpuMs);
  }
  sandbox.dispose();
  return { separate, failedExtra };
}

async function main(): Promise<void> {
  const redis = await benchRedis();
  const games = await benchGames();
  const config = makeConfig({ port: 0, host: '127.0.0.1', redisPrefix: 'bench' , inlineTickMaxMs: benchInlineTickMaxMs() });
  const server = await startServer({ ...config, redisUrl: redis.url }, silentLogger(), { games });
  const room = await server.rooms.open('bench-room', 'arena-bench');

  console.log(`core bench: seating ${PLAYERS} simulated players...`);
  const players = await simulatePlayers(room, PLAYERS, INPUT_HZ, TURN_EVERY);
  const seats = players.seats;

  const committed: TickCommittedEvent[] = [];
  const failed: TickFailedEvent[] = [];
  const broadcasts: BroadcastEvent[] = [];
  let measuring = false;
  const onCommit = (e: unknown) => measuring && committed.push(e as TickCommittedEvent);
  const onFail = (e: unknown) => measuring && failed.push(e as TickFailedEvent);
  const onBroadcast = (e: unknown) => measuring && broadcasts.push(e as BroadcastEvent);
  channels.tickCommitted.subscribe(onCommit);
  channels.tickFailed.subscribe(onFail);
  channels.broadcast.subscribe(onBroadcast);

  await sleep(3000); // warm up: JIT, isolate heap, Redis AOF
  const missedBefore = room.missedTicks;
  measuring = true;
  console.log(`core bench: measuring for ${SECONDS}s at ${room.settings.tickHz} Hz...`);
  const failTimer = setInterval(() => players.extra(0, { benchFail: true }), 1000);
  await sleep(SECONDS * 1000);
  measuring = false;
  players.stop();
  clearInterval(failTimer);
  const missed = room.missedTicks - missedBefore;

  console.log('core bench: measuring rollback of a full tick in isolation...');
  await room.pauseClock();
  const rollback = await measureRollback(room.committed.encodeForLoad(), games, seats.map((s) => s.playerId));

  const scriptMs = committed.map((e) => e.scriptMs);
  const commitMs = committed.map((e) => e.commitMs);
  const tickMs = committed.map((e) => e.scriptMs + e.commitMs);
  const failedMs = failed.map((e) => e.scriptMs + e.rollbackMs);
  const frameBytes = broadcasts.map((b) => b.bytes / Math.max(1, b.recipients));
  const result = {
    benchmark: 'core',
    players: PLAYERS,
    tick_hz: room.settings.tickHz,
    input_hz_per_player: INPUT_HZ,
    turn_every_inputs: TURN_EVERY,
    seconds: SECONDS,
    ticks: committed.length,
    missed_ticks: missed,
    inputs_refused: players.refused(),
    tick_ms: summary(tickMs),
    script_ms: summary(scriptMs),
    script_cpu_ms: summary(committed.map((e) => e.cpuMs)),
    commit_ms: summary(commitMs),
    whole_tick_ms: summary(committed.map((e) => e.totalMs)),
    /** How late ticks started against their slots (the cadence players feel), ms. */
    late_ms: summary(committed.map((e) => e.lateMs)),
    records_per_tick: summary(committed.map((e) => e.records)),
    writes_per_tick: summary(committed.map((e) => e.writes)),
    failed_tick_ms: summary(failedMs),
    failed_tick_extra_ms: summary(rollback.failedExtra.wall),
    failed_tick_extra_cpu_ms: summary(rollback.failedExtra.cpu),
    rollback_ms: summary(rollback.separate.wall),
    rollback_cpu_ms: summary(rollback.separate.cpu),
    rollback_extra_ms: round(summary(rollback.failedExtra.wall).p99),
    broadcast_bytes_per_recipient: summary(frameBytes),
    broadcast_bytes_per_second_all: round(broadcasts.reduce((n, b) => n + b.bytes, 0) / SECONDS, 0),
    isolate_heap_mb: round((await room.heapUsed()) / 2 ** 20, 1),
    inline_tick_max_ms: benchInlineTickMaxMs(),
    machine: machine(),
    notes:
      'tick_ms = script (isolate call: hooks + journal + encoding changes, wall) + commit (one fenced Redis round trip). ' +
      'rollback_extra_ms = p99 of what a failed 1,000-player tick costs beyond the same tick succeeding (failed_tick_extra_ms: the undo runs inside the failing call; ' +
      'paired runs of the same events, wall time; failed_tick_extra_cpu_ms the same in isolate CPU). rollback_ms and rollback_cpu_ms: undoing a tick that ran but whose ' +
      'commit failed, a call of its own (wall, with the hand-off to the isolate thread; and isolate CPU). ' +
      'Players are in-process stubs at the seat API; see the load test for sockets.',
    measured_at: new Date().toISOString(),
  };
  if (args.dump) {
    writeFileSync(String(args.dump), committed.map((e) => JSON.stringify({ tick: e.tick, scriptMs: e.scriptMs, cpuMs: e.cpuMs, commitMs: e.commitMs, totalMs: e.totalMs })).join('\n') + '\n');
  }
  const file = writeResult(TURN_EVERY === 1 ? 'core' : `core-turn-every-${TURN_EVERY}`, result);
  console.log(JSON.stringify({ players: result.players, ticks: result.ticks, missed_ticks: missed, tick_ms: result.tick_ms, script_ms: result.script_ms, commit_ms: result.commit_ms, failed_tick_ms: result.failed_tick_ms, rollback_extra_ms: result.rollback_extra_ms, failed_tick_extra_ms: result.failed_tick_extra_ms, failed_tick_extra_cpu_ms: result.failed_tick_extra_cpu_ms, rollback_ms: result.rollback_ms, broadcast_bytes_per_recipient: result.broadcast_bytes_per_recipient }, null, 2));
  console.log(`core bench: wrote ${file}`);

  channels.tickCommitted.unsubscribe(onCommit);
  channels.tickFailed.unsubscribe(onFail);
  channels.broadcast.unsubscribe(onBroadcast);
  await server.close();
  await redis.cleanup();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
