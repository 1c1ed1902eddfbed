/**
 * The moonpatch client, for Node (pass the `ws` package's WebSocket) and browsers (the global
 * WebSocket). Used by the play page, the bots, the load test and the tests.
 *
 * It keeps every input until the server has processed it: an `ack` for seq N settles every
 * input up to N (those that got an `err` frame were rejected, the rest applied). When the
 * connection drops, it reconnects with its resume token into the same seat and resends only the
 * inputs the server has not processed (the welcome says up to which seq it has). It sends at the
 * pace the seat's limits allow (the welcome's `lim`: inputs waiting for a tick, and the rate), so
 * the seconds of inputs a player has waiting after a reconnect, or a burst in play, are held
 * back briefly instead of being refused.
 */
import { decodeServerMessage, encodeClientMessage } from '../server/protocol/codec.ts';
import type { ErrorMsg, JoinMsg, ServerMessage, Value, VersionMsg, WelcomeMsg } from '../server/protocol/messages.ts';
import { WorldView } from './world-view.ts';

/** The subset of the WebSocket API both browsers and the `ws` package provide. */
export interface SocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly bufferedAmount: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}
export type SocketFactory = new (url: string) => SocketLike;

export interface ClientOptions {
  url: string;
  room: string;
  game?: string;
  name?: string;
  /** WebSocket constructor; defaults to globalThis.WebSocket. */
  WebSocket?: SocketFactory;
  /** Signed player token, for servers that require one (PLAYER_TOKEN_SECRET). */
  token?: string;
  /**
   * More servers of the same deployment. When a connection fails before it opens (the server
   * is down), the next attempt goes to the next URL in [url, ...fallbackUrls]. Any server can
   * resume a seat: seats live in Redis, and a server that does not own the room redirects.
   */
  fallbackUrls?: string[];
  /** Reconnect and resume after an unexpected close. @default true */
  autoReconnect?: boolean;
  /** First reconnect delay, ms (doubles up to 5 s). @default 200 */
  reconnectDelayMs?: number;
  /** Ping interval (keeps the connection alive, measures latency), ms. @default 5000 */
  pingIntervalMs?: number;
  /**
   * Keep a copy of the world. Load-test bots that steer blindly turn this off: they then skip
   * decoding snapshots and deltas, which is most of a client's CPU in a big room. @default true
   */
  trackWorld?: boolean;
}

export interface PendingInput {
  seq: number;
  data: Value;
  sentAt: number;
}

type Listener<T> = (payload: T) => void;
interface ClientEvents {
  welcome: WelcomeMsg;
  /** The world changed (snapshot or delta applied). */
  state: { tick: number; full: boolean };
  /** An input was processed; `rejected` is the err frame when it was refused. */
  settled: { seq: number; latencyMs: number; rejected: ErrorMsg | null };
  error: ErrorMsg;
  version: VersionMsg;
  disconnect: { code: number; reason: string };
  reconnect: { attempt: number };
  pong: { rttMs: number };
}

/** Close codes after which reconnecting makes no sense: the client does not retry them. */
export const FINAL_CLOSES: ReadonlySet<number> = new Set([4001, 4004, 4007, 4008]);

export class MoonpatchClient {
  readonly view = new WorldView();
  playerId = '';
  resumeToken = '';
  lastAckedSeq = 0;
  hz = 0;
  connected = false;
  /** Closes that happened while this client wanted to stay connected. */
  disconnects = 0;
  rttMs = 0;
  private socket: SocketLike | null = null;
  private nextSeq = 1;
  private readonly pending = new Map<number, PendingInput>();
  private readonly listeners = new Map<keyof ClientEvents, Set<Listener<never>>>();
  private closedByUser = false;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private reconnectAttempt = 0;
  /** Where the next connection goes: opts.url, or the server a ROOM_OWNED_ELSEWHERE named. */
  private url: string;
  /** Redirects followed since the last time this client was seated (bounded, see onJoinRefused). */
  private redirects = 0;
  private joinWaiter: { resolve: (w: WelcomeMsg) => void; reject: (e: Error) => void } | null = null;
  private welcomeMsg: WelcomeMsg | null = null;
  /** Highest seq the server had received when it last welcomed us (no need to resend those). */
  private receivedSeq = 0;
  /**
   * The seqs still to send on this connection, in order (see pump): a resume's resend, and
   * inputs sent faster than the seat's limits allow. Empty in steady play, when each input goes
   * out as it is sent.
   */
  private backlog: number[] = [];
  /** Highest seq sent on this connection. */
  private sentSeq = 0;
  /** The seat's limits from the welcome, and a token bucket mirroring the server's rate limit. */
  private limits = { q: 8, rate: 20, burst: 10 };
  private tokens = 0;
  private tokensAt = 0;
  private pumpTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(readonly opts: ClientOptions) {
    this.url = opts.url;
  }

