/**
 * Bundling a game off the main thread, for the builds a running server does while rooms tick:
 * a patch uploaded or announced by another server (patch/distribution.ts) and a dev reload
 * (dev-reload.ts).
 *
 * Why: bundling runs TypeScript's transformer over every module (the write rewrite,
 * instrument-writes.ts) synchronously, inside esbuild's plugin callbacks on the calling thread.
 * Measured for the arena and its patches on these 2-core machines (bench/build-hitch.ts): the
 * main thread blocked 35 ms at the median and 77 ms at worst per build, that is one or two missed ticks of every room on the server at 20 Hz,
 * on every server of a cluster, each building an announced patch when it hears of it. On a
 * thread of its own, the main thread only copies the files over and the bundle back.
 *
 * One worker (bundler-thread.mjs) per process, started on the first build and stopped after
 * {@link IDLE_STOP_MS} without one (it holds TypeScript and esbuild: the process's resident
 * memory grew by ~150 MB with it up after three arena builds, measured with a scratch script). A build the worker cannot do
 * (it failed to start, or died) is done on the calling thread as before: slower for the rooms,
 * never a wrong or missing build. A BuildError comes back as a BuildError.
 *
 * Startup builds stay on the main thread (GameRegistry.fromDirectory): no room ticks yet, and a
 * worker would only add its start-up time.
 */
import { Worker } from 'node:worker_threads';
import { BuildError } from '../errors/errors.ts';
import { bundleGame, type GameBundle, type GameSources } from './bundler.ts';

/** A worker with no build for this long is stopped, ms. */
export const IDLE_STOP_MS = 60_000;

interface Pending {
  sources: GameSources;
  resolve: (b: GameBundle) => void;
  reject: (e: unknown) => void;
}

type Reply = { id: number; bundle: GameBundle } | { id: number; error: { build: boolean; summary: string; details: string[] } };

let worker: Worker | null = null;
let nextId = 1;
const pending = new Map<number, Pending>();
let idleTimer: NodeJS.Timeout | null = null;

/** Builds done on the worker, and builds that fell back to the calling thread (tests, ops). */
export const offThreadStats = { offThread: 0, fallback: 0 };

/** bundleGame, run on the bundler thread: same bundle, same errors. */
export function bundleGameOffThread(sources: GameSources): Promise<GameBundle> {
  if (idleTimer) {
    clearTimeout(idleTimer);
    idleTimer = null;
  }
  return new Promise<GameBundle>((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { sources, resolve, reject });
    try {
      ensureWorker().postMessage({ id, name: sources.name, entry: sources.entry, files: [...sources.files] });
    } catch {
      pending.delete(id);
      fallBack({ sources, resolve, reject });
    }
  });
}

function ensureWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(new URL('./bundler-thread.mjs', import.meta.url), { execArgv: [], stdout: false, stderr: false });
  w.unref(); // a build in flight is awaited by someone who keeps the process alive
  w.on('message', (m: Reply) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if ('bundle' in m) {
      offThreadStats.offThread++;
      p.resolve(m.bundle);
    } else if (m.error.build) {
      offThreadStats.offThread++;
      p.reject(new BuildError(m.error.summary, m.error.details));
    } else {
      // Not the designer's mistake (the worker could not load the bundler, say): build here.
      fallBack(p);
    }
    scheduleIdleStop();
  });
  const gone = () => {
    if (worker !== w) return;
    worker = null;
    const left = [...pending.values()];
    pending.clear();
    for (const p of left) fallBack(p);
  };
  w.on('error', gone);
  w.on('exit', gone);
  worker = w;
  return w;
}

function fallBack(p: Pending): void {
  offThreadStats.fallback++;
  bundleGame(p.sources).then(p.resolve, p.reject);
}

function scheduleIdleStop(): void {
  if (pending.size > 0 || !worker) return;
  if (idleTimer) clearTimeout(idleTimer);
  idleTimer = setTimeout(() => void stopBundlerThread(), IDLE_STOP_MS);
  idleTimer.unref();
}

/** Stop the worker now (tests; a server's close). Builds in flight finish on the calling thread. */
export async function stopBundlerThread(): Promise<void> {
  if (idleTimer) clearTimeout(idleTimer);
  idleTimer = null;
  const w = worker;
  if (!w) return;
  await w.terminate();
}
