/**
 * The host half of a game isolate: creates it, installs a bundle, and runs ticks in it.
 *
 * The world stays inside the isolate. A tick crosses the boundary as one msgpack buffer of events
 * in and one buffer of results out; only the records the tick changed come out. Calls are async
 * (`Reference.apply`), so a running script blocks neither the event loop nor other rooms, and
 * isolates of different rooms run on different cores.
 */
import { writeSync } from 'node:fs';
import v8 from 'node:v8';
import ivm from 'isolated-vm';
import { Unpackr } from 'msgpackr';
import { DEFAULT_ISOLATE_SEMI_SPACE_MB } from '../config/config.ts';
import { MoonpatchError, type ThrownInfo } from '../errors/errors.ts';
import { isFoldablePatch, pairsOf } from '../state/record-patch.ts';
import type { GameBundle } from './bundler.ts';
import { catastrophicErrorCode } from '../ops/crash-wire.mjs';
import { CallCost } from './call-cost.ts';
import { CallPlacement, inlineLeashMs, inlineTicksEnabled } from './call-placement.ts';
import { MainThreadWatchdog } from './main-thread-watchdog.ts';
import { readLogRing, readRunningEvent, LOG_RING_BYTES } from './log-ring.mjs';
import { StackMapper } from './source-map.ts';

export interface SandboxLimits {
  /** Isolate heap limit, MB. */
  memoryLimitMb: number;
  /** CPU budget of one tick (all hooks of the tick together), ms. */
  cpuBudgetMs: number;
  /** The room this isolate runs, named in a catastrophic-error report (carried along with the limits). */
  roomId?: string;
}

/**
 * Set the young generation of isolates created from now on: the most V8's semi-space may grow
 * to, MB (0: what isolated-vm derives from the isolate's memory limit). Each isolate gets this,
 * or an eighth of its memory limit when that is smaller (at least 1 MB).
 *
 * Why: isolated-vm sizes an isolate's young generation from its memory limit, 2^(limit/128 + 10)
 * KB, so the arena's 64 MB limit gets about 1.4 MB, and a 1,000-player tick, which allocates
 * several MB, runs several scavenges. Measured with bench/sandbox-overhead.ts (isolate mean tick
 * against the same game in-process, 1,000 players, 2-core AMD EPYC): 1.14, 1.17 and 1.41x with
 * the default; 1.07 at 4 MB, 1.05-1.08 at 8 MB, 1.04 at 16 MB, 1.03 at 32 MB. The memory limit
 * still bounds the old generation; the young generation is on top of it (V8 keeps two
 * semi-spaces, each growing up to this size as the isolate needs; the growth was not measured
 * here). Why the eighth: an isolate with a small limit gains nothing from a young generation
 * bigger than its heap, and one that exhausts its memory took longer to die with it (an 8 MB
 * isolate allocating 16 MB arrays until it died: 450 ms with 8 MB semi-spaces, 230 ms with 1 MB;
 * long enough for the CPU budget to stop it first, reported as an overrun instead).
 */
export function setIsolateSemiSpace(mb: number): void {
  semiSpaceMaxMb = mb;
}

let semiSpaceMaxMb = DEFAULT_ISOLATE_SEMI_SPACE_MB;

/** The semi-space for an isolate with this memory limit (see setIsolateSemiSpace). */
export function semiSpaceFor(memoryLimitMb: number): number {
  if (semiSpaceMaxMb === 0) return 0;
  return Math.max(1, Math.min(semiSpaceMaxMb, Math.floor(memoryLimitMb / 8)));
}

export const EVENT_JOIN = 1;
export const EVENT_LEAVE = 2;
export const EVENT_INPUT = 3;
/** A leave whose hook is not run: it stopped two ticks already (room/stopped-ticks.ts). */
export const EVENT_LEAVE_WITHOUT_HOOK = 4;

export interface TickCall {
  /** msgpack of [[kind, playerId, name, seq, data], ...] (see runtime/entry.ts). */
  events: Uint8Array;
  seed: number;
  tick: number;
  nowMs: number;
  dtSeconds: number;
  runInit: boolean;
  /** Set on the swap tick of a live patch: run `migrate(world, migrateFrom)` and `validate(world)` first. */
  migrateFrom?: number;
  /** CPU budget for this call instead of the sandbox's (a swap tick also migrates). */
  budgetMs?: number;
  /** Instead of a tick: run `downgrade(world, downgradeTo)` (rolling a patch back). */
  downgradeTo?: number;
}

