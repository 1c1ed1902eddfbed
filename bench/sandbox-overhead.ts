/**
 * What the isolate costs: the arena with N players run in an isolated-vm isolate (the
 * production GameSandbox) and in-process without one (bench/in-process-sandbox.ts: the same
 * bundle, runtime and host code in this process's own V8 context), fed identical ticks.
 *
 *   node --no-node-snapshot --import tsx bench/sandbox-overhead.ts [--players 1000] [--ticks 300]
 *        [--warmup 30] [--large-heap-mb 512]
 *
 * bench/capacity.ts runs this as a child process and takes its JSON (the last line of stdout);
 * the parity test runs it small. A process of its own because the in-process sandbox locks down
 * the process's global (see in-process-sandbox.ts).
 *
 * Every run gets the same calls, tick by tick, taking turns at going first so that all see the
 * same machine: tick 1 runs `init` and seats every player; every later tick carries one move
 * input per player that turns its direction (every player record changes every tick, the worst
 * case of bench/core.ts), a few boosts, and now and then a leave, a rejoin and a refused input.
 * Each call is timed around GameSandbox.tick, as the room times its script step. At the end all
 * must have produced the same changes every tick and hold the same world (sha256 of each tick's
 * outcome and of the exported world): the proof that they ran the same game.
 *
 * --large-heap-mb N adds a third run: an isolate like the first but with an N MB heap limit
 * instead of the arena's (memoryLimitMb 64). The isolate's heap limit also sizes V8's young
 * generation, so a small limit means more frequent garbage collection of the tick's short-lived
 * objects; this run tells that cost apart from the cost of the isolate boundary.
 */
import { writeSync } from 'node:fs';
import path from 'node:path';
import { setInlineTickMaxMs } from '../server/sandbox/call-placement.ts';
import { loadGame } from '../server/sandbox/games.ts';
import { EVENT_INPUT, EVENT_JOIN, EVENT_LEAVE, GameSandbox, type TickCall } from '../server/sandbox/sandbox.ts';
import { MsgpackWriter } from '../server/sandbox/runtime/msgpack.ts';
import { createInProcessSandbox, OutcomeHash, worldHash } from './in-process-sandbox.ts';
import { benchInlineTickMaxMs, parseArgs, percentile, round } from './lib.ts';

export interface OverheadTimes {
  mean: number;
  p50: number;
  p99: number;
  max: number;
}

export interface OverheadResult {
  players: number;
  ticks_measured: number;
  warmup_ticks: number;
  /** Wall time of GameSandbox.tick, ms. */
  isolate_ms: OverheadTimes;
  in_process_ms: OverheadTimes;
  /** CPU time the isolate's thread spent per tick, ms (isolated-vm's cpuTime). */
  isolate_cpu_ms: OverheadTimes;
  /** isolate / in-process. */
  ratio: { mean: number; p50: number; p99: number };
  /** Mean isolate wall time not spent on the isolate's CPU: the hand-off to its thread and back, ms. */
  isolate_wall_minus_cpu_ms: number;
  /** INLINE_TICK_MAX_MS the isolates ran with (server/sandbox/call-placement.ts). */
  inline_tick_max_ms: number;
  /** Measured ticks of the `isolate` run that ran on the main thread (applySync) rather than on the isolate's. */
  isolate_ticks_inline: number;
  /** The third run, when asked for: an isolate with a larger heap limit than the arena's. */
  large_heap: { memory_limit_mb: number; isolate_ms: OverheadTimes; isolate_cpu_ms: OverheadTimes; ratio: { mean: number; p50: number; p99: number } } | null;
  /** All runs produced the same changes every tick and hold the same world at the end. */
  same_state_hash: boolean;
  /** Inputs the arena refused (on purpose, see tickEvents), counted by each run. */
  rejections: Record<string, number>;
  /** sha256 of the world all runs hold at the end (exportRecords), when they agree. */
  state_hash: string;
  outcome_hash: Record<string, string>;
  world_hash: Record<string, string>;
  isolate_memory_limit_mb: number;
  cpu_budget_ms_used: number;
  bundle_version: string;
}

