/**
 * A room's live patching: staging a new version in a fresh isolate off the tick path, picking
 * the tick it swaps at, the swap tick itself (swap-tick.ts), the verification window after a
 * patch with its automatic rollback, rollbacks (by downgrade, or by replaying the ticks recorded
 * since the swap: replay.ts), and the patch history.
 *
 * The room (room.ts) owns the tick loop and asks this at each step: which version runs this
 * tick (candidate, trySwap), and what a committed or failed tick means for a switch under way
 * (complete, recordForReplay, tickCommitted, tickFailed, drop). The room's own state (its
 * isolate, bundle, meta, players) changes only through SwitchingRoom.adopt.
 */
import type { Logger } from 'pino';
import { MoonpatchError } from '../errors/errors.ts';
import { channels, publish } from '../ops/events.ts';
import type { GameVersion } from '../patch/versions.ts';
import { baselineShare, refusalsTooHigh } from '../patch/refusals.ts';
import { encodeServerMessage } from '../protocol/codec.ts';
import { GameSandbox, type TickCall, type TickOutcome } from '../sandbox/sandbox.ts';
import { CommittedState } from '../state/committed-state.ts';
import type { PatchHistoryEntry, RoomMeta, RoomStore } from '../state/room-store.ts';
import { Replayer, SwapPoint } from './replay.ts';
import { StagedVersion, type SwapResult } from './staged-version.ts';
import { runSwapTick } from './swap-tick.ts';

export interface StageOptions {
  /** Swap only at a tick where the running scripts' safeToPatch(world) says yes... */
  safePoint?: boolean;
  /** ...or once this much time has passed, ms. @default 30000 */
  deadlineMs?: number;
  /**
   * A rollback's reason, for its history entry. Kept with the staging it belongs to: a second
   * rollback asked for meanwhile is refused and must not rename the first.
   */
  why?: string;
}

/** What a version switch needs from its room (implemented by Room). */
export interface SwitchingRoom {
  readonly id: string;
  readonly game: string;
  /** The running version's bundle version, and its number and schema. */
  readonly version: string;
  readonly current: GameVersion | null;
  readonly meta: RoomMeta;
  /** The last committed tick. */
  readonly tick: number;
  readonly committed: CommittedState;
  readonly settings: { cpuBudgetMs: number; migrationBudgetMs: number; verifyWindowTicks: number; verifyMaxFailures: number; verifyRefusalMarginPercent: number };
  readonly sandbox: GameSandbox;
  readonly isStopped: boolean;
  /** The call that runs tick `tick` with these events. */
  tickCall(tick: number, events: Uint8Array): TickCall;
  /** Events for a warm-up run: those queued for the next tick, else the last tick's. */
  warmUpEvents(): Uint8Array;
  /** The swap tick committed: from now on the room runs `version` in `sandbox`. */
  adopt(version: GameVersion, sandbox: GameSandbox): void;
  /** Send a frame to every connected player. */
  notifyPlayers(frame: Uint8Array): void;
}

/**
 * Rolled-back runs of the swap tick in a staged isolate before it may swap. V8 optimizes a
 * fresh isolate's code over its first calls: the arena with 1,000 players took 66, 39, 28, 22,
 * 21, 17, 18, 14, 10, 12, 13 ms for its first eleven runs against 13-15 ms for the warm old
 * version (measured with a scratch script on 2026-11-26). With the three runs used before,
 * the swap tick and the ten ticks after it ran 1.5-2.5x slower than the old version's median.
 */
const WARM_UP_RUNS = 12;

/**
 * Ticks after a swap that run with the migration's budget on top of the tick's: the new
 * isolate's first real ticks are still cold (see GameSandbox.grantGrace). The verification
 * window still counts CPU trouble after them.
 */
const POST_SWAP_GRACE_TICKS = 20;

const percent = (part: number, whole: number) => `${Math.round((part / whole) * 100)}%`;