export interface Rejection {
  /** Index of the event in the tick's event list. */
  index: number;
  thrown: ThrownInfo;
}

export type FailureCode = 'SCRIPT_ERROR' | 'CPU_BUDGET_EXCEEDED' | 'MEMORY_LIMIT' | 'ENGINE_ERROR';

export type TickOutcome =
  | {
      ok: true;
      /** Records written whole: key -> msgpack bytes of the record's value. */
      sets: [string, Uint8Array][];
      dels: string[];
      /**
       * Records that existed before the tick and changed only in some top-level fields: key ->
       * msgpack map of just those fields (what players are sent, and what the log keeps; the
       * host folds it into its copy of the record: server/state/record-patch.ts). Disjoint
       * from `sets` and `dels`.
       */
      patches: [string, Uint8Array][];
      rejections: Rejection[];
      logs: string[];
      /** Writes journaled by the tick (what a rollback would undo). */
      writes: number;
      /** The call's CPU time, at most (call-cost.ts): what the budget is checked against. */
      cpuMs: number;
      /** isolated-vm's clock for the same call, time waiting for a core included. */
      isolateMs: number;
      /** Times the call was run again because a busy machine starved it (STARVED_RERUNS). */
      reruns: number;
    }
  | {
      ok: false;
      code: FailureCode;
      /** What the script threw, when it threw (SCRIPT_ERROR, STATE_INVALID_VALUE). */
      thrown: ThrownInfo | null;
      rejections: Rejection[];
      logs: string[];
      cpuMs: number;
      /** The isolate is gone (memory limit): the caller must build a new sandbox. */
      isolateDead: boolean;
      /**
       * CPU_BUDGET_EXCEEDED or MEMORY_LIMIT stopped the call inside an event's hook: that
       * event's index in the call's events (a player's join, input or leave). Absent when the
       * call was elsewhere (init, a migration, the tick hook) or the failure has another cause.
       */
      culprit?: number;
      cause?: unknown;
    };

/** Results from the isolate: plain msgpack, 64-bit integers as numbers. */
const resultUnpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/**
 * The CPU budget is CPU time (the bound of call-cost.ts), not wall time: on a busy machine a
 * tick can take far longer on the clock than on the CPU, and failing it would reject players'
 * inputs for the machine's fault. isolated-vm's timeout is wall-clock, so it is only the hard
 * stop, at this many times the budget (a runaway loop is stopped there); a call that returns in
 * time but used more CPU than its budget is undone and fails as an overrun all the same.
 */
const WALL_LIMIT_FACTOR = 3;
/**
 * Runs again, each with twice the clock limit, of a tick call the clock stopped before it had
 * used its CPU budget (starved by a busy machine, see call-cost.ts). Two: a 20 ms budget then
 * allows 60 + 120 + 240 ms on the clock in all before the tick fails as an overrun.
 */
const STARVED_RERUNS = 2;
/**
 * The first ticks of a fresh isolate run cold (nothing is compiled yet): they get this much
 * time at least, so a room's first join is not refused for a budget it would meet when warm.
 */
const WARMUP_TICKS = 3;
const WARMUP_BUDGET_MS = 1000;

/** What a catastrophic error report says: the room, where its script was, and what it logged in that call. */
export interface CatastrophicErrorInfo {
  roomId: string;
  game: string;
  version: string;
  tick: number;
  message: string;
  lines: string[];
}

/** Time allowed for engine-side calls that are not ticks (load, rollback, export). */
const ENGINE_CALL_TIMEOUT_MS = 10_000;

