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
 * memory grew by ~150 MB with it up after three arena builds, measured with a scratch script).
 * It builds one game at a time, so a build that goes wrong is known to be that build:
 *
 * - a build that runs past its time limit is stopped (the worker with it) and fails;
 * - a build that exhausts the worker's heap limit fails (the worker is gone; V8 ends it);
 *
 * both as BUILD_FAILED saying which limit, and neither is tried again anywhere: on the calling
 * thread it would hold every room for as long (a 1 MB module takes ~5 s to transform here, 4 MB
 * ~20 s) or take the whole process down with it. The builds queued behind it go to a new
 * worker. A build the worker cannot do for any other reason (it failed to start, or was stopped
 * by stopBundlerThread, with the builds queued behind it) is done on the calling thread as
 * before: slower for the rooms, never a wrong or missing build. A BuildError comes back as a BuildError.
 *
 * Startup builds stay on the main thread (GameRegistry.fromDirectory): no room ticks yet, and a
 * worker would only add its start-up time.
 */
import { Worker } from 'node:worker_threads';
import { DEFAULT_BUILD_MEMORY_MB, DEFAULT_BUILD_TIMEOUT_MS } from '../config/config.ts';
import { BuildError } from '../errors/errors.ts';
import { bundleGame, type GameBundle, type GameSources } from './bundler.ts';

/** A worker with no build for this long is stopped, ms. */
export const IDLE_STOP_MS = 60_000;
/** A worker not ready this long after it started (it loads in ~1.5 s here) is given up on: its builds are done on the calling thread, ms. */
const START_LIMIT_MS = 30_000;

export interface BundlerThreadLimits {
  /** A build still running this long after the worker started it fails, ms. */
  timeoutMs: number;
  /** The worker's V8 old-generation limit, MB: a build that needs more fails. */
  memoryMb: number;
}

interface Job {
  sources: GameSources;
  resolve: (b: GameBundle) => void;
  reject: (e: unknown) => void;
}

type Reply = { ready: true } | { id: number; bundle: GameBundle } | { id: number; error: { build: boolean; summary: string; details: string[] } };

let limits: BundlerThreadLimits = { timeoutMs: DEFAULT_BUILD_TIMEOUT_MS, memoryMb: DEFAULT_BUILD_MEMORY_MB };
let worker: Worker | null = null;
/** The worker has loaded the bundler: builds are sent to it only then, so the time limit is the build's alone. */
let workerReady = false;
let nextId = 1;
/** Builds waiting for the worker, in order. */
const queue: Job[] = [];
/** The build on the worker now, with its id and its time limit's timer. */
let running: (Job & { id: number; timer: NodeJS.Timeout }) | null = null;
let idleTimer: NodeJS.Timeout | null = null;

/** Builds done on the worker, builds that fell back to the calling thread, builds stopped by a limit (tests, bench:build). */
export const offThreadStats = { offThread: 0, fallback: 0, overLimit: 0 };

/** Set the limits for builds started from now on (config at server start; tests). */
export function setBundlerThreadLimits(next: BundlerThreadLimits): void {
  if (next.memoryMb !== limits.memoryMb) void stopBundlerThread(); // resourceLimits are fixed when a worker starts
  limits = { ...next };
}

/** bundleGame, run on the bundler thread: same bundle, same errors. */
export function bundleGameOffThread(sources: GameSources): Promise<GameBundle> {
  if (idleTimer) {
    clearTimeout(idleTimer);
    idleTimer = null;
  }
  return new Promise<GameBundle>((resolve, reject) => {
    queue.push({ sources, resolve, reject });
    startNext();
  });
}

