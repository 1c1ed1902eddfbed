/**
 * Rollback by replay: how a room goes back across a schema change when the patch has no
 * downgrade, without losing what players did since the swap.
 *
 * Ticks are deterministic (state, events, seed and tick number in; state out), so the room
 * keeps, from a patch's swap on, the committed world as it was just before the swap tick (the
 * swap point) and the events of every tick committed since. To roll back, a fresh isolate of
 * the old version loads the swap point and runs those ticks again, in order, off the tick path,
 * while the room keeps ticking on the new version (its new ticks are recorded and replayed
 * too). At the rollback's swap tick the commit carries the difference between the world as it
 * is and the replayed one, plus the tick itself run on the old version.
 *
 * A replayed tick that fails on the old version is undone there and skipped: the inputs it held
 * did apply on the new version but have no effect on the old one (counted in `failedTicks`,
 * reported in the rollback's history).
 */
import { applyChanges } from '../state/record-patch.ts';
import type { GameSandbox, TickCall } from '../sandbox/sandbox.ts';

/** Limits on what a swap point keeps; past them it is dropped and a rollback needs a downgrade. */
export interface SwapPointLimits {
  maxTicks: number;
  maxEventBytes: number;
}

export const DEFAULT_SWAP_POINT_LIMITS: SwapPointLimits = { maxTicks: 12_000, maxEventBytes: 64 * 2 ** 20 };

export class SwapPoint {
  /** Committed ticks after the swap point: tick number and the encoded events it ran with. */
  readonly ticks: { tick: number; events: Uint8Array }[] = [];
  private eventBytes = 0;

  constructor(
    /** The last tick committed before the swap tick. */
    readonly tick: number,
    /** The version that ran before the swap, and its schema: a replay runs on it. */
    readonly version: string,
    readonly schema: number,
    /** The committed records at `tick` (values are immutable bytes: a shallow copy is a snapshot). */
    readonly records: ReadonlyMap<string, Uint8Array>,
    private readonly limits: SwapPointLimits = DEFAULT_SWAP_POINT_LIMITS,
  ) {}

  /** Keep a committed tick's events. False when that would pass the limits (nothing kept). */
  record(tick: number, events: Uint8Array): boolean {
    if (this.ticks.length >= this.limits.maxTicks || this.eventBytes + events.length > this.limits.maxEventBytes) return false;
    this.ticks.push({ tick, events });
    this.eventBytes += events.length;
    return true;
  }
}

/** Replays a swap point's ticks in an isolate of the old version, keeping the records it yields. */
export class Replayer {
  /** The replayed world's records, as far as it got. */
  readonly state: Map<string, Uint8Array>;
  private next = 0;
  failedTicks = 0;

  constructor(
    readonly point: SwapPoint,
    private readonly sandbox: GameSandbox,
    /** The tick call for a recorded tick (seed, clock, dt as the room runs them). */
    private readonly callFor: (tick: number, events: Uint8Array) => TickCall,
  ) {
    this.state = new Map(point.records);
  }

  /** The last tick replayed (the swap point's own tick before any). */
  get replayedTo(): number {
    return this.next === 0 ? this.point.tick : this.point.ticks[this.next - 1]!.tick;
  }

  /** Replay every recorded tick not replayed yet. Throws when the isolate died. */
  async advance(): Promise<void> {
    while (this.next < this.point.ticks.length) {
      const { tick, events } = this.point.ticks[this.next]!;
      const out = await this.sandbox.tick(this.callFor(tick, events));
      this.next++;
      if (out.ok) {
        applyChanges(this.state, out);
      } else if (out.isolateDead) {
        throw new Error(`replaying tick ${tick} killed the isolate (${out.code})`);
      } else {
        this.failedTicks++; // undone in the isolate already (see GameSandbox.tick)
      }
    }
  }

  /** What turns `current` into the replayed world: records to set and keys to delete. */
  diffFrom(current: ReadonlyMap<string, Uint8Array>): { sets: [string, Uint8Array][]; dels: string[] } {
    const sets: [string, Uint8Array][] = [];
    const dels: string[] = [];
    for (const [k, v] of this.state) {
      const now = current.get(k);
      if (!now || !sameBytes(now, v)) sets.push([k, v]);
    }
    for (const k of current.keys()) if (!this.state.has(k)) dels.push(k);
    return { sets, dels };
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}