export class GameSandbox {
  /** Isolates created and not yet disposed, process-wide (leak checks, metrics). */
  static live = 0;
  /**
   * Called when isolated-vm reports a catastrophic error in one of our isolates (V8 ran out of
   * memory in a way it cannot unwind from: it has lost control of that isolate). isolated-vm's
   * advice is to log it and end the process; the default here does exactly that, with one
   * structured line on stderr (written synchronously, before the abort) naming the game,
   * version and tick. The supervisor then restarts the process and rooms resume from their
   * last committed tick (docs/security.md). Without this callback V8 aborts the process on the
   * spot with only its own dump, and ops cannot tell which game did it.
   */
  static onCatastrophicError: (info: CatastrophicErrorInfo) => void = (info) => {
    // Abort whatever happens before it: a throw out of this callback would leave the process
    // hung, not aborted (isolated-vm has parked the isolate's thread for good). Each step is on
    // its own, so a recorder that fails (a full disk) still leaves the log line.
    try {
      try {
        GameSandbox.crashRecorder?.(info);
      } catch {
        /* the log line below still names the room */
      }
      const code = catastrophicErrorCode(info.message);
      const { lines: _lines, ...where } = info; // the lines go to the script journal (crashRecorder), not this line
      const line = { level: 60, time: Date.now(), service: 'moonpatch', code, ...where, msg: 'an isolate hit a catastrophic error; aborting the process' };
      writeSync(2, JSON.stringify(line) + '\n');
    } finally {
      process.abort();
    }
  };
  /** Called first on a catastrophic error, synchronously (the server records which room it was). */
  static crashRecorder: ((info: CatastrophicErrorInfo) => void) | null = null;
  private ticksRun = 0;
  /** Whether its ticks run on the main thread or the isolate's (call-placement.ts). */
  private readonly placement = new CallPlacement();
  /** Whether the last tick call ran on the main thread (tests, diagnostics). */
  lastTickInline = false;
  /** Its id with the main-thread watchdog, once it has called inline (0: never). */
  private watchId = 0;
  /** Calls left that get at least `graceBudgetMs` (see grantGrace). */
  private graceTicks = 0;
  private graceBudgetMs = 0;
  /** The tick number of the last tick call (for the catastrophic-error report). */
  private lastTick = 0;
  private disposed = false;

  private constructor(
    readonly bundle: GameBundle,
    readonly limits: SandboxLimits,
    private readonly isolate: ivm.Isolate,
    private readonly context: ivm.Context,
    private readonly fns: { tick: ivm.Reference; rollback: ivm.Reference; load: ivm.Reference; applyRecords: ivm.Reference; exportRecords: ivm.Reference; safeToPatch: ivm.Reference },
    readonly hooks: readonly string[],
    private readonly stacks: StackMapper,
    /** The lines logged in the call now running, readable if it never returns (log-ring.mjs). */
    readonly logRing: SharedArrayBuffer,
  ) {}

  /**
   * Create an isolate, run the bundle in it (module top-level code and lockdown), and take the
   * runtime's entry points. Throws SandboxStartError (BUILD_FAILED), with the stack mapped to
   * the designer's files, if the designer's top-level code throws.
   */
  static async create(bundle: GameBundle, limits: SandboxLimits): Promise<GameSandbox> {
    let created: GameSandbox | undefined;
    // Started with the first sandbox, so that it is up by the time ticks could run inline.
    if (inlineTicksEnabled()) MainThreadWatchdog.shared();
    // A V8 flag, process-wide, read when an isolate is created: set it for this one just before.
    // (0 is V8's own "not set": isolated-vm's constraints apply.)
    v8.setFlagsFromString(`--max-semi-space-size=${semiSpaceFor(limits.memoryLimitMb)}`);
    const isolate = new ivm.Isolate({
      memoryLimit: limits.memoryLimitMb,
      onCatastrophicError: (message: string) =>
        GameSandbox.onCatastrophicError({
          roomId: limits.roomId ?? '',
          game: bundle.name,
          version: bundle.version,
          tick: created?.lastTick ?? 0,
          message,
          // What the script logged in the call that hit it (its thread is parked for good).
          lines: created ? readLogRing(created.logRing) : [],
        }),
    });
    const stacks = StackMapper.of(bundle);
    try {
      const context = await isolate.createContext();
      const script = await isolate.compileScript(bundle.code, { filename: bundle.filename });
      await script.run(context, { timeout: ENGINE_CALL_TIMEOUT_MS });
      script.release();
      const api = (await context.global.get('__moonpatch', { reference: true })) as ivm.Reference;
      if (api.typeof !== 'object') throw new Error('bundle did not install the moonpatch runtime');
      const fns = {
        tick: (await api.get('tick', { reference: true })) as ivm.Reference,
        rollback: (await api.get('rollback', { reference: true })) as ivm.Reference,
        load: (await api.get('load', { reference: true })) as ivm.Reference,
        applyRecords: (await api.get('applyRecords', { reference: true })) as ivm.Reference,
        safeToPatch: (await api.get('safeToPatch', { reference: true })) as ivm.Reference,
        exportRecords: (await api.get('exportRecords', { reference: true })) as ivm.Reference,
      };
      const hooks = (await api.get('hooks', { copy: true })) as string[];
      // Shared with the isolate (an ExternalCopy of a SharedArrayBuffer shares its memory).
      const logRing = new SharedArrayBuffer(LOG_RING_BYTES);
      const attach = (await api.get('attachLogRing', { reference: true })) as ivm.Reference;
      await attach.apply(undefined, [new ivm.ExternalCopy(logRing).copyInto()], { timeout: ENGINE_CALL_TIMEOUT_MS });
      attach.release();
      api.release();
      // Scripts must never reach the engine's entry points: remove the only global that names them.
      await context.global.delete('__moonpatch');
      GameSandbox.live++;
      created = new GameSandbox(bundle, limits, isolate, context, fns, hooks, stacks, logRing);
      return created;
    } catch (e) {
      const stack = e instanceof Error && e.stack ? stacks.mapStack(e.stack) : String(e);
      if (!isolate.isDisposed) isolate.dispose();
      throw new SandboxStartError(bundle.name, bundle.version, stack, { cause: e });
    }
  }