function startNext(): void {
  if (running) return;
  if (queue.length === 0) {
    scheduleIdleStop();
    return;
  }
  let w: Worker;
  try {
    w = ensureWorker();
  } catch {
    fallBack(queue.shift()!);
    startNext();
    return;
  }
  if (!workerReady) return; // its ready message starts the queue
  const job = queue.shift()!;
  const id = nextId++;
  const timer = setTimeout(() => overLimit(`it ran longer than ${limits.timeoutMs / 1000} s (BUILD_TIMEOUT_MS)`), limits.timeoutMs);
  timer.unref(); // like the worker: whoever awaits the build keeps the process alive
  running = { ...job, id, timer };
  w.postMessage({ id, name: job.sources.name, entry: job.sources.entry, files: [...job.sources.files] });
}

/** The running build broke a limit: it fails, and its worker is not used again. */
function overLimit(why: string): void {
  const job = running;
  if (!job) return;
  finish();
  offThreadStats.overLimit++;
  job.reject(new BuildError(`game "${job.sources.name}" failed to build`, [`the build was stopped: ${why}`]));
  const w = worker;
  worker = null; // the exit that follows is this one's, not a reason to fall back
  void w?.terminate();
  startNext();
}

function finish(): void {
  if (running) clearTimeout(running.timer);
  running = null;
}

function ensureWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(new URL('./bundler-thread.mjs', import.meta.url), {
    execArgv: [],
    stdout: false,
    stderr: false,
    resourceLimits: { maxOldGenerationSizeMb: limits.memoryMb },
    // esbuild's helper process (Go) left waiting by a stopped build can die with a goroutine
    // dump of a hundred lines on the server's stderr (seen in a scratch run); this keeps it to
    // its one-line reason.
    env: { ...process.env, GOTRACEBACK: 'none' },
  });
  w.unref(); // a build in flight is awaited by someone who keeps the process alive
  // Stopped (stopBundlerThread), broken, or never ready: what was running or waiting is built here.
  const gone = () => {
    clearTimeout(startLimit);
    if (worker === w) abandonWorker();
  };
  const startLimit = setTimeout(() => {
    gone();
    void w.terminate();
  }, START_LIMIT_MS);
  startLimit.unref();
  w.on('message', (m: Reply) => {
    if ('ready' in m) {
      clearTimeout(startLimit);
      if (worker === w) workerReady = true;
      startNext();
      return;
    }
    const job = running;
    if (!job || job.id !== m.id) return;
    finish();
    if ('bundle' in m) {
      offThreadStats.offThread++;
      job.resolve(m.bundle);
    } else if (m.error.build) {
      offThreadStats.offThread++;
      job.reject(new BuildError(m.error.summary, m.error.details));
    } else {
      // Not the designer's mistake (the worker could not load the bundler, say): build here.
      fallBack(job);
    }
    startNext();
  });
  w.on('error', (e: Error & { code?: string }) => {
    if (worker !== w) return;
    if (e.code === 'ERR_WORKER_OUT_OF_MEMORY') overLimit(`it needed more than ${limits.memoryMb} MB of heap (BUILD_MEMORY_MB)`);
    else gone();
  });
  w.on('exit', gone);
  worker = w;
  workerReady = false;
  return w;
}

function fallBack(job: Job): void {
  offThreadStats.fallback++;
  bundleGame(job.sources).then(job.resolve, job.reject);
}

function scheduleIdleStop(): void {
  if (running || queue.length > 0 || !worker) return;
  if (idleTimer) clearTimeout(idleTimer);
  idleTimer = setTimeout(() => void stopBundlerThread(), IDLE_STOP_MS);
  idleTimer.unref();
}

/** Stop the worker now (tests; a server's close). Builds in flight or queued finish on the calling thread. */
export async function stopBundlerThread(): Promise<void> {
  if (idleTimer) clearTimeout(idleTimer);
  idleTimer = null;
  const w = worker;
  if (!w) return;
  abandonWorker(); // now, not at its exit: a build asked for meanwhile starts a new worker
  await w.terminate();
}

/** Stop using the worker; what it was running and what waited for it is built on the calling thread. */
function abandonWorker(): void {
  worker = null;
  const jobs = running ? [running, ...queue] : [...queue];
  finish();
  queue.length = 0;
  for (const job of jobs) fallBack(job);
}
