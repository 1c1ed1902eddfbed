/**
 * What building a game version costs the main thread (`npm run bench:build`): the arena with
 * its patches (four versions) built the way a running server builds an uploaded patch or a dev
 * reload, on the calling thread (bundleGame) against on a thread of its own
 * (server/sandbox/off-thread-bundler.ts). Every room of a server ticks on the main thread, so
 * the longest stretch it is blocked is how late a tick can be.
 *
 *   npm run bench:build -- [--rounds 10]
 *
 * A 1 ms interval timer on the main thread measures the longest gap between its runs during
 * each build (the longest block), and event-loop utilisation the main thread's busy time. The
 * two ways take turns going first, after one warm-up build each.
 *
 * Then the same for what follows a build when a patch is staged (and when a room opens, or its
 * isolate is rebuilt): creating a sandbox for the new version (GameSandbox.create: a fresh
 * isolate with the bundle compiled and run). Writes bench/results/build-hitch.json.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { bundleGame, type Bundler } from '../server/sandbox/bundler.ts';
import { loadGame } from '../server/sandbox/games.ts';
import { bundleGameOffThread, offThreadStats, stopBundlerThread } from '../server/sandbox/off-thread-bundler.ts';
import { GameSandbox } from '../server/sandbox/sandbox.ts';
import { machine, parseArgs, round, summary, writeResult } from './lib.ts';

const args = parseArgs(process.argv.slice(2));
const ROUNDS = Number(args.rounds ?? 10);
const ROOT = path.join(import.meta.dirname, '..');

/** Run `work`, measuring the main thread meanwhile: its longest block and busy time, and the wall time, ms. */
async function onMainThread<T>(work: () => Promise<T>): Promise<{ value: T; block: number; busy: number; wall: number }> {
  let last = performance.now();
  let block = 0;
  const probe = setInterval(() => {
    const now = performance.now();
    block = Math.max(block, now - last);
    last = now;
  }, 1);
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  const value = await work();
  const wall = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0);
  clearInterval(probe);
  block = Math.max(block, performance.now() - last);
  return { value, block, busy: elu.active, wall };
}

/** Build the arena and its patches with `bundle`. */
async function measure(bundle: Bundler): Promise<{ block: number; busy: number; wall: number; versions: number }> {
  const m = await onMainThread(() =>
    loadGame(path.join(ROOT, 'scripts', 'arena'), path.join(ROOT, 'patches'), (_g, folder, e) => {
      throw new Error(`${folder}: ${String(e)}`);
    }, bundle),
  );
  return { ...m, versions: m.value.versions.length };
}

async function main(): Promise<void> {
  const ways: Record<string, Bundler> = { calling_thread: bundleGame, own_thread: bundleGameOffThread };
  for (const bundle of Object.values(ways)) await measure(bundle); // warm-up: JIT, and the worker's start
  const samples: Record<string, { block: number[]; busy: number[]; wall: number[] }> = {};
  for (const name of Object.keys(ways)) samples[name] = { block: [], busy: [], wall: [] };
  let versions = 0;
  for (let i = 0; i < ROUNDS; i++) {
    const order = i % 2 === 0 ? Object.keys(ways) : Object.keys(ways).reverse();
    for (const name of order) {
      const m = await measure(ways[name]!);
      versions = m.versions;
      samples[name]!.block.push(m.block);
      samples[name]!.busy.push(m.busy);
      samples[name]!.wall.push(m.wall);
    }
  }
  await stopBundlerThread();

  const game = await loadGame(path.join(ROOT, 'scripts', 'arena'));
  const limits = { memoryLimitMb: game.manifest.memoryLimitMb, cpuBudgetMs: game.manifest.cpuBudgetMs };
  const creates = { block: [] as number[], wall: [] as number[] };
  for (let i = 0; i < ROUNDS * 2 + 1; i++) {
    const m = await onMainThread(() => GameSandbox.create(game.bundle, limits));
    m.value.dispose();
    if (i === 0) continue; // warm-up
    creates.block.push(m.block);
    creates.wall.push(m.wall);
  }
  const result = {
    benchmark: 'build-hitch',
    game: 'arena',
    versions_per_build: versions,
    rounds: ROUNDS,
    ways: Object.fromEntries(
      Object.entries(samples).map(([name, s]) => [name, { main_thread_longest_block_ms: summary(s.block), main_thread_busy_ms: summary(s.busy), build_wall_ms: summary(s.wall) }]),
    ),
    off_thread_fallbacks: offThreadStats.fallback,
    sandbox_create: { main_thread_longest_block_ms: summary(creates.block), wall_ms: summary(creates.wall) },
    machine: machine(),
    notes: 'One build = the arena base scripts and every patch in patches/arena, as loadGame builds them. main_thread_longest_block_ms: the longest gap between runs of a 1 ms timer during the build (how late a tick due then could be); main_thread_busy_ms: event-loop active time during the build.',
    measured_at: new Date().toISOString(),
  };
  const file = writeResult('build-hitch', result);
  for (const [name, w] of Object.entries(result.ways)) {
    console.log(`${name.padEnd(15)} longest block p50 ${round(w.main_thread_longest_block_ms.p50, 1)} ms, max ${round(w.main_thread_longest_block_ms.max, 1)} ms; busy p50 ${round(w.main_thread_busy_ms.p50, 1)} ms; build ${round(w.build_wall_ms.p50, 0)} ms`);
  }
  console.log(`sandbox create  longest block p50 ${round(result.sandbox_create.main_thread_longest_block_ms.p50, 1)} ms, max ${round(result.sandbox_create.main_thread_longest_block_ms.max, 1)} ms; wall p50 ${round(result.sandbox_create.wall_ms.p50, 1)} ms`);
  console.log(`build-hitch bench: wrote ${file}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