  get isDisposed(): boolean {
    return this.isolate.isDisposed;
  }

  /** Replace the world with these records (msgpack [key, bin, key, bin, ...]). */
  async load(records: Uint8Array): Promise<void> {
    await this.fns.load.apply(undefined, [records], { arguments: { copy: true }, timeout: ENGINE_CALL_TIMEOUT_MS });
  }

  /** The script's `safeToPatch(world)` (true when it has none); false if it fails or overruns. */
  async safeToPatch(): Promise<boolean> {
    try {
      return (await this.fns.safeToPatch.apply(undefined, [], { timeout: this.limits.cpuBudgetMs })) === true;
    } catch {
      return false;
    }
  }

  /** Apply committed changes to the world directly (a staged isolate catching up). */
  async applyRecords(sets: Uint8Array, dels: Uint8Array): Promise<void> {
    await this.fns.applyRecords.apply(undefined, [sets, dels], { arguments: { copy: true }, timeout: ENGINE_CALL_TIMEOUT_MS });
  }

  /** All records of the world as the isolate holds it (msgpack [key, bin, ...]). */
  async exportRecords(): Promise<Uint8Array> {
    return (await this.fns.exportRecords.apply(undefined, [], { result: { copy: true }, timeout: ENGINE_CALL_TIMEOUT_MS })) as Uint8Array;
  }

