/**
 * Interest management (game.json `interest`, server/room/interest.ts): each player receives the
 * positioned entries within a cell of their own and everything that is not positioned. Real
 * server, real sockets, the `spatial` fixture game (100-unit cells, radius 1).
 *
 * The check is always the same: a client's world, rebuilt from the frames it got, equals the
 * committed state filtered by the rule as this file computes it (not by the engine's grid).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpack } from 'msgpackr';
import { WorldView } from '../../client/world-view.ts';
import type { MoonpatchClient } from '../../client/client.ts';
import type { Value } from '../../server/protocol/messages.ts';
import type { Room } from '../../server/room/room.ts';
import { mulberry32 } from '../helpers/prng.ts';
import { FIXTURE_GAMES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;
let server: Server;
beforeAll(async () => {
  server = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'spatial', inputRatePerSecond: 2000, inputBurst: 2000 });
});
afterAll(async () => server?.close());

const CELL = 100;

function cellOf(v: unknown): [number, number] | null {
  const o = v as { x?: unknown; y?: unknown } | null;
  if (typeof o?.x !== 'number' || typeof o.y !== 'number' || !Number.isFinite(o.x) || !Number.isFinite(o.y)) return null;
  return [Math.floor(o.x / CELL), Math.floor(o.y / CELL)];
}

/**
 * What player `playerId` should hold: the committed records filtered by the interest rule. A
 * player without a position of their own sees no positioned entry.
 */
function expectedWorld(records: ReadonlyMap<string, Uint8Array>, playerId: string): Record<string, Value> {
  const decoded = new Map([...records].map(([k, b]) => [k, unpack(b) as Value]));
  const centre = cellOf(decoded.get(`players/${playerId}`));
  const seen: Record<string, Value> = {};
  for (const [k, v] of decoded) {
    const positioned = k.startsWith('players/') || k.startsWith('items/');
    const c = positioned ? cellOf(v) : null;
    if (!c || (centre && Math.abs(c[0] - centre[0]) <= 1 && Math.abs(c[1] - centre[1]) <= 1)) seen[k] = v;
  }
  const view = new WorldView();
  view.applySnapshot(0, '', seen);
  return view.world;
}

async function settle(room: Room, clients: MoonpatchClient[]): Promise<void> {
  await waitFor(() => clients.every((c) => !c.connected || c.tick >= room.committed.tick), 'every client at the committed tick');
}

function expectEveryView(room: Room, clients: MoonpatchClient[], when: string): void {
  for (const c of clients) {
    if (!c.connected) continue;
    expect(c.world, `${c.playerId} ${when}`).toEqual(expectedWorld(room.committed.records, c.playerId));
  }
}

