/**
 * The policy after a tick stopped in one player's hook (server/room/stopped-ticks.ts), on data:
 * what runs again, what is refused, when a leave loses its hook and when a player is expelled.
 * The same with a real room, sockets and isolates is in test/integration/rollback.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { InputEvent, JoinEvent, LeaveEvent, RoomEvent } from '../../server/room/input-queue.ts';
import { EXPEL_AFTER_STOPS, EXPEL_WINDOW_MS, StoppedTicks } from '../../server/room/stopped-ticks.ts';

let seq = 0;
const input = (playerId: string): InputEvent => ({ kind: 'input', playerId, name: playerId, seq: ++seq, data: null });
const join = (playerId: string): JoinEvent => ({ kind: 'join', playerId, name: playerId });
const leave = (playerId: string): LeaveEvent => ({ kind: 'leave', playerId, name: playerId });

function clocked(): { stops: StoppedTicks; advance: (ms: number) => void } {
  let now = 0;
  return { stops: new StoppedTicks(() => now), advance: (ms) => (now += ms) };
}

describe('StoppedTicks', () => {
  it('refuses the culprit alone and puts the others back in their order, leaves included', () => {
    const { stops } = clocked();
    const events: RoomEvent[] = [input('a'), join('b'), input('m'), leave('c'), input('a')];
    const v = stops.judge(events, events[2]!);
    expect(v.culprit).toBe(events[2]);
    expect(v.again).toEqual([events[0], events[1], events[3], events[4]]);
    expect(v.refused).toEqual([]);
    expect(v.expel).toBeNull();
  });

  it('runs an event again once: in a second stopped tick it is refused, while leaves always run again', () => {
    const { stops } = clocked();
    const bystander = input('b');
    const leaving = leave('c');
    const firstLoop = input('m');
    const first = stops.judge([bystander, leaving, firstLoop], firstLoop);
    expect(first.culprit).toBe(firstLoop);
    expect(first.again).toEqual([bystander, leaving]);
    const loop = input('m');
    const second = stops.judge([bystander, leaving, loop], loop);
    expect(second.refused).toEqual([bystander]);
    expect(second.again).toEqual([leaving]);
    expect(stops.runsWithoutHook(leaving)).toBe(false); // never the culprit
  });

  it('a leave that is the culprit runs again, and after its second stop without its hook', () => {
    const { stops } = clocked();
    const stuck = leave('c');
    const first = stops.judge([stuck, input('b')], stuck);
    expect([first.culprit, first.leaveWithoutHook, stops.runsWithoutHook(stuck)]).toEqual([null, false, false]);
    expect(first.again).toContain(stuck);
    const second = stops.judge([stuck], stuck);
    expect([second.leaveWithoutHook, stops.runsWithoutHook(stuck)]).toEqual([true, true]);
    expect(second.again).toEqual([stuck]);
  });

  it(`expels a player whose inputs stop ${EXPEL_AFTER_STOPS} ticks within the window, with their other inputs; stops older than the window do not count`, () => {
    const { stops, advance } = clocked();
    for (let i = 1; i < EXPEL_AFTER_STOPS; i++) {
      const loop = input('m');
      expect(stops.judge([loop], loop).expel).toBeNull();
      advance(1_000);
    }
    advance(EXPEL_WINDOW_MS); // the earlier stops fall out of the window
    for (let i = 1; i < EXPEL_AFTER_STOPS; i++) {
      const loop = input('m');
      expect(stops.judge([loop], loop).expel).toBeNull();
    }
    const loop = input('m');
    const others = [input('m'), input('b')];
    const v = stops.judge([loop, ...others], loop);
    expect(v.expel).toEqual({ playerId: 'm', stops: EXPEL_AFTER_STOPS });
    expect(v.again).toEqual([others[1]]); // the expelled player's other input does not run again
    // Counting starts over: the next stop is the first.
    const next = input('m');
    expect(stops.judge([next], next).expel).toBeNull();
  });

  it('charges no one while a patch is on watch (charge false): the new version may be what stops', () => {
    const { stops } = clocked();
    for (let i = 0; i < EXPEL_AFTER_STOPS * 2; i++) {
      const loop = input('m');
      const v = stops.judge([loop], loop, false);
      expect([v.culprit, v.expel]).toEqual([loop, null]);
    }
    // And those stops were not counted: after the watch, it takes the full count again.
    for (let i = 1; i < EXPEL_AFTER_STOPS; i++) {
      const loop = input('m');
      expect(stops.judge([loop], loop).expel).toBeNull();
    }
  });

  it('charges anonymous joins to no one: a join that stops a tick is refused, but a new join is a new player', () => {
    const { stops } = clocked();
    for (let i = 0; i < EXPEL_AFTER_STOPS + 2; i++) {
      const j = join(`p${i}`);
      const v = stops.judge([j], j);
      expect(v.culprit).toBe(j);
      expect([v.expel, v.bar]).toEqual([null, null]);
    }
  });

  it(`bars a signed-in user whose joins stop ${EXPEL_AFTER_STOPS} ticks within the window, each join a new player; other users and stops on watch are not counted`, () => {
    const { stops, advance } = clocked();
    const attempt = (userId: string | null, charge = true) => {
      const j = join(`p${++seq}`);
      const v = stops.judge([j, input('b')], j, charge, userId);
      expect(v.culprit).toBe(j);
      return v.bar;
    };
    expect(attempt('mallory')).toBeNull();
    expect(attempt('alice')).toBeNull(); // another user's count is their own
    expect(attempt('mallory', false)).toBeNull(); // on watch: not counted
    advance(EXPEL_WINDOW_MS); // mallory's first stop falls out of the window
    for (let i = 1; i < EXPEL_AFTER_STOPS; i++) expect(attempt('mallory')).toBeNull();
    expect(attempt('mallory')).toEqual({ userId: 'mallory', stops: EXPEL_AFTER_STOPS });
    // A user's joins and a player's inputs are counted apart, even under the same name.
    advance(EXPEL_WINDOW_MS);
    for (let i = 1; i < EXPEL_AFTER_STOPS; i++) {
      const loop = input('alice');
      expect(stops.judge([loop], loop).expel).toBeNull();
    }
    for (let i = 1; i < EXPEL_AFTER_STOPS; i++) expect(attempt('alice')).toBeNull();
    expect(attempt('alice')).toEqual({ userId: 'alice', stops: EXPEL_AFTER_STOPS });
  });
});
