/**
 * A room's seats and the connections on them: joins waiting for their tick, resumes, the
 * resume window, and everything a tick tells players once it has committed (welcomes, acks,
 * per-input errors).
 *
 * The room runs the tick transaction (room.ts) and asks this for the seat side of it: which
 * seats a tick's commit writes (`commitWrites`), then, only after the commit, what to tell whom
 * (`settle`). A seat changes here only in step with a committed tick, or with its connection:
 * a join is seated by the tick that ran its `join` hook, a leave ends the seat in the tick that
 * ran `leave`, and a dropped connection keeps its seat for the resume window.
 */
import { CloseCodes, ErrorCodes, type ErrorCode } from '../errors/codes.ts';
import { MoonpatchError, type ThrownInfo } from '../errors/errors.ts';
import { encodeServerMessage } from '../protocol/codec.ts';
import type { ErrorMsg, Value } from '../protocol/messages.ts';
import type { Broadcaster } from './broadcaster.ts';
import type { InputEvent, InputQueue, JoinEvent, RoomEvent } from './input-queue.ts';
import type { PlayerLink } from './link.ts';
import type { RoomSettings } from './room.ts';
import { encodeSeat, newPlayerId, newResumeToken, parseResumeToken, tokenMatches, type Seat } from './seats.ts';

/** What the network layer holds for a seated connection. */
export interface SeatHandle {
  readonly playerId: string;
  /** Queue an input; returns an error code when it is refused (nothing was queued). */
  input(seq: number, data: Value): ErrorCode | null;
  /** The player asked to leave: the seat is given up at the next tick. */
  leave(): void;
  /** The connection dropped: keep the seat for the resume window. */
  detach(): void;
}

/** What seating needs of its room (Room provides all of it). */
export interface SeatedRoom {
  readonly id: string;
  readonly game: string;
  readonly version: string;
  /** The last committed tick. */
  readonly tick: number;
  readonly isStopped: boolean;
  readonly settings: RoomSettings;
  readonly queue: InputQueue;
  readonly broadcaster: Broadcaster;
}

/** The seat side of one tick's commit (RoomStore.commit's seatSets, seatDels and seqs). */
export interface SeatWrites {
  sets: [string, Uint8Array][];
  dels: string[];
  /** Each player's highest input seq in the tick: applied once the tick commits. */
  seqs: Map<string, number>;
  /** Seats written because their record changed outside a join (a rotated resume token). */
  rotated: string[];
}

interface PendingJoin {
  link: PlayerLink;
  userId: string | null;
  token: string;
  tokenHash: string;
  resolve: (h: SeatHandle) => void;
  reject: (e: MoonpatchError) => void;
}

/** An error frame for one player; `seq` names the input it is about. */
export function errorFrame(code: ErrorCode, msg: string, seq?: number): Uint8Array {
  const m: ErrorMsg = { t: 'err', code, msg, retry: ErrorCodes[code].retry };
  if (seq !== undefined) m.seq = seq;
  return encodeServerMessage(m);
}

/** The code for a hook that threw: a value the world refused is not a plain script error. */
function hookErrorCode(thrown: ThrownInfo): ErrorCode {
  return thrown.code === 'STATE_INVALID_VALUE' ? 'STATE_INVALID_VALUE' : 'SCRIPT_ERROR';
}

/** How long a signed-in user who was expelled (close 4008) cannot take a seat in the room again, ms. */
export const EXPELLED_USER_BAR_MS = 5 * 60_000;

export class Seating {
  readonly seats = new Map<string, Seat>();
  /** Signed-in users expelled lately, until when they may not join again (a new seat would let them carry on). */
  private readonly barred = new Map<string, number>();
  /** Joins queued for the next tick, by the player id they will get. */
  private readonly pendingJoins = new Map<string, PendingJoin>();
  /** Seats whose record changed outside a join or leave (a rotated resume token): written with the next commit. */
  private readonly dirtySeats = new Set<string>();

  constructor(
    private readonly room: SeatedRoom,
    /** A hook threw for this player's join, input or leave, and `code` is what the player is told (the room logs it). */
    private readonly onHookError: (tick: number, hook: 'join' | 'input' | 'leave', thrown: ThrownInfo, playerId: string, code: ErrorCode) => void,
  ) {}

