/**
 * One WebSocket connection: parses and checks every frame, enforces the per-connection rate and
 * abuse limits, and forwards joins and inputs to the room directory. A rejected frame gets an
 * error frame with a stable code and changes nothing anywhere; too many of them close the socket.
 */
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { CloseCodes, ErrorCodes, type ErrorCode } from '../errors/codes.ts';
import { MoonpatchError, ProtocolError, RoomOwnedElsewhereError } from '../errors/errors.ts';
import { encodeServerMessage, parseClientFrame } from '../protocol/codec.ts';
import type { ErrorMsg, JoinMsg, Value } from '../protocol/messages.ts';
import { TokenBucket } from './rate-limit.ts';

/** What the network layer needs from the rooms (implemented by the room manager). */
export interface RoomDirectory {
  join(link: Session, msg: JoinMsg): Promise<SeatPort>;
}

/** What a seated session can do (implemented by the room). */
export interface SeatPort {
  readonly playerId: string;
  input(seq: number, data: Value): ErrorCode | null;
  leave(): void;
  detach(): void;
}

/** How long a closing socket may take to complete the close handshake. */
const CLOSE_GRACE_MS = 2000;

export interface SessionLimits {
  inputRatePerSecond: number;
  inputBurst: number;
  abuseLimit: number;
}

/** Sockets corked during this turn of the event loop; one nextTick uncorks them all. */
const corkedThisTurn: Duplex[] = [];

function corkUntilTurnEnds(socket: Duplex): void {
  if (corkedThisTurn.length === 0) process.nextTick(uncorkAll);
  corkedThisTurn.push(socket);
  socket.cork();
}

function uncorkAll(): void {
  for (const socket of corkedThisTurn) socket.uncork();
  corkedThisTurn.length = 0;
}

export class Session {
  private seat: SeatPort | null = null;
  private joining = false;
  private closed = false;
  private strikes = 0;
  private readonly bucket: TokenBucket;
  lastSeenAt = Date.now();

  constructor(
    private readonly ws: WebSocket,
    private readonly rooms: RoomDirectory,
    private readonly limits: SessionLimits,
    readonly remoteAddress: string,
    /** The TCP (or TLS) socket under `ws`, corked while a tick's frames are queued. */
    private readonly socket: Duplex | null = null,
  ) {
    this.bucket = new TokenBucket(limits.inputRatePerSecond, limits.inputBurst, performance.now());
    ws.on('message', (data, isBinary) => this.onFrame(data as Buffer | Buffer[] | ArrayBuffer, isBinary));
    ws.on('pong', () => (this.lastSeenAt = Date.now()));
    ws.on('close', () => this.onClose());
    ws.on('error', () => this.onClose());
  }

  // ---- PlayerLink ----

  send(frame: Uint8Array): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    // A tick sends each player its ack, errors and delta one after another: cork the socket
    // until this turn of the event loop ends, so they leave in one write instead of one
    // syscall each (socket writes were about a third of the server's busy time at 500 players).
    if (this.socket && this.socket.writableCorked === 0) corkUntilTurnEnds(this.socket);
    this.ws.send(frame, { binary: true });
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    // Detach now, not on the socket's 'close' event: that waits for the peer's close frame,
    // which a dead peer never sends.
    const seat = this.seat;
    this.seat = null;
    seat?.detach();
    this.ws.close(code, reason);
    // A peer that does not read (a slow consumer) never completes the close handshake: drop
    // the socket after a grace period instead of ws's 30 s.
    setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS).unref();
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  get isOpen(): boolean {
    return !this.closed && this.ws.readyState === this.ws.OPEN;
  }

  // ---- frames ----

  private onFrame(data: Buffer | Buffer[] | ArrayBuffer, isBinary: boolean): void {
    if (this.closed) return;
    this.lastSeenAt = Date.now();
    // Parse before rate limiting (frames are small: maxPayload bounds them), so that an input
    // dropped for the rate carries its seq and the client knows which one it lost.
    let msg;
    try {
      if (!isBinary) throw new ProtocolError('BAD_FRAME', 'text frames are not accepted: send binary msgpack');
      msg = parseClientFrame(Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? new Uint8Array(data) : data);
    } catch (e) {
      if (!this.bucket.take(performance.now())) this.refuse('RATE_LIMITED', 'over the input rate limit; frame dropped');
      else if (e instanceof MoonpatchError) this.refuse(e.code, e.message);
      else this.refuse('BAD_FRAME', 'frame could not be read');
      return;
    }
    if (!this.bucket.take(performance.now())) {
      this.refuse('RATE_LIMITED', 'over the input rate limit; frame dropped', msg.t === 'in' ? msg.seq : undefined);
      return;
    }
    switch (msg.t) {
      case 'ping':
        this.send(encodeServerMessage({ t: 'pong', id: msg.id, srv: Date.now() }));
        return;
      case 'join':
        this.onJoin(msg);
        return;
      case 'in': {
        if (!this.seat) {
          this.refuse('NOT_JOINED', 'join a room before sending inputs', msg.seq);
          return;
        }
        const code = this.seat.input(msg.seq, msg.d);
        if (code) this.sendError(code, ErrorCodes[code].text, msg.seq);
        return;
      }
      case 'leave':
        this.seat?.leave();
        this.seat = null;
        return;
    }
  }

  private onJoin(msg: JoinMsg): void {
    if (this.seat || this.joining) {
      this.refuse('ALREADY_JOINED', 'this connection already has a seat');
      return;
    }
    this.joining = true;
    this.rooms.join(this, msg).then(
      (seat) => {
        this.joining = false;
        if (this.closed) seat.detach();
        else this.seat = seat;
      },
      (e: unknown) => {
        this.joining = false;
        const code: ErrorCode = e instanceof MoonpatchError ? e.code : 'ENGINE_ERROR';
        const owner = e instanceof RoomOwnedElsewhereError && e.ownerUrl ? e.ownerUrl : undefined;
        this.sendError(code, e instanceof Error ? e.message : ErrorCodes[code].text, undefined, owner);
      },
    );
  }

  private onClose(): void {
    this.closed = true;
    const seat = this.seat;
    this.seat = null;
    seat?.detach();
  }

  /** Answer a bad frame; past the abuse limit, close the connection. */
  private refuse(code: ErrorCode, msg: string, seq?: number): void {
    this.strikes++;
    if (this.strikes > this.limits.abuseLimit) {
      this.close(CloseCodes.ABUSE, 'too many refused frames');
      return;
    }
    this.sendError(code, msg, seq);
  }

  private sendError(code: ErrorCode, msg: string, seq?: number, owner?: string): void {
    const m: ErrorMsg = { t: 'err', code, msg, retry: ErrorCodes[code].retry };
    if (seq !== undefined) m.seq = seq;
    if (owner !== undefined) m.owner = owner;
    this.send(encodeServerMessage(m));
  }
}