const ARENA_DIR = path.join(import.meta.dirname, '..', 'scripts', 'arena');
const SEED = 20240611;
const START_MS = 1_700_000_000_000;

/**
 * The events of tick `tick` (msgpack, as Room.encodeEvents writes them). Tick 1 seats everyone;
 * later ticks carry one input per player. Now and then one player leaves and comes back the
 * next tick, and one sends an input the arena refuses, so every event kind and the
 * rejection path run too.
 */
export function tickEvents(w: MsgpackWriter, ids: string[], tick: number): Uint8Array {
  const n = ids.length;
  const leaving = tick % 50 === 0 ? (tick / 50) % n : -1;
  const rejoining = tick > 1 && tick % 50 === 1 ? ((tick - 1) / 50) % n : -1;
  const refused = tick % 10 === 5 ? (tick * 7) % n : -1;
  const event = (kind: number, id: string, seq: number, data: unknown) => {
    w.arrayHeader(5);
    w.uint(kind);
    w.str(id);
    w.str(id);
    w.uint(seq);
    w.value(data);
  };
  w.reset();
  w.arrayHeader(n);
  for (let i = 0; i < n; i++) {
    const id = ids[i]!;
    if (tick === 1 || i === rejoining) event(EVENT_JOIN, id, 0, null);
    else if (i === leaving) event(EVENT_LEAVE, id, 0, null);
    else if (i === refused) event(EVENT_INPUT, id, tick, 'not an arena input');
    else {
      const a = (tick * 0.3 + i) % (2 * Math.PI);
      const input: { move: number[]; boost?: boolean } = { move: [round(Math.cos(a), 2), round(Math.sin(a), 2)] };
      if ((tick + i) % 97 === 0) input.boost = true;
      event(EVENT_INPUT, id, tick, input);
    }
  }
  return w.bytes().slice();
}

function times(xs: number[]): OverheadTimes {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  return { mean: round(mean), p50: round(percentile(xs, 50)), p99: round(percentile(xs, 99)), max: round(xs.reduce((m, v) => (v > m ? v : m), 0)) };
}

type Variant = 'isolate' | 'in_process' | 'isolate_large_heap';

/**
 * Run the comparison. `largeHeapMb` > 0 adds a third run, an isolate with that heap limit
 * instead of the arena's, to tell the isolate boundary from the heap limit's garbage collection.
 */
