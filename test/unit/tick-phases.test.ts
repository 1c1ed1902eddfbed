/**
 * Where rooms tick in their period (server/room/tick-phases.ts, TickClock.start(phase)): each
 * new room goes to the middle of the widest gap between the others at its rate, a stopped
 * room's phase is free again, and a clock started with a phase falls due at that point of the
 * period. What it does for lateness is measured by `npm run bench:phases`.
 */
import { describe, expect, it } from 'vitest';
import { alignedStart, TickClock } from '../../server/room/tick-clock.ts';
import { TickPhases, widestGapMiddle } from '../../server/room/tick-phases.ts';

describe('widestGapMiddle', () => {
  it('finds the middle of the widest gap on the circle, the wrap-around gap included', () => {
    expect(widestGapMiddle([])).toBe(0);
    expect(widestGapMiddle([0])).toBe(0.5);
    expect(widestGapMiddle([0, 0.5])).toBe(0.25);
    expect(widestGapMiddle([0.1, 0.2])).toBeCloseTo(0.65);
    expect(widestGapMiddle([0.4, 0.8])).toBeCloseTo(0.1); // 0.8 -> 1.4, wrapping: its middle 1.1 is 0.1
  });
});

describe('TickPhases', () => {
  it('spreads rooms of one rate evenly, keeps rates apart, and reuses a released phase', () => {
    const phases = new TickPhases();
    const rooms = [{}, {}, {}, {}];
    expect(rooms.map((r) => phases.assign(r, 20))).toEqual([0, 0.5, 0.25, 0.75]);
    const other = {};
    expect(phases.assign(other, 30)).toBe(0); // another rate: its own period
    phases.release(rooms[1]!);
    expect(phases.assign({}, 20)).toBe(0.5);
    expect(phases.size).toBe(5);
    // Assigning a room again places it anew (here back in the widest gap, its own) rather than counting it twice.
    expect(phases.assign(rooms[0]!, 20)).toBe(0);
    expect(phases.size).toBe(5);
  });
});

describe('a clock started with a phase', () => {
  it('alignedStart is the earliest time at or after now at that phase of the period', () => {
    expect(alignedStart(1000, 50, 0.1)).toBe(1005);
    expect(alignedStart(1000, 50, 0)).toBe(1000);
    expect(alignedStart(1004, 50, 0.1)).toBe(1005);
    expect(alignedStart(1006, 50, 0.1)).toBe(1055);
    expect(alignedStart(1000, 50, 1.1)).toBe(1005); // phases wrap
  });

  it('falls due at its phase of the period, never sooner than a period after it starts', () => {
    const clock = new TickClock(20, async () => {}, () => {});
    const before = performance.now();
    clock.start(0.3);
    try {
      const due = clock.nextDueAt!;
      expect(((due % 50) + 50) % 50).toBeCloseTo(15, 6);
      expect(due - before).toBeGreaterThanOrEqual(50);
      expect(due - performance.now()).toBeLessThanOrEqual(100);
    } finally {
      clock.stop();
    }
    expect(clock.nextDueAt).toBeUndefined();
  });
});