describe('interest management', () => {
  it('a player holds the entries within a cell of theirs and everything unpositioned; entries come and go as they move', async () => {
    const roomId = 'aoi-' + Date.now().toString(36);
    const join = async (name: string) => {
      const c = testClient(server.url, { room: roomId, game: 'spatial', name });
      await c.connect();
      return c;
    };
    const a = await join('a');
    const b = await join('b');
    const c = await join('c');
    const room = server.rooms.get(roomId)!;
    await room.pauseClock();
    const step = async (moves: [MoonpatchClient, Value][]) => {
      for (const [who, msg] of moves) who.send(msg);
      await waitFor(() => room.queue.size >= moves.length, 'inputs queued');
      await room.runTick();
      await settle(room, [a, b, c]);
    };
    await step([[a, { op: 'to', x: 50, y: 50 }], [b, { op: 'to', x: 150, y: 50 }], [c, { op: 'to', x: 950, y: 950 }]]);
    const keys = (cl: MoonpatchClient) => Object.keys((cl.world.players ?? {}) as object).sort();
    expect(keys(a)).toEqual([a.playerId, b.playerId].sort());
    expect(keys(c)).toEqual([c.playerId]);
    expect(Object.keys(a.world.items as object)).toContain('g0-0');
    expect(Object.keys(a.world.items as object)).not.toContain('g9-9');
    expect(Object.keys(c.world.items as object)).toEqual(expect.arrayContaining(['banner', 'g9-9', 'g8-8']));
    expect(Object.keys(c.world.items as object)).not.toContain('g0-0');
    expect(Object.keys(c.world.items as object).length).toBe(1 + 4); // the banner, and the 2x2 cells at the corner
    expect(c.world.meta).toEqual({ ticks: room.committed.tick });
    expectEveryView(room, [a, b, c], 'after placing');

    // c comes next to b (two cells from a): b sees it, a does not; c now sees a and b.
    await step([[c, { op: 'to', x: 250, y: 50 }]]);
    expect(keys(a)).toEqual([a.playerId, b.playerId].sort());
    expect(keys(b)).toEqual([a.playerId, b.playerId, c.playerId].sort());
    expect(keys(c)).toEqual([b.playerId, c.playerId].sort());
    expectEveryView(room, [a, b, c], 'after c came near');

    // b loses its position: everyone sees it (unplaced), and b, with no position, sees no
    // positioned entry: only the banner among the items, only itself among the players.
    await step([[b, { op: 'unplace' }]]);
    expect(keys(c)).toContain(b.playerId);
    expect(keys(a)).toContain(b.playerId);
    expect(Object.keys(b.world.items as object)).toEqual(['banner']);
    expect(keys(b)).toEqual([b.playerId]);
    expectEveryView(room, [a, b, c], 'after b lost its position');

    // c goes away again (an item it saw is deleted from its world); b is placed next to a.
    await step([[c, { op: 'to', x: 950, y: 50 }], [b, { op: 'to', x: 50, y: 150 }]]);
    expect(Object.keys(c.world.items as object)).not.toContain('g2-0');
    expect(keys(b)).toEqual([a.playerId, b.playerId].sort());
    expect(Object.keys(b.world.items as object)).toContain('g1-2');
    expectEveryView(room, [a, b, c], 'after c went away');
    for (const cl of [a, b, c]) cl.close();
  });

  it('through random moves, item changes, joins, leaves and resumes, every client holds exactly what it sees', async () => {
    const roomId = 'aoi-rand-' + Date.now().toString(36);
    const rnd = mulberry32(20261127);
    const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
    const clients: MoonpatchClient[] = [];
    const join = async () => {
      const c = testClient(server.url, { room: roomId, game: 'spatial', name: `p${clients.length}` });
      await c.connect();
      clients.push(c);
    };
    for (let i = 0; i < 6; i++) await join();
    const room = server.rooms.get(roomId)!;
    await room.pauseClock();
    // With the clock paused, a join waits for a tick: run them by hand until it is seated.
    const joinNow = async () => {
      const c = testClient(server.url, { room: roomId, game: 'spatial', name: `p${clients.length}` });
      const joined = c.connect();
      await waitFor(async () => {
        if (room.queue.size > 0) await room.runTick();
        return c.connected;
      }, 'the late joiner seated');
      await joined;
      clients.push(c);
    };
    const pool = ['i0', 'i1', 'i2', 'i3', 'g3-3', 'g5-5', 'g0-9'];
    let crossings = 0;
    for (let step = 0; step < 80; step++) {
      let sent = 0;
      for (const c of clients) {
        if (!c.connected) continue;
        const r = rnd();
        let msg: Value | null = null;
        if (r < 0.35) msg = { op: 'step', dx: int(-70, 70), dy: int(-70, 70) };
        else if (r < 0.5) msg = { op: 'to', x: int(-150, 1150), y: int(-150, 1150) };
        else if (r < 0.54) msg = { op: 'unplace' };
        else if (r < 0.64) msg = { op: 'spawn', id: pool[int(0, pool.length - 1)]!, x: int(-50, 1050), y: int(-50, 1050) };
        else if (r < 0.7) msg = { op: 'drop', id: pool[int(0, pool.length - 1)]! };
        else if (r < 0.82) msg = { op: 'shift', id: pool[int(0, pool.length - 1)]!, dx: int(-120, 120) };
        else if (r < 0.92) msg = { op: 'touch', id: pool[int(0, pool.length - 1)]! };
        if (msg) {
          c.send(msg);
          sent++;
        }
      }
      const before = new Map(clients.map((c) => [c.playerId, cellOf(room.committed.get(`players/${c.playerId}`) && unpack(room.committed.get(`players/${c.playerId}`)!))]));
      await waitFor(() => room.queue.size >= sent, 'inputs queued');
      await room.runTick();
      // Now and then a client drops its connection and resumes (a snapshot of its view), one
      // leaves, or one more joins.
      if (step % 17 === 5) clients[int(0, clients.length - 1)]!.dropConnection();
      if (step === 40) {
        const leaver = clients.splice(int(0, clients.length - 1), 1)[0]!;
        leaver.leave();
        leaver.close();
      }
      if (step % 25 === 10) await joinNow();
      await waitFor(() => clients.every((c) => c.connected), 'everyone connected');
      await settle(room, clients);
      for (const c of clients) {
        const now = cellOf(room.committed.get(`players/${c.playerId}`) && unpack(room.committed.get(`players/${c.playerId}`)!));
        if (JSON.stringify(now) !== JSON.stringify(before.get(c.playerId))) crossings++;
      }
      expectEveryView(room, clients, `at step ${step}`);
    }
    expect(crossings, 'players changed cell (the views moved)').toBeGreaterThan(50);
    for (const c of clients) c.close();
  });
});

describe('interest management for a client that falls behind', () => {
  it('catches up with a snapshot of its view, taken where it stands when it drains', async () => {
    const roomId = 'aoi-slow-' + Date.now().toString(36);
    const fast = testClient(server.url, { room: roomId, game: 'spatial', name: 'fast' });
    const slow = testClient(server.url, { room: roomId, game: 'spatial', name: 'slow', autoReconnect: false });
    await fast.connect();
    await slow.connect();
    const room = server.rooms.get(roomId)!;
    const seat = room.seats.get(slow.playerId)!;
    const lagging = () => (room as unknown as { broadcaster: { subs: Map<unknown, { missed: Set<string> | null }> } }).broadcaster.subs.get(seat.link)?.missed != null;
    const socket = (slow as unknown as { socket: { _socket: { pause(): void; resume(): void } } }).socket._socket;
    socket.pause();
    // Big frames to everyone until the server skips the stalled client.
    let n = 0;
    const pump = setInterval(() => fast.send({ op: 'blob', bytes: 60_000, tag: String(n++ % 10) }), 50);
    try {
      await waitFor(lagging, 'the server skipping the stalled client');
    } finally {
      clearInterval(pump);
    }
    // While it is behind, it moves far away and the world around it changes.
    slow.send({ op: 'to', x: 850, y: 850 });
    fast.send({ op: 'to', x: 900, y: 800 });
    fast.send({ op: 'spawn', id: 'late', x: 820, y: 880 });
    await waitFor(() => room.queue.size === 0, 'the moves applied');
    socket.resume();
    await waitFor(() => !lagging() && slow.tick >= room.committed.tick, 'the slow client caught up');
    await room.pauseClock();
    await settle(room, [fast, slow]);
    expect(slow.disconnects).toBe(0);
    expect(Object.keys(slow.world.items as object)).toContain('late');
    expect(Object.keys(slow.world.items as object)).not.toContain('g0-0');
    expectEveryView(room, [fast, slow], 'after the catch-up');
    fast.close();
    slow.close();
  });
});
