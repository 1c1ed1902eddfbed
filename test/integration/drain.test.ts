/**
 * A server that stops cleanly hands its rooms to the other live servers first (server/room/
 * drain.ts): they tick on there at once, spread over the servers, their players follow with
 * their seats. Real servers on one Redis prefix, real sockets and isolates; takeover is off on
 * every server, so a room running elsewhere after a stop got there by the drain alone.
 */
import { describe, expect, it } from 'vitest';
import { unpack } from 'msgpackr';
import type { Room } from '../../server/room/room.ts';
import { assignTargets } from '../../server/room/drain.ts';
import { uniquePrefix } from '../helpers/redis.ts';
import { FIXTURE_GAMES, FIXTURE_PATCHES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

const TOKEN = 'drain-admin-token-0123456789';
const server = (nodeId: string, redisPrefix: string, extra: Record<string, unknown> = {}) =>
  startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', adminToken: TOKEN, takeover: false, nodeId, redisPrefix, ...extra });
const sumOf = (room: Room, playerId: string) => (unpack(room.committed.get(`players/${playerId}`)!) as { sum: number }).sum;

describe('a server that stops cleanly', () => {
  it('hands its rooms to the other server, which ticks them on at once; the player follows to the same seat', async () => {
    const prefix = uniquePrefix('drain');
    const a = await server('node-a', prefix);
    const b = await server('node-b', prefix);
    try {
      const stamp = Date.now();
      const played = `drain-played-${stamp}`;
      const empty = `drain-empty-${stamp}`;
      const c = testClient(a.url, { room: played, game: 'probe', name: 'p', fallbackUrls: [b.url] });
      const codes: number[] = [];
      c.on('disconnect', (d) => codes.push(d.code));
      await c.connect();
      const first = c.send({ op: 'add', n: 4 });
      await waitFor(() => c.lastAckedSeq >= first, 'the first input acknowledged');
      await a.rooms.open(empty, 'probe');
      const seat = c.playerId;

      await a.close();
      // Both rooms run on b now, with nobody having asked for them there.
      expect(b.rooms.get(played)).toBeDefined();
      expect(b.rooms.get(empty)).toBeDefined();
      const emptyTick = b.rooms.get(empty)!.tick;
      await waitFor(() => b.rooms.get(empty)!.tick > emptyTick + 2, 'the room without players ticking on b');
      // The player was told the room moved (4005, not the 4000 of a plain stop) and resumed on b.
      await waitFor(() => c.connected && c.currentUrl === b.url, 'the player on b');
      expect(codes[0]).toBe(4005);
      expect(c.playerId).toBe(seat);
      const second = c.send({ op: 'add', n: 3 });
      await waitFor(() => c.lastAckedSeq >= second, 'an input acknowledged on b');
      expect(sumOf(b.rooms.get(played)!, seat)).toBe(7);
      c.close();
    } finally {
      await b.close();
      await a.close().catch(() => {});
    }
  });

  it('a room the other server refuses stops as before; DRAIN_ON_SHUTDOWN=0 moves nothing', async () => {
    const prefix = uniquePrefix('drain');
    // b has room for one more room only: the second hand-over is refused (ROOM_LIMIT).
    const a = await server('node-a', prefix);
    const b = await server('node-b', prefix, { maxRooms: 1 });
    const quiet = await server('node-q', uniquePrefix('drain-off'), { drainOnShutdown: false });
    const quietPeer = await server('node-r', quiet.prefix);
    try {
      const stamp = Date.now();
      const rooms = [`drain-x-${stamp}`, `drain-y-${stamp}`];
      for (const id of rooms) await a.rooms.open(id, 'probe');
      await a.close();
      const onB = rooms.filter((id) => b.rooms.get(id));
      expect(onB).toHaveLength(1);
      // The other one stopped with its lease handed back: any server may open it now.
      const other = rooms.find((id) => !onB.includes(id))!;
      expect(await b.store.leaseOf(other)).toBeNull();

      const kept = `drain-off-${stamp}`;
      await quiet.rooms.open(kept, 'probe');
      await quiet.close();
      expect(quietPeer.rooms.get(kept)).toBeUndefined();
    } finally {
      for (const s of [b, quietPeer]) await s.close();
    }
  });
});

describe('assignTargets', () => {
  const rooms = (...weights: number[]) => weights.map((weight, i) => ({ id: `r${i + 1}`, weight }));

  it('gives each room to the least loaded server, counting those given before it; ties to the lowest id', () => {
    const to = assignTargets(rooms(1, 1, 1, 1), new Map([['node-c', 0], ['node-b', 1]]));
    expect([...to]).toEqual([['r1', 'node-c'], ['r2', 'node-b'], ['r3', 'node-c'], ['r4', 'node-b']]);
    expect(assignTargets(rooms(1), new Map()).size).toBe(0);
  });

  it('places the heaviest rooms first, so players spread evenly', () => {
    // 21 + 3 + 2 + 1 players' worth over two servers carrying 0 and 5.
    const to = assignTargets(rooms(3, 21, 1, 2), new Map([['node-b', 0], ['node-c', 5]]));
    expect(to.get('r2')).toBe('node-b'); // b: 21
    expect(['r1', 'r3', 'r4'].map((r) => to.get(r))).toEqual(['node-c', 'node-c', 'node-c']); // c: 5 + 3 + 2 + 1
  });
});