  /** The server this client connects to now (differs from opts.url after a redirect). */
  get currentUrl(): string {
    return this.url;
  }

  get world(): Record<string, Value> {
    return this.view.world;
  }

  get tick(): number {
    return this.view.tick;
  }

  get version(): string {
    return this.view.version;
  }

  /** Inputs sent (or waiting to be sent) that the server has not settled yet. */
  get unsettled(): number {
    return this.pending.size;
  }

  on<K extends keyof ClientEvents>(event: K, fn: Listener<ClientEvents[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn as Listener<never>);
    return () => set!.delete(fn as Listener<never>);
  }

  private emit<K extends keyof ClientEvents>(event: K, payload: ClientEvents[K]): void {
    for (const fn of this.listeners.get(event) ?? []) (fn as Listener<ClientEvents[K]>)(payload);
  }

  /** Connect and take a seat; resolves once the welcome and the first snapshot have arrived. */
  connect(): Promise<WelcomeMsg> {
    this.closedByUser = false;
    return new Promise((resolve, reject) => {
      this.joinWaiter = { resolve, reject };
      this.open();
    });
  }

  /** Send an input. Returns its seq. Kept until the server settles it, resent after a resume. */
  send(data: Value): number {
    const seq = this.nextSeq++;
    this.pending.set(seq, { seq, data, sentAt: now() });
    if (!this.connected) return seq;
    // Through the backlog, which sends it at once unless the seat's limits say wait (see
    // pump), and always behind inputs still waiting: the server takes a seat's inputs in seq order.
    this.backlog.push(seq);
    this.pump();
    return seq;
  }

  private transmitInput(seq: number): void {
    const p = this.pending.get(seq);
    if (!p) return;
    this.transmit({ t: 'in', seq, d: p.data });
    if (seq > this.sentSeq) this.sentSeq = seq;
  }

  /**
   * Send the backlog as fast as the seat's limits (welcome.lim) allow: at most `lim.q` inputs
   * sent and not yet settled (the room takes that many a tick), and the server's rate (a token
   * bucket like its own). Called again as inputs settle and as tokens come back. Without it, the
   * few seconds' worth of inputs a player has waiting after a reconnect, sent all at once, would
   * mostly be refused (QUEUE_FULL, RATE_LIMITED); so would a burst of inputs in play.
   */
  private pump(): void {
    if (!this.connected) return;
    const t = now();
    this.tokens = Math.min(this.limits.burst, this.tokens + ((t - this.tokensAt) / 1000) * this.limits.rate);
    this.tokensAt = t;
    // Sent and not yet settled: the start of `pending` (seq order, see settleUpTo) up to sentSeq,
    // at most `lim.q` long, so counting stops there rather than walking a long backlog.
    let inFlight = 0;
    for (const seq of this.pending.keys()) {
      if (seq > this.sentSeq) break;
      inFlight++;
    }
    while (this.backlog.length > 0 && inFlight < this.limits.q && this.tokens >= 1) {
      this.transmitInput(this.backlog.shift()!);
      this.tokens -= 1;
      inFlight++;
    }
    if (this.backlog.length > 0 && this.tokens < 1 && this.pumpTimer === null) {
      // Out of tokens (not of window): come back when one has refilled. A full window is
      // reopened by the next ack.
      this.pumpTimer = setTimeout(() => {
        this.pumpTimer = null;
        this.pump();
      }, Math.ceil(((1 - this.tokens) / this.limits.rate) * 1000));
    }
  }

  /** Leave the room for good and close. */
  leave(): void {
    if (this.connected) this.transmit({ t: 'leave' });
    this.close();
  }

  /** Close without giving up the seat (it is kept for the resume window). */
  close(): void {
    this.closedByUser = true;
    this.stopPing();
    this.socket?.close(1000, 'client closed');
    this.connected = false;
  }