  /** Seats taken, connected or not. */
  get size(): number {
    return this.seats.size;
  }

  /** No seat and no join waiting for its tick. */
  get isEmpty(): boolean {
    return this.seats.size === 0 && this.pendingJoins.size === 0;
  }

  /**
   * Ask for a seat. Resolves when the tick that ran the `join` hook has committed. A signed-in
   * user (`userId`) who already has a seat here takes that seat instead: one seat per user.
   */
  join(link: PlayerLink, name: string, userId: string | null = null): Promise<SeatHandle> {
    if (this.room.isStopped) return Promise.reject(new MoonpatchError('ROOM_UNAVAILABLE', 'the room is stopping'));
    if (userId && this.isBarred(userId)) {
      return Promise.reject(new MoonpatchError('EXPELLED', `user ${userId} was expelled from room ${this.room.id} and may join again in ${Math.ceil((this.barred.get(userId)! - Date.now()) / 1000)} s`));
    }
    if (userId) {
      for (const seat of this.seats.values()) {
        if (seat.userId === userId && !seat.leaving) {
          // A new resume token for the new connection; persisted with the next commit.
          const { token, tokenHash } = newResumeToken(seat.id);
          seat.tokenHash = tokenHash;
          this.dirtySeats.add(seat.id);
          return Promise.resolve(this.attach(seat, link, token));
        }
      }
    }
    const { maxPlayers } = this.room.settings;
    if (this.seats.size + this.pendingJoins.size >= maxPlayers) {
      return Promise.reject(new MoonpatchError('ROOM_FULL', `room ${this.room.id} is full (${maxPlayers} players)`));
    }
    const playerId = newPlayerId();
    const { token, tokenHash } = newResumeToken(playerId);
    return new Promise((resolve, reject) => {
      this.pendingJoins.set(playerId, { link, userId, token, tokenHash, resolve, reject });
      this.room.queue.pushSystem({ kind: 'join', playerId, name });
    });
  }

  /** Take a seat back with its resume token. No tick is needed: the seat never left. */
  resume(link: PlayerLink, token: string): SeatHandle {
    const parsed = parseResumeToken(token);
    const seat = parsed ? this.seats.get(parsed.playerId) : undefined;
    if (!parsed || !seat || seat.leaving || !tokenMatches(seat, parsed.secret)) {
      throw new MoonpatchError('RESUME_REJECTED', 'resume token is unknown, expired or wrong');
    }
    return this.attach(seat, link, token);
  }

  /** A seat restored from Redis after a (re)start: disconnected until its player resumes. */
  restore(seat: Seat): void {
    this.seats.set(seat.id, seat);
    this.startLeaveTimer(seat);
  }

  // ---- a tick's commit ----

  /** What the commit of a tick running `events` writes of the seats; `rejected`: events whose hook threw. */
  commitWrites(events: readonly RoomEvent[], rejected: ReadonlyMap<number, unknown>): SeatWrites {
    const writes: SeatWrites = { sets: [], dels: [], seqs: new Map(), rotated: [...this.dirtySeats] };
    for (const id of writes.rotated) {
      const seat = this.seats.get(id);
      if (seat) writes.sets.push([id, encodeSeat(seat)]);
    }
    events.forEach((e, i) => {
      if (e.kind === 'join' && !rejected.has(i)) {
        const p = this.pendingJoins.get(e.playerId);
        if (p) writes.sets.push([e.playerId, encodeSeat({ name: e.name, tokenHash: p.tokenHash, userId: p.userId })]);
      } else if (e.kind === 'leave') {
        writes.dels.push(e.playerId);
      } else if (e.kind === 'input') {
        writes.seqs.set(e.playerId, Math.max(writes.seqs.get(e.playerId) ?? 0, e.seq));
      }
    });
    return writes;
  }

