/**
 * Patch benchmark (`npm run bench:patch`): what a live patch costs the room it lands on.
 *
 * 1. One arena room with 1,000 simulated players sending inputs at 20 Hz, plus 20 real WebSocket
 *    clients (to count disconnects), ticking at 20 Hz against a private Redis with AOF. After a
 *    warm-up it measures the median tick, applies patch 002-stars (schema 1 -> 2: a migration
 *    that touches every player) and measures the swap tick, missed ticks and disconnects.
 * 2. Migration time alone for 1,000 and 10,000 entities: the same swap tick run with and
 *    without the migration on identical worlds in fresh isolates; the difference is the
 *    migration.
 *
 * Part 1 runs --trials times (default 5), each in a fresh room: a single swap tick is one sample
 * on a shared machine whose ordinary ticks vary by 2x, so one trial cannot say whether the swap
 * costs more than a tick. Each trial's swap tick is compared with its own room's median.
 *
 *   npm run bench:patch -- [--trials 5] [--players 1000] [--sockets 20]
 *
 * Prints and writes bench/results/patch.json.
 */
import path from 'node:path';
import { WebSocket } from 'ws';
import { MoonpatchClient, type SocketFactory } from '../client/client.ts';
import { startServer } from '../server/app.ts';
import { makeConfig } from '../server/config/config.ts';
import { channels, type TickCommittedEvent } from '../server/ops/events.ts';
import { silentLogger } from '../server/ops/logger.ts';
import { loadGame } from '../server/sandbox/games.ts';
import { GameSandbox } from '../server/sandbox/sandbox.ts';
import { MsgpackWriter } from '../server/sandbox/runtime/msgpack.ts';
import type { GameVersion } from '../server/patch/versions.ts';
import { benchInlineTickMaxMs, benchRedis, machine, parseArgs, percentile, round, sleep, summary, writeResult } from './lib.ts';
import { simulatePlayers } from './sim.ts';

const args = parseArgs(process.argv.slice(2));
const PLAYERS = Number(args.players ?? 1000);
const SOCKETS = Number(args.sockets ?? 20);
/** Rooms patched one after another: one swap tick is one sample of a noisy machine. */
const TRIALS = Number(args.trials ?? 5);
const ROOT = path.join(import.meta.dirname, '..');

/** Time one swap tick with and without the migration, on the same world of `entities` players. */
async function migrationCost(v1: GameVersion, v2: GameVersion, entities: number, memoryLimitMb: number): Promise<{ with_ms: number; without_ms: number; migration_ms: number }> {
  const w = new MsgpackWriter(1 << 20);
  const events = (list: unknown[]) => {
    w.reset();
    w.value(list);
    return w.bytes().slice();
  };
  const limits = { memoryLimitMb, cpuBudgetMs: 10_000 };
  const base = await GameSandbox.create(v1.bundle, limits);
  const joins = Array.from({ length: entities }, (_, i) => [1, `p${i}`, `n${i}`, 0, null]);
  const first = await base.tick({ events: events(joins), seed: 1, tick: 1, nowMs: 1e12, dtSeconds: 0.05, runInit: true });
  if (!first.ok) throw new Error(`could not build a ${entities}-player world: ${first.code}`);
  const records = await base.exportRecords();
  base.dispose();
  // Warm isolates, as the engine's staging does: run the swap tick and roll it back a few
  // times, then measure the same call (rolled back each time, so every run migrates).
  const times = { with: [] as number[], without: [] as number[] };
  for (const migrate of [true, false]) {
    const sb = await GameSandbox.create(v2.bundle, limits);
    await sb.load(records);
    for (let i = 0; i < 8; i++) {
      const t0 = performance.now();
      const out = await sb.tick({ events: events([]), seed: 1, tick: 2, nowMs: 1e12 + 50, dtSeconds: 0.05, runInit: false, migrateFrom: migrate ? v1.schema : undefined });
      const ms = performance.now() - t0;
      if (!out.ok) throw new Error(`swap tick failed: ${out.code} ${out.thrown?.message}`);
      await sb.rollback();
      if (i >= 3) (migrate ? times.with : times.without).push(ms);
    }
    sb.dispose();
  }
  const withMs = percentile(times.with, 50);
  const withoutMs = percentile(times.without, 50);
  return { with_ms: round(withMs), without_ms: round(withoutMs), migration_ms: round(Math.max(0, withMs - withoutMs)) };
}

