/**
 * The rebalancing policy (server/room/rebalancer.ts, pickMove) on data: which room moves where,
 * and when nothing should. The whole hand-over with real servers is in
 * test/integration/rebalance.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { roomWeight } from '../../server/net/cluster.ts';
import { pickMove, type LocalRoom } from '../../server/room/rebalancer.ts';

const rooms = (node: string, n: number, connected = 0) => Array.from({ length: n }, (_, i) => ({ room: `${node}-${i}`, node, connected }));
const local = (n: number, connected: number[] = []): LocalRoom[] =>
  Array.from({ length: n }, (_, i) => ({ id: `r${i}`, connected: connected[i] ?? 0, switching: false }));
/** Rooms with the CPU they used lately, in cores. */
const busyRooms = (node: string, cores: number[]) => cores.map((cpuCores, i) => ({ room: `${node}-${i}`, node, connected: 0, cpuCores }));
const localCpu = (cores: number[], connected: number[] = []): LocalRoom[] =>
  cores.map((cpuCores, i) => ({ id: `r${i}`, connected: connected[i] ?? 0, cpuCores, switching: false }));

describe('pickMove by rooms (REBALANCE_BY=rooms)', () => {
  const byRooms = (...a: Parameters<typeof pickMove>) => pickMove(a[0], a[1], a[2], a[3], a[4] ?? new Set(), 'rooms');
  it('moves the emptiest room (then the lowest id) to the least loaded server when the gap is two or more', () => {
    const view = { nodes: ['a', 'b', 'c'], rooms: [...rooms('a', 4), ...rooms('b', 1), ...rooms('c', 3)] };
    expect(byRooms('a', view, local(4, [5, 0, 2, 0]), [])).toEqual({ room: 'r1', to: 'b', weight: 1 });
  });

  it('does nothing when the gap is under two (a move would only swap the imbalance)', () => {
    const view = { nodes: ['a', 'b'], rooms: [...rooms('a', 3), ...rooms('b', 2)] };
    expect(byRooms('a', view, local(3), [])).toBeNull();
    expect(byRooms('a', { nodes: ['a'], rooms: rooms('a', 9) }, local(9), [])).toBeNull(); // alone
  });

  it('counts its own recent moves for their target until the target says so itself', () => {
    // b's status still says 0, but two rooms went there since: 2 against 2, nothing to do.
    const view = { nodes: ['a', 'b'], rooms: rooms('a', 2) };
    expect(byRooms('a', view, local(2), [{ to: 'b', weight: 1 }, { to: 'b', weight: 1 }])).toBeNull();
    expect(byRooms('a', view, local(2), [])).toEqual({ room: 'r0', to: 'b', weight: 1 });
    // A move to a server no longer live is not counted anywhere.
    expect(byRooms('a', { nodes: ['a', 'c'], rooms: rooms('a', 4) }, local(4), [{ to: 'b', weight: 1 }])).toEqual({ room: 'r0', to: 'c', weight: 1 });
  });

  it('leaves alone a server a move to failed lately, and goes to the next least loaded one', () => {
    const view = { nodes: ['a', 'b', 'c'], rooms: [...rooms('a', 4), ...rooms('c', 1)] };
    expect(byRooms('a', view, local(4), [])).toEqual({ room: 'r0', to: 'b', weight: 1 });
    expect(byRooms('a', view, local(4), [], new Set(['b']))).toEqual({ room: 'r0', to: 'c', weight: 1 });
    expect(byRooms('a', view, local(4), [], new Set(['b', 'c']))).toBeNull();
  });

  it('trusts its own rooms over its last status, and never moves a room in the middle of a patch', () => {
    const view = { nodes: ['a', 'b'], rooms: [...rooms('a', 1), ...rooms('b', 0)] }; // a's status is stale
    const mine: LocalRoom[] = [
      { id: 'x', connected: 0, switching: true },
      { id: 'y', connected: 3, switching: false },
    ];
    expect(byRooms('a', view, mine, [])).toEqual({ room: 'y', to: 'b', weight: 1 });
    expect(byRooms('a', view, [{ id: 'x', connected: 0, switching: true }, { id: 'z', connected: 0, switching: true }], [])).toBeNull();
  });
});

