/**
 * The load generator of bench/capacity.ts, run as its child process (never on its own): real
 * WebSocket players of the arena, seated in steps, each sending a move input 20 times a second.
 *
 * Cheap players, so that one process can hold thousands of sockets next to the server on a
 * 2-core machine: no world copy and no decoding of snapshots or deltas. Every frame's type and
 * tick are read from its first bytes (loadtest/shared/frames.ts), only the small frames
 * (welcome, ack, err) are decoded, and every player measures, on the wire (as
 * loadtest/shared/tracker.ts defines them):
 *   - input-to-ack: sending input N until the `ack` whose cumulative seq covers it;
 *   - input-to-state: sending input N until the first `snap`/`delta` whose tick is at least
 *     the tick of that ack, i.e. the first state frame that includes N.
 *
 * Protocol with the parent (IPC messages, see LoadCommand and LoadReply):
 *   { cmd: 'grow', players }       seat players up to that many in all; replies 'grown'
 *   { cmd: 'measure', seconds }    measure a window; replies 'measured'
 *   { cmd: 'stop' }                close every socket and exit
 */
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import { decodeServerMessage, encodeClientMessage } from '../server/protocol/codec.ts';
import type { Value } from '../server/protocol/messages.ts';
import { peekFrame } from '../loadtest/shared/frames.ts';
import { Steering } from '../loadtest/shared/steer.ts';
import { InputTracker, type TrackerSink } from '../loadtest/shared/tracker.ts';
import { parseArgs, round, startLoopMonitor, summary } from './lib.ts';

export type LoadCommand = { cmd: 'grow'; players: number } | { cmd: 'measure'; seconds: number } | { cmd: 'stop' };

export interface GrownReply {
  type: 'grown';
  seated: number;
  failed: number;
  join_errors: Record<string, number>;
  seconds: number;
}

export interface MeasuredReply {
  type: 'measured';
  seconds: number;
  /** Players seated and connected at the end of the window. */
  connected: number;
  /** Inputs sent in the window, and settled (acked or refused with an err frame) in it. */
  sent: number;
  acked: number;
  rejected: number;
  rejected_codes: Record<string, number>;
  /** Inputs waiting for their ack at the start and the end of the window. */
  pending_start: number;
  pending_end: number;
  ack_ms: ReturnType<typeof summary>;
  state_ms: ReturnType<typeof summary>;
  /** Bytes of snapshots and deltas received per second, all players together. */
  state_bytes_per_s: number;
  disconnects: number;
  disconnect_codes: Record<string, number>;
  /** Send rounds that ran a whole input period late (the generator could not keep up). */
  late_send_rounds: number;
  /** This process: CPU used (1.0 = one core) and event-loop delay. */
  cpu_cores: number;
  event_loop_delay_ms: { p50: number; p99: number; max: number };
}

export type LoadReply = GrownReply | MeasuredReply | { type: 'error'; message: string };

const args = parseArgs(process.argv.slice(2));
const URL = args.url!;
const GAME = args.game ?? 'arena';
const ROOM_PREFIX = args['room-prefix']!;
/** Players per room, filled one room after the other (0: everyone in one room). */
const ROOM_SIZE = Number(args['room-size'] ?? 0);
const HZ = Number(args.hz ?? 20);
const JOIN_BATCH = 50;
const JOIN_TIMEOUT_MS = 30_000;
/** Tries of a join refused with a retryable error (e.g. its tick failed). */
const JOIN_ATTEMPTS = 3;
/** Send slots per input period: players are spread over them so inputs do not arrive as a wall. */
const SLOTS = 10;

/** Latency samples of the current window (arrival time within the window). */
class Window {
  ack: number[] = [];
  state: number[] = [];
  stateBytes = 0;
  sent = 0;
  lateRounds = 0;
}
let win = new Window();

const sink: TrackerSink = {
  ack: (ms) => void win.ack.push(ms),
  state: (ms) => void win.state.push(ms),
};