  /**
   * The tick's commit landed: seat its joins, end its leaves, ack its inputs and tell the
   * players whose input threw. Call after the broadcaster has the tick's changes, so that a
   * joining player's snapshot includes them.
   */
  settle(tick: number, events: readonly RoomEvent[], rejected: ReadonlyMap<number, ThrownInfo>, writes: SeatWrites): void {
    for (const id of writes.rotated) this.dirtySeats.delete(id);
    events.forEach((e, i) => {
      const thrown = rejected.get(i);
      if (e.kind === 'join') this.settleJoin(tick, e, thrown);
      else if (e.kind === 'leave') {
        if (thrown) this.onHookError(tick, 'leave', thrown, e.playerId, hookErrorCode(thrown));
        this.seats.delete(e.playerId);
      } else if (thrown) {
        const code = hookErrorCode(thrown);
        this.onHookError(tick, 'input', thrown, e.playerId, code);
        this.sendTo(e.playerId, errorFrame(code, `input ${e.seq} failed in the game script: ${thrown.message}`, e.seq));
      }
    });
    for (const [playerId, seq] of writes.seqs) {
      const seat = this.seats.get(playerId);
      if (!seat) continue;
      seat.lastAppliedSeq = seq;
      seat.link?.send(encodeServerMessage({ t: 'ack', seq, tick }));
    }
  }

  private settleJoin(tick: number, e: JoinEvent, thrown: ThrownInfo | undefined): void {
    const p = this.pendingJoins.get(e.playerId);
    if (!p) return;
    this.pendingJoins.delete(e.playerId);
    if (thrown) {
      this.onHookError(tick, 'join', thrown, e.playerId, hookErrorCode(thrown));
      p.reject(new MoonpatchError('SCRIPT_ERROR', `join failed in the game script: ${thrown.message}`));
      return;
    }
    const seat: Seat = {
      id: e.playerId, name: e.name, userId: p.userId, tokenHash: p.tokenHash, link: p.link,
      lastQueuedSeq: 0, lastAppliedSeq: 0, leaveTimer: null, leaving: false,
    };
    this.seats.set(seat.id, seat);
    if (p.link.isOpen) {
      this.welcome(seat, p.token);
      p.resolve(this.handleFor(seat));
    } else {
      seat.link = null;
      this.startLeaveTimer(seat);
      p.reject(new MoonpatchError('ROOM_UNAVAILABLE', 'connection closed while joining'));
    }
  }

  /** An input or join that did not run in a tick that failed: its player is told why. */
  refuse(e: JoinEvent | InputEvent, code: ErrorCode, message: string): void {
    if (e.kind === 'join') {
      const p = this.pendingJoins.get(e.playerId);
      this.pendingJoins.delete(e.playerId);
      p?.reject(new MoonpatchError(code, message));
    } else {
      this.sendTo(e.playerId, errorFrame(code, message, e.seq));
    }
  }

  // ---- connections ----

  sendTo(playerId: string, frame: Uint8Array): void {
    this.seats.get(playerId)?.link?.send(frame);
  }

  /** A frame to every connected player. */
  sendToAll(frame: Uint8Array): void {
    for (const seat of this.seats.values()) seat.link?.send(frame);
  }

  /**
   * Close every player's connection, keeping their seats (no leave is queued: the seats are
   * resumed elsewhere or here).
   */
  closeConnections(closeCode: number, reason: string): void {
    for (const seat of this.seats.values()) this.unlink(seat)?.close(closeCode, reason);
  }

  /** Take the seat's connection off it (and off the broadcast); the connection, if it had one. */
  private unlink(seat: Seat): PlayerLink | null {
    const link = seat.link;
    if (link) {
      this.room.broadcaster.remove(link);
      seat.link = null;
    }
    return link;
  }

  /** The room stopped: no seat waits for its window any more, every connection closes, every join is refused. */
  stop(closeCode: number, reason: string): void {
    for (const seat of this.seats.values()) {
      if (seat.leaveTimer) clearTimeout(seat.leaveTimer);
      seat.leaveTimer = null;
    }
    this.closeConnections(closeCode, reason);
    for (const p of this.pendingJoins.values()) p.reject(new MoonpatchError('ROOM_UNAVAILABLE', 'the room stopped'));
    this.pendingJoins.clear();
  }

  /**
   * Give up a player's seat now: its connection is closed with `closeCode`, its queued inputs
   * are dropped and its leave is queued (the resume token stops working at once); a signed-in
   * user may not join this room again for {@link EXPELLED_USER_BAR_MS}. False when the player
   * has no seat or is already leaving.
   */
  expel(playerId: string, closeCode: number, reason: string): boolean {
    const seat = this.seats.get(playerId);
    if (!seat || seat.leaving) return false;
    this.unlink(seat)?.close(closeCode, reason);
    this.room.queue.dropInputsOf(playerId);
    this.queueLeave(seat);
    // Without a signed-in user there is nobody to bar: a new connection is a new player.
    if (seat.userId) this.bar(seat.userId);
    return true;
  }