export async function measureOverhead(players: number, ticks: number, warmup: number, largeHeapMb = 0): Promise<OverheadResult> {
  setInlineTickMaxMs(benchInlineTickMaxMs());
  const game = await loadGame(ARENA_DIR);
  // A budget no tick meets on a busy machine: a tick the isolate interrupted (and rolled back)
  // would make the runs diverge. The timeout's own mechanism still runs on every call.
  const limits = { memoryLimitMb: game.manifest.memoryLimitMb, cpuBudgetMs: 5000 };
  const sandboxes = new Map<Variant, GameSandbox>();
  sandboxes.set('isolate', await GameSandbox.create(game.bundle, limits));
  if (largeHeapMb > 0) sandboxes.set('isolate_large_heap', await GameSandbox.create(game.bundle, { ...limits, memoryLimitMb: largeHeapMb }));
  sandboxes.set('in_process', createInProcessSandbox(game.bundle, limits)); // from here on this process is locked down
  const variants = [...sandboxes.keys()];
  const hashes = new Map(variants.map((v) => [v, new OutcomeHash()]));
  const wall = new Map(variants.map((v) => [v, [] as number[]]));
  const cpu = new Map(variants.map((v) => [v, [] as number[]]));
  const rejections = new Map(variants.map((v) => [v, 0]));
  const inlineTicks = new Map(variants.map((v) => [v, 0]));
  const ids = Array.from({ length: players }, (_, i) => `p${String(i).padStart(5, '0')}`);
  const w = new MsgpackWriter(64 * 1024);
  const total = warmup + ticks;
  for (let tick = 1; tick <= total; tick++) {
    const call: TickCall = { events: tickEvents(w, ids, tick), seed: SEED, tick, nowMs: START_MS + tick * 50, dtSeconds: 0.05, runInit: tick === 1 };
    // Each variant goes first, second, ... in turn.
    for (let k = 0; k < variants.length; k++) {
      const which = variants[(tick + k) % variants.length]!;
      const t0 = performance.now();
      const out = await sandboxes.get(which)!.tick(call);
      const ms = performance.now() - t0;
      if (!out.ok) throw new Error(`${which}: tick ${tick} failed: ${out.code} ${out.thrown?.message ?? ''}`);
      hashes.get(which)!.add(out);
      rejections.set(which, rejections.get(which)! + out.rejections.length);
      if (tick > warmup) {
        if (sandboxes.get(which)!.lastTickInline) inlineTicks.set(which, inlineTicks.get(which)! + 1);
        wall.get(which)!.push(ms);
        cpu.get(which)!.push(out.cpuMs);
      }
    }
  }
  const worlds = new Map<Variant, string>();
  for (const [v, sandbox] of sandboxes) worlds.set(v, await worldHash(sandbox));
  for (const sandbox of sandboxes.values()) sandbox.dispose();
  const outcomes = new Map(variants.map((v) => [v, hashes.get(v)!.digest()]));
  const same = variants.every((v) => worlds.get(v) === worlds.get('isolate') && outcomes.get(v) === outcomes.get('isolate'));
  const iso = times(wall.get('isolate')!);
  const inp = times(wall.get('in_process')!);
  const large = largeHeapMb > 0 ? times(wall.get('isolate_large_heap')!) : null;
  const isoCpu = times(cpu.get('isolate')!);
  return {
    players,
    ticks_measured: ticks,
    warmup_ticks: warmup,
    isolate_ms: iso,
    in_process_ms: inp,
    isolate_cpu_ms: isoCpu,
    ratio: { mean: round(iso.mean / inp.mean), p50: round(iso.p50 / inp.p50), p99: round(iso.p99 / inp.p99) },
    isolate_wall_minus_cpu_ms: round(iso.mean - isoCpu.mean),
    inline_tick_max_ms: benchInlineTickMaxMs(),
    isolate_ticks_inline: inlineTicks.get('isolate')!,
    large_heap: large && {
      memory_limit_mb: largeHeapMb,
      isolate_ms: large,
      isolate_cpu_ms: times(cpu.get('isolate_large_heap')!),
      ratio: { mean: round(large.mean / inp.mean), p50: round(large.p50 / inp.p50), p99: round(large.p99 / inp.p99) },
    },
    same_state_hash: same,
    rejections: Object.fromEntries(rejections) as Record<Variant, number>,
    state_hash: same ? worlds.get('isolate')! : '',
    outcome_hash: Object.fromEntries(outcomes) as Record<Variant, string>,
    world_hash: Object.fromEntries(worlds) as Record<Variant, string>,
    isolate_memory_limit_mb: limits.memoryLimitMb,
    cpu_budget_ms_used: limits.cpuBudgetMs,
    bundle_version: game.bundle.version,
  };
}

// Run as a program (not when imported for its types).
if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  const args = parseArgs(process.argv.slice(2));
  measureOverhead(Number(args.players ?? 1000), Number(args.ticks ?? 300), Number(args.warmup ?? 30), Number(args['large-heap-mb'] ?? 0)).then(
    (r) => {
      // fs.writeSync, not console.log: after the lockdown this process should do as little as it can.
      writeSync(1, JSON.stringify(r) + '\n');
      process.exit(0);
    },
    (e: unknown) => {
      writeSync(2, `${String((e as Error)?.stack ?? e)}\n`);
      process.exit(1);
    },
  );
}
