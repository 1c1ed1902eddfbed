/**
 * HeldEvents (server/room/held-events.ts): events of failed ticks kept for a rollback, in order,
 * up to a bound past which they are handed back to be refused at once.
 */
import { describe, expect, it } from 'vitest';
import { HeldEvents, MAX_HELD_EVENTS } from '../../server/room/held-events.ts';
import type { InputEvent } from '../../server/room/input-queue.ts';

const input = (seq: number): InputEvent => ({ kind: 'input', playerId: 'p', name: 'p', seq, data: seq });

describe('HeldEvents', () => {
  it('keeps events in the order held, with the code and message of the tick that failed them, and empties on take', () => {
    const held = new HeldEvents();
    expect(held.hold([input(1), input(2)], 'TICK_FAILED', 'tick 7 failed')).toEqual([]);
    expect(held.hold([input(3)], 'CPU_BUDGET_EXCEEDED', 'tick 8 failed')).toEqual([]);
    expect(held.size).toBe(3);
    const taken = held.take();
    expect(taken.map((h) => (h.event as InputEvent).seq)).toEqual([1, 2, 3]);
    expect(taken.map((h) => h.code)).toEqual(['TICK_FAILED', 'TICK_FAILED', 'CPU_BUDGET_EXCEEDED']);
    expect(taken[2]!.message).toBe('tick 8 failed');
    expect(held.size).toBe(0);
    expect(held.take()).toEqual([]);
  });

  it('holds at most MAX_HELD_EVENTS and hands back the rest, newest, to be refused', () => {
    const held = new HeldEvents();
    const flood = Array.from({ length: MAX_HELD_EVENTS + 5 }, (_, i) => input(i + 1));
    const refused = held.hold(flood, 'TICK_FAILED', 'x');
    expect(held.size).toBe(MAX_HELD_EVENTS);
    expect(refused.map((e) => (e as InputEvent).seq)).toEqual([MAX_HELD_EVENTS + 1, MAX_HELD_EVENTS + 2, MAX_HELD_EVENTS + 3, MAX_HELD_EVENTS + 4, MAX_HELD_EVENTS + 5]);
    // Full: the next failed tick's events are all handed back.
    expect(held.hold([input(99_999)], 'TICK_FAILED', 'y')).toHaveLength(1);
    expect(held.size).toBe(MAX_HELD_EVENTS);
  });
});
