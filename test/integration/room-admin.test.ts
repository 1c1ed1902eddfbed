/**
 * Rooms made and unmade on purpose: who may create a room (ROOM_CREATION), deleting a room for
 * good through the admin API (its players closed with 4007, another owner fenced out, a
 * tombstone that keeps a fenced owner from writing it back), and unloaded rooms whose keys
 * expire (ROOM_EXPIRE_MS) unless they open again first. Real Redis, real sockets, real isolates.
 */
import type { Redis } from 'ioredis';
import { pack } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MoonpatchClient } from '../../client/client.ts';
import { FIXTURE_GAMES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;
const TOKEN = 'test-admin-token-0123456789';

async function join(server: Server, room: string, name = 'p'): Promise<MoonpatchClient> {
  const c = testClient(server.url, { room, game: 'probe', name, autoReconnect: false });
  await c.connect();
  await waitFor(() => c.world.meta !== undefined, 'first snapshot');
  return c;
}

/** The probe world's tick counter as a client sees it. */
function worldTicks(c: MoonpatchClient): number {
  return (c.world.meta as { ticks: number }).ticks;
}

async function admin(server: Server, method: string, route: string, body?: unknown, token = TOKEN): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://127.0.0.1:${server.port}${route}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

/** Every key of the room on this server's prefix, with its TTL in ms (-1: none). */
async function roomKeys(server: Server, room: string): Promise<Map<string, number>> {
  const redis: Redis = server.redis;
  const keys = await redis.keys(`${server.prefix}:room:{${room}}:*`);
  const out = new Map<string, number>();
  for (const k of keys) out.set(k.slice(k.lastIndexOf(':') + 1), await redis.pttl(k));
  return out;
}

describe('ROOM_CREATION=admin: only the admin API creates rooms', () => {
  let server: Server;
  beforeAll(async () => {
    server = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', adminToken: TOKEN, roomCreation: 'admin' });
  });
  afterAll(async () => server?.close());

  it('a join naming a room that does not exist is refused with ROOM_NOT_FOUND and writes nothing', async () => {
    const room = 'nocreate-' + Date.now();
    const c = testClient(server.url, { room, game: 'probe', autoReconnect: false });
    const codes: string[] = [];
    c.on('error', (e) => codes.push(e.code));
    await expect(c.connect()).rejects.toThrow();
    c.close();
    expect(codes).toEqual(['ROOM_NOT_FOUND']);
    expect((await roomKeys(server, room)).size).toBe(0);
    expect(await server.store.listRooms()).not.toContain(room);
    expect(server.rooms.get(room)).toBeUndefined();
  });

  it('an admin create makes the room, at tick 0, and players can then join it', async () => {
    const room = 'made-' + Date.now();
    const made = await admin(server, 'POST', '/admin/rooms', { room, game: 'probe' });
    expect(made.status).toBe(200);
    expect(made.body).toMatchObject({ room, game: 'probe', versionNumber: 1 });
    expect((await server.store.readMeta(room))!.tick).toBe(0);
    // Created, not started: nothing runs it until a player comes (not even a takeover: it is
    // not on the index of rooms that should be running).
    expect(server.rooms.get(room)).toBeUndefined();
    expect(await server.store.listRooms()).not.toContain(room);
    const c = await join(server, room);
    await waitFor(() => worldTicks(c) >= 3, 'the created room ticks');
    c.close();
  });

  it('refuses a second create, bad ids, unknown games, bad bodies and a missing token, creating nothing', async () => {
    const room = 'twice-' + Date.now();
    expect((await admin(server, 'POST', '/admin/rooms', { room })).status).toBe(200);
    const before = await server.store.readMeta(room);
    const again = await admin(server, 'POST', '/admin/rooms', { room, game: 'probe' });
    expect(again).toMatchObject({ status: 409, body: { code: 'ROOM_EXISTS' } });
    expect(await server.store.readMeta(room)).toEqual(before);

    expect(await admin(server, 'POST', '/admin/rooms', { room: 'no spaces!' })).toMatchObject({ status: 400, body: { code: 'BAD_ROOM_ID' } });
    expect(await admin(server, 'POST', '/admin/rooms', { room: 'x'.repeat(65) })).toMatchObject({ status: 400, body: { code: 'BAD_ROOM_ID' } });
    expect(await admin(server, 'POST', '/admin/rooms', { room: 42 })).toMatchObject({ status: 400, body: { code: 'BAD_FIELD' } });
    expect(await admin(server, 'POST', '/admin/rooms', '[1,2')).toMatchObject({ status: 400, body: { code: 'BAD_FIELD' } });
    const ghost = 'ghost-' + Date.now();
    expect(await admin(server, 'POST', '/admin/rooms', { room: ghost, game: 'no-such-game' })).toMatchObject({ status: 404, body: { code: 'GAME_NOT_FOUND' } });
    expect(await admin(server, 'POST', '/admin/rooms', { room: ghost, game: 'probe' }, 'wrong-token-wrong-token')).toMatchObject({ status: 401, body: { code: 'UNAUTHORIZED' } });
    expect((await roomKeys(server, ghost)).size).toBe(0);
  });
});

describe('deleting a room', () => {
  let server: Server;
  beforeAll(async () => {
    server = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', adminToken: TOKEN });
  });
  afterAll(async () => server?.close());

  it('closes its players with 4007 (no reconnect), removes every key but a tombstone, and the id starts afresh', async () => {
    const room = 'doomed-' + Date.now();
    const c = testClient(server.url, { room, game: 'probe', name: 'p', reconnectDelayMs: 10 });
    await c.connect();
    await waitFor(() => worldTicks(c) >= 10, 'a few ticks');
    const closes: number[] = [];
    c.on('disconnect', (d) => closes.push(d.code));
    const epochBefore = (await server.store.readMeta(room))!.epoch;

    const r = await admin(server, 'DELETE', `/admin/rooms/${room}`);
    expect(r).toMatchObject({ status: 200, body: { room, deleted: true, wasRunningHere: true } });
    await waitFor(() => closes.length > 0, 'the player is closed');
    expect(closes).toEqual([4007]);
    expect(server.rooms.get(room)).toBeUndefined();
    expect(await server.store.listRooms()).not.toContain(room);
    expect(await server.store.readMeta(room)).toBeNull();
    const keys = await roomKeys(server, room);
    expect([...keys.keys()]).toEqual(['meta']);
    expect(keys.get('meta')).toBeGreaterThan(0); // the tombstone expires
    const tomb = await server.redis.hgetall(server.store.keys(room).meta);
    expect(tomb).toEqual({ deleted: '1', epoch: String(epochBefore + 1) });

    // The client does not come back on its own (4007 is final).
    await new Promise((res) => setTimeout(res, 200));
    expect(c.connected).toBe(false);
    expect(server.rooms.get(room)).toBeUndefined();
    c.close();

    // Again: nothing to delete.
    expect(await admin(server, 'DELETE', `/admin/rooms/${room}`)).toMatchObject({ status: 404, body: { code: 'ROOM_NOT_FOUND' } });

    // The id can be used again at once: a new room from tick 0, with a fresh world, and an epoch
    // above the tombstone's (the deleted room's owners stay fenced out).
    const fresh = await join(server, room, 'new');
    expect(worldTicks(fresh)).toBeLessThan(5);
    expect((await server.store.readMeta(room))!.epoch).toBeGreaterThan(epochBefore + 1);
    fresh.close();
  });

  it('fences out another server that runs the room, which can neither commit nor write it back', async () => {
    const room = 'elsewhere-' + Date.now();
    // Server B shares A's Redis prefix: a second node of the same deployment.
    const other = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', adminToken: TOKEN, redisPrefix: server.prefix, nodeId: 'node-b', takeover: false });
    try {
      const c = testClient(server.url, { room, game: 'probe', name: 'p', autoReconnect: false });
      await c.connect();
      await waitFor(() => worldTicks(c) >= 5, 'ticking on A');
      const closes: number[] = [];
      c.on('disconnect', (d) => closes.push(d.code));
      const onA = server.rooms.get(room)!;
      const epochOnA = onA.epoch;

      const r = await admin(other, 'DELETE', `/admin/rooms/${room}`);
      expect(r).toMatchObject({ status: 200, body: { deleted: true, wasRunningHere: false } });
      await waitFor(() => closes.length > 0, "A's player is closed");
      expect(closes).toEqual([4005]);
      expect(server.rooms.get(room)).toBeUndefined();

      // A's image cannot come back: the tombstone's epoch is not A's.
      const restored = await server.store.restore(room, { meta: { ...onA.meta, epoch: epochOnA }, records: [], seats: [], seqs: [] });
      expect(restored).toBe('fenced');
      expect(await server.store.readMeta(room)).toBeNull();
      expect(await server.store.claim(room)).toBeNull();
      c.close();
    } finally {
      await other.close();
    }
  });

  it('refuses bad ids and unknown rooms, deleting nothing', async () => {
    const room = 'kept-' + Date.now();
    await server.rooms.open(room, 'probe');
    expect(await admin(server, 'DELETE', '/admin/rooms/no%20spaces')).toMatchObject({ status: 400, body: { code: 'BAD_ROOM_ID' } });
    expect(await admin(server, 'DELETE', `/admin/rooms/${room}-not`)).toMatchObject({ status: 404, body: { code: 'ROOM_NOT_FOUND' } });
    expect(await admin(server, 'DELETE', `/admin/rooms/${room}`, undefined, 'wrong-token-wrong-token')).toMatchObject({ status: 401 });
    expect(server.rooms.get(room)).toBeDefined();
    expect(await server.store.readMeta(room)).not.toBeNull();
  });
});

describe('ROOM_EXPIRE_MS: unloaded rooms expire unless they open again', () => {
  it('gives an unloaded room meta-first TTLs, which a reopening cancels with its state intact', async () => {
    const server = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', roomIdleUnloadMs: 200, roomExpireMs: 600_000 });
    try {
      const room = 'expiring-' + Date.now();
      const c = await join(server, room);
      await waitFor(() => worldTicks(c) >= 5, 'a few ticks');
      c.send({ op: 'log', text: 'a line for the journal' });
      await waitFor(async () => (await roomKeys(server, room)).has('journal'), 'the script journal written');
      c.leave();
      await waitFor(async () => (await roomKeys(server, room)).get('meta')! > 0, 'TTLs set at the unload');
      const keys = await roomKeys(server, room);
      expect(keys.has('journal')).toBe(true); // it expires with the room
      const metaTtl = keys.get('meta')!;
      expect(metaTtl).toBeLessThanOrEqual(600_000);
      // Everything else outlives meta, so whoever finds meta finds the rest.
      for (const [k, ttl] of keys) if (k !== 'meta') expect(ttl, k).toBeGreaterThan(metaTtl);
      expect(keys.has('state')).toBe(true);
      const stoppedAt = (await server.store.readMeta(room))!.tick;

      const back = await join(server, room, 'again');
      expect(worldTicks(back)).toBeGreaterThanOrEqual(stoppedAt);
      for (const [k, ttl] of await roomKeys(server, room)) if (k !== 'lease') expect(ttl, k).toBe(-1);
      back.close();
    } finally {
      await server.close();
    }
  });

  it('after the expiry the room is gone, and a join creates a new one over what is left', async () => {
    const server = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', roomIdleUnloadMs: 200, roomExpireMs: 300 });
    try {
      const room = 'expired-' + Date.now();
      const c = await join(server, room);
      await waitFor(() => worldTicks(c) >= 20, 'twenty ticks');
      c.leave();
      await waitFor(async () => !(await roomKeys(server, room)).has('meta'), 'meta expired');
      // The rest lingers a minute longer, and is no room.
      expect((await roomKeys(server, room)).has('state')).toBe(true);
      expect(await server.store.readMeta(room)).toBeNull();
      // A leftover the new room's init would not overwrite: an old record no longer in the world.
      await server.redis.hset(server.store.keys(room).state, 'leftover', pack(1));

      const fresh = await join(server, room, 'new');
      expect(worldTicks(fresh)).toBeLessThan(20);
      expect((await server.store.readRecords(room)).has('leftover')).toBe(false);
      expect(fresh.world.leftover).toBeUndefined();
      // The new room's keys are its own: the old ones (still counting down) were cleared when
      // it was created, so none of them can expire under it.
      for (const [k, ttl] of await roomKeys(server, room)) if (k !== 'lease') expect(ttl, k).toBe(-1);
      expect((await server.store.readMeta(room))!.tick).toBeLessThan(20);
      fresh.close();
    } finally {
      await server.close();
    }
  });
});
