/**
 * One player's inputs from send to settlement, as the wire shows them (docs/protocol.md), for
 * the k6 scenario and the Node runner alike: pure ECMAScript, times passed in by the caller
 * (k6 has Date.now(), Node has performance.now()).
 *
 * - input-to-ack latency: from sending input N to the `ack` (or `welcome` after a resume)
 *   whose cumulative `seq` covers it;
 * - input-to-state latency: from sending input N to the first `snap`/`delta` whose `tick` is at
 *   least the tick of that ack, i.e. the first state that shows N's effect (an ack for tick T
 *   can arrive before or after the delta of tick T: both orders are measured correctly);
 * - settled twice ("duplicated"): an `err` with N's seq after an ack already covered N, or a
 *   second `err` for N. (Cumulative acks repeat earlier seqs by design: not counted.)
 * - lost: inputs still pending when the caller stops looking (`pending`);
 * - anomalies: an ack going backwards, an ack or err for a seq never sent, `DUPLICATE_SEQ`
 *   (the client re-sent an input the server already had).
 */

export interface TrackerSink {
  /** An input was acknowledged `ms` after it was sent. */
  ack(ms: number, at: number): void;
  /** The first state containing an input arrived `ms` after it was sent. */
  state(ms: number, at: number): void;
}

/** Recent state frames kept to answer "which frame first showed tick T" for acks that come late. */
const RECENT_STATES = 16;

export class InputTracker {
  sent = 0;
  acked = 0;
  /** Settled by an err frame (then also covered by a later ack, which is not counted again). */
  rejected = 0;
  /** Settled twice: an err after an ack covered the seq, or two errs for one seq. */
  duplicated = 0;
  /** An ack whose seq is below an earlier ack's. */
  ackRegressions = 0;
  /** Acks or errs about seqs this player never sent. */
  unknownSeqs = 0;
  /** DUPLICATE_SEQ errors: the client sent a seq the server had already received. */
  duplicateSeqErrors = 0;
  /** Error codes of rejected inputs. */
  readonly rejectedCodes: Record<string, number> = {};

  private ackedUpTo = 0;
  private highestSent = 0;
  /** seq -> send time, in send order (Map keeps insertion order; seqs only grow). */
  private readonly pendingInputs = new Map<number, number>();
  /** Seqs settled by an err and not yet covered by an ack. */
  private readonly rejectedSeqs = new Set<number>();
  /** Acked inputs waiting for a state frame: [sentAt, ackTick], ticks non-decreasing. */
  private awaiting: number[] = [];
  private awaitingHead = 0;
  /** Ring of recent state frames: tick, arrival. */
  private readonly stateTicks: number[] = [];
  private readonly stateTimes: number[] = [];
  private lastStateTick = -1;

  constructor(private readonly sink: TrackerSink) {}

  /** Inputs sent and not settled (by ack or err). */
  get pending(): number {
    return this.pendingInputs.size;
  }

  onSend(seq: number, at: number): void {
    this.sent++;
    if (seq > this.highestSent) this.highestSent = seq;
    this.pendingInputs.set(seq, at);
  }

  /** `ack {seq, tick}`: every input with seq <= `seq` has been processed by a committed tick <= `tick`. */
  onAck(seq: number, tick: number, at: number): void {
    if (seq < this.ackedUpTo) {
      this.ackRegressions++;
      return;
    }
    this.settleUpTo(seq, tick, at);
  }

  /** `welcome {seq, tick}` (first join or resume): inputs up to `seq` are settled. */
  onWelcome(seq: number, tick: number, at: number): void {
    if (seq > this.ackedUpTo) this.settleUpTo(seq, tick, at);
  }

  /** `err` frame. Only those with a seq settle an input (DUPLICATE_SEQ never does). */
  onErr(seq: number | undefined, code: string, at: number): void {
    void at;
    if (seq === undefined) return;
    if (code === 'DUPLICATE_SEQ') {
      this.duplicateSeqErrors++;
      return;
    }
    if (seq <= this.ackedUpTo || this.rejectedSeqs.has(seq)) {
      this.duplicated++;
      return;
    }
    if (!this.pendingInputs.delete(seq)) {
      this.unknownSeqs++;
      return;
    }
    this.rejected++;
    this.rejectedCodes[code] = (this.rejectedCodes[code] ?? 0) + 1;
    this.rejectedSeqs.add(seq);
  }

  /** A `snap` or `delta` of committed tick `tick` arrived. */
  onState(tick: number, at: number): void {
    if (tick > this.lastStateTick) this.lastStateTick = tick;
    this.stateTicks.push(tick);
    this.stateTimes.push(at);
    if (this.stateTicks.length > RECENT_STATES) {
      this.stateTicks.shift();
      this.stateTimes.shift();
    }
    const a = this.awaiting;
    let h = this.awaitingHead;
    while (h < a.length && a[h + 1]! <= tick) {
      this.sink.state(at - a[h]!, at);
      h += 2;
    }
    if (h >= a.length) {
      this.awaiting = [];
      this.awaitingHead = 0;
    } else this.awaitingHead = h;
  }

  private settleUpTo(seq: number, tick: number, at: number): void {
    if (seq > this.highestSent) this.unknownSeqs++;
    this.ackedUpTo = seq;
    // A state frame of this tick may already be here (deltas and acks race): find the first.
    let seenAt = -1;
    if (this.lastStateTick >= tick) {
      for (let i = 0; i < this.stateTicks.length; i++) {
        if (this.stateTicks[i]! >= tick) {
          seenAt = this.stateTimes[i]!;
          break;
        }
      }
      if (seenAt < 0) seenAt = at;
    }
    for (const [s, sentAt] of this.pendingInputs) {
      if (s > seq) break;
      this.pendingInputs.delete(s);
      this.acked++;
      this.sink.ack(at - sentAt, at);
      if (seenAt >= 0) this.sink.state(Math.max(0, seenAt - sentAt), at);
      else this.awaiting.push(sentAt, tick);
    }
    if (this.rejectedSeqs.size > 0) for (const s of this.rejectedSeqs) if (s <= seq) this.rejectedSeqs.delete(s);
  }
}