export class VersionSwitch {
  /** A new version waiting for the next tick boundary. */
  private staged: StagedVersion | null = null;
  /** The version before the last patch: where a rollback goes by default. */
  private previous: GameVersion | null = null;
  /**
   * After a patch: the version before it, until which tick it is watched, its failed ticks, and
   * the events its hooks ran and refused against the share the version before refused.
   */
  private verification: { previous: GameVersion; untilTick: number; failures: number; events: number; refused: number; refusedBefore: number } | null = null;
  /** Events the running version's hooks ran and refused since it became current (its baseline for the next patch). */
  private tally = { events: 0, refused: 0 };

  constructor(
    private readonly room: SwitchingRoom,
    private readonly store: RoomStore,
    private readonly log: Logger,
  ) {}

  /** The version being staged, if a switch is under way. */
  get staging(): StagedVersion | null {
    return this.staged;
  }

  /**
   * Rollbacks (automatic or asked for) started and not finished. A count, not a flag: a second
   * request refused while one runs (PATCH_IN_PROGRESS) must not end the first one's.
   */
  private rollbacksUnderWay = 0;

  /**
   * Whether a failed tick's inputs and joins should wait for a rollback instead of being
   * refused (held-events.ts): while a patch is on watch, since its failures may roll it back,
   * and while a rollback is under way, from before its isolate exists to its swap tick.
   */
  get holdsFailedTickEvents(): boolean {
    return this.verification !== null || this.rollbacksUnderWay > 0;
  }

  /** CPU budget of a swap tick (and of the runs that rehearse or replay one), ms. */
  private get swapBudgetMs(): number {
    return this.room.settings.cpuBudgetMs + this.room.settings.migrationBudgetMs;
  }

  /**
   * Prepare `version` in a fresh isolate off the tick path, and swap to it at the next tick
   * boundary: the swap tick migrates the live state (when the schema changes), validates it and
   * runs the tick, all in the new isolate and in one transaction. If any of that fails, the
   * same tick runs on the current version instead: the room stays where it was, state
   * untouched, no input lost. Resolves with the outcome once the swap tick has committed.
   */
  async stage(version: GameVersion, reason: 'patch' | 'rollback' = 'patch', opts: StageOptions = {}, replay?: SwapPoint): Promise<SwapResult> {
    const room = this.room;
    if (room.meta.pinned && reason === 'patch') throw new MoonpatchError('ROOM_PINNED', `room ${room.id} is pinned to ${room.version}`);
    if (this.staged) throw new MoonpatchError('PATCH_IN_PROGRESS', `room ${room.id} is already switching to ${this.staged.version.bundle.version}`);
    if (version.bundle.version === room.version) throw new MoonpatchError('ALREADY_ON_VERSION', `room ${room.id} already runs ${room.version}`);
    let sandbox: GameSandbox;
    try {
      sandbox = await GameSandbox.create(version.bundle, room.sandbox.limits);
    } catch (e) {
      const err = e as MoonpatchError & { scriptStack?: string };
      return { ok: false, roomId: room.id, stage: 'build', code: err.code ?? 'BUILD_FAILED', message: err.message, stack: err.scriptStack };
    }
    if (this.staged || room.isStopped) {
      sandbox.dispose();
      throw new MoonpatchError('PATCH_IN_PROGRESS', `room ${room.id} changed while the patch was compiling`);
    }
    // From this moment every commit also goes to the staged backlog, so the snapshot taken
    // here plus the backlog is always the committed state.
    const downgrade = !replay && version.schema < room.meta.schema;
    const deadline = opts.safePoint ? Date.now() + (opts.deadlineMs ?? 30_000) : null;
    const staged = new StagedVersion(version, sandbox, reason, downgrade, deadline, { version: room.version, schema: room.meta.schema });
    staged.why = opts.why ?? '';
    this.staged = staged;
    if (replay) {
      // Start from the swap point; catching up replays the recorded ticks (which warms it too).
      staged.replay = new Replayer(replay, sandbox, (tick, events) => ({ ...room.tickCall(tick, events), budgetMs: this.swapBudgetMs }));
      await sandbox.load(new CommittedState(replay.tick, replay.records).encodeForLoad());
    } else {
      await sandbox.load(room.committed.encodeForLoad());
      await this.warmUp(staged);
    }
    // Catch up with the ticks committed while loading and warming, and with those committed
    // while that ran (no catch-up runs for them before `ready`), so the swap tick finds the
    // backlog empty instead of applying a whole tick's changes on the tick path.
    do await staged.catchUp();
    while (staged.hasBacklog && this.staged === staged);
    if (this.staged === staged) staged.ready = true;
    return staged.result;
  }

