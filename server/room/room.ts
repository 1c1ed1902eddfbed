/**
 * One running room: its tick loop and the tick transaction (its seats and connections: seating.ts).
 *
 * A tick is a transaction (the order matters, each step only runs if the previous succeeded):
 *   1. drain the queued events (joins, inputs, leaves) in arrival order;
 *   2. run them and the `tick` hook in the isolate; a failure there is already rolled back;
 *   3. commit the changed records, seats and input seqs to Redis in one fenced round trip;
 *      if that fails, roll the isolate back and put the events back in the queue;
 *   4. only then update the committed mirror and tell players: acks, errors, welcomes, deltas.
 * Nothing uncommitted ever reaches Redis or a player.
 */
import type { Logger } from 'pino';
import { type ErrorCode, CloseCodes } from '../errors/codes.ts';
import type { ThrownInfo } from '../errors/errors.ts';
import { channels, publish, type ScriptOutputEvent, type TickCommittedEvent, type TickFailedEvent } from '../ops/events.ts';
import { MsgpackWriter } from '../sandbox/runtime/msgpack.ts';
import { EVENT_INPUT, EVENT_JOIN, EVENT_LEAVE, EVENT_LEAVE_WITHOUT_HOOK, GameSandbox, type TickCall, type TickOutcome } from '../sandbox/sandbox.ts';
import type { GameBundle } from '../sandbox/bundler.ts';
import { Checkpointer } from '../state/checkpointer.ts';
import { CommittedState } from '../state/committed-state.ts';
import { encodeTickDelta } from '../state/tick-delta.ts';
import type { PatchHistoryEntry, RoomMeta, RoomStore } from '../state/room-store.ts';
import { Broadcaster, type BroadcastLimits } from './broadcaster.ts';
import type { InterestSettings } from '../config/config.ts';
import { HeldEvents } from './held-events.ts';
import { InputQueue, type InputEvent, type JoinEvent, type RoomEvent } from './input-queue.ts';
import type { PlayerLink } from './link.ts';
import type { Seat } from './seats.ts';
import { Seating, type SeatHandle } from './seating.ts';
import { EXPEL_WINDOW_MS, StoppedTicks } from './stopped-ticks.ts';
import type { StagedVersion, SwapResult } from './staged-version.ts';
import { VersionSwitch, type StageOptions } from './version-switch.ts';
import { TickClock } from './tick-clock.ts';
import type { GameVersion } from '../patch/versions.ts';
import { TickWindow } from './tick-window.ts';
import { LoadMeter } from './load-meter.ts';

export interface RoomSettings {
  tickHz: number;
  broadcastHz: number;
  cpuBudgetMs: number;
  /** Extra CPU for the migration in a live patch's swap tick, ms. */
  migrationBudgetMs: number;
  /** Ticks a new version is watched after a patch. */
  verifyWindowTicks: number;
  /** Failed ticks within the window that roll the patch back. */
  verifyMaxFailures: number;
  /** How many percentage points more of the events the new version may refuse (GameManifest). */
  verifyRefusalMarginPercent: number;
  memoryLimitMb: number;
  maxPlayers: number;
  /** Most inputs one player may have queued for the next tick. */
  inputQueueLimit: number;
  /** How long a disconnected player's seat is kept for a resume, ms. */
  resumeWindowMs: number;
  /** The connection's input rate limit (net/session.ts), told to clients in the welcome. */
  inputRatePerSecond: number;
  inputBurst: number;
  broadcast: BroadcastLimits;
  /** Interest management (game.json `interest`), or null: every player receives every record. */
  interest: InterestSettings | null;
}

export type { SeatHandle } from './seating.ts';

