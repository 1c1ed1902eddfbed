/**
 * Rooms that fall due together (`npm run bench:phases`): what spreading the rooms' tick phases
 * (TICK_PHASES=spread, server/room/tick-phases.ts) does when a server opens many rooms at once,
 * as it does when it starts and resumes every room, or takes over a dead server's rooms.
 *
 *   npm run bench:phases -- [--rooms 20] [--players 50] [--seconds 12] [--pairs 3]
 *
 * Each run starts a server (real Redis with AOF, the arena), opens --rooms rooms at once, seats
 * --players simulated players in each (bench/sim.ts: inputs at 20 Hz through the seat API, no
 * sockets), lets it settle 3 s and records every committed tick for --seconds: how late it
 * started against its slot (lateMs) and its whole duration (totalMs). Runs take turns between
 * 'free' (a room's ticks fall where its clock started) and 'spread'. Writes
 * bench/results/tick-phases.json.
 */
import { startServer } from '../server/app.ts';
import { makeConfig } from '../server/config/config.ts';
import { channels, type TickCommittedEvent } from '../server/ops/events.ts';
import { silentLogger } from '../server/ops/logger.ts';
import { benchRedis, machine, parseArgs, percentile, round, sleep, summary, writeResult } from './lib.ts';
import { simulatePlayers } from './sim.ts';

const args = parseArgs(process.argv.slice(2));
const ROOMS = Number(args.rooms ?? 20);
const PLAYERS = Number(args.players ?? 50);
const SECONDS = Number(args.seconds ?? 12);
const PAIRS = Number(args.pairs ?? 3);

type Mode = 'free' | 'spread';

async function run(mode: Mode, redisUrl: string, n: number) {
  const config = makeConfig({ port: 0, host: '127.0.0.1', redisPrefix: `phases-${n}`, tickPhases: mode });
  const server = await startServer({ ...config, redisUrl }, silentLogger());
  const rooms = await Promise.all(Array.from({ length: ROOMS }, (_, i) => server.rooms.open(`phases-${n}-${i}`, 'arena')));
  const players = await Promise.all(rooms.map((r) => simulatePlayers(r, PLAYERS, 20)));
  await sleep(3000);
  const late: number[] = [];
  const total: number[] = [];
  const onTick = (e: unknown) => {
    late.push((e as TickCommittedEvent).lateMs);
    total.push((e as TickCommittedEvent).totalMs);
  };
  channels.tickCommitted.subscribe(onTick);
  await sleep(SECONDS * 1000);
  channels.tickCommitted.unsubscribe(onTick);
  for (const p of players) p.stop();
  // Since the rooms opened, settling included.
  const missed = rooms.reduce((m, r) => m + r.missedTicks, 0);
  await server.close();
  return { mode, ticks: late.length, missed_ticks: missed, late_ms: summary(late), whole_tick_ms: summary(total) };
}

async function main(): Promise<void> {
  const redis = await benchRedis();
  const runs: Awaited<ReturnType<typeof run>>[] = [];
  for (let i = 0; i < PAIRS; i++) {
    for (const mode of (i % 2 === 0 ? ['free', 'spread'] : ['spread', 'free']) as Mode[]) {
      const r = await run(mode, redis.url, runs.length);
      runs.push(r);
      console.log(`${mode.padEnd(6)} late p50 ${r.late_ms.p50} p99 ${r.late_ms.p99} max ${r.late_ms.max} ms; whole tick p99 ${r.whole_tick_ms.p99} ms; ${r.ticks} ticks, ${r.missed_ticks} missed`);
    }
  }
  await redis.cleanup();
  const median = (mode: Mode, pick: (r: Awaited<ReturnType<typeof run>>) => number) => round(percentile(runs.filter((r) => r.mode === mode).map(pick), 50));
  const result = {
    benchmark: 'tick-phases',
    rooms: ROOMS,
    players_per_room: PLAYERS,
    seconds: SECONDS,
    pairs: PAIRS,
    median_of_runs: Object.fromEntries(
      (['free', 'spread'] as Mode[]).map((m) => [m, { late_p50_ms: median(m, (r) => r.late_ms.p50), late_p99_ms: median(m, (r) => r.late_ms.p99), whole_tick_p99_ms: median(m, (r) => r.whole_tick_ms.p99) }]),
    ),
    runs,
    machine: machine(),
    notes: 'All rooms opened at once, as a server resuming its rooms does. late_ms: how late each committed tick started against its slot; whole_tick_ms: drain, script, commit, acks, broadcast. Simulated players at the seat API (no sockets).',
    measured_at: new Date().toISOString(),
  };
  const file = writeResult('tick-phases', result);
  console.log(JSON.stringify(result.median_of_runs));
  console.log(`tick-phases bench: wrote ${file}`);
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
