/**
 * The rooms this server runs: opens a room on first use (creating it in Redis if needed, or
 * claiming and resuming it at its last committed tick), routes joins and resumes, unloads rooms
 * left idle, bounds how many run at once (maxRooms), and stops every room on shutdown.
 */
import { randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import type { ServerConfig } from '../config/config.ts';
import { CloseCodes, ErrorCodes } from '../errors/codes.ts';
import { channels, publish, type RoomLifecycleEvent } from '../ops/events.ts';
import { MoonpatchError, RoomOwnedElsewhereError } from '../errors/errors.ts';
import { verifyPlayerToken, type PlayerIdentity } from './player-token.ts';
import type { JoinMsg } from '../protocol/messages.ts';
import type { GameRegistry } from '../sandbox/games.ts';
import { GameSandbox } from '../sandbox/sandbox.ts';
import { CommittedState } from '../state/committed-state.ts';
import { isValidRoomId } from '../state/keys.ts';
import { formatTooNewError, type GameTarget, type RoomStore } from '../state/room-store.ts';
import type { PlayerLink } from './link.ts';
import { Room, type RoomSettings, type SeatHandle } from './room.ts';
import { TickPhases } from './tick-phases.ts';
import type { StageOptions } from './version-switch.ts';
import type { SwapResult } from './staged-version.ts';
import type { GameVersion } from '../patch/versions.ts';
import { decodeSeat } from './seats.ts';
import { SNAPSHOT_FORMAT, type RoomSnapshot } from '../state/room-snapshot.ts';
import type { TickWindowSummary } from './tick-window.ts';

export interface RoomStatus {
  room: string;
  game: string;
  version: string;
  versionNumber: number | null;
  schema: number;
  tick: number;
  players: number;
  connected: number;
  degraded: boolean;
  missedTicks: number;
  /** The last committed tick's script + commit time, ms. */
  lastTickMs: number;
  /** The same over the last committed ticks on its running version (room/tick-window.ts). */
  tickMs: TickWindowSummary;
  /** Cores the room used lately, script and main thread (room/load-meter.ts). */
  cpuCores: number;
  pinned: boolean;
  /** The latest patch outcome on this server, if any. */
  lastPatch: { kind: string; to: string; tick: number; reason?: string } | null;
}

/** Crashes counted against a room for its quarantine (see ops/crash-record.ts). */
const QUARANTINE_WINDOW_MS = 10 * 60_000;

export class RoomManager {
  private readonly rooms = new Map<string, Room>();
  /** Where in its period each running room ticks (TICK_PHASES=spread). */
  private readonly phases = new TickPhases();
  private readonly opening = new Map<string, Promise<Room>>();
  /** Rooms being unloaded; opening one again waits for its unload to finish. Never rejects. */
  private readonly unloading = new Map<string, Promise<void>>();
  /** When each running room was first seen idle by the sweep (see sweepIdle). */
  private readonly idleSince = new Map<string, number>();
  private idleTimer: NodeJS.Timeout | null = null;
  private closing = false;

  constructor(
    private readonly store: RoomStore,
    private readonly games_: GameRegistry,
    private readonly config: ServerConfig,
    private readonly log: Logger,
  ) {}

  get isClosing(): boolean {
    return this.closing;
  }

  list(): Room[] {
    return [...this.rooms.values()];
  }

  get(roomId: string): Room | undefined {
    return this.rooms.get(roomId);
  }

  /** Seat a connection: resume when the message carries a token, else a new seat. Refusals are logged. */
  async join(link: PlayerLink, msg: JoinMsg): Promise<SeatHandle> {
    try {
      return await this.seat(link, msg);
    } catch (e) {
      // Who was refused and why, for ops; never the name or the tokens (player data, secrets).
      const code = e instanceof MoonpatchError ? e.code : 'ENGINE_ERROR';
      const level = code === 'ENGINE_ERROR' ? 'error' : 'info';
      this.log[level]({ roomId: isValidRoomId(msg.room) ? msg.room : undefined, code, resuming: Boolean(msg.resume), err: level === 'error' ? e : undefined }, 'join refused');
      throw e;
    }
  }

  private async seat(link: PlayerLink, msg: JoinMsg): Promise<SeatHandle> {
    checkRoomId(msg.room);
    // With a player-token secret configured, a new join must prove who the player is; a resume
    // proves it with the seat's own resume secret. Without one: dev mode, anonymous players.
    let identity: PlayerIdentity | null = null;
    if (this.config.playerTokenSecret && !msg.resume) {
      if (!msg.token) throw new MoonpatchError('AUTH_REQUIRED', 'this server needs a signed player token to join');
      identity = verifyPlayerToken(msg.token, this.config.playerTokenSecret);
    }
    if (msg.resume) {
      // A resume never creates a room: a room that does not exist has no seat to resume.
      const room = await this.open(msg.room).catch((e: unknown) => {
        if (e instanceof MoonpatchError && e.code === 'ROOM_NOT_FOUND') throw new MoonpatchError('RESUME_REJECTED', `no room ${msg.room}: its seats are gone; join again`);
        throw e;
      });
      return room.resume(link, msg.resume);
    }
    const room = await this.open(msg.room, msg.game ?? this.config.defaultGame);
    const name = (identity?.name ?? msg.name ?? '').trim().slice(0, 32) || 'player';
    return room.join(link, name, identity?.sub ?? null);
  }

  /**
   * The running room, or open it: create it with `game` if it does not exist in Redis, claim it
   * (fencing out any previous owner), restore its world into a fresh isolate and start ticking.
   */
  async open(roomId: string, game?: string): Promise<Room> {
    const running = this.rooms.get(roomId);
    if (running) return running;
    let p = this.opening.get(roomId);
    if (!p) {
      // Rooms running, opening and being unloaded all hold an isolate (this one, if it is
      // being unloaded, is about to give its own back).
      const unloadingOthers = this.unloading.size - (this.unloading.has(roomId) ? 1 : 0);
      if (this.rooms.size + this.opening.size + unloadingOthers >= this.config.maxRooms) {
        throw new MoonpatchError('ROOM_LIMIT', `this server already runs ${this.config.maxRooms} rooms (maxRooms); it cannot open ${roomId}`);
      }
      const unloading = this.unloading.get(roomId);
      p = (unloading ? unloading.then(() => this.load(roomId, game)) : this.load(roomId, game)).finally(() => this.opening.delete(roomId));
      this.opening.set(roomId, p);
    }
    return p;
  }

  /**
   * Unload rooms that have been idle (Room.isIdle) for roomIdleUnloadMs, checking a few times
   * per period. Started with the server; stopped by shutdown.
   */
  startIdleSweep(): void {
    const idleMs = this.config.roomIdleUnloadMs;
    if (idleMs === 0 || this.idleTimer) return;
    this.idleTimer = setInterval(() => this.sweepIdle(), Math.min(5000, Math.max(25, Math.floor(idleMs / 4))));
    this.idleTimer.unref();
  }

  /** One pass of the idle sweep; returns the rooms it started unloading. */
  sweepIdle(now = Date.now()): string[] {
    const due: Room[] = [];
    for (const room of this.rooms.values()) {
      if (!room.isIdle) {
        this.idleSince.delete(room.id);
        continue;
      }
      const since = this.idleSince.get(room.id);
      if (since === undefined) this.idleSince.set(room.id, now);
      else if (now - since >= this.config.roomIdleUnloadMs) due.push(room);
    }
    for (const room of due) void this.unload(room);
    return due.map((r) => r.id);
  }

  /**
   * Stop an idle room and hand it back, keeping its state in Redis: let the tick in progress
   * commit, checkpoint (so reopening reads one compact state, not a long log), stop, take it off
   * the index of rooms to resume, and release its lease. From the moment it leaves `rooms`, a
   * join for it goes through open(), which waits for this and then loads it again.
   */
  private unload(room: Room): Promise<void> {
    this.rooms.delete(room.id);
    this.idleSince.delete(room.id);
    return this.leaving(room.id, async () => {
      const epoch = room.epoch;
      await this.retire(room, 'room unloaded: idle');
      try {
        await this.store.unlist(room.id);
        if (!(await this.store.release(room.id, epoch))) await this.store.relist(room.id);
        else if (this.config.roomExpireMs > 0) await this.store.expireUnloaded(room.id, epoch, this.config.roomExpireMs);
        this.log.info({ roomId: room.id, tick: room.tick, idleMs: this.config.roomIdleUnloadMs, expireMs: this.config.roomExpireMs || undefined }, 'idle room unloaded');
        publish(channels.room, { roomId: room.id, game: room.game, version: room.version, what: 'unloaded' });
      } catch (e) {
        // The lease lapses on its own; a takeover may open the room again, which is harmless.
        this.log.warn({ roomId: room.id, err: e }, 'could not hand back an unloaded room; its lease will lapse');
      }
    });
  }

  /**
   * Let the tick in progress commit, checkpoint (so whoever opens the room next reads one
   * compact state, not a long log), and stop the room here (its players get 4005).
   */
  private async retire(room: Room, reason: string): Promise<void> {
    await room.pauseClock();
    await room.checkpoint().catch((e: unknown) => this.log.warn({ roomId: room.id, err: e }, 'checkpoint before stopping the room failed; the commit log still holds every tick'));
    room.stop(CloseCodes.ROOM_CLOSED, reason);
  }

  /**
   * Run `work`, which takes a room away from this server (unload, move, delete): until it
   * settles, opening the room here waits for it (see open), whatever its outcome.
   */
  private leaving<T>(roomId: string, work: () => Promise<T>): Promise<T> {
    const done = work().finally(() => this.unloading.delete(roomId));
    this.unloading.set(roomId, done.then(() => undefined, () => undefined));
    return done;
  }

  /**
   * Move a room to another server of the deployment (rebalancing by hand, or emptying a server
   * before taking it down), without losing a committed tick or a seat:
   *
   * 1. tell its players here to reconnect (close 4005), let the tick in progress commit,
   *    checkpoint, and stop the room. What they sent that no tick committed was never
   *    acknowledged, and their clients resend it after resuming;
   * 2. hand the lease back (the room stays on the index of rooms to run);
   * 3. `openThere`: the other server opens it, which claims the lease and resumes the room at
   *    its last committed tick.
   *
   * The players' reconnections reach this server and wait for the move, like joins during an
   * unload; then this server answers ROOM_OWNED_ELSEWHERE naming the new owner, and they resume
   * their seats there. (Closing them first, not last, keeps their inputs in their clients while
   * the room is not ticking, instead of filling its input queues.) If the other server cannot
   * open the room, it is opened here again (ROOM_MOVE_FAILED) and they resume here.
   */
  async moveRoom(roomId: string, toNode: string, openThere: () => Promise<void>): Promise<{ room: string; from: string; to: string; tick: number }> {
    const room = await this.open(roomId);
    const from = this.store.leaseHolder.node;
    if (toNode === from) throw new MoonpatchError('BAD_FIELD', `to: room ${roomId} runs on ${from} already`);
    if (this.unloading.has(roomId) || this.rooms.get(roomId) !== room) throw new MoonpatchError('ROOM_UNAVAILABLE', `room ${roomId} is being unloaded or moved`);
    this.rooms.delete(roomId);
    this.idleSince.delete(roomId);
    let failure: unknown = null;
    await this.leaving(roomId, async () => {
      room.closeConnections(CloseCodes.ROOM_CLOSED, `room moving to server ${toNode}`);
      await this.retire(room, `room moved to server ${toNode}`);
      await this.store.release(roomId, room.epoch);
      try {
        await openThere();
      } catch (e) {
        failure = e;
      }
    });
    if (failure) {
      this.log.error({ roomId, to: toNode, err: failure }, 'could not move the room; opening it here again');
      await this.open(roomId).catch((e: unknown) => this.log.error({ roomId, err: e }, 'could not reopen the room after a failed move; a takeover will'));
      throw new MoonpatchError('ROOM_MOVE_FAILED', `server ${toNode} could not open room ${roomId} (${failure instanceof Error ? failure.message : String(failure)}); it runs here again`);
    }
    this.log.info({ roomId, from, to: toNode, tick: room.tick }, 'room moved to another server');
    publish(channels.room, { roomId, game: room.game, version: room.version, what: 'moved', detail: `to ${toNode}` });
    return { room: roomId, from, to: toNode, tick: room.tick };
  }

  /** Resume every room recorded in Redis (a starting server brings them all back). */
  async resumeAll(): Promise<void> {
    for (const id of await this.store.listRooms()) {
      try {
        await this.open(id);
      } catch (e) {
        if (e instanceof RoomOwnedElsewhereError) this.log.info({ roomId: id, owner: e.ownerNode }, 'room is owned by another server; not resuming it here');
        else if (e instanceof MoonpatchError && (e.code === 'ROOM_QUARANTINED' || e.code === 'ROOM_LIMIT' || e.code === 'ROOM_FORMAT_NEWER')) this.log.warn({ roomId: id, code: e.code }, e.message);
        else this.log.error({ roomId: id, err: e }, 'room could not be resumed');
      }
    }
  }

  private async load(roomId: string, gameName?: string): Promise<Room> {
    if (this.closing) throw new MoonpatchError('SERVER_SHUTTING_DOWN', 'server is shutting down');
    let meta = await this.store.readMeta(roomId);
    if (!meta) {
      if (!gameName) throw new MoonpatchError('ROOM_NOT_FOUND', `no room ${roomId}`);
      if (this.config.roomCreation !== 'open') throw new MoonpatchError('ROOM_NOT_FOUND', `no room ${roomId}: rooms on this server are created by its operators (ROOM_CREATION=admin)`);
      await this.createInStore(roomId, gameName);
      meta = await this.store.readMeta(roomId);
      if (!meta) throw new MoonpatchError('ROOM_NOT_FOUND', `room ${roomId} vanished while opening`);
    }
    // Check that this server can run the room before claiming it: a claim fences out the
    // current owner, which must not happen for a room we would then fail to run.
    const version = this.resolveVersion(roomId, meta.game, meta.version, meta.schema);
    const crashes = await this.store.crashesSince(roomId, Date.now() - QUARANTINE_WINDOW_MS);
    if (crashes >= this.config.quarantineAfterCrashes) {
      throw new MoonpatchError('ROOM_QUARANTINED', `room ${roomId} aborted a server process ${crashes} times in the last 10 minutes; release it with POST /admin/rooms/${roomId}/release once its script is fixed (roll back or pin a version)`);
    }
    const game = this.games_.get(meta.game);
    const claimed = await this.store.claim(roomId);
    if (!claimed) throw new MoonpatchError('ROOM_NOT_FOUND', `room ${roomId} vanished while opening`);
    if ('ownedBy' in claimed) throw new RoomOwnedElsewhereError(roomId, claimed.ownedBy.node, claimed.ownedBy.url);
    if ('format' in claimed) throw formatTooNewError(roomId, claimed.format);
    meta = claimed.meta;
    const m = game.manifest;
    const settings: RoomSettings = {
      tickHz: m.tickHz,
      broadcastHz: m.broadcastHz,
      cpuBudgetMs: m.cpuBudgetMs,
      migrationBudgetMs: m.migrationBudgetMs,
      verifyWindowTicks: m.verifyWindowTicks,
      verifyMaxFailures: m.verifyMaxFailures,
      verifyRefusalMarginPercent: m.verifyRefusalMarginPercent,
      memoryLimitMb: m.memoryLimitMb,
      maxPlayers: m.maxPlayers,
      inputQueueLimit: m.inputQueueLimit,
      resumeWindowMs: this.config.resumeWindowMs,
      inputRatePerSecond: this.config.inputRatePerSecond,
      inputBurst: this.config.inputBurst,
      interest: m.interest,
      broadcast: {
        softLimitBytes: this.config.broadcastSoftLimitBytes,
        hardLimitBytes: this.config.broadcastHardLimitBytes,
        maxLagMs: this.config.broadcastMaxLagMs,
      },
    };
    const committed = new CommittedState(meta.tick, claimed.records);
    // The latest patch outcome, for status: the room's history outlives the server that wrote it.
    const [sandbox, lastPatch] = await Promise.all([
      GameSandbox.create(version.bundle, { memoryLimitMb: m.memoryLimitMb, cpuBudgetMs: m.cpuBudgetMs, roomId }),
      this.store.latestHistory(roomId).catch(() => null),
    ]);
    if (committed.records.size > 0) await sandbox.load(committed.encodeForLoad());
    const room = new Room(roomId, { ...meta, version: version.bundle.version, schema: version.schema }, version.bundle, sandbox, this.store, committed, settings, this.log, (r) => {
      if (this.rooms.get(r.id) === r) this.rooms.delete(r.id);
      this.phases.release(r);
    });
    room.current = version;
    room.restoreLastPatch(lastPatch);
    room.inheritUncheckpointed(claimed.uncheckpointed.keys, claimed.uncheckpointed.players);
    for (const [id, bytes] of claimed.seats) room.restoreSeat(decodeSeat(id, bytes, claimed.seqs.get(id) ?? 0));
    this.rooms.set(roomId, room);
    // Last before starting: a room that failed to set up above never holds a phase.
    if (this.config.tickPhases === 'spread') room.tickPhase = this.phases.assign(room, settings.tickHz);
    room.start();
    this.log.info({ roomId, game: meta.game, version: version.bundle.version, tick: meta.tick, epoch: meta.epoch, seats: claimed.seats.size }, 'room started');
    void this.bringToTarget(room);
    return room;
  }

  /**
   * Write a new room to Redis (tick 0) unless it exists; false when it did. It starts on the
   * game's target version when one is set (its init builds that version's world), not on the
   * base scripts it would be patched away from at once.
   */
  private async createInStore(roomId: string, gameName: string, listed = true): Promise<{ created: boolean; version: GameVersion }> {
    const game = this.games_.get(gameName);
    const target = await this.store.readTarget(gameName);
    const start = target?.current ? (game.versions.find((v) => v.number === target.current) ?? game.versions[0]!) : game.versions[0]!;
    const created = await this.store.create(roomId, {
      game: gameName,
      version: start.bundle.version,
      schema: start.schema,
      seed: randomInt(0, 2 ** 32 - 1),
      createdAt: Date.now(),
      tickHz: game.manifest.tickHz,
    }, listed);
    return { created, version: start };
  }

  // ---- rooms created and deleted by ops ----

  /**
   * Create a room (admin API): written to Redis at tick 0; it starts ticking when a player
   * joins. ROOM_EXISTS when there is one (a deleted room's id can be used again).
   */
  async createRoom(roomId: string, gameName: string = this.config.defaultGame): Promise<{ room: string; game: string; version: string; versionNumber: number }> {
    checkRoomId(roomId);
    // Not listed: no server runs it (a takeover would) until a player joins and claims it.
    const { created, version } = await this.createInStore(roomId, gameName, false);
    if (!created) throw new MoonpatchError('ROOM_EXISTS', `room ${roomId} exists already`);
    this.log.info({ roomId, game: gameName, version: version.bundle.version }, 'room created');
    publish<RoomLifecycleEvent>(channels.room, { roomId, game: gameName, version: version.bundle.version, what: 'created' });
    return { room: roomId, game: gameName, version: version.bundle.version, versionNumber: version.number };
  }

  /**
   * Delete a room for good (admin API): its world, seats, input seqs, log, history and crash
   * record leave Redis. If it runs here, the tick in progress commits first and its players
   * are closed with 4007 (do not reconnect); a join meanwhile waits and then finds no room. If
   * another server runs it, that server is fenced out at its next commit and stops (its
   * players get 4005 and then find no room to resume).
   */
  async deleteRoom(roomId: string): Promise<{ room: string; deleted: true; wasRunningHere: boolean }> {
    checkRoomId(roomId);
    await this.opening.get(roomId)?.catch(() => undefined);
    await this.unloading.get(roomId);
    const room = this.rooms.get(roomId);
    const { was, deleted } = await this.leaving(roomId, async () => {
      // What it was, for the event's labels; read before the keys go.
      const was: { game: string; version: string } | null = room ?? (await this.store.readMeta(roomId));
      if (room) {
        this.rooms.delete(roomId);
        this.idleSince.delete(roomId);
        await room.pauseClock();
        room.stop(CloseCodes.ROOM_DELETED, 'room deleted by its operators');
      }
      return { was, deleted: await this.store.deleteRoom(roomId) };
    });
    if (!deleted) throw new MoonpatchError('ROOM_NOT_FOUND', `no room ${roomId}`);
    this.log.warn({ roomId, wasRunningHere: room !== undefined }, 'room deleted');
    publish<RoomLifecycleEvent>(channels.room, { roomId, game: was?.game ?? '', version: was?.version ?? '', what: 'deleted' });
    return { room: roomId, deleted: true, wasRunningHere: room !== undefined };
  }

  /**
   * A room's committed world, for validating a patch against real state before it goes live
   * (`moonpatch validate --room`): the records as stored (msgpack, base64), the tick they are
   * at, and the version and schema that wrote them. Read from Redis, so any server can answer
   * for any room; the room keeps running. Admin only: records hold player data.
   */
  async snapshot(roomId: string): Promise<RoomSnapshot> {
    checkRoomId(roomId);
    const committed = await this.store.readCommitted(roomId);
    if (!committed) throw new MoonpatchError('ROOM_NOT_FOUND', `no room ${roomId}`);
    const { meta } = committed;
    // A game this server does not have: the snapshot is still the room's, with no number.
    const known = this.games_.has(meta.game) ? this.games_.findVersion(meta.game, meta.version) : undefined;
    const records: Record<string, string> = {};
    for (const [k, v] of committed.records) records[k] = Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
    return {
      format: SNAPSHOT_FORMAT,
      room: roomId,
      game: meta.game,
      version: meta.version,
      versionNumber: known?.number ?? null,
      schema: meta.schema,
      tick: meta.tick,
      takenAt: Date.now(),
      records,
    };
  }

  // ---- game target versions ----

  /** The game's target version (null when none was set). */
  async target(game: string): Promise<{ game: string } & GameTarget> {
    this.games_.get(game); // GAME_NOT_FOUND
    return { game, ...((await this.store.readTarget(game)) ?? { current: null, previous: null, withdrawn: [] }) };
  }

  /**
   * Make `versionNumber` the version every unpinned room of `game` should run (a promote, or a
   * push to all rooms). The rooms running now are patched by whoever promotes; this is for the
   * rooms that are not running: an idle room unloaded before the promote, or one whose server
   * was down, is patched to the target when it opens again (see bringToTarget).
   */
  async setTarget(game: string, versionNumber: number): Promise<{ game: string } & GameTarget> {
    this.games_.version(game, versionNumber); // GAME_NOT_FOUND for an unknown game or version
    const old = await this.store.readTarget(game);
    const next: GameTarget = {
      current: versionNumber,
      previous: old?.current === versionNumber ? old.previous : (old?.current ?? null),
      withdrawn: (old?.withdrawn ?? []).filter((v) => v !== versionNumber),
    };
    await this.store.writeTarget(game, next);
    this.log.info({ game, target: versionNumber, previous: next.previous }, 'game target version set');
    return { game, ...next };
  }

  /**
   * Withdraw `versionNumber` (an abort): rooms still on it move off it when they open, and if it
   * was the target, the target goes back to the one before.
   */
  async withdrawTarget(game: string, versionNumber: number): Promise<{ game: string } & GameTarget> {
    this.games_.version(game, versionNumber);
    const old = (await this.store.readTarget(game)) ?? { current: null, previous: null, withdrawn: [] };
    const wasTarget = old.current === versionNumber;
    const next: GameTarget = {
      current: wasTarget ? old.previous : old.current,
      previous: wasTarget ? null : old.previous,
      withdrawn: old.withdrawn.includes(versionNumber) ? old.withdrawn : [...old.withdrawn, versionNumber],
    };
    await this.store.writeTarget(game, next);
    this.log.info({ game, withdrawn: versionNumber, target: next.current }, 'game version withdrawn');
    return { game, ...next };
  }

  /**
   * A room that opens behind its game's target version, or on a withdrawn one, is patched to
   * the target at once (a live patch like any other: warmed, migrated, verified). Pinned rooms
   * stay put, and so does a room ahead of the target (a canary).
   */
  private async bringToTarget(room: Room): Promise<void> {
    try {
      const t = await this.store.readTarget(room.game);
      const on = room.current?.number;
      if (!t || t.current === null || on === undefined || on === t.current || room.pinned || room.isStopped) return;
      if (on > t.current && !t.withdrawn.includes(on)) return;
      const version = this.games_.version(room.game, t.current);
      this.log.info({ roomId: room.id, from: on, to: t.current }, "room opened off its game's target version; patching it");
      const r = await room.stageVersion(version, 'patch');
      if (r.ok) this.log.info({ roomId: room.id, to: t.current, tick: r.tick }, 'room brought to its target version');
      else this.log.warn({ roomId: room.id, to: t.current, stage: r.stage, code: r.code, msg: r.message }, 'room could not be brought to its target version');
    } catch (e) {
      this.log.warn({ roomId: room.id, err: e }, 'room could not be brought to its target version');
    }
  }

  /**
   * Switch a room to version `versionNumber` of its game (1 = base scripts) at its next tick
   * boundary. Resolves with the outcome after the swap tick (see Room.stageVersion).
   */
  async applyVersion(roomId: string, versionNumber: number, opts: StageOptions = {}): Promise<SwapResult> {
    const room = await this.open(roomId);
    return room.stageVersion(this.games_.version(room.game, versionNumber), 'patch', opts);
  }

  /**
   * Take a room back to version `versionNumber`, or to the version before its last patch when
   * none is given, without losing what players did since (see Room.rollbackTo).
   */
  async rollback(roomId: string, versionNumber?: number): Promise<SwapResult> {
    const room = await this.open(roomId);
    return room.rollbackTo(versionNumber === undefined ? undefined : this.games_.version(room.game, versionNumber));
  }

  /** What ops and designers see of every room (admin API, `moonpatch status`). */
  status(): RoomStatus[] {
    return this.list().map((r) => ({
      room: r.id,
      game: r.game,
      version: r.version,
      versionNumber: r.current?.number ?? null,
      schema: r.schema,
      tick: r.tick,
      players: r.playerCount,
      connected: r.connectedCount,
      degraded: r.degraded,
      missedTicks: r.missedTicks,
      lastTickMs: r.lastTickMs,
      tickMs: r.recentTicks.summary(),
      cpuCores: Math.round(r.cpuCores * 10_000) / 10_000,
      pinned: r.pinned,
      lastPatch: r.lastPatch && { kind: r.lastPatch.kind, to: r.lastPatch.to, tick: r.lastPatch.tick, reason: r.lastPatch.reason },
    }));
  }

  /** Every game and its versions (admin API). */
  games(): { game: string; versions: { number: number; schema: number; version: string; description: string }[] }[] {
    return this.games_.names().map((name) => ({
      game: name,
      versions: this.games_.get(name).versions.map((v) => ({ number: v.number, schema: v.schema, version: v.bundle.version, description: v.description })),
    }));
  }

  async pin(roomId: string, pinned: boolean): Promise<{ room: string; pinned: boolean; version: string }> {
    const room = await this.open(roomId);
    await room.setPinned(pinned);
    return { room: roomId, pinned, version: room.version };
  }

  /**
   * Where the room runs: `node` is the server that holds its lease (this one or another; a
   * server that died holds it until it lapses), null while none does (unloaded, quarantined,
   * between owners). ROOM_NOT_FOUND for no room.
   */
  async whereRuns(roomId: string): Promise<{ running: boolean; node: string | null }> {
    checkRoomId(roomId);
    if (this.rooms.has(roomId)) return { running: true, node: this.store.leaseHolder.node };
    const [lease, meta] = await Promise.all([this.store.leaseOf(roomId), this.store.readMeta(roomId)]);
    if (!meta) throw new MoonpatchError('ROOM_NOT_FOUND', `no room ${roomId}`);
    return { running: lease !== null, node: lease?.node ?? null };
  }

  /** Let a quarantined room run again: forget the crashes it caused, and open it. */
  async release(roomId: string): Promise<{ room: string; released: boolean; running: boolean }> {
    checkRoomId(roomId);
    await this.store.clearCrashes(roomId);
    this.log.warn({ roomId }, 'room released from quarantine');
    const running = await this.open(roomId).then(() => true, () => false);
    return { room: roomId, released: true, running };
  }

  /** A room's patch history, newest first. */
  async history(roomId: string) {
    return this.store.readHistory(roomId);
  }

  /**
   * The version a room runs: the one it last committed with (its pin). When this server does
   * not have that version, the base scripts only if they read the same state schema; otherwise
   * the room cannot run here (its world would be misread).
   */
  private resolveVersion(roomId: string, game: string, pinned: string, schema: number): GameVersion {
    const found = this.games_.findVersion(game, pinned);
    if (found) return found;
    const base = this.games_.get(game).versions[0]!;
    if (base.schema !== schema) {
      throw new MoonpatchError('ROOM_UNAVAILABLE', `room ${roomId} runs ${game} version ${pinned} (schema ${schema}), which this server does not have`);
    }
    if (pinned) this.log.warn({ roomId, pinned, running: base.bundle.version }, 'pinned script version unknown here; resuming on the base version (same schema)');
    return base;
  }

  /** Stop every room; connected players are told to reconnect (close 4000). */
  /**
   * Open no room from now on (joins get SERVER_SHUTTING_DOWN): a shutdown has begun, and the
   * running rooms may be handed to other servers first (drain.ts) before shutdown() stops the rest.
   */
  stopOpening(): void {
    this.closing = true;
  }

  async shutdown(): Promise<void> {
    this.closing = true;
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.idleTimer = null;
    await Promise.allSettled([...this.opening.values(), ...this.unloading.values()]);
    // Let ticks in progress commit first, so nothing a player was acked for is cut off.
    await Promise.all(this.list().map((r) => r.pauseClock()));
    await Promise.allSettled(this.list().map((r) => r.checkpoint()));
    const rooms = this.list();
    for (const room of rooms) room.stop();
    // Hand the leases back so another server may take the rooms at once instead of after
    // they lapse (a restart of this server with the same NODE_ID does not need to wait anyway).
    await Promise.allSettled(rooms.map((r) => this.store.release(r.id, r.epoch)));
  }
}

/** Refuse a room id that is not one (BAD_ROOM_ID) before it reaches Redis keys or the logs. */
function checkRoomId(roomId: string): void {
  if (!isValidRoomId(roomId)) throw new MoonpatchError('BAD_ROOM_ID', ErrorCodes.BAD_ROOM_ID.text);
}