describe('pickMove by players (the default)', () => {
  it('weighs a room as its connected players plus one, whatever a status says', () => {
    expect([roomWeight('players', { connected: 0 }), roomWeight('players', { connected: 7 }), roomWeight('rooms', { connected: 7 })]).toEqual([1, 8, 1]);
    for (const junk of [undefined, -3, 1.5, Number.NaN, 2 ** 60, '7']) expect(roomWeight('players', { connected: junk as number })).toBe(1);
  });

  it('sees ten full rooms against ten empty ones, which counting rooms cannot', () => {
    const view = { nodes: ['a', 'b'], rooms: rooms('b', 10, 0) };
    const full = local(10, Array(10).fill(20));
    expect(pickMove('a', view, full, [], new Set(), 'rooms')).toBeNull();
    // 210 against 10: one room of 20 (weight 21) narrows it most of any, all being alike.
    expect(pickMove('a', view, full, [])).toEqual({ room: 'r0', to: 'b', weight: 21 });
  });

  it('moves the room that leaves the two closest to even, never one as heavy as the gap', () => {
    // a: 31 + 11 + 2 = 44; b: 4. Gap 40: moving 11 leaves 18, moving 31 leaves 22, moving 2 leaves 36.
    const view = { nodes: ['a', 'b'], rooms: rooms('b', 4) };
    expect(pickMove('a', view, local(3, [30, 10, 1]), [])).toEqual({ room: 'r1', to: 'b', weight: 11 });
    // One big room alone: moving it only turns the imbalance around.
    expect(pickMove('a', { nodes: ['a', 'b'], rooms: [] }, local(1, [50]), [])).toBeNull();
  });

  it('leaves small differences alone (under two, or under a tenth of its load), so players coming and going move nothing', () => {
    expect(pickMove('a', { nodes: ['a', 'b'], rooms: rooms('b', 1, 0) }, local(2, [0, 0]), [])).toBeNull(); // 2 against 1
    // 100 + 1 against 92: a gap of 9, under a tenth of 101.
    expect(pickMove('a', { nodes: ['a', 'b'], rooms: rooms('b', 1, 91) }, local(2, [99, 0]), [])).toBeNull();
    // 100 + 1 against 80: a gap of 21; the empty room narrows it (moving the full one would not).
    expect(pickMove('a', { nodes: ['a', 'b'], rooms: rooms('b', 1, 79) }, local(2, [99, 0]), [])).toEqual({ room: 'r1', to: 'b', weight: 1 });
  });

  it('counts a recent move\'s weight for its target until the target\'s status shows it', () => {
    const view = { nodes: ['a', 'b'], rooms: [] };
    // 2 x 21 here; 21 went to b a moment ago: even.
    expect(pickMove('a', view, local(2, [20, 20]), [{ to: 'b', weight: 21 }])).toBeNull();
    expect(pickMove('a', view, local(2, [20, 20]), [])).toEqual({ room: 'r0', to: 'b', weight: 21 });
  });
});


describe('pickMove by cpu (REBALANCE_BY=cpu)', () => {
  const byCpu = (...a: Parameters<typeof pickMove>) => pickMove(a[0], a[1], a[2], a[3], a[4] ?? new Set(), 'cpu');

  it('weighs a room as the thousandths of a core it used lately, at least one, whatever a status says', () => {
    expect([0.25, 0.0123, 0, 0.0004].map((cpuCores) => roomWeight('cpu', { cpuCores, connected: 40 }))).toEqual([250, 12.3, 1, 1]);
    // An older server's status has no cpuCores; junk counts as nothing.
    for (const junk of [undefined, -0.5, Number.NaN, Number.POSITIVE_INFINITY, '0.5', null]) expect(roomWeight('cpu', { cpuCores: junk as number })).toBe(1);
  });

  it('sees a costly game against cheap ones, which counting players or rooms cannot', () => {
    // a: one room of a heavy game (0.3 cores) and two light ones, no players anywhere; b: four light rooms.
    const view = { nodes: ['a', 'b'], rooms: busyRooms('b', [0.01, 0.01, 0.01, 0.01]) };
    const mine = localCpu([0.3, 0.01, 0.01]);
    // Counting rooms, b carries more (4 against 3); by players it is even (3 against 4 empty rooms is under the gap).
    expect(pickMove('a', view, mine, [], new Set(), 'rooms')).toBeNull();
    expect(pickMove('a', view, mine, [], new Set(), 'players')).toBeNull();
    // By cpu, 320 against 40: a light room goes (the heavy one, 300, is heavier than the gap of 280).
    expect(byCpu('a', view, mine, [])).toEqual({ room: 'r1', to: 'b', weight: 10 });
    expect(byCpu('a', view, localCpu([0.3]), [])).toBeNull();
  });

  it('leaves a gap under a twentieth of a core, or under a tenth of its load, alone: the measure is noisy', () => {
    // 60 against 20: a gap of 40 milli-cores.
    expect(byCpu('a', { nodes: ['a', 'b'], rooms: busyRooms('b', [0.02]) }, localCpu([0.03, 0.03]), [])).toBeNull();
    // 900 + 30 against 870: a gap of 60, over the floor but under a tenth of 930.
    expect(byCpu('a', { nodes: ['a', 'b'], rooms: busyRooms('b', [0.87]) }, localCpu([0.9, 0.03]), [])).toBeNull();
    // 900 + 30 against 700: a gap of 230; the light room narrows it.
    expect(byCpu('a', { nodes: ['a', 'b'], rooms: busyRooms('b', [0.7]) }, localCpu([0.9, 0.03]), [])).toEqual({ room: 'r1', to: 'b', weight: 30 });
  });
});