  /**
   * Go back to `version` (by default the one before the last patch) without losing what players
   * did since: same schema, a plain swap; an older schema, the current version's
   * `downgrade(world, toSchema)` turns the live world back first, in the same transaction as
   * the swap tick. A version without `downgrade` cannot go back across its schema change:
   * ROLLBACK_NEEDS_DOWNGRADE, and nothing changes.
   */
  async rollbackTo(version: GameVersion | null = this.previous, why = 'manual rollback'): Promise<SwapResult> {
    const room = this.room;
    if (!version) throw new MoonpatchError('NOTHING_TO_ROLL_BACK', `room ${room.id} has no previous version to go back to`);
    // Across a schema change: the patch's downgrade when it has one; otherwise replay the
    // ticks since the swap, when they were recorded and the target is the version that ran
    // before it (ticks are deterministic on that version, not on another of the same schema).
    const point = this.swapPoint;
    const replay =
      version.schema !== room.meta.schema && !room.sandbox.hooks.includes('downgrade') && point?.version === version.bundle.version ? point : undefined;
    if (version.schema < room.meta.schema && !room.sandbox.hooks.includes('downgrade') && !replay) {
      void this.recordHistory({ kind: 'rollback-refused', from: room.version, to: version.bundle.version, tick: room.tick, reason: `${why}: no downgrade, and no recorded ticks to replay` });
      throw new MoonpatchError(
        'ROLLBACK_NEEDS_DOWNGRADE',
        `version ${room.version} changed the schema (${version.schema} -> ${room.meta.schema}), exports no downgrade(world, toSchema), and the ticks since its swap were not recorded (the replay window passed): it cannot be rolled back without losing state`,
      );
    }
    this.log.warn({ roomId: room.id, tick: room.tick, fromVersion: room.version, toVersion: version.bundle.version, reason: why, by: replay ? 'replay' : room.sandbox.hooks.includes('downgrade') && version.schema < room.meta.schema ? 'downgrade' : 'swap' }, 'rolling back');
    this.rollbacksUnderWay++;
    try {
      return await this.stage(version, 'rollback', { why }, replay);
    } finally {
      this.rollbacksUnderWay--;
    }
  }

  /**
   * From a patch's swap on: the world just before the swap tick and the events of every tick
   * since, so the patch can be rolled back by replay (see replay.ts). Null before any patch,
   * after a rollback, and once the recording passed its limits.
   */
  private swapPoint: SwapPoint | null = null;

  /** A tick committed: keep its events while a swap point is open (see swapPoint). */
  recordForReplay(swap: StagedVersion | null, tick: number, events: Uint8Array): void {
    if (swap) {
      // The swap tick itself is the first recorded one: it is replayed on the old version too.
      this.swapPoint = swap.reason === 'patch' ? new SwapPoint(tick - 1, swap.replayFrom.version, swap.replayFrom.schema, new Map(this.room.committed.records)) : null;
    }
    if (!this.swapPoint || this.swapPoint.record(tick, events)) return;
    this.log.info({ roomId: this.room.id, tick, since: this.swapPoint.tick }, 'replay recording for rollback passed its limits; rolling this patch back across its schema now needs a downgrade');
    this.swapPoint = null;
    if (this.staged?.replay) {
      this.drop({ ok: false, roomId: this.room.id, stage: 'tick', code: 'ROLLBACK_NEEDS_DOWNGRADE', message: 'the recorded ticks passed their limit before the replay caught up' });
    }
  }


