/**
 * What reading and writing the world costs a script, per operation: the question behind the core
 * benchmark's tick time (docs/performance.md).
 *
 *   node --no-node-snapshot --import tsx bench/world-access.ts [--players 1000] [--rounds 40]
 *
 * One pass is the arena's movement loop over N player records, every player turning (so each
 * pass reads 8 fields and writes 6 per player, plus Object.keys of the table), run three ways:
 *
 * - raw:        plain objects, no journal (the floor: what the game logic itself costs);
 * - proxy:      each record behind a Proxy whose traps only forward: the floor of the design the
 *               engine had until 2026-11-27, when scripts saw the world through journaling
 *               proxies (1.95 ms a pass here, against 0.20 raw; docs/performance.md);
 * - journaled:  the engine's world as a script sees it now: plain reads, and each write the
 *               journaled call the bundler puts in its place (server/sandbox/instrument-writes.ts,
 *               runtime/writes.ts): undo entry, dirty record, field patch noted.
 *
 * The ways take turns within each round, so all see the same machine, and each reports its
 * fastest round: on a shared 2-core machine, noise only ever adds time. In-process (no isolate):
 * the isolate's own overhead is bench/sandbox-overhead.ts's business. Prints a table and writes
 * bench/results/world-access.json.
 */
import { JournaledWorld } from '../server/sandbox/runtime/world.ts';
import { __mp_set, __mp_w } from '../server/sandbox/runtime/writes.ts';
import { machine, parseArgs, round, writeResult } from './lib.ts';

const args = parseArgs(process.argv.slice(2));
const PLAYERS = Number(args.players ?? 1000);
const ROUNDS = Number(args.rounds ?? 40);
const PASSES_PER_ROUND = 10;
const WARMUP_ROUNDS = 5;
const READS_PER_PLAYER = 8;
const WRITES_PER_PLAYER = 6;

type Rec = Record<string, any>;

function makeWorld(): { arena: { w: number; h: number }; players: Record<string, Rec> } {
  const players: Record<string, Rec> = {};
  for (let i = 0; i < PLAYERS; i++) {
    players['p' + i] = { name: 'n' + i, color: '#e6194b', x: 20 + (i % 900), y: 20 + (i % 600), vx: 0, vy: 0, dirX: 0.6, dirY: -0.8, score: 0, boostUntil: 0, boostReadyAt: 0 };
  }
  return { arena: { w: 1000, h: 700 }, players };
}

const round2 = (v: number) => Math.round(v * 100) / 100;
const clamp = (v: number, lo: number, hi: number) => (v < lo ? lo : v > hi ? hi : v);

/** The arena's movePlayers (scripts/arena/physics.ts) with a turn per player: plain assignments. */
function movePass(world: any, nowMs: number): void {
  const players = world.players;
  const maxX = world.arena.w - 12;
  const maxY = world.arena.h - 12;
  for (const id of Object.keys(players)) {
    const p = players[id];
    const vx = p.vx, vy = p.vy, dirX = p.dirX, dirY = p.dirY;
    const speed = nowMs < p.boostUntil ? 400 : 200;
    const nvx = round2(vx + (dirX * speed - vx) * 0.6);
    const nvy = round2(vy + (dirY * speed - vy) * 0.6);
    if (nvx !== vx) p.vx = nvx;
    if (nvy !== vy) p.vy = nvy;
    const x = p.x, y = p.y;
    const nx = round2(clamp(x + nvx * 0.05, 12, maxX));
    const ny = round2(clamp(y + nvy * 0.05, 12, maxY));
    if (nx !== x) p.x = nx;
    if (ny !== y) p.y = ny;
    p.dirX = -dirX;
    p.dirY = -dirY;
  }
}