interface Trial {
  room: string;
  from: string;
  to: string;
  from_schema: number;
  to_schema: number;
  /** Median of this room's ticks around the swap (script + commit), ms. */
  median_tick_ms: number;
  swap_tick_ms: number;
  swap_script_ms: number;
  swap_commit_ms: number;
  /** CPU the isolate spent on the swap tick, and the room's median CPU per tick, ms. */
  swap_cpu_ms: number;
  median_cpu_ms: number;
  swap_records: number;
  /** The new version's first ticks after the swap tick, ms: is it slower than the old one? */
  after_swap_ms: number[];
  /** This room's own tick times, ms (the swap tick excluded). */
  ticks_ms: number[];
  /**
   * How late ticks started against their slots (the cadence players feel), ms: this room's
   * median and 99th percentile over the trial, and the latest of the swap tick and the five
   * after it (the staging before the swap, and the swap tick itself, delay those).
   */
  late_p50_ms: number;
  late_p99_ms: number;
  late_around_swap_ms: number;
  missed_ticks: number;
  disconnects: number;
  clients_notified: number;
}

/** One room, its players and sockets, patched live once from version 1 to 2. */
async function runTrial(server: Awaited<ReturnType<typeof startServer>>, roomId: string): Promise<Trial> {
  const room = await server.rooms.open(roomId, 'arena');
  const players = await simulatePlayers(room, PLAYERS, 20);
  const clients: MoonpatchClient[] = [];
  const notified = new Set<MoonpatchClient>();
  for (let i = 0; i < SOCKETS; i++) {
    const c = new MoonpatchClient({ url: server.url, room: roomId, name: `ws${i}`, WebSocket: WebSocket as unknown as SocketFactory, trackWorld: false });
    await c.connect();
    c.on('version', () => notified.add(c));
    clients.push(c);
  }
  const ticks: TickCommittedEvent[] = [];
  const onTick = (e: unknown) => {
    if ((e as TickCommittedEvent).roomId === roomId) ticks.push(e as TickCommittedEvent);
  };
  channels.tickCommitted.subscribe(onTick);
  await sleep(3000);
  const missedBefore = room.missedTicks;
  const from = room.version;
  ticks.length = 0;
  await sleep(5000);
  const result = await server.rooms.applyVersion(roomId, 2);
  await sleep(3000);
  players.stop();
  channels.tickCommitted.unsubscribe(onTick);
  if (!result.ok) throw new Error(`patch refused: ${result.stage} ${result.code} ${result.message}`);
  const tickMs = (t: TickCommittedEvent) => t.scriptMs + t.commitMs;
  const swapTick = ticks.find((t) => t.tick === result.tick)!;
  const normal = ticks.filter((t) => t.tick !== result.tick).map(tickMs);
  const trial: Trial = {
    room: roomId,
    from,
    to: result.to,
    from_schema: result.fromSchema,
    to_schema: result.toSchema,
    median_tick_ms: round(percentile(normal, 50)),
    swap_tick_ms: round(tickMs(swapTick)),
    swap_script_ms: round(swapTick.scriptMs),
    swap_commit_ms: round(swapTick.commitMs),
    swap_cpu_ms: round(swapTick.cpuMs),
    median_cpu_ms: round(percentile(ticks.filter((t) => t.tick !== result.tick).map((t) => t.cpuMs), 50)),
    swap_records: swapTick.records,
    after_swap_ms: ticks.filter((t) => t.tick > result.tick && t.tick <= result.tick + 5).map((t) => round(tickMs(t))),
    ticks_ms: normal,
    late_p50_ms: round(percentile(ticks.map((t) => t.lateMs), 50)),
    late_p99_ms: round(percentile(ticks.map((t) => t.lateMs), 99)),
    late_around_swap_ms: round(Math.max(...ticks.filter((t) => t.tick >= result.tick && t.tick <= result.tick + 5).map((t) => t.lateMs))),
    missed_ticks: room.missedTicks - missedBefore,
    disconnects: clients.reduce((n, c) => n + c.disconnects, 0),
    clients_notified: notified.size,
  };
  for (const c of clients) c.close();
  room.stop();
  return trial;
}