export class Room {
  readonly queue: InputQueue;
  readonly broadcaster: Broadcaster;
  /** The players' seats and connections: joins, resumes, acks (seating.ts). */
  private readonly seating: Seating;
  private readonly clock: TickClock;
  /** Inputs and joins of failed ticks waiting for a rollback (see held-events.ts). */
  private readonly held = new HeldEvents();
  /** Who stopped ticks lately, and what runs again after a stopped tick (stopped-ticks.ts). */
  private readonly stoppedTicks = new StoppedTicks();
  private readonly eventWriter = new MsgpackWriter(16 * 1024);
  private readonly deltaWriter = new MsgpackWriter(64 * 1024);
  private readonly checkpointer: Checkpointer;
  /** Live patching: a version being staged, verification after a patch, rollbacks, history. */
  private readonly versions: VersionSwitch;
  /** The version running, with its number and schema (set by the room manager). */
  current: GameVersion | null = null;
  /** Broadcasts owed: +broadcastHz/tickHz per committed tick, one sent per whole unit (see maybeBroadcast). */
  private broadcastCredit = 0;
  private stopped = false;
  /** The last commit failed (Redis trouble): the room holds its events and retries. */
  degraded = false;
  /** Script + commit time of the last committed tick, ms (status). */
  lastTickMs = 0;
  /** The last committed ticks' times on the running version (status, A/B by version). */
  readonly recentTicks = new TickWindow();
  /** The CPU this room used lately (status; the rebalancer's REBALANCE_BY=cpu). */
  private readonly load = new LoadMeter();
  /** A write-back of the whole room into Redis after Redis lost it (see restoreStore). */
  private restoring: Promise<void> | null = null;

  constructor(
    readonly id: string,
    readonly meta: RoomMeta,
    public bundle: GameBundle,
    /** The running version's isolate (replaced at a swap, see adopt, and by rebuildSandbox). */
    private runningSandbox: GameSandbox,
    private readonly store: RoomStore,
    readonly committed: CommittedState,
    readonly settings: RoomSettings,
    private readonly log: Logger,
    private readonly onStopped: (room: Room) => void,
  ) {
    this.queue = new InputQueue(settings.inputQueueLimit);
    this.versions = new VersionSwitch(this, store, log);
    this.broadcaster = new Broadcaster(committed, settings.broadcast, settings.interest);
    this.seating = new Seating(this, (tick, hook, thrown, playerId, code) => this.logScriptError(tick, hook, thrown, playerId, code));
    this.clock = new TickClock(settings.tickHz, (lateMs) => this.runTick(lateMs), (e) => this.log.error({ err: e, roomId: id }, 'tick loop error'));
    this.checkpointer = new Checkpointer(
      store,
      id,
      meta.epoch,
      committed,
      (playerId) => this.seating.seats.get(playerId)?.lastAppliedSeq,
      (e) => this.log.warn({ err: e, roomId: id }, 'checkpoint failed; the log keeps everything, will retry'),
    );
  }

  /**
   * Records and players a previous owner committed to the log but never checkpointed: the
   * first checkpoint here trims that log, so it must write them too.
   */
  inheritUncheckpointed(keys: Iterable<string>, players: Iterable<string>): void {
    this.checkpointer.inherit(keys, players);
  }

  /** Fold the tick log into the checkpoint now (graceful shutdown). */
  async checkpoint(): Promise<void> {
    await this.checkpointer.flush();
  }

  get version(): string {
    return this.bundle.version;
  }

  get game(): string {
    return this.meta.game;
  }

  /** The isolate of the version running now. */
  get sandbox(): GameSandbox {
    return this.runningSandbox;
  }

  get tick(): number {
    return this.committed.tick;
  }

  /** The epoch this room was claimed under: its fencing token in Redis. */
  get epoch(): number {
    return this.meta.epoch;
  }

  get missedTicks(): number {
    return this.clock.missed;
  }

  /** Events waiting to run: queued for the next tick, and held through failed ticks for a rollback. */
  get waitingEvents(): number {
    return this.queue.size + this.held.size;
  }

  /** The seats, by player id, connected or not (tests, admin). */
  get seats(): ReadonlyMap<string, Seat> {
    return this.seating.seats;
  }

  get playerCount(): number {
    return this.seating.size;
  }

  /** Cores this room used lately: its script's CPU and its main-thread work after commits (load-meter.ts). */
  get cpuCores(): number {
    return this.load.cores();
  }

  get connectedCount(): number {
    return this.broadcaster.size;
  }

  heapUsed(): Promise<number> {
    return this.sandbox.heapUsed();
  }

  /** Every record as the isolate holds it now (tests compare it with the committed mirror). */
  async isolateRecords(): Promise<Uint8Array> {
    return this.sandbox.exportRecords();
  }

  /** Seats restored from Redis after a (re)start: all disconnected until they resume. */
  restoreSeat(seat: Seat): void {
    this.seating.restore(seat);
  }