/** movePass as the bundler rewrites it (server/sandbox/instrument-writes.ts): each assignment a journaled call. */
function movePassInstrumented(world: any, nowMs: number): void {
  const players = world.players;
  const maxX = world.arena.w - 12;
  const maxY = world.arena.h - 12;
  for (const id of Object.keys(players)) {
    const p = players[id];
    const vx = p.vx, vy = p.vy, dirX = p.dirX, dirY = p.dirY;
    const speed = nowMs < p.boostUntil ? 400 : 200;
    const nvx = round2(vx + (dirX * speed - vx) * 0.6);
    const nvy = round2(vy + (dirY * speed - vy) * 0.6);
    if (nvx !== vx) (__mp_w(p) ? __mp_set(p, 'vx', nvx) : (p.vx = nvx));
    if (nvy !== vy) (__mp_w(p) ? __mp_set(p, 'vy', nvy) : (p.vy = nvy));
    const x = p.x, y = p.y;
    const nx = round2(clamp(x + nvx * 0.05, 12, maxX));
    const ny = round2(clamp(y + nvy * 0.05, 12, maxY));
    if (nx !== x) (__mp_w(p) ? __mp_set(p, 'x', nx) : (p.x = nx));
    if (ny !== y) (__mp_w(p) ? __mp_set(p, 'y', ny) : (p.y = ny));
    (__mp_w(p) ? __mp_set(p, 'dirX', -dirX) : (p.dirX = -dirX));
    (__mp_w(p) ? __mp_set(p, 'dirY', -dirY) : (p.dirY = -dirY));
  }
}

// ---- the three ways ----

interface Way {
  name: string;
  /** One pass, including the per-tick bookkeeping the engine would do around it. */
  pass(): void;
}

function ways(): Way[] {
  const raw = makeWorld();
  const forward: ProxyHandler<Rec> = {
    get: (t, k) => t[k as string],
    set: (t, k, v) => ((t[k as string] = v), true),
  };
  const proxied = makeWorld();
  const proxiedPlayers: Record<string, Rec> = {};
  for (const [id, p] of Object.entries(proxied.players)) proxiedPlayers[id] = new Proxy(p, forward);
  const proxyWorld = new Proxy({ arena: proxied.arena, players: new Proxy(proxiedPlayers, forward) }, forward);

  const journaled = new JournaledWorld();
  journaled.reset(makeWorld());

  let t = 0;
  return [
    { name: 'raw', pass: () => movePass(raw, t++) },
    { name: 'proxy', pass: () => movePass(proxyWorld, t++) },
    {
      name: 'journaled',
      pass: () => {
        journaled.forget();
        journaled.beginChanges();
        journaled.open = true;
        movePassInstrumented(journaled.root, t++);
        journaled.open = false;
      },
    },
  ];
}

const list = ways();
const best = new Map<string, number>();
for (let r = 0; r < ROUNDS + WARMUP_ROUNDS; r++) {
  for (const way of list) {
    const start = performance.now();
    for (let i = 0; i < PASSES_PER_ROUND; i++) way.pass();
    const ms = (performance.now() - start) / PASSES_PER_ROUND;
    if (r >= WARMUP_ROUNDS) best.set(way.name, Math.min(best.get(way.name) ?? Infinity, ms));
  }
}

const ops = PLAYERS * (READS_PER_PLAYER + WRITES_PER_PLAYER);
const rawMs = best.get('raw')!;
const result = {
  benchmark: 'world-access',
  players: PLAYERS,
  reads_per_player: READS_PER_PLAYER,
  writes_per_player: WRITES_PER_PLAYER,
  rounds: ROUNDS,
  passes_per_round: PASSES_PER_ROUND,
  /** Fastest round's mean pass, ms; its cost per field access, ns; and how many times raw. */
  ways: Object.fromEntries(
    list.map((w) => {
      const ms = best.get(w.name)!;
      return [w.name, { pass_ms: round(ms), ns_per_access: round((ms * 1e6) / ops, 1), times_raw: round(ms / rawMs, 1) }];
    }),
  ),
  machine: machine(),
};

console.log(`world access: ${PLAYERS} records, ${READS_PER_PLAYER} reads + ${WRITES_PER_PLAYER} writes each per pass, fastest of ${ROUNDS} rounds`);
for (const [name, w] of Object.entries(result.ways)) {
  console.log(`  ${name.padEnd(13)} ${w.pass_ms.toFixed(3).padStart(7)} ms a pass  ${w.ns_per_access.toFixed(1).padStart(6)} ns an access  ${w.times_raw.toFixed(1).padStart(5)}x raw`);
}
console.log(`written to ${writeResult('world-access', result)}`);
