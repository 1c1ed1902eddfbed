/**
 * Makes it safe to run tick calls on the main thread (call-placement.ts): ends the process when
 * one never returns.
 *
 * A script can make V8 fail an allocation in a way it cannot recover from (the `fatal` fixture's
 * Map growth; docs/security.md). isolated-vm then reports it by scheduling our
 * onCatastrophicError callback on the main thread and parks the thread that hit it, forever
 * (its OOMErrorCallback sleeps in a loop). For a call handed to the isolate's own thread that is
 * fine: the main thread runs the callback, which records the crash and aborts. For a call made
 * with `applySync`, the parked thread is the main thread: the callback never runs and the
 * server hangs, its rooms neither ticking nor taken over until their leases lapse (seen: the
 * quarantine test hung that way when inline calls were first tried).
 *
 * So a process that runs ticks inline also runs this watchdog: a worker thread
 * (watchdog-thread.mjs) that the main thread tells, through shared memory, which call it is in
 * and by when it must have returned (the call's own wall-clock limit, after which isolated-vm
 * stops a script, plus {@link OVERDUE_GRACE_MS}). A call still running {@link CONFIRM_MS} after
 * that (by the worker's own clock) is taken for a parked thread: the worker writes the crash
 * record where the server's recorder would (the local file and, through the crash beacon's
 * socket, the room's crash list and script journal), logs one line and aborts the process.
 *
 * Cost per inline call: a few stores into shared memory. Inline calls happen only while the
 * worker is up (`running`); if it cannot start or dies, ticks are handed over as before.
 */
import { Worker } from 'node:worker_threads';
import { JOURNAL_KEPT } from '../state/journal-store.ts';
import { CRASHES_KEPT } from '../state/room-store.ts';

/** Beyond a call's own time limit, how long before it counts as overdue, ms (V8's last-resort collections near a full heap take a while). */
export const OVERDUE_GRACE_MS = 1000;
/** How long a call must stay overdue, on the watchdog thread's own clock, before the abort, ms. */
export const CONFIRM_MS = 1000;
const CHECK_EVERY_MS = 100;
/**
 * Taken when this module loads: bench/in-process-sandbox.ts runs the scripts' lockdown on this
 * process's own global, which removes `Atomics` and `SharedArrayBuffer` from it.
 */
const atomics = Atomics;
const SharedMemory = SharedArrayBuffer;

/** Where the shared memory keeps what (the worker reads the same layout). */
const LAYOUT = {
  int32s: 4,
  float64s: 2,
  /** Int32: the call in progress, a sequence number; 0 when none. */
  seq: 0,
  /** Int32: the sandbox (its registration id) whose call it is. */
  sandbox: 1,
  /** Int32: the crash beacon's socket, or -1. */
  beaconFd: 2,
  /** Float64: when the call must have returned by, ms since the epoch. */
  deadline: 0,
  /** Float64: the call's tick number. */
  tick: 1,
} as const;

/** Where a server wants crashes recorded (app.ts; the same places as its crash recorder). */
export interface CrashTarget {
  /** The local crash file (ops/crash-record.ts). */
  file: string;
  node: string;
  /** The room's crash list and script journal keys. */
  keysOf(roomId: string): { crashes: string; journal: string };
  /** The crash beacon's plain socket, or null (TLS, disconnected): read at every inline call. */
  beaconFd(): number | null;
}

export interface WatchedSandbox {
  roomId: string;
  game: string;
  version: string;
  /** Its log ring (log-ring.mjs), shared with the watchdog thread: the crash's last lines. */
  logRing?: SharedArrayBuffer;
}

export class MainThreadWatchdog {
  private static instance: MainThreadWatchdog | null = null;

  /** The process's watchdog, started on first use. */
  static shared(): MainThreadWatchdog {
    MainThreadWatchdog.instance ??= new MainThreadWatchdog();
    return MainThreadWatchdog.instance;
  }

  private readonly worker: Worker | null;
  private readonly slots: Int32Array;
  private readonly numbers: Float64Array;
  private online = false;
  private seq = 0;
  private nextId = 1;
  private target: CrashTarget | null = null;
  /** Told once if the watchdog thread fails or exits after it came up (the server logs it). */
  onDown: ((cause: unknown) => void) | null = null;

  private constructor() {
    const shared = new SharedMemory(LAYOUT.int32s * 4 + LAYOUT.float64s * 8);
    this.slots = new Int32Array(shared, 0, LAYOUT.int32s);
    this.numbers = new Float64Array(shared, LAYOUT.int32s * 4, LAYOUT.float64s);
    atomics.store(this.slots, LAYOUT.beaconFd, -1);
    let worker: Worker | null = null;
    try {
      worker = new Worker(new URL('./watchdog-thread.mjs', import.meta.url), {
        workerData: { shared, checkEveryMs: CHECK_EVERY_MS, confirmMs: CONFIRM_MS, layout: LAYOUT },
        // The worker needs none of the server's flags (and no TypeScript loader).
        execArgv: [],
        stdout: false,
        stderr: false,
      });
      worker.unref(); // never what keeps a process alive
      worker.on('online', () => (this.online = true));
      // A watchdog that is gone cannot cover inline calls: they go back to the isolate's thread.
      const down = (cause: unknown) => {
        if (!this.online) return;
        this.online = false;
        this.onDown?.(cause);
      };
      worker.on('error', down);
      worker.on('exit', (code) => down(new Error(`the watchdog thread exited with code ${code}`)));
    } catch {
      worker = null;
    }
    this.worker = worker;
  }

  /** Whether calls may run inline: the watchdog thread is up. */
  get running(): boolean {
    return this.online;
  }

  /** Where crashes go from now on (the latest server started in this process owns it, as with GameSandbox.crashRecorder). */
  setTarget(target: CrashTarget | null): void {
    this.target = target;
    this.worker?.postMessage({ type: 'target', target: target && { file: target.file, node: target.node, crashesKept: CRASHES_KEPT, journalKept: JOURNAL_KEPT } });
  }

  /** The server that set `target` stops: crashes go nowhere but the log line until another sets one. */
  clearTarget(target: CrashTarget): void {
    if (this.target === target) this.setTarget(null);
  }

  /** A sandbox that may call inline; returns its id for `begin`. */
  register(sandbox: WatchedSandbox): number {
    const id = this.nextId++;
    const keys = sandbox.roomId && this.target ? this.target.keysOf(sandbox.roomId) : null;
    this.worker?.postMessage({ type: 'register', id, room: { ...sandbox, crashesKey: keys?.crashes ?? null, journalKey: keys?.journal ?? null } });
    return id;
  }

  forget(id: number): void {
    this.worker?.postMessage({ type: 'forget', id });
  }

  /** An inline call starts; it stops a script itself after `limitMs` (its wall-clock limit). */
  begin(id: number, tick: number, limitMs: number): void {
    atomics.store(this.slots, LAYOUT.beaconFd, this.target?.beaconFd() ?? -1);
    atomics.store(this.slots, LAYOUT.sandbox, id);
    this.numbers[LAYOUT.deadline] = Date.now() + limitMs + OVERDUE_GRACE_MS;
    this.numbers[LAYOUT.tick] = tick;
    this.seq = this.seq === 0x7fffffff ? 1 : this.seq + 1;
    // Last, so that the worker reading this call sees its deadline and tick (Atomics order them).
    atomics.store(this.slots, LAYOUT.seq, this.seq);
  }

  /** The inline call returned (or threw). */
  end(): void {
    atomics.store(this.slots, LAYOUT.seq, 0);
  }
}