  /**
   * Run one tick. Never throws: every failure is an outcome. On `ok: false` the world is already
   * back to where it was before the call (or the isolate is dead and must be rebuilt).
   */
  async tick(call: TickCall): Promise<TickOutcome> {
    this.lastTick = call.tick;
    let cost = new CallCost(this.isolate);
    const normal = call.budgetMs ?? this.limits.cpuBudgetMs;
    let budgetMs = this.ticksRun++ < WARMUP_TICKS ? Math.max(normal, WARMUP_BUDGET_MS) : normal;
    if (this.graceTicks > 0) {
      this.graceTicks--;
      budgetMs = Math.max(budgetMs, this.graceBudgetMs);
    }
    // Whole ms: isolated-vm refuses any other timeout ("must be a 32-bit number"), before the call.
    const wallLimitMs = Math.ceil(budgetMs * WALL_LIMIT_FACTOR);
    const tickRef = this.fns.tick;
    const args = [call.events, call.seed, call.tick, call.nowMs, call.dtSeconds, call.runInit, call.migrateFrom ?? -1, call.downgradeTo ?? -1];
    // A regular tick of a sandbox whose ticks are cheap runs on this thread (call-placement.ts),
    // while the watchdog that ends a process whose main thread V8 parked is up.
    const watchdog = inlineTicksEnabled() ? MainThreadWatchdog.shared() : null;
    let inline = false;
    let raw: Uint8Array | null = null;
    if (
      watchdog?.running &&
      call.budgetMs === undefined &&
      this.ticksRun > WARMUP_TICKS &&
      typeof tickRef.applySync === 'function' &&
      this.placement.inline(performance.now(), call.events.byteLength)
    ) {
      const inlined = await this.callInline(watchdog, call, args, budgetMs, wallLimitMs, cost);
      if (inlined !== null && !ArrayBuffer.isView(inlined)) return inlined; // the tick's own failure
      if (inlined !== null) {
        raw = inlined;
        inline = true;
      } else {
        // Stopped by the leash and undone: the isolate's thread runs it, on a budget of its own.
        cost = new CallCost(this.isolate);
      }
    }
    this.lastTickInline = inline;
    // A call the clock stopped before it had used its CPU budget was starved by a busy machine
    // (call-cost.ts), not stopped by its own doing: it is undone and run again with twice the
    // time, a few times. A tick is a function of its call and the world, so the run that
    // finishes does what the first would have done. A runaway loop uses the CPU it is given, so
    // it is stopped at the first clock limit on a machine that gives it any.
    let reruns = 0;
    for (let run = 0; raw === null; run++) {
      try {
        raw = (await tickRef.apply(undefined, args, { arguments: { copy: true }, result: { copy: true }, timeout: wallLimitMs * 2 ** run })) as Uint8Array;
      } catch (cause) {
        const failed = await this.failedCall(cause, cost, budgetMs, wallLimitMs * 2 ** run, run < STARVED_RERUNS);
        if (failed === 'starved') {
          reruns++;
          cost = new CallCost(this.isolate);
          continue;
        }
        this.placement.ran(failed.cpuMs, false, call.events.byteLength);
        return failed;
      }
    }
    const { cpuMs, isolateMs } = cost.read();
    this.placement.ran(cpuMs, inline, call.events.byteLength);
    let result: TickResult;
    try {
      result = checkResult(resultUnpackr.unpack(raw));
    } catch (cause) {
      // The result comes from inside the isolate, where the script runs: treat it as untrusted
      // input. One that does not decode to the expected shape means the runtime there was
      // subverted or broke; its world cannot be trusted either. Throwing from here would skip
      // the rollback and lose the tick's events: fail the tick and retire the isolate instead.
      this.dispose();
      const thrown = { name: 'EngineError', message: `the isolate returned a malformed tick result: ${String(cause)}`, stack: '', code: null };
      return { ok: false, code: 'ENGINE_ERROR', thrown, rejections: [], logs: [], cpuMs, isolateDead: true, cause };
    }
    const [ok, thrown, rejections, logs, flatSets, dels, writes, flatPatches] = result;
    if (ok && cpuMs > budgetMs) {
      // Finished, but on more CPU than the budget allows: undo it like any overrun.
      if (inline) this.placement.overran(performance.now());
      try {
        await this.rollback();
      } catch (e) {
        return { ok: false, code: 'CPU_BUDGET_EXCEEDED', thrown: null, rejections: [], logs, cpuMs, isolateDead: true, cause: e };
      }
      return { ok: false, code: 'CPU_BUDGET_EXCEEDED', thrown: null, rejections: [], logs, cpuMs, isolateDead: false };
    }
    const mappedRejections = rejections.map(([index, t]) => ({ index, thrown: this.mapThrown(t) }));
    if (!ok) {
      const t = this.mapThrown(thrown!);
      return { ok: false, code: 'SCRIPT_ERROR', thrown: t, rejections: mappedRejections, logs, cpuMs, isolateDead: false };
    }
    return { ok: true, sets: pairsOf(flatSets), dels, patches: pairsOf(flatPatches), rejections: mappedRejections, logs, writes, cpuMs, isolateMs, reruns };
  }

  /**
   * Give the next `ticks` tick calls at least `budgetMs`: an isolate just swapped in by a live
   * patch has run only its warm-ups, and its first real ticks still compile and grow its heap.
   * Failing them would reject every input in them because of the patch.
   */
  grantGrace(ticks: number, budgetMs: number): void {
    this.graceTicks = ticks;
    this.graceBudgetMs = budgetMs;
  }

  /** Undo the last successful tick (its commit failed); returns the isolate CPU time it took, ms. */
  async rollback(): Promise<number> {
    const before = this.isolate.cpuTime;
    await this.fns.rollback.apply(undefined, [], { timeout: ENGINE_CALL_TIMEOUT_MS });
    return this.cpuSince(before);
  }