  /** Drop the connection as a network failure would, leaving reconnection to autoReconnect. */
  dropConnection(): void {
    this.socket?.close(4999, 'simulated drop');
  }

  private open(): void {
    const Ctor = this.opts.WebSocket ?? (globalThis as unknown as { WebSocket: SocketFactory }).WebSocket;
    const ws = new Ctor(this.url);
    this.socket = ws;
    ws.binaryType = 'arraybuffer';
    let opened = false;
    ws.onopen = () => {
      opened = true;
      const join: JoinMsg = { t: 'join', room: this.opts.room };
      if (this.resumeToken) join.resume = this.resumeToken;
      else {
        if (this.opts.game) join.game = this.opts.game;
        if (this.opts.name) join.name = this.opts.name;
        if (this.opts.token) join.token = this.opts.token;
      }
      ws.send(encodeClientMessage(join));
    };
    ws.onmessage = (ev) => {
      if (this.socket !== ws) return;
      const data = ev.data instanceof ArrayBuffer ? new Uint8Array(ev.data) : (ev.data as Uint8Array);
      if (this.opts.trackWorld === false && this.connected && isDeltaFrame(data)) return;
      this.onMessage(decodeServerMessage(data));
    };
    ws.onclose = (ev) => {
      if (this.socket !== ws) return;
      if (!opened) this.tryNextServer();
      this.onClose(ev.code, ev.reason);
    };
    ws.onerror = () => {
      /* a close event follows */
    };
  }

  private onMessage(m: ServerMessage): void {
    switch (m.t) {
      case 'welcome':
        this.welcomeMsg = m;
        this.playerId = m.player;
        this.resumeToken = m.resume;
        this.hz = m.hz;
        this.receivedSeq = m.rcv;
        // (A server from before `lim` gets conservative limits.)
        if (m.lim) this.limits = { q: Math.max(1, m.lim.q), rate: Math.max(1, m.lim.rate), burst: Math.max(1, m.lim.burst) };
        this.settleUpTo(m.seq);
        return;
      case 'snap': {
        this.view.applySnapshot(m.tick, m.v, m.set);
        const firstAfterWelcome = this.welcomeMsg !== null && !this.connected;
        this.connected = true;
        if (firstAfterWelcome) this.onSeated();
        this.emit('state', { tick: m.tick, full: true });
        return;
      }
      case 'delta':
        this.view.applyDelta(m.tick, m.v, m.set, m.del, m.patch);
        this.emit('state', { tick: m.tick, full: false });
        return;
      case 'ack':
        this.settleUpTo(m.seq);
        return;
      case 'err':
        if (m.seq !== undefined) {
          // A refused input is settled by its error. DUPLICATE_SEQ is not about this send: the
          // first one with that seq is still on its way to being settled.
          if (m.code !== 'DUPLICATE_SEQ') this.settleRejected(m.seq, m);
        } else if (!this.connected) {
          // A refused join or resume: the first connect, or any reconnect after it.
          this.onJoinRefused(m);
        }
        this.emit('error', m);
        return;
      case 'pong':
        this.rttMs = now() - m.id;
        this.emit('pong', { rttMs: this.rttMs });
        return;
      case 'ver':
        this.emit('version', m);
        return;
    }
  }

  /** Seated (first join or resume): resend what the server has not processed, start pinging. */
  private onSeated(): void {
    const welcome = this.welcomeMsg!;
    this.reconnectAttempt = 0;
    this.redirects = 0;
    // Resend what the server has not received, paced (see pump); what it has is on its way to
    // being settled.
    this.sentSeq = this.receivedSeq;
    this.backlog = [...this.pending.keys()].filter((seq) => seq > this.receivedSeq).sort((a, b) => a - b);
    // The server's bucket for a new connection starts full; the join took one, and one is kept
    // spare for frames this count does not see (a leave) and for the two clocks' drift.
    this.tokens = this.limits.burst - 2;
    this.tokensAt = now();
    this.pump();
    this.startPing();
    if (this.joinWaiter) {
      this.joinWaiter.resolve(welcome);
      this.joinWaiter = null;
    } else {
      this.emit('reconnect', { attempt: this.reconnectAttempt });
    }
    this.emit('welcome', welcome);
  }