  /** The latest patch outcome in this room (status); the full history is in Redis. */
  lastPatch: PatchHistoryEntry | null = null;

  /**
   * The latest outcome read from the room's history when it opened here (after a restart, a
   * move or a takeover), so status shows it; an outcome recorded here since wins.
   */
  restoreLastPatch(entry: PatchHistoryEntry | null): void {
    if (this.lastPatch === null) this.lastPatch = entry;
  }

  private recordHistory(e: Omit<PatchHistoryEntry, 'at'>): Promise<void> {
    const room = this.room;
    this.lastPatch = { at: Date.now(), ...e };
    publish(channels.room, { roomId: room.id, game: room.game, version: e.to, what: `patch-${e.kind}`, detail: e.reason });
    return this.store.appendHistory(room.id, this.lastPatch).catch((err: unknown) => this.log.warn({ err, roomId: room.id }, 'could not record patch history'));
  }

  /** A tick failed: count it against a patch being verified; roll the patch back past the limit. */
  tickFailed(tick: number): void {
    const v = this.verification;
    if (!v || this.staged) return;
    v.failures++;
    if (v.failures < this.room.settings.verifyMaxFailures) return;
    this.autoRollback(v.previous, `verification failed: ${v.failures} failed ticks by tick ${tick}`);
  }

  /**
   * A tick committed on the running version, with `events` events of which its hooks refused
   * `refused`. Inside a patch's window, a share of refusals well above the version before's
   * rolls the patch back: a broken input hook refuses every input and fails no tick. Past the
   * window, the patch is verified.
   */
  tickCommitted(tick: number, events: number, refused: number): void {
    this.tally.events += events;
    this.tally.refused += refused;
    const v = this.verification;
    if (!v) return;
    v.events += events;
    v.refused += refused;
    if (!this.staged && refusalsTooHigh(v, this.room.settings.verifyRefusalMarginPercent)) {
      const why = `verification failed: the scripts refused ${percent(v.refused, v.events)} of ${v.events} events (${v.refused}) by tick ${tick}, against ${percent(v.refusedBefore, 1)} before the patch`;
      return this.autoRollback(v.previous, why);
    }
    if (tick < v.untilTick) return;
    this.verification = null;
    void this.recordHistory({ kind: 'verified', from: v.previous.bundle.version, to: this.room.version, tick, reason: `${v.failures} failed ticks in the window, ${v.refused} of ${v.events} events refused` });
  }

  private autoRollback(previous: GameVersion, why: string): void {
    this.verification = null;
    this.rollbackTo(previous, why).then(
      (r) => this.log.warn({ roomId: this.room.id, ok: r.ok, result: r }, 'automatic rollback finished'),
      (e: unknown) => this.log.error({ roomId: this.room.id, err: e }, 'automatic rollback impossible'),
    );
  }

  /**
   * A fresh isolate runs its first calls cold (nothing compiled yet): run the swap tick
   * {@link WARM_UP_RUNS} times off the tick path, each rolled back, so the real one and the
   * ticks after it run warm. A warm-up that fails is not fatal here; the real swap tick
   * decides. (Each run catches up first, yet the world may be a tick behind the committed
   * one by the time it runs; for warming the code that does not matter.)
   */
  private async warmUp(staged: StagedVersion): Promise<void> {
    const room = this.room;
    const fromSchema = room.meta.schema;
    for (let i = 0; i < WARM_UP_RUNS && this.staged === staged; i++) {
      // Catch up first, so the runs see the world as it is now: values that changed since the
      // load (an integer field that became fractional) change V8's object shapes, and the
      // compiled code must have seen those shapes before the swap tick, not during it.
      await staged.catchUp();
      // Real events make a realistic warm-up (see Room.warmUpEvents), and a rolled-back run
      // has no effect on anything.
      const out = await staged.sandbox.tick({
        ...room.tickCall(room.tick + 1, room.warmUpEvents()),
        runInit: false,
        migrateFrom: staged.version.schema !== fromSchema ? fromSchema : undefined,
        budgetMs: this.swapBudgetMs,
      });
      if (!out.ok) break;
      await staged.sandbox.rollback();
    }
  }