  /**
   * Where in its period this room ticks (a fraction, tick-phases.ts), set by the room manager
   * before the room starts; undefined: a period from whenever the clock starts.
   */
  tickPhase: number | undefined = undefined;

  start(): void {
    this.clock.start(this.tickPhase);
    publish(channels.room, { roomId: this.id, game: this.game, version: this.version, what: 'started' });
  }

  /**
   * Stop the tick clock and wait for the tick in progress; ticks then run only when called
   * ({@link runTick}). For tests, benchmarks and a graceful shutdown.
   */
  async pauseClock(): Promise<void> {
    this.clock.stop();
    await this.clock.idle();
  }

  resumeClock(): void {
    if (!this.stopped) this.clock.start(this.tickPhase);
  }

  /**
   * Close every player's connection, keeping their seats (no leave is queued: the seats are
   * resumed elsewhere or here). What a player sends from now on stays in its client, which
   * resends it after resuming: used when the room is about to move to another server.
   */
  closeConnections(closeCode: number, reason: string): void {
    this.seating.closeConnections(closeCode, reason);
  }

  /** Stop ticking and close every connection (shutdown, or ownership lost). */
  stop(closeCode: number = CloseCodes.SHUTDOWN, reason = 'server shutting down'): void {
    if (this.stopped) return;
    this.stopped = true;
    this.clock.stop();
    this.seating.stop(closeCode, reason);
    this.versions.drop({ ok: false, roomId: this.id, stage: 'tick', code: 'ROOM_UNAVAILABLE', message: 'the room stopped before the swap' });
    this.sandbox.dispose();
    publish(channels.room, { roomId: this.id, game: this.game, version: this.version, what: 'stopped', detail: reason });
    this.onStopped(this);
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /**
   * Nobody to play for: no seat (a disconnected player's seat counts until its resume window
   * runs out), no join waiting for its tick, no version switch under way, and its commits
   * landing (a degraded room holds state Redis may not have yet). The room manager unloads a
   * room that stays idle (RoomManager.sweepIdle).
   */
  /** A live patch is being staged or verified here (moving the room now would abort it). */
  get isSwitchingVersion(): boolean {
    return this.versions.staging !== null;
  }

  get isIdle(): boolean {
    return !this.stopped && !this.degraded && this.seating.isEmpty && !this.isSwitchingVersion;
  }

  get schema(): number {
    return this.meta.schema;
  }

  get pinned(): boolean {
    return this.meta.pinned;
  }

  /** Pin the room to its version (patches skip or refuse it) or unpin it. */
  async setPinned(pinned: boolean): Promise<void> {
    await this.store.setPinned(this.id, pinned);
    this.meta.pinned = pinned;
  }

  // ---- live patching (version-switch.ts) ----

  /**
   * Prepare `version` in a fresh isolate off the tick path and swap to it at the next tick
   * boundary; resolves with the outcome once the swap tick has committed (VersionSwitch.stage).
   */
  stageVersion(version: GameVersion, reason: 'patch' | 'rollback' = 'patch', opts: StageOptions = {}): Promise<SwapResult> {
    return this.versions.stage(version, reason, opts);
  }

  /** Go back to `version`, by default the one before the last patch (VersionSwitch.rollbackTo). */
  rollbackTo(version?: GameVersion | null, why?: string): Promise<SwapResult> {
    return this.versions.rollbackTo(version, why);
  }

  /** The latest patch outcome in this room (status); the full history is in Redis. */
  /** Seed {@link lastPatch} from the room's history in Redis (VersionSwitch.restoreLastPatch). */
  restoreLastPatch(entry: PatchHistoryEntry | null): void {
    this.versions.restoreLastPatch(entry);
  }

  get lastPatch(): PatchHistoryEntry | null {
    return this.versions.lastPatch;
  }

  /** SwitchingRoom: the swap tick committed, so the room runs `version` in `sandbox` from now on. */
  adopt(version: GameVersion, sandbox: GameSandbox): void {
    this.sandbox.dispose();
    this.runningSandbox = sandbox;
    this.bundle = version.bundle;
    this.meta.version = version.bundle.version;
    this.meta.schema = version.schema;
    this.current = version;
    this.recentTicks.reset(); // from here on, the new version's ticks
  }

  /**
   * SwitchingRoom: events to rehearse a swap tick with. Those queued for the next tick, or, when
   * none are (the queue was just drained, which is most of the time), the last tick's: a
   * rehearsal without events compiles none of the input hooks the real swap tick will run.
   */
  warmUpEvents(): Uint8Array {
    const queued = this.queue.peek();
    if (queued.length === 0 && this.lastTickEvents !== null) return this.lastTickEvents;
    return this.encodeEvents(queued);
  }

  /** The encoded events of the last tick run (see warmUpEvents). */
  private lastTickEvents: Uint8Array | null = null;

  /** SwitchingRoom: a frame to every connected player. */
  notifyPlayers(frame: Uint8Array): void {
    this.seating.sendToAll(frame);
  }

  // ---- seats (seating.ts) ----

  /**
   * Ask for a seat. Resolves when the tick that ran the `join` hook has committed. A signed-in
   * user (`userId`) who already has a seat here takes that seat instead: one seat per user.
   */
  join(link: PlayerLink, name: string, userId: string | null = null): Promise<SeatHandle> {
    return this.seating.join(link, name, userId);
  }

  /** Take a seat back with its resume token. No tick is needed: the seat never left. */
  resume(link: PlayerLink, token: string): SeatHandle {
    return this.seating.resume(link, token);
  }

  // ---- the tick transaction ----

  private encodeEvents(events: readonly RoomEvent[]): Uint8Array {
    const w = this.eventWriter;
    w.reset();
    w.arrayHeader(events.length);
    for (const e of events) {
      w.arrayHeader(5);
      w.uint(e.kind === 'join' ? EVENT_JOIN : e.kind === 'input' ? EVENT_INPUT : this.stoppedTicks.runsWithoutHook(e) ? EVENT_LEAVE_WITHOUT_HOOK : EVENT_LEAVE);
      w.str(e.playerId);
      w.str(e.name);
      if (e.kind === 'input') {
        w.uint(e.seq);
        w.value(e.data);
      } else {
        w.uint(0);
        w.nil();
      }
    }
    return w.bytes().slice();
  }

  /**
   * Run one tick now (the clock calls this, saying how late it started against its slot;
   * tests and benchmarks may call it directly).
   */
  async runTick(lateMs = 0): Promise<void> {
    if (this.stopped) return;
    const started = performance.now();
    if (this.sandbox.isDisposed) await this.rebuildSandbox('isolate was dead at tick start');
    const tick = this.committed.tick + 1;
    // A staged version takes this tick if it can; otherwise the current version runs it.
    let swap = this.versions.candidate(tick === 1);
    if (swap?.safePointDeadline && Date.now() < swap.safePointDeadline && !(await this.sandbox.safeToPatch())) swap = null;
    // Events held for a rollback (held-events.ts) run in the tick after its swap tick, first;
    // the swap tick itself runs none, so the queued ones keep their place behind them. Not in
    // the swap tick: an input that fails every version's tick would fail the rollback too.
    const events = swap?.reason === 'rollback' && this.held.size > 0 ? [] : this.queue.drain();
    const call = this.tickCall(tick, this.encodeEvents(events));
    if (events.length > 0) this.lastTickEvents = call.events;
    const swapOutcome = swap ? await this.versions.trySwap(swap, call, tick) : null;
    const outcome = swapOutcome ?? (await this.sandbox.tick(call));
    const scriptDone = performance.now();
    if (this.stopped) return;
    if (!outcome.ok) {
      await this.tickFailed(tick, events, outcome, scriptDone - started, scriptDone);
      return;
    }
    this.writeScriptLogs(tick, outcome.logs);
    await this.commitTick(tick, events, call.events, outcome, started, scriptDone, lateMs, swapOutcome ? swap : null);
  }

  /** The call that runs tick `tick` with `events`: everything else follows from the tick number. */
  tickCall(tick: number, events: Uint8Array): TickCall {
    return {
      events,
      seed: this.meta.seed,
      tick,
      nowMs: Math.round(this.meta.createdAt + (tick * 1000) / this.settings.tickHz),
      dtSeconds: 1 / this.settings.tickHz,
      runInit: tick === 1,
    };
  }

  private async commitTick(
    tick: number,
    events: RoomEvent[],
    eventBytes: Uint8Array,
    outcome: Extract<TickOutcome, { ok: true }>,
    started: number,
    scriptDone: number,
    lateMs: number,
    swap: StagedVersion | null = null,
  ): Promise<void> {
    const rejected = new Map<number, ThrownInfo>();
    for (const r of outcome.rejections) rejected.set(r.index, r.thrown);

    const seatWrites = this.seating.commitWrites(events, rejected);

    let result: Awaited<ReturnType<RoomStore['commit']>> | Error;
    try {
      result = await this.store.commit(this.id, {
        epoch: this.meta.epoch,
        prevTick: this.committed.tick,
        tick,
        delta: encodeTickDelta(tick, outcome, seatWrites.seqs, this.deltaWriter),
        seatSets: seatWrites.sets,
        seatDels: seatWrites.dels,
        metaSets: swap ? [['version', swap.version.bundle.version], ['schema', swap.version.schema]] : undefined,
      });
    } catch (e) {
      result = e as Error;
    }
    if ((result instanceof Error || result === 'tick-mismatch') && !this.stopped) {
      // The call failed, but Redis may have applied the commit before the reply was lost; or
      // ioredis sent it again after a reconnect and the first one had landed (a duplicate tick
      // under this owner's own epoch). Undoing the tick would apply its inputs twice once they
      // are retried, and stopping would drop the room for nothing: find out first.
      const fate = await this.resolveUnknownCommit(tick, result instanceof Error ? result : null);
      if (fate === 'landed' || fate === 'fenced') result = fate === 'landed' ? 'ok' : 'fenced';
    }
    const commitDone = performance.now();
    if (this.stopped) return;
    if (result !== 'ok') {
      // A swap tick that did not commit is undone in the staged isolate, which stays staged
      // and tries again at the next tick. A downgrading swap cannot retry (its staged world got
      // the downgraded records directly): undo the downgrade and drop the staging.
      if (swap?.downgrade) {
        await this.sandbox.rollback();
        this.versions.drop({ ok: false, roomId: this.id, stage: 'commit', code: 'COMMIT_FAILED', message: 'the swap tick did not commit' });
        this.queue.requeueFront(events);
        if (result === 'fenced' || result === 'tick-mismatch') await this.commitFailed(tick, [], result, this.sandbox);
        return;
      }
      if (result === 'lost') {
        this.restoreStore();
        result = new Error("Redis lost this room's newest commits; writing them back from this server's committed state");
      }
      await this.commitFailed(tick, events, result, swap?.sandbox ?? this.sandbox);
      return;
    }
    const recordsChanged = outcome.sets.length + outcome.patches.length + outcome.dels.length;
    if (swap) this.versions.complete(swap, tick, scriptDone - started, recordsChanged);
    else this.versions.tickCommitted(tick, events.length, rejected.size);
    this.versions.recordForReplay(swap, tick, eventBytes);
    if (this.degraded) {
      this.degraded = false;
      this.log.info({ roomId: this.id, tick }, 'commits recovered');
      publish(channels.room, { roomId: this.id, game: this.game, version: this.version, what: 'commit-recovered' });
    }

    // Committed: from here on, everything is told. Events held for a rollback run next, when
    // this was its swap tick; otherwise the room went on without one, and they are refused
    // before this tick's acks.
    if (this.held.size > 0) {
      if (swap?.reason === 'rollback') this.releaseHeld(tick);
      else this.refuseHeld(tick);
    }
    this.committed.apply(tick, outcome);
    const staged = this.versions.staging;
    if (!swap && staged) {
      staged.noteCommitted(outcome, this.committed);
      if (staged.ready) void staged.catchUp().catch(() => {}); // a failure shows at the swap tick
    }
    // The broadcaster first: a join settled below subscribes with a snapshot whose view (with
    // interest management) must come from this tick's positions.
    this.broadcaster.changed(outcome);
    this.seating.settle(tick, events, rejected, seatWrites);
    this.checkpointer.noteTick(outcome, seatWrites.seqs.keys());
    this.maybeBroadcast(commitDone);

    const done = performance.now();
    this.load.add(outcome.cpuMs + (done - commitDone));
    this.lastTickMs = commitDone - started;
    this.recentTicks.add(this.lastTickMs);
    publish<TickCommittedEvent>(channels.tickCommitted, {
      roomId: this.id,
      game: this.game,
      version: this.version,
      tick,
      scriptMs: scriptDone - started,
      cpuMs: outcome.cpuMs,
      // A swap tick runs on the new version's sandbox, never inline; otherwise the sandbox that ran this tick.
      inline: swap === null && this.sandbox.lastTickInline,
      reruns: outcome.reruns,
      commitMs: commitDone - scriptDone,
      totalMs: done - started,
      lateMs,
      records: outcome.sets.length + outcome.patches.length,
      dels: outcome.dels.length,
      writes: outcome.writes,
      events: events.length,
      rejections: outcome.rejections.length,
    });
  }

  private maybeBroadcast(now: number): void {
    // Counted in committed ticks, not wall time: the tick clock already keeps the cadence, and
    // a timer-based check skipped a broadcast whenever a late tick was followed by an early one
    // (state then reached players a tick after its ack). broadcastHz <= tickHz, so this sends
    // after every tick when they are equal and spreads the sends evenly otherwise.
    this.broadcastCredit += this.settings.broadcastHz / this.settings.tickHz;
    if (this.broadcastCredit < 1 - 1e-9) return;
    this.broadcastCredit -= 1;
    const stats = this.broadcaster.flush(this.version, now);
    if (stats.recipients > 0) publish(channels.broadcast, { roomId: this.id, tick: this.committed.tick, ...stats });
  }

  private async tickFailed(
    tick: number,
    events: RoomEvent[],
    outcome: Extract<TickOutcome, { ok: false }>,
    scriptMs: number,
    scriptDone: number,
  ): Promise<void> {
    this.writeScriptLogs(tick, outcome.logs);
    this.load.add(outcome.cpuMs);
    let rebuilt = false;
    if (outcome.isolateDead) {
      await this.rebuildSandbox(`tick ${tick} failed with ${outcome.code}`);
      rebuilt = true;
    }
    const rollbackMs = performance.now() - scriptDone;
    // The join or input whose hook the call was in when its budget ran out or its isolate died.
    const culprit = outcome.culprit === undefined ? undefined : events[outcome.culprit];
    const named = culprit && { kind: culprit.kind, playerId: culprit.playerId, ...(culprit.kind === 'input' ? { seq: culprit.seq } : {}) };
    this.log.error(
      { roomId: this.id, tick, version: this.version, code: outcome.code, err: outcome.thrown ?? undefined, cause: outcome.cause ? String(outcome.cause) : undefined, culprit: named },
      'tick failed and was rolled back',
    );
    // Leaves are kept for the next tick. Inputs and joins wait for a rollback while a patch is
    // on watch or being rolled back (held-events.ts). Otherwise, when the tick stopped in one
    // player's hook, that player is told and the others' events run again (afterStoppedTick).
    // Otherwise everyone whose event was in the failed tick is told: it is not applied, and the
    // client may send it again (retry: true).
    const code: ErrorCode = outcome.code === 'SCRIPT_ERROR' ? 'TICK_FAILED' : outcome.code;
    const message = `tick ${tick} failed (${outcome.code}${outcome.thrown ? `: ${outcome.thrown.message}` : ''}) and was rolled back`;
    const holding = this.versions.holdsFailedTickEvents;
    if (!holding && this.held.size > 0) this.refuseHeld(tick);
    if (culprit) {
      this.afterStoppedTick(tick, events, culprit, code, message, holding);
    } else {
      const others = events.filter((e): e is JoinEvent | InputEvent => e.kind !== 'leave');
      for (const e of holding ? this.held.hold(others, code, message) : others) this.seating.refuse(e, code, message);
      this.queue.requeueFront(events.filter((e) => e.kind === 'leave'));
    }
    this.versions.tickFailed(tick);
    publish<TickFailedEvent>(channels.tickFailed, {
      roomId: this.id, game: this.game, version: this.version, tick, code: outcome.code,
      thrown: outcome.thrown, scriptMs, rollbackMs, isolateRebuilt: rebuilt, ...(named ? { culprit: named } : {}),
    });
  }

  private async commitFailed(tick: number, events: RoomEvent[], result: 'fenced' | 'tick-mismatch' | Error, ran: GameSandbox): Promise<void> {
    if (result === 'fenced' || result === 'tick-mismatch') {
      this.log.error({ roomId: this.id, tick, epoch: this.meta.epoch, result }, 'room is owned elsewhere now; stopping it here');
      publish(channels.room, { roomId: this.id, game: this.game, version: this.version, what: 'fenced' });
      this.stop(CloseCodes.ROOM_CLOSED, 'room moved to another server');
      return;
    }
    // Redis is unreachable or failing: undo the tick in the isolate and keep its events for the
    // next attempt, so nothing players sent is lost and nothing uncommitted is shown.
    try {
      await ran.rollback();
    } catch {
      if (ran === this.sandbox) await this.rebuildSandbox('rollback after a failed commit failed');
      else this.versions.drop({ ok: false, roomId: this.id, stage: 'tick', code: 'ENGINE_ERROR', message: 'the staged isolate could not be rolled back' });
    }
    this.queue.requeueFront(events);
    if (!this.degraded) {
      this.degraded = true;
      this.log.error({ roomId: this.id, tick, err: result }, 'commit failed; holding events and retrying');
      publish(channels.room, { roomId: this.id, game: this.game, version: this.version, what: 'commit-failed', detail: result.message });
    }
  }

  /**
   * Redis lost this room, or its newest ticks (it restarted without persistence, or from an AOF
   * older than what it acknowledged), but this server still holds the last committed state:
   * write it all back, so what players were acknowledged for is not lost. The tick that found
   * the loss was undone and its events are retried once this lands. Only the owner under the
   * current epoch can restore (the store checks): a room another server claimed is left alone.
   */
  private restoreStore(): void {
    if (this.restoring) return;
    const seats = this.seating.image();
    this.restoring = this.store
      .restore(this.id, {
        meta: { ...this.meta, version: this.version, schema: this.schema, tick: this.committed.tick, pinned: this.pinned },
        records: this.committed.records,
        seats: seats.seats,
        seqs: seats.seqs,
      })
      .then((r) => {
        this.log.warn({ roomId: this.id, tick: this.committed.tick, result: r }, 'Redis had lost committed ticks of this room; restored them from this server');
        publish(channels.room, { roomId: this.id, game: this.game, version: this.version, what: 'restored', detail: r });
      })
      .catch((e: unknown) => this.log.warn({ roomId: this.id, err: e }, 'restoring the room into Redis failed; will try again'))
      .finally(() => (this.restoring = null));
  }

  /**
   * A commit call failed (Redis unreachable, connection dropped), or was refused as a duplicate
   * tick (`error` null: a resent copy of a commit that had landed): did it land? Waits until Redis
   * answers (the room is degraded meanwhile: no tick runs, events wait in the queue), then
   * reads the fence. 'landed': Redis holds this tick under this owner's epoch, so it is
   * committed and is finished as such; 'not-landed': it is undone and its events retried;
   * 'fenced': another server owns the room now; 'stopped': the room stopped while waiting.
   */
  private async resolveUnknownCommit(tick: number, error: Error | null): Promise<'landed' | 'not-landed' | 'fenced' | 'stopped'> {
    if (error && !this.degraded) {
      this.degraded = true;
      this.log.error({ roomId: this.id, tick, err: error }, 'commit failed; holding events until Redis answers');
      publish(channels.room, { roomId: this.id, game: this.game, version: this.version, what: 'commit-failed', detail: error.message });
    }
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        const meta = await this.store.readMeta(this.id);
        if (!meta) return 'not-landed'; // Redis lost the room: the next commit says 'lost'
        if (meta.epoch !== this.meta.epoch) return 'fenced';
        return meta.tick === tick ? 'landed' : 'not-landed';
      } catch {
        await new Promise((r) => setTimeout(r, Math.min(1000, 25 * 2 ** attempt)));
      }
    }
    return 'stopped';
  }

  /** A new isolate with the last committed state: after the old one died or got corrupted. */
  private async rebuildSandbox(reason: string): Promise<void> {
    this.sandbox.dispose();
    const sandbox = await GameSandbox.create(this.bundle, this.sandbox.limits);
    await sandbox.load(this.committed.encodeForLoad());
    this.runningSandbox = sandbox;
    this.log.warn({ roomId: this.id, tick: this.committed.tick, version: this.version, reason }, 'sandbox rebuilt from committed state');
    publish(channels.room, { roomId: this.id, game: this.game, version: this.version, what: 'sandbox-rebuilt', detail: reason });
  }

  // ---- helpers ----

  /**
   * A tick stopped in `culprit`'s hook (stopped-ticks.ts): its player is refused, the other
   * events run again (or are refused on their second stop), a player whose inputs keep
   * stopping ticks is expelled, and a signed-in user whose joins keep stopping them is barred.
   * While a patch is on watch (`holding`), what would be refused is
   * held for its rollback instead (held-events.ts) and nobody is charged: the new version may
   * be what stops on an ordinary input. A poison input then still costs only its own player,
   * refused at the next tick that commits.
   */
  private afterStoppedTick(tick: number, events: readonly RoomEvent[], culprit: RoomEvent, code: ErrorCode, message: string, holding: boolean): void {
    const joiner = culprit.kind === 'join' ? this.seating.joiningUser(culprit.playerId) : null;
    const verdict = this.stoppedTicks.judge(events, culprit, !holding, joiner);
    const refuse = (list: (JoinEvent | InputEvent)[], why: string) => {
      for (const e of holding ? this.held.hold(list, code, why) : list) this.seating.refuse(e, code, why);
    };
    if (verdict.culprit) refuse([verdict.culprit], `${message}: it stopped in this ${verdict.culprit.kind}'s hook`);
    refuse(verdict.refused, message);
    if (verdict.leaveWithoutHook) {
      this.log.error({ roomId: this.id, tick, version: this.version, code, playerId: culprit.playerId }, "a player's leave hook stopped two ticks: the seat is given up without running it");
    }
    if (verdict.expel) {
      const { playerId, stops } = verdict.expel;
      const reason = `your inputs stopped ${stops} ticks in ${EXPEL_WINDOW_MS / 1000} s (${code})`;
      if (this.seating.expel(playerId, CloseCodes.EXPELLED, reason)) {
        this.log.warn({ roomId: this.id, tick, version: this.version, code, playerId, stops }, 'player expelled: their inputs kept stopping the tick');
        publish(channels.room, { roomId: this.id, game: this.game, version: this.version, what: 'player-expelled', detail: reason });
      }
    }
    if (verdict.bar) {
      const { userId, stops } = verdict.bar;
      this.seating.bar(userId);
      const reason = `user ${userId}'s joins stopped ${stops} ticks in ${EXPEL_WINDOW_MS / 1000} s (${code})`;
      this.log.warn({ roomId: this.id, tick, version: this.version, code, userId, stops }, "user barred from the room: their joins kept stopping the tick");
      publish(channels.room, { roomId: this.id, game: this.game, version: this.version, what: 'player-expelled', detail: reason });
    }
    this.queue.requeueFront(verdict.again);
  }

  /** After a rollback's swap tick: what the failing version could not run goes first in the next tick. */
  private releaseHeld(tick: number): void {
    const held = this.held.take();
    this.log.info({ roomId: this.id, tick, version: this.version, events: held.length }, 'events held through the failed ticks run next, on the version rolled back to');
    this.queue.requeueFront(held.map((h) => h.event));
  }

  private refuseHeld(tick: number): void {
    const held = this.held.take();
    this.log.warn({ roomId: this.id, tick, events: held.length }, 'events held for a rollback refused: the room went on without one');
    for (const h of held) this.seating.refuse(h.event, h.code, h.message);
  }

  /** A hook threw for one player's event; `code` is what the player was told. */
  private logScriptError(tick: number, hook: string, thrown: ThrownInfo, playerId: string, code: ErrorCode): void {
    this.log.warn({ roomId: this.id, tick, version: this.version, code, hook, playerId, err: thrown }, 'script hook threw; its changes were undone');
    publish<ScriptOutputEvent>(channels.script, { roomId: this.id, game: this.game, version: this.version, tick, kind: 'hook-error', hook, playerId, code, thrown });
  }

  private writeScriptLogs(tick: number, lines: string[]): void {
    if (lines.length === 0) return;
    for (const line of lines) this.log.info({ roomId: this.id, tick, version: this.version, script: true }, line);
    publish<ScriptOutputEvent>(channels.script, { roomId: this.id, game: this.game, version: this.version, tick, kind: 'log', lines });
  }
}
