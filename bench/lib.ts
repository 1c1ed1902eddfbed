/** Shared benchmark plumbing: percentiles, machine facts, result files, a private Redis. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { configFromEnv } from '../server/config/config.ts';
import { nearestRank } from '../server/ops/percentile.ts';
import { startPrivateRedis, type PrivateRedis } from '../server/state/redis-launcher.ts';

export const RESULTS_DIR = path.join(import.meta.dirname, 'results');

/** The p-th percentile (0-100) of `values`, nearest-rank; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  return nearestRank([...values].sort((a, b) => a - b), p / 100);
}

export function summary(values: readonly number[]): { p50: number; p95: number; p99: number; max: number; n: number } {
  return {
    p50: round(percentile(values, 50)),
    p95: round(percentile(values, 95)),
    p99: round(percentile(values, 99)),
    // A loop, not Math.max(...values): a spread of more than ~120k arguments overflows the stack.
    max: round(values.length ? values.reduce((m, v) => (v > m ? v : m), -Infinity) : NaN),
    n: values.length,
  };
}

export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function machine(): { cpu_model: string; cpu_count: number; memory_gb: number; node: string; platform: string; speed_probe_ms: number } {
  const cpus = os.cpus();
  return {
    cpu_model: cpus[0]?.model ?? 'unknown',
    cpu_count: cpus.length,
    memory_gb: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    speed_probe_ms: speedProbe(),
  };
}

/**
 * How fast this machine is running right now: the median time of a fixed piece of JavaScript
 * (objects, floating point, a sort), ms; lower is faster. These machines are shared, and the
 * same code measures up to half slower at one hour than at another: two results compare only
 * when their probes are close. Taken when the result is written, on an otherwise idle process.
 */
export function speedProbe(): number {
  const times: number[] = [];
  let sink = 0;
  for (let run = 0; run < 15; run++) {
    const t0 = performance.now();
    const items: { x: number; y: number; id: string }[] = [];
    for (let i = 0; i < 50_000; i++) items.push({ x: Math.sin(i) * 1000, y: Math.cos(i * 0.5) * 700, id: 'p' + (i % 977) });
    items.sort((a, b) => a.x - b.x || a.y - b.y);
    for (const it of items) sink += Math.hypot(it.x, it.y) + it.id.length;
    times.push(performance.now() - t0);
  }
  if (sink === 42) console.log(''); // keeps the work from being optimised away
  times.sort((a, b) => a - b);
  return round(times[7]!);
}

/**
 * INLINE_TICK_MAX_MS for a benchmark's server or sandboxes: the environment's when set (to
 * compare tick placements in turns), else the server's default. Results record it.
 */
export function benchInlineTickMaxMs(): number {
  // Through the server's own parsing and checks, from this one variable only.
  return configFromEnv({ INLINE_TICK_MAX_MS: process.env.INLINE_TICK_MAX_MS }).inlineTickMaxMs;
}

/** TICK_PHASES for a benchmark's server: the environment's when set (to compare in turns), else the server's default. */
export function benchTickPhases(): 'spread' | 'free' {
  return configFromEnv({ TICK_PHASES: process.env.TICK_PHASES }).tickPhases;
}

export function writeResult(name: string, result: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${name}.json`);
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  return file;
}

/** A private Redis with the same persistence as production (AOF, fsync every second). */
export async function benchRedis(): Promise<PrivateRedis & { cleanup(): Promise<void> }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-bench-redis-'));
  const redis = await startPrivateRedis({ dir, appendOnly: true });
  return Object.assign(redis, {
    async cleanup() {
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  });
}

export function parseArgs(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) continue;
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith('--')) {
      out[a.slice(2)] = next;
      i++;
    } else out[a.slice(2)] = 'true';
  }
  return out;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Sampling period of {@link startLoopMonitor}, ms. */
const LOOP_RESOLUTION_MS = 10;

/**
 * Event-loop delay from now until `stop()`, ms. Node's histogram records each sample's whole
 * interval, sampling period included (an idle loop reads ~10 ms at a 10 ms resolution): the
 * period is taken off here.
 */
export function startLoopMonitor(): { stop(): { p50: number; p99: number; max: number } } {
  const h = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  h.enable();
  const ms = (ns: number) => round(Math.max(0, ns / 1e6 - LOOP_RESOLUTION_MS), 2);
  return {
    stop() {
      h.disable();
      return { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max) };
    },
  };
}