class Player {
  readonly tracker = new InputTracker(sink);
  private readonly steering = new Steering(HZ);
  private ws: WebSocket | null = null;
  private seq = 0;
  private welcomed = false;
  seated = false;
  disconnectCode: number | null = null;

  constructor(
    readonly index: number,
    readonly room: string,
  ) {}

  /** Open a socket and join; resolves once the welcome and the first snapshot are in. */
  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(URL, { perMessageDeflate: false });
      this.ws = ws;
      const timer = setTimeout(() => fail(new Error('TIMEOUT: no welcome')), JOIN_TIMEOUT_MS);
      const fail = (e: Error) => {
        clearTimeout(timer);
        ws.terminate();
        reject(e);
      };
      let joinAttempts = 0;
      const sendJoin = () => {
        if (ws.readyState === WebSocket.OPEN) ws.send(encodeClientMessage({ t: 'join', room: this.room, game: GAME, name: `cap-${this.index}` }));
      };
      ws.on('open', sendJoin);
      ws.on('message', (data: Buffer) => {
        const at = performance.now();
        const head = peekFrame(data);
        if (!head) return;
        if (head.t === 'snap' || head.t === 'delta') {
          if (this.seated) {
            win.stateBytes += data.length;
            this.tracker.onState(head.tick, at);
          } else if (this.welcomed && head.t === 'snap') {
            this.seated = true;
            this.tracker.onState(head.tick, at);
            clearTimeout(timer);
            resolve();
          }
          return;
        }
        if (head.t !== 'ack' && head.t !== 'err' && head.t !== 'welcome') return;
        const m = decodeServerMessage(data);
        if (m.t === 'ack') this.tracker.onAck(m.seq, m.tick, at);
        else if (m.t === 'welcome') {
          this.welcomed = true;
          this.tracker.onWelcome(m.seq, m.tick, at);
        } else if (m.t === 'err') {
          if (m.seq !== undefined) this.tracker.onErr(m.seq, m.code, at);
          else if (!this.seated) {
            // A refused join. The connection stays open (docs/protocol.md), so a retryable refusal
            // (the tick that ran the join failed) is retried on it; client/client.ts retries too.
            if (m.retry && ++joinAttempts < JOIN_ATTEMPTS) setTimeout(sendJoin, 100 * joinAttempts);
            else fail(new Error(`${m.code}: ${m.msg}`));
          }
        }
      });
      ws.on('close', (code) => {
        const wasSeated = this.seated;
        this.seated = false;
        if (!wasSeated) fail(new Error(`connection closed: ${code}`));
        else if (this.disconnectCode === null) this.disconnectCode = code;
      });
      ws.on('error', () => {
        /* a close follows */
      });
    });
  }

  /** Send the next input; false when not seated. */
  step(): boolean {
    const ws = this.ws;
    if (!this.seated || !ws || ws.readyState !== WebSocket.OPEN) return false;
    const seq = ++this.seq;
    ws.send(encodeClientMessage({ t: 'in', seq, d: this.steering.next() as Value }));
    this.tracker.onSend(seq, performance.now());
    return true;
  }

  close(): void {
    this.seated = false;
    this.ws?.close(1000, 'load generator done');
  }
}

const players: Player[] = [];
const slots: Player[][] = Array.from({ length: SLOTS }, () => []);
const period = 1000 / HZ;
const due = slots.map((_, s) => performance.now() + (s * period) / SLOTS);

// Every seated player sends one input per period, in its slot.
setInterval(
  () => {
    const now = performance.now();
    for (let s = 0; s < SLOTS; s++) {
      if (now < due[s]!) continue;
      if (now - due[s]! > period) {
        win.lateRounds++; // fell a whole period behind: skip ahead rather than send a burst
        due[s] = now;
      }
      for (const p of slots[s]!) if (p.step()) win.sent++;
      due[s]! += period;
    }
  },
  Math.max(1, Math.floor(period / SLOTS / 2)),
);