  /** The server at `url` did not answer: move on to the next configured one, if any. */
  private tryNextServer(): void {
    const all = [this.opts.url, ...(this.opts.fallbackUrls ?? [])];
    if (all.length < 2) return;
    const i = all.indexOf(this.url);
    this.url = all[(i + 1) % all.length]!;
  }

  private onJoinRefused(m: ErrorMsg): void {
    if (m.code === 'ROOM_OWNED_ELSEWHERE') {
      // Another server owns the room: follow it there (seats live in Redis, so a resume token
      // works on any server). After a few hops without a seat, go back to the configured URL
      // rather than bounce between servers that disagree while a lease changes hands.
      this.redirects++;
      this.url = m.owner && this.redirects <= 5 ? m.owner : this.opts.url;
      if (this.redirects > 5) this.redirects = 0;
    }
    if (m.code === 'RESUME_REJECTED') {
      // The seat is gone (window passed): inputs for it can never apply.
      this.resumeToken = '';
      this.receivedSeq = 0;
      for (const p of [...this.pending.values()]) this.settleRejected(p.seq, m);
    }
    if (m.retry || m.code === 'RESUME_REJECTED') {
      this.socket?.close(4999, 'retrying join');
      return;
    }
    this.joinWaiter?.reject(new Error(`${m.code}: ${m.msg}`));
    this.joinWaiter = null;
    this.close();
  }

  private settleRejected(seq: number, err: ErrorMsg): void {
    const p = this.pending.get(seq);
    if (!p) return;
    this.pending.delete(seq);
    this.emit('settled', { seq, latencyMs: now() - p.sentAt, rejected: err });
    if (this.backlog.length > 0) this.pump();
  }

  private settleUpTo(seq: number): void {
    if (seq > this.lastAckedSeq) this.lastAckedSeq = seq;
    const t = now();
    // `pending` holds inputs in seq order (each is added when sent, with the next seq): the
    // settled ones are its start, so the scan stops at the first one past `seq`.
    for (const [s, p] of this.pending) {
      if (s > seq) break;
      this.pending.delete(s);
      this.emit('settled', { seq: s, latencyMs: t - p.sentAt, rejected: null });
    }
    if (this.backlog.length > 0) this.pump();
  }

  private onClose(code: number, reason: string): void {
    const wasConnected = this.connected;
    this.connected = false;
    this.welcomeMsg = null;
    // What was not sent yet is sent after the next resume (it is all still in `pending`).
    this.backlog = [];
    if (this.pumpTimer !== null) clearTimeout(this.pumpTimer);
    this.pumpTimer = null;
    this.stopPing();
    if (this.closedByUser) return;
    if (wasConnected) {
      this.disconnects++;
      this.emit('disconnect', { code, reason });
    }
    if (this.opts.autoReconnect === false || FINAL_CLOSES.has(code)) {
      this.joinWaiter?.reject(new Error(`connection closed: ${code} ${reason}`));
      this.joinWaiter = null;
      return;
    }
    const base = this.opts.reconnectDelayMs ?? 200;
    const delay = Math.min(5000, base * 2 ** Math.min(this.reconnectAttempt, 5));
    this.reconnectAttempt++;
    setTimeout(() => {
      if (!this.closedByUser) this.open();
    }, delay);
  }

  private transmit(msg: Parameters<typeof encodeClientMessage>[0]): void {
    const s = this.socket;
    if (s && s.readyState === 1) s.send(encodeClientMessage(msg));
  }

  private startPing(): void {
    this.stopPing();
    const every = this.opts.pingIntervalMs ?? 5000;
    this.pingTimer = setInterval(() => {
      this.transmit({ t: 'ping', id: now() });
      this.tokens -= 1; // the server's rate limit counts every frame (see pump)
    }, every);
    (this.pingTimer as { unref?: () => void }).unref?.();
  }

  private stopPing(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }
}

/**
 * A delta frame, recognised without decoding it: server frames are maps whose first key is `t`
 * (docs/protocol.md), so a delta starts with a map header, "t", "delta".
 */
function isDeltaFrame(b: Uint8Array): boolean {
  return (b[0]! & 0xf0) === 0x80 && b[1] === 0xa1 && b[2] === 0x74 && b[3] === 0xa5 && b[4] === 0x64 && b[5] === 0x65;
}

function now(): number {
  return typeof performance !== 'undefined' ? performance.now() : Date.now();
}
