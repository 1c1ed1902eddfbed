/**
 * What interest management costs and saves (game.json `interest`, server/room/interest.ts):
 * one room's broadcaster, fed the same ticks with and without it.
 *
 *   npm run bench:interest -- [--players 1000] [--world 4000] [--cell 250] [--radius 1] [--ticks 200]
 *
 * `--players` players stand in a square world of side `--world`, each moving every tick (a field
 * patch of x and y, the arena's worst case), crossing cells as they go; `meta` changes every
 * tick too. Every player is a subscriber whose link only counts bytes, so the figures are the
 * broadcaster's own work on the main thread (Broadcaster.changed plus flush: planning, per-view
 * frames, encoding), not the sockets'. Prints, and writes bench/results/interest.json: bytes a
 * player receives per broadcast and the flush's CPU time, per mode.
 */
import { performance } from 'node:perf_hooks';
import type { InterestSettings } from '../server/config/config.ts';
import { Broadcaster } from '../server/room/broadcaster.ts';
import { MsgpackWriter } from '../server/sandbox/runtime/msgpack.ts';
import { CommittedState } from '../server/state/committed-state.ts';
import type { RecordChanges } from '../server/state/record-patch.ts';
import { mulberry32 } from '../test/helpers/prng.ts';
import { machine, parseArgs, round, summary, writeResult } from './lib.ts';
import { CountingLink } from './sim.ts';

const args = parseArgs(process.argv.slice(2));
const PLAYERS = Number(args.players ?? 1000);
const WORLD = Number(args.world ?? 4000);
const CELL = Number(args.cell ?? 250);
const RADIUS = Number(args.radius ?? 1);
const TICKS = Number(args.ticks ?? 200);
const WARMUP = 20;

function run(interest: InterestSettings | null): { bytes_per_player_per_broadcast: ReturnType<typeof summary>; flush_cpu_ms: ReturnType<typeof summary>; changed_cpu_ms: ReturnType<typeof summary> } {
  const random = mulberry32(7); // both modes see the same ticks
  const w = new MsgpackWriter();
  const enc = (v: unknown) => {
    w.reset();
    w.value(v);
    return w.copyBytes();
  };
  const ids = Array.from({ length: PLAYERS }, (_, i) => `p${String(i).padStart(5, '0')}`);
  const pos = ids.map(() => ({ x: random() * WORLD, y: random() * WORLD, dx: random() * 20 - 10, dy: random() * 20 - 10 }));
  const records = new Map<string, Uint8Array>([['meta', enc({ ticks: 0 })], ['players', enc({})]]);
  ids.forEach((id, i) => records.set(`players/${id}`, enc({ name: id, color: '#e6194b', x: pos[i]!.x, y: pos[i]!.y, vx: 0, vy: 0, score: 0 })));
  const state = new CommittedState(0, records);
  const b = new Broadcaster(state, { softLimitBytes: 1 << 30, hardLimitBytes: 1 << 30, maxLagMs: 1e9 }, interest);
  const links = ids.map(() => new CountingLink());
  ids.forEach((id, i) => b.add(links[i]!, 'v1', id));
  const flushes: number[] = [];
  const changes: number[] = [];
  const bytes: number[] = [];
  for (let tick = 1; tick <= WARMUP + TICKS; tick++) {
    const patches: [string, Uint8Array][] = [];
    ids.forEach((id, i) => {
      const p = pos[i]!;
      p.x = Math.min(WORLD, Math.max(0, p.x + p.dx));
      p.y = Math.min(WORLD, Math.max(0, p.y + p.dy));
      if (p.x === 0 || p.x === WORLD) p.dx = -p.dx;
      if (p.y === 0 || p.y === WORLD) p.dy = -p.dy;
      patches.push([`players/${id}`, enc({ x: Math.round(p.x * 100) / 100, y: Math.round(p.y * 100) / 100 })]);
    });
    const c: RecordChanges = { sets: [['meta', enc({ ticks: tick })]], dels: [], patches };
    state.apply(tick, c);
    const before = links.reduce((n, l) => n + l.bytes, 0);
    const t0 = performance.now();
    b.changed(c);
    const t1 = performance.now();
    b.flush('v1');
    const t2 = performance.now();
    if (tick > WARMUP) {
      changes.push(t1 - t0);
      flushes.push(t2 - t1);
      bytes.push((links.reduce((n, l) => n + l.bytes, 0) - before) / PLAYERS);
    }
  }
  return { bytes_per_player_per_broadcast: summary(bytes), flush_cpu_ms: summary(flushes), changed_cpu_ms: summary(changes) };
}

const everyone = run(null);
const interest = run({ tables: ['players'], viewer: 'players', cellSize: CELL, radius: RADIUS, position: null });
const result = {
  benchmark: 'interest',
  players: PLAYERS,
  world_side: WORLD,
  cell_size: CELL,
  radius: RADIUS,
  ticks: TICKS,
  without_interest: everyone,
  with_interest: interest,
  bytes_ratio: round(interest.bytes_per_player_per_broadcast.p50 / everyone.bytes_per_player_per_broadcast.p50, 3),
  machine: machine(),
  notes: 'One broadcaster, links that only count bytes: the main thread\'s work per broadcast (changed + flush), without sockets. Every player moves every tick.',
};
const file = writeResult('interest', result);
console.log(`interest management, ${PLAYERS} players in a ${WORLD}x${WORLD} world, ${CELL}-unit cells, radius ${RADIUS} (${TICKS} ticks):`);
for (const [name, r] of [['everyone gets everything', everyone], ['interest management', interest]] as const) {
  console.log(`  ${name}: ${round(r.bytes_per_player_per_broadcast.p50 / 1024, 1)} KB a player a broadcast; flush p50 ${round(r.flush_cpu_ms.p50, 2)} ms, p99 ${round(r.flush_cpu_ms.p99, 2)} ms; changed p50 ${round(r.changed_cpu_ms.p50, 2)} ms`);
}
console.log(`wrote ${file}`);