  /** Ticks skipped waiting for a staged version's catch-up to finish. */
  private swapWaits = 0;

  /**
   * The staged version, if it should take this tick. It waits while a catch-up is still running
   * (so the swap tick does not wait for it), but not forever: after 20 ticks it swaps anyway.
   */
  candidate(runInit: boolean): StagedVersion | null {
    const staged = this.staged;
    if (!staged?.ready || runInit) return null;
    if (!staged.canSwap && ++this.swapWaits <= 20) return null;
    this.swapWaits = 0;
    return staged;
  }

  /**
   * Run this tick on the staged version (see swap-tick.ts); null when the current version must
   * run it instead: the staging was refused (and is dropped here) or it will try again later.
   */
  async trySwap(staged: StagedVersion, call: TickCall, tick: number): Promise<TickOutcome | null> {
    const room = this.room;
    const result = await runSwapTick(staged, call, tick, {
      roomId: room.id,
      version: room.version,
      fromSchema: room.meta.schema,
      current: room.sandbox,
      committed: room.committed,
      tickBudgetMs: room.settings.cpuBudgetMs,
      migrationBudgetMs: room.settings.migrationBudgetMs,
      log: this.log,
    });
    if ('refusal' in result) {
      this.drop(result.refusal);
      return null;
    }
    return result.outcome;
  }

  /** Give up the staged version (disposing its isolate) and settle its promise with `result`. */
  drop(result: SwapResult): void {
    const staged = this.staged;
    if (!staged) return;
    this.staged = null;
    staged.sandbox.dispose();
    if (!result.ok) {
      void this.recordHistory({
        kind: staged.reason === 'rollback' ? 'rollback-refused' : 'refused',
        from: this.room.version,
        to: staged.version.bundle.version,
        tick: this.room.tick,
        reason: `${result.stage}: ${result.code}: ${result.message}`,
      });
    }
    staged.finish(result);
  }

  /** The swap tick committed: the staged version is the room's version from here on. */
  complete(staged: StagedVersion, tick: number, swapTickMs: number, records: number): void {
    const room = this.room;
    const from = room.version;
    const fromSchema = room.meta.schema;
    const previous = room.current;
    staged.sandbox.grantGrace(POST_SWAP_GRACE_TICKS, this.swapBudgetMs);
    room.adopt(staged.version, staged.sandbox);
    this.staged = null;
    if (staged.reason === 'patch') this.previous = previous;
    // A patch is watched for a while: enough failed ticks, or far more events refused by its
    // hooks than the version before refused (its tally, the baseline), and it is rolled back.
    // A rollback is not watched (there would be nothing safer to go back to).
    const refusedBefore = baselineShare(this.tally);
    this.tally = { events: 0, refused: 0 };
    this.verification =
      staged.reason === 'patch' && previous
        ? { previous, untilTick: tick + room.settings.verifyWindowTicks, failures: 0, events: 0, refused: 0, refusedBefore }
        : null;
    void this.recordHistory({
      kind: staged.reason === 'rollback' ? 'rolled-back' : 'applied',
      from,
      to: staged.version.bundle.version,
      tick,
      reason: staged.reason === 'rollback' ? staged.why + staged.note : undefined,
    });
    room.notifyPlayers(encodeServerMessage({ t: 'ver', from, to: room.version, tick }));
    this.log.info({ roomId: room.id, tick, fromVersion: from, toVersion: room.version, fromSchema, toSchema: room.meta.schema, swapTickMs }, 'script swapped');
    staged.finish({ ok: true, roomId: room.id, from, to: room.version, fromSchema, toSchema: room.meta.schema, tick, swapTickMs, records });
  }
}