async function main(): Promise<void> {
  const redis = await benchRedis();
  const config = makeConfig({ port: 0, host: '127.0.0.1', redisPrefix: 'benchpatch', scriptsDir: path.join(ROOT, 'scripts'), patchesDir: path.join(ROOT, 'patches') , inlineTickMaxMs: benchInlineTickMaxMs() });
  const server = await startServer({ ...config, redisUrl: redis.url }, silentLogger());

  console.log('patch bench: migration cost for 1,000 and 10,000 entities...');
  const game = await loadGame(path.join(ROOT, 'scripts', 'arena'), path.join(ROOT, 'patches'));
  const [v1, v2] = [game.versions[0]!, game.versions[1]!];
  // 1,000 entities in an isolate like the room's (the arena's heap limit: it sizes V8's young
  // generation, so it changes what the migration's allocations cost); 10,000 players do not
  // fit the arena's 64 MB, so that one gets 512 MB.
  const migration1k = await migrationCost(v1, v2, 1000, game.manifest.memoryLimitMb);
  const migration10k = await migrationCost(v1, v2, 10_000, 512);

  const trials: Trial[] = [];
  for (let i = 0; i < TRIALS; i++) {
    console.log(`patch bench: trial ${i + 1}/${TRIALS}: ${PLAYERS} simulated players + ${SOCKETS} WebSocket clients, patch 002-stars (schema 1 -> 2)...`);
    const t = await runTrial(server, `patch-bench-${i + 1}`);
    const budget = t.median_tick_ms + migration1k.migration_ms + 1;
    console.log(`  median tick ${t.median_tick_ms} ms, swap tick ${t.swap_tick_ms} ms (budget ${round(budget)}), next ticks ${t.after_swap_ms.join(', ')} ms; ticks late p99 ${t.late_p99_ms} ms, around the swap ${t.late_around_swap_ms} ms`);
    trials.push(t);
  }

  const budgetOf = (t: Trial) => round(t.median_tick_ms + migration1k.migration_ms + 1);
  const met = trials.filter((t) => t.swap_tick_ms <= budgetOf(t)).length;
  const median = percentile(trials.map((t) => t.median_tick_ms), 50);
  const swapMedian = percentile(trials.map((t) => t.swap_tick_ms), 50);
  const allTicks = trials.flatMap((t) => t.ticks_ms);
  const missed = trials.reduce((n, t) => n + t.missed_ticks, 0);
  const disconnects = trials.reduce((n, t) => n + t.disconnects, 0);
  const first = trials[0]!;
  const result_ = {
    benchmark: 'patch',
    players: PLAYERS,
    websocket_clients: SOCKETS,
    trials: TRIALS,
    patch: { from: first.from, to: first.to, from_schema: first.from_schema, to_schema: first.to_schema },
    median_tick_ms: round(median),
    tick_ms: summary(allTicks),
    swap_tick_ms: round(swapMedian),
    swap_budget_ms: round(median + migration1k.migration_ms + 1),
    swap_met_in_trials: met,
    migration_ms: { '1000': migration1k.migration_ms, '10000': migration10k.migration_ms },
    migration_detail: { '1000': migration1k, '10000': migration10k },
    missed_ticks: missed,
    /** The cadence through the patch: each trial's latest start of the swap tick and the five after it, ms. */
    late_around_swap_ms: trials.map((t) => t.late_around_swap_ms),
    late_p99_ms: trials.map((t) => t.late_p99_ms),
    disconnects,
    clients_notified_of_new_version: trials.reduce((n, t) => n + t.clients_notified, 0),
    per_trial: trials.map(({ ticks_ms, ...t }) => ({ ...t, swap_budget_ms: budgetOf({ ...t, ticks_ms }), tick_p95_ms: round(percentile(ticks_ms, 95)) })),
    inline_tick_max_ms: benchInlineTickMaxMs(),
    machine: machine(),
    notes:
      'Each trial is a fresh room patched once. swap_budget_ms = median tick + migration (1,000 entities) + 1 ms: the target for ' +
      'swap_tick_ms, which is the median over trials of the swap tick (each trial against its own room\'s median in per_trial). ' +
      'missed_ticks, disconnects and clients_notified_of_new_version are totals over trials.',
    measured_at: new Date().toISOString(),
  };
  const file = writeResult('patch', result_);
  console.log(
    JSON.stringify(
      { median_tick_ms: result_.median_tick_ms, swap_tick_ms: result_.swap_tick_ms, swap_budget_ms: result_.swap_budget_ms, swap_met_in_trials: `${met}/${TRIALS}`, migration_ms: result_.migration_ms, missed_ticks: missed, late_around_swap_ms: result_.late_around_swap_ms, disconnects, clients_notified: result_.clients_notified_of_new_version },
      null,
      2,
    ),
  );
  console.log(`patch bench: wrote ${file}`);
  await server.close();
  await redis.cleanup();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
