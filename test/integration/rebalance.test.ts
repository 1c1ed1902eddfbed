/**
 * Rebalancing (server/room/rebalancer.ts): a server running four rooms and a new one running
 * none, on one Redis. Passes of the first server's rebalancer (run by hand here, so the test
 * does not depend on timers) move rooms until the two are even, emptiest rooms first, and then
 * stop; the other server, even, moves nothing. Each room runs on exactly one server throughout,
 * and the player in the room that stayed never notices. Real Redis, sockets and isolates.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MoonpatchClient } from '../../client/client.ts';
import { FIXTURE_GAMES, FIXTURE_PATCHES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;
const TOKEN = 'rebalance-token-0123456789';

describe('rebalancing rooms over servers', () => {
  let a: Server;
  let b: Server;
  let player: MoonpatchClient;
  const stamp = Date.now();
  const ids = [1, 2, 3, 4].map((i) => `spread-${i}-${stamp}`);

  beforeAll(async () => {
    // Counting rooms (REBALANCE_BY=rooms); weighing players is the second describe.
    const common = { scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', adminToken: TOKEN, takeover: false, rebalanceBy: 'rooms' as const };
    a = await startTestServer({ ...common, nodeId: 'node-a' });
    for (const id of ids) await a.rooms.open(id, 'probe');
    // The first room has a player: it is moved last, if at all.
    player = testClient(a.url, { room: ids[0]!, game: 'probe', name: 'stays' });
    await player.connect();
    b = await startTestServer({ ...common, nodeId: 'node-b', redisPrefix: a.prefix });
    await waitFor(async () => (await a.redis.get(`${a.prefix}:node:node-b`)) !== null, 'node-b listed');
  });
  afterAll(async () => {
    player?.close();
    await b?.close();
    await a?.close();
  });

  const where = () => ids.map((id) => (a.rooms.get(id) ? 'a' : '') + (b.rooms.get(id) ? 'b' : ''));

  it('moves rooms from the loaded server to the empty one until they are even, emptiest first, then stops', async () => {
    expect(where()).toEqual(['a', 'a', 'a', 'a']);
    // Back to back, faster than the servers write their status: moves not shown yet still count.
    expect(await a.rebalancer!.pass()).toEqual({ room: ids[1], to: 'node-b', weight: 1 });
    expect(await a.rebalancer!.pass()).toEqual({ room: ids[2], to: 'node-b', weight: 1 });
    expect(await a.rebalancer!.pass()).toBeNull();
    expect(where()).toEqual(['a', 'b', 'b', 'a']);

    // Each server writes its status as rooms start and stop there (not only every 2 s): once
    // both show the moves, the other server, even now, has nothing to do either.
    const status = async (node: string) => JSON.parse((await a.redis.get(`${a.prefix}:node:${node}`))!) as { rooms: unknown[] };
    await waitFor(async () => (await status('node-a')).rooms.length === 2 && (await status('node-b')).rooms.length === 2, 'both statuses show the moves');
    expect(await b.rebalancer!.pass()).toBeNull();
    expect(await a.rebalancer!.pass()).toBeNull();
    expect(await b.rebalancer!.pass()).toBeNull();
    expect(where()).toEqual(['a', 'b', 'b', 'a']);

    // The player's room stayed, and it never saw a disconnect.
    player.send({ op: 'add', n: 1 });
    await waitFor(() => player.unsettled === 0, 'the input settled');
    expect(player.disconnects).toBe(0);
    expect(player.currentUrl).toBe(a.url);
  });

  it('a server that refuses the hand-over is left alone afterwards: the room reopens here once, not every pass', async () => {
    // An empty live server with another admin token: it refuses to open the room.
    const c = await startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', adminToken: 'another-token-0123456789', takeover: false, nodeId: 'node-c', redisPrefix: a.prefix });
    try {
      await waitFor(async () => (await a.redis.get(`${a.prefix}:node:node-c`)) !== null, 'node-c listed');
      const before = where();
      expect(await a.rebalancer!.pass()).toBeNull(); // tried node-c, which refused; the room reopened here
      expect(where()).toEqual(before);
      const reopened = ids.filter((id) => a.rooms.get(id));
      const instances = reopened.map((id) => a.rooms.get(id)!);
      expect(await a.rebalancer!.pass()).toBeNull(); // node-c is left alone; node-b is even
      expect(reopened.map((id) => a.rooms.get(id))).toEqual(instances); // the same Room objects: not closed and reopened again
      expect(c.rooms.list()).toHaveLength(0);
    } finally {
      await c.close();
    }
  });

  it('is off by default (REBALANCE_INTERVAL_MS), and a bad interval is refused at start', async () => {
    const { makeConfig } = await import('../../server/config/config.ts');
    expect(makeConfig().rebalanceIntervalMs).toBe(0);
    expect(() => makeConfig({ rebalanceIntervalMs: -1 })).toThrow(/rebalanceIntervalMs/);
    expect(() => makeConfig({ rebalanceIntervalMs: 1.5 })).toThrow(/rebalanceIntervalMs/);
    expect(makeConfig().rebalanceBy).toBe('players');
    expect(() => makeConfig({ rebalanceBy: 'memory' as never })).toThrow(/rebalanceBy/);
  });
});

describe('rebalancing by players (REBALANCE_BY=players, the default)', () => {
  let a: Server;
  let b: Server;
  const players: MoonpatchClient[] = [];
  const stamp = Date.now();
  const busy = `busy-${stamp}`;
  const idle = [`idle-a-${stamp}`, `idle-b1-${stamp}`, `idle-b2-${stamp}`];

  beforeAll(async () => {
    const common = { scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', adminToken: TOKEN, takeover: false };
    a = await startTestServer({ ...common, nodeId: 'node-a' });
    b = await startTestServer({ ...common, nodeId: 'node-b', redisPrefix: a.prefix });
    // Two rooms each, but a's busy room has three players: 4 + 1 against 1 + 1.
    for (let i = 0; i < 3; i++) {
      const c = testClient(a.url, { room: busy, game: 'probe', name: `p${i}` });
      await c.connect();
      players.push(c);
    }
    await a.rooms.open(idle[0]!, 'probe');
    await b.rooms.open(idle[1]!, 'probe');
    await b.rooms.open(idle[2]!, 'probe');
    const status = async (node: string) => JSON.parse((await a.redis.get(`${a.prefix}:node:${node}`)) ?? '{"rooms":[]}') as { rooms: { connected: number }[] };
    await waitFor(async () => (await status('node-b')).rooms.length === 2 && (await status('node-a')).rooms.reduce((n, r) => n + r.connected, 0) === 3, 'both statuses current');
  });
  afterAll(async () => {
    for (const c of players) c.close();
    await b?.close();
    await a?.close();
  });

  it('moves a room off the server whose players outweigh the other\'s, not the busy room itself, then stops', async () => {
    // Counting rooms, 2 against 2 is even; weighing players it is 5 against 2. Moving the busy
    // room (4) would only turn that around; the idle one (1) makes it 4 against 3.
    expect(await a.rebalancer!.pass()).toEqual({ room: idle[0], to: 'node-b', weight: 1 });
    expect(await a.rebalancer!.pass()).toBeNull();
    expect(await b.rebalancer!.pass()).toBeNull();
    expect(b.rooms.get(idle[0]!)).toBeDefined();
    expect(a.rooms.get(idle[0]!)).toBeUndefined();
    expect(a.rooms.get(busy)).toBeDefined();
    // The busy room's players never noticed.
    const seqs = players.map((c) => c.send({ op: 'add', n: 1 }));
    await waitFor(() => players.every((c, i) => c.lastAckedSeq >= seqs[i]!), 'their inputs acknowledged');
    expect(players.map((c) => c.disconnects)).toEqual([0, 0, 0]);
  });
});

describe('rebalancing by CPU (REBALANCE_BY=cpu)', () => {
  let a: Server;
  let b: Server;
  let burner: MoonpatchClient;
  const stamp = Date.now();
  const heavy = `heavy-${stamp}`;
  const light = [`light-a1-${stamp}`, `light-a2-${stamp}`];
  const lightOnB = [1, 2, 3, 4].map((i) => `light-b${i}-${stamp}`);
  /** The status a server last wrote to Redis. */
  const status = async (node: string) => JSON.parse((await a.redis.get(`${a.prefix}:node:${node}`)) ?? '{"rooms":[]}') as { rooms: { room: string; cpuCores?: number }[] };

  beforeAll(async () => {
    const common = { scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', adminToken: TOKEN, takeover: false, rebalanceBy: 'cpu' as const };
    a = await startTestServer({ ...common, nodeId: 'node-a' });
    b = await startTestServer({ ...common, nodeId: 'node-b', redisPrefix: a.prefix });
    // a: one room whose every tick burns CPU, and two that only tick; b: four that only tick.
    // Counting rooms, b carries more (4 against 3); by players it is 4 against 4.
    burner = testClient(a.url, { room: heavy, game: 'probe', name: 'burner' });
    await burner.connect();
    burner.send({ op: 'burn', n: 10_000_000 });
    for (const id of light) await a.rooms.open(id, 'probe');
    for (const id of lightOnB) await b.rooms.open(id, 'probe');
    const heavyRoom = a.rooms.get(heavy)!;
    // The meter averages over ~10 s: wait until the heavy room weighs well over the gap a move
    // needs (a twentieth of a core); the light rooms measure one or two thousandths each.
    await waitFor(() => heavyRoom.cpuCores > 0.1, 'the heavy room\'s CPU measured', 60_000);
    await waitFor(async () => (await status('node-b')).rooms.length === 4, 'b\'s status current');
  }, 90_000);
  afterAll(async () => {
    burner?.close();
    await b?.close();
    await a?.close();
  });

  it('moves the light rooms off the server whose CPU goes to one heavy room, never the heavy room itself, and the other server moves nothing', async () => {
    expect(await b.rebalancer!.pass()).toBeNull();
    // Either light room may go first (whichever measured heavier leaves the two closer to even).
    const first = await a.rebalancer!.pass();
    const second = await a.rebalancer!.pass();
    expect([first?.to, second?.to]).toEqual(['node-b', 'node-b']);
    expect([first?.room, second?.room].sort()).toEqual([...light].sort());
    expect(await a.rebalancer!.pass()).toBeNull(); // the heavy room outweighs the gap: moving it would only turn it around
    expect(a.rooms.get(heavy)).toBeDefined();
    for (const id of light) expect(b.rooms.get(id)).toBeDefined();
    // The status every server writes carries each room's measure, which is how b weighs a.
    await waitFor(async () => {
      const s = await status('node-a');
      return s.rooms.length === 1 && s.rooms[0]!.room === heavy && s.rooms[0]!.cpuCores! > 0.05;
    }, 'a\'s status shows only the heavy room, with its CPU');
    expect((await status('node-b')).rooms.every((r) => typeof r.cpuCores === 'number')).toBe(true);
    expect(await b.rebalancer!.pass()).toBeNull();
    // The burner never noticed.
    burner.send({ op: 'add', n: 1 });
    await waitFor(() => burner.unsettled === 0, 'the input settled');
    expect(burner.disconnects).toBe(0);
  });
});
