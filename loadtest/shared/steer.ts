/**
 * How a bot plays the arena: steer toward a wandering target, boost now and then. Shared by
 * loadtest/bots.ts, the load-test runner and the k6 scenario (pure ECMAScript).
 *
 * A bot that keeps a copy of the world steers from its real position; a blind one (most of
 * them, so the load generator does not spend its CPU decoding deltas) dead-reckons where it
 * probably is. Either way every input is a valid arena input: `{ move: [dx, dy] }` with each
 * component in [-1, 1], sometimes with `boost: true`.
 */

export type ArenaInput = { move: number[]; boost?: boolean };

const ARENA_W = 1000;
const ARENA_H = 700;
/** The arena's walking speed, units per second (scripts/arena), for dead reckoning. */
const SPEED = 200;

export class Steering {
  private target = { x: Math.random() * ARENA_W, y: Math.random() * ARENA_H };
  private guess = { x: ARENA_W / 2, y: ARENA_H / 2 };

  /** @param hz how often `next` is called per second (for dead reckoning) */
  constructor(private readonly hz: number) {}

  /** The next input; `me` is the bot's real position when it tracks the world. */
  next(me?: { x: number; y: number }): ArenaInput {
    const pos = me ?? this.guess;
    if (Math.hypot(this.target.x - pos.x, this.target.y - pos.y) < 30 || Math.random() < 0.01) {
      this.target = { x: Math.random() * ARENA_W, y: Math.random() * ARENA_H };
    }
    const dx = this.target.x - pos.x;
    const dy = this.target.y - pos.y;
    const len = Math.hypot(dx, dy) || 1;
    const input: ArenaInput = { move: [round2(dx / len), round2(dy / len)] };
    if (!me) this.guess = { x: pos.x + (dx / len) * (SPEED / this.hz), y: pos.y + (dy / len) * (SPEED / this.hz) };
    if (Math.random() < 0.01) input.boost = true;
    return input;
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