  /** A signed-in user may not take a seat here for {@link EXPELLED_USER_BAR_MS} (their joins are refused with EXPELLED). */
  bar(userId: string): void {
    this.barred.set(userId, Date.now() + EXPELLED_USER_BAR_MS);
  }

  /** The signed-in user asking for a seat with a join queued as `playerId`, or null (anonymous, or no such join). */
  joiningUser(playerId: string): string | null {
    return this.pendingJoins.get(playerId)?.userId ?? null;
  }

  private isBarred(userId: string): boolean {
    const until = this.barred.get(userId);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.barred.delete(userId);
    return false;
  }

  /** Every seat as Redis stores it, with its applied seq (writing the room back into Redis). */
  image(): { seats: (readonly [string, Uint8Array])[]; seqs: (readonly [string, number])[] } {
    const seats = [...this.seats.values()];
    return {
      seats: seats.map((seat) => [seat.id, encodeSeat(seat)] as const),
      seqs: seats.map((seat) => [seat.id, seat.lastAppliedSeq] as const),
    };
  }

  /** Put a connection on an existing seat (resume, or a signed-in user coming back). */
  private attach(seat: Seat, link: PlayerLink, token: string): SeatHandle {
    if (seat.link !== link) this.unlink(seat)?.close(CloseCodes.SEAT_TAKEN_OVER, 'seat resumed from another connection');
    if (seat.leaveTimer) clearTimeout(seat.leaveTimer);
    seat.leaveTimer = null;
    seat.link = link;
    this.welcome(seat, token);
    return this.handleFor(seat);
  }

  private welcome(seat: Seat, token: string): void {
    const link = seat.link!;
    const { settings } = this.room;
    link.send(
      encodeServerMessage({
        t: 'welcome',
        room: this.room.id,
        game: this.room.game,
        player: seat.id,
        name: seat.name,
        resume: token,
        resumeMs: settings.resumeWindowMs,
        tick: this.room.tick,
        v: this.room.version,
        hz: settings.tickHz,
        bhz: settings.broadcastHz,
        seq: seat.lastAppliedSeq,
        rcv: seat.lastQueuedSeq,
        lim: { q: settings.inputQueueLimit, rate: settings.inputRatePerSecond, burst: settings.inputBurst },
      }),
    );
    this.room.broadcaster.add(link, this.room.version, seat.id);
  }

  private handleFor(seat: Seat): SeatHandle {
    const link = seat.link;
    return {
      playerId: seat.id,
      input: (seq, data) => {
        if (seat.link !== link || seat.leaving) return 'NOT_JOINED';
        if (seq <= seat.lastQueuedSeq) return 'DUPLICATE_SEQ';
        if (!this.room.queue.pushInput({ kind: 'input', playerId: seat.id, name: seat.name, seq, data })) return 'QUEUE_FULL';
        seat.lastQueuedSeq = seq;
        return null;
      },
      leave: () => {
        if (seat.link !== link) return;
        this.unlink(seat);
        this.queueLeave(seat);
      },
      detach: () => {
        if (seat.link !== link) return; // already resumed elsewhere
        this.unlink(seat);
        this.startLeaveTimer(seat);
      },
    };
  }

  private startLeaveTimer(seat: Seat): void {
    if (seat.leaveTimer || seat.leaving || this.room.isStopped) return;
    seat.leaveTimer = setTimeout(() => {
      seat.leaveTimer = null;
      if (!seat.link) this.queueLeave(seat);
    }, this.room.settings.resumeWindowMs);
    seat.leaveTimer.unref();
  }

  private queueLeave(seat: Seat): void {
    if (seat.leaving) return;
    if (seat.leaveTimer) clearTimeout(seat.leaveTimer);
    seat.leaveTimer = null;
    seat.leaving = true;
    this.room.queue.pushSystem({ kind: 'leave', playerId: seat.id, name: seat.name });
  }
}