function roomOf(i: number): string {
  return `${ROOM_PREFIX}-${ROOM_SIZE > 0 ? Math.floor(i / ROOM_SIZE) : 0}`;
}

async function grow(target: number): Promise<GrownReply> {
  const t0 = performance.now();
  const errors: Record<string, number> = {};
  let failed = 0;
  while (players.length < target) {
    const batch: Player[] = [];
    for (let i = players.length; i < Math.min(target, players.length + JOIN_BATCH); i++) batch.push(new Player(i, roomOf(i)));
    players.push(...batch);
    await Promise.all(
      batch.map((p) =>
        p.connect().then(
          () => slots[p.index % SLOTS]!.push(p),
          (e: Error) => {
            failed++;
            const code = e.message.split(':')[0]!;
            errors[code] = (errors[code] ?? 0) + 1;
          },
        ),
      ),
    );
  }
  return { type: 'grown', seated: players.filter((p) => p.seated).length, failed, join_errors: errors, seconds: round((performance.now() - t0) / 1000, 2) };
}

async function measure(seconds: number): Promise<MeasuredReply> {
  const totals = () => {
    let acked = 0;
    let rejected = 0;
    let pending = 0;
    const codes: Record<string, number> = {};
    for (const p of players) {
      acked += p.tracker.acked;
      rejected += p.tracker.rejected;
      pending += p.tracker.pending;
      for (const [c, n] of Object.entries(p.tracker.rejectedCodes)) codes[c] = (codes[c] ?? 0) + n;
    }
    return { acked, rejected, pending, codes, disconnects: players.filter((p) => p.disconnectCode !== null).length };
  };
  const before = totals();
  const cpu = process.cpuUsage();
  const loop = startLoopMonitor();
  win = new Window();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const elapsed = (performance.now() - t0) / 1000;
  const w = win;
  win = new Window();
  const loopDelay = loop.stop();
  const used = process.cpuUsage(cpu);
  const after = totals();
  const codes: Record<string, number> = {};
  for (const [c, n] of Object.entries(after.codes)) if (n - (before.codes[c] ?? 0) > 0) codes[c] = n - (before.codes[c] ?? 0);
  const disconnectCodes: Record<string, number> = {};
  for (const p of players) if (p.disconnectCode !== null) disconnectCodes[p.disconnectCode] = (disconnectCodes[p.disconnectCode] ?? 0) + 1;
  return {
    type: 'measured',
    seconds: round(elapsed, 2),
    connected: players.filter((p) => p.seated).length,
    sent: w.sent,
    acked: after.acked - before.acked,
    rejected: after.rejected - before.rejected,
    rejected_codes: codes,
    pending_start: before.pending,
    pending_end: after.pending,
    ack_ms: summary(w.ack),
    state_ms: summary(w.state),
    state_bytes_per_s: Math.round(w.stateBytes / elapsed),
    disconnects: after.disconnects - before.disconnects,
    disconnect_codes: disconnectCodes,
    late_send_rounds: w.lateRounds,
    cpu_cores: round((used.user + used.system) / 1e6 / elapsed, 2),
    event_loop_delay_ms: loopDelay,
  };
}

function reply(r: LoadReply): void {
  process.send!(r);
}

process.on('message', (m: LoadCommand) => {
  const run = async (): Promise<LoadReply | null> => {
    if (m.cmd === 'grow') return grow(m.players);
    if (m.cmd === 'measure') return measure(m.seconds);
    for (const p of players) p.close();
    setTimeout(() => process.exit(0), 300);
    return null;
  };
  run().then(
    (r) => r && reply(r),
    (e: unknown) => reply({ type: 'error', message: String((e as Error)?.stack ?? e) }),
  );
});
// The parent died: nothing left to measure for.
process.on('disconnect', () => process.exit(0));
