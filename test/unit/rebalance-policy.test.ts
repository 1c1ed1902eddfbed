/**
 * The rebalancing policy (server/room/rebalancer.ts, pickMove) on data: which room moves where,
 * and when nothing should. The whole hand-over with real servers is in
 * test/integration/rebalance.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { pickMove, type LocalRoom } from '../../server/room/rebalancer.ts';

const rooms = (node: string, n: number) => Array.from({ length: n }, (_, i) => ({ room: `${node}-${i}`, node }));
const local = (n: number, connected: number[] = []): LocalRoom[] =>
  Array.from({ length: n }, (_, i) => ({ id: `r${i}`, connected: connected[i] ?? 0, switching: false }));

describe('pickMove', () => {
  it('moves the emptiest room (then the lowest id) to the least loaded server when the gap is two or more', () => {
    const view = { nodes: ['a', 'b', 'c'], rooms: [...rooms('a', 4), ...rooms('b', 1), ...rooms('c', 3)] };
    expect(pickMove('a', view, local(4, [5, 0, 2, 0]), [])).toEqual({ room: 'r1', to: 'b' });
  });

  it('does nothing when the gap is under two (a move would only swap the imbalance)', () => {
    const view = { nodes: ['a', 'b'], rooms: [...rooms('a', 3), ...rooms('b', 2)] };
    expect(pickMove('a', view, local(3), [])).toBeNull();
    expect(pickMove('a', { nodes: ['a'], rooms: rooms('a', 9) }, local(9), [])).toBeNull(); // alone
  });

  it('counts its own recent moves for their target until the target says so itself', () => {
    // b's status still says 0, but two rooms went there since: 2 against 2, nothing to do.
    const view = { nodes: ['a', 'b'], rooms: rooms('a', 2) };
    expect(pickMove('a', view, local(2), [{ to: 'b' }, { to: 'b' }])).toBeNull();
    expect(pickMove('a', view, local(2), [])).toEqual({ room: 'r0', to: 'b' });
    // A move to a server no longer live is not counted anywhere.
    expect(pickMove('a', { nodes: ['a', 'c'], rooms: rooms('a', 4) }, local(4), [{ to: 'b' }])).toEqual({ room: 'r0', to: 'c' });
  });

  it('leaves alone a server a move to failed lately, and goes to the next least loaded one', () => {
    const view = { nodes: ['a', 'b', 'c'], rooms: [...rooms('a', 4), ...rooms('c', 1)] };
    expect(pickMove('a', view, local(4), [])).toEqual({ room: 'r0', to: 'b' });
    expect(pickMove('a', view, local(4), [], new Set(['b']))).toEqual({ room: 'r0', to: 'c' });
    expect(pickMove('a', view, local(4), [], new Set(['b', 'c']))).toBeNull();
  });

  it('trusts its own rooms over its last status, and never moves a room in the middle of a patch', () => {
    const view = { nodes: ['a', 'b'], rooms: [...rooms('a', 1), ...rooms('b', 0)] }; // a's status is stale
    const mine: LocalRoom[] = [
      { id: 'x', connected: 0, switching: true },
      { id: 'y', connected: 3, switching: false },
    ];
    expect(pickMove('a', view, mine, [])).toEqual({ room: 'y', to: 'b' });
    expect(pickMove('a', view, [{ id: 'x', connected: 0, switching: true }, { id: 'z', connected: 0, switching: true }], [])).toBeNull();
  });
});