  /**
   * Heap in use by the isolate, bytes. Never the synchronous form: that waits on the Node thread
   * for the isolate (so for a tick in progress, every room waiting with it), and if the
   * isolate's thread is parked by a catastrophic out-of-memory it waits forever: the abort
   * callback needs the Node thread, so the process hangs instead of aborting (docs/security.md;
   * hostile-scripts.test.ts scrapes /metrics through that attack).
   */
  async heapUsed(): Promise<number> {
    if (this.isolate.isDisposed) return 0;
    try {
      return (await this.isolate.getHeapStatistics()).used_heap_size;
    } catch {
      return 0; // disposed while the request waited (a rebuild, a memory limit)
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    GameSandbox.live--;
    if (this.watchId) MainThreadWatchdog.shared().forget(this.watchId);
    for (const ref of Object.values(this.fns)) ref.release();
    this.context.release();
    if (!this.isolate.isDisposed) this.isolate.dispose();
  }

  private cpuSince(before: bigint): number {
    if (this.isolate.isDisposed) return 0;
    return Number(this.isolate.cpuTime - before) / 1e6;
  }

  /**
   * The tick call on this thread, on a leash (call-placement.ts: inlineLeashMs), the watchdog
   * told which call it is in. Returns the result; or the tick's own failure (it threw, or used
   * up its budget), as the isolate's thread would have had it; or null when the leash stopped
   * it with budget to spare: not the tick's failure, so what it wrote is undone and the caller
   * runs the same call again on the isolate's thread with its whole budget. A tick is a function
   * of its call and the world, so it does there what it would have done here (the outcome's
   * cpuMs is then the second run's).
   */
  private async callInline(
    watchdog: MainThreadWatchdog,
    call: TickCall,
    args: unknown[],
    budgetMs: number,
    wallLimitMs: number,
    cost: CallCost,
  ): Promise<Uint8Array | TickOutcome | null> {
    const leashMs = Math.min(wallLimitMs, inlineLeashMs());
    try {
      this.watchId ||= watchdog.register({ roomId: this.limits.roomId ?? '', game: this.bundle.name, version: this.bundle.version, logRing: this.logRing });
      watchdog.begin(this.watchId, call.tick, leashMs);
      try {
        return this.fns.tick.applySync(undefined, args, { arguments: { copy: true }, result: { copy: true }, timeout: leashMs }) as Uint8Array;
      } finally {
        watchdog.end();
      }
    } catch (cause) {
      const { cpuMs, wallMs } = cost.read();
      const leashed = leashMs < wallLimitMs && !this.isolate.isDisposed && wallMs >= leashMs * 0.9 && cpuMs < budgetMs;
      if (!leashed) {
        // Starved here (the clock limit, before the CPU budget): undone, and run again there.
        const failed = await this.failedCall(cause, cost, budgetMs, wallLimitMs, true);
        if (failed === 'starved') {
          this.placement.overran(performance.now());
          return null;
        }
        this.placement.ran(failed.cpuMs, true, call.events.byteLength);
        if (failed.ok === false && failed.code === 'CPU_BUDGET_EXCEEDED') this.placement.overran(performance.now());
        this.lastTickInline = true;
        return failed;
      }
      this.placement.overran(performance.now());
      try {
        await this.rollback();
      } catch (e) {
        return { ok: false, code: this.isolate.isDisposed ? 'MEMORY_LIMIT' : 'ENGINE_ERROR', thrown: null, rejections: [], logs: [], cpuMs, isolateDead: true, cause: e };
      }
      return null;
    }
  }

  /**
   * Classify a tick call that threw on the host side. Our runtime catches everything a hook
   * throws, so what escapes is: the isolate dying (memory limit), the CPU budget running out
   * (the interrupt cannot be caught inside), or an error from script code that ran after the
   * hooks returned (a promise callback; V8 runs those before the call completes). Classified
   * by state, not by message text: a dead isolate is disposed; an overrun has used its budget.
   * A call stopped by the clock limit that had not used its CPU budget was starved by a busy
   * machine: with `mayRunAgain` that is 'starved' (undone, for the caller to run again), else
   * an overrun.
   */
  private async failedCall(cause: unknown, cost: CallCost, budgetMs: number, wallLimitMs: number, mayRunAgain: boolean): Promise<TickOutcome | 'starved'> {
    // Where the call was when it stopped: an event's hook, or none (log-ring.mjs).
    const running = readRunningEvent(this.logRing);
    const culprit = running >= 0 ? { culprit: running } : {};
    const base = { rejections: [], logs: [], cause };
    if (this.isolate.isDisposed) {
      return { ...base, ...culprit, thrown: null, ok: false, code: 'MEMORY_LIMIT', cpuMs: 0, isolateDead: true };
    }
    const { cpuMs, wallMs } = cost.read();
    const stoppedByClock = wallMs >= wallLimitMs * 0.9;
    const starved = stoppedByClock && cpuMs < budgetMs && mayRunAgain;
    // Stopped by the wall-clock hard limit, or threw after using up its CPU budget anyway.
    const overran = stoppedByClock || cpuMs >= budgetMs;
    const code: FailureCode = overran ? 'CPU_BUDGET_EXCEEDED' : 'SCRIPT_ERROR';
    const thrown = overran ? null : this.mapThrown(thrownFromHost(cause));
    // The interrupted tick may have written part of its changes: undo them.
    try {
      await this.rollback();
    } catch (e) {
      // The isolate died meanwhile: an isolate at its memory limit can spend longer in garbage
      // collection than the wall-clock limit (0.7-1.5 s measured for a 64 MB heap), and the
      // timeout rejects the call before the limit disposes it. Memory is what ran out.
      if (this.isolate.isDisposed) return { ...base, ...culprit, thrown: null, ok: false, code: 'MEMORY_LIMIT', cpuMs, isolateDead: true, cause: e };
      return { ...base, ...(overran ? culprit : {}), thrown, ok: false, code, cpuMs, isolateDead: true, cause: e };
    }
    if (starved) return 'starved';
    return { ...base, ...(overran ? culprit : {}), thrown, ok: false, code, cpuMs, isolateDead: false };
  }

  private mapThrown(t: ThrownInfo): ThrownInfo {
    return t.stack ? { ...t, stack: this.stacks.mapStack(t.stack) } : t;
  }
}

type TickResult = [boolean, ThrownInfo | null, [number, ThrownInfo][], string[], (string | Uint8Array)[], string[], number, (string | Uint8Array)[]];

const isThrownInfo = (t: unknown): t is ThrownInfo =>
  typeof t === 'object' && t !== null && typeof (t as ThrownInfo).name === 'string' && typeof (t as ThrownInfo).message === 'string' && typeof (t as ThrownInfo).stack === 'string';

/** The tick result's shape (runtime/entry.ts), checked field by field; throws if it is not that. */
function checkResult(r: unknown): TickResult {
  const fail = (what: string): never => {
    throw new Error(`bad ${what}`);
  };
  if (!Array.isArray(r) || r.length !== 8) fail('result');
  const [ok, thrown, rejections, logs, sets, dels, writes, patches] = r as unknown[];
  if (typeof ok !== 'boolean' || (ok ? thrown !== null : !isThrownInfo(thrown))) fail('status');
  if (!Array.isArray(rejections) || !rejections.every((x) => Array.isArray(x) && typeof x[0] === 'number' && isThrownInfo(x[1]))) fail('rejections');
  if (!Array.isArray(logs) || !logs.every((x) => typeof x === 'string')) fail('logs');
  if (!Array.isArray(sets) || sets.length % 2 !== 0 || !sets.every((x, i) => (i % 2 === 0 ? typeof x === 'string' : x instanceof Uint8Array))) fail('sets');
  if (!Array.isArray(dels) || !dels.every((x) => typeof x === 'string')) fail('dels');
  if (typeof writes !== 'number') fail('writes');
  if (!Array.isArray(patches) || patches.length % 2 !== 0 || !patches.every((x, i) => (i % 2 === 0 ? typeof x === 'string' : isPatch(x)))) fail('patches');
  return r as TickResult;
}

/**
 * Patch bytes are spliced into frames as they are (codec.ts) and folded into records on the
 * host (record-patch.ts): they must be one well-formed map with string keys.
 */
function isPatch(x: unknown): boolean {
  return x instanceof Uint8Array && isFoldablePatch(x);
}


/** An error that came out of the isolate as a host Error (isolated-vm copies name, message, stack). */
function thrownFromHost(e: unknown): ThrownInfo {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return { name: e.name, message: e.message, stack: e.stack ?? '', code: typeof code === 'string' ? code : e.name === 'StateValueError' ? 'STATE_INVALID_VALUE' : null };
  }
  return { name: typeof e, message: String(e), stack: '', code: null };
}

/** The bundle's top-level code threw, or the isolate could not be set up. */
export class SandboxStartError extends MoonpatchError {
  constructor(
    readonly game: string,
    readonly version: string,
    readonly scriptStack: string,
    options?: { cause?: unknown },
  ) {
    super('BUILD_FAILED', `game ${game}@${version} failed to start in its sandbox: ${scriptStack.split('\n')[0]}`, options);
  }
}
