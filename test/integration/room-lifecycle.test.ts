/**
 * Room lifecycle on one server: an idle room is unloaded with its state kept in Redis and opens
 * again at its last tick on the next join; a seat held for the resume window keeps its room
 * loaded; maxRooms bounds the isolates a client can make the server run by naming new rooms.
 * Real Redis, real sockets, real isolates (the probe game counts its ticks in meta.ticks).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MoonpatchClient } from '../../client/client.ts';
import { channels, type RoomLifecycleEvent, type TickCommittedEvent } from '../../server/ops/events.ts';
import { widestGapMiddle } from '../../server/room/tick-phases.ts';
import { FIXTURE_GAMES, FIXTURE_PATCHES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;

/** The probe world's tick counter as a client sees it. */
function worldTicks(c: MoonpatchClient): number {
  return (c.world.meta as { ticks: number }).ticks;
}

async function join(server: Server, room: string, name = 'p'): Promise<MoonpatchClient> {
  const c = testClient(server.url, { room, game: 'probe', name, autoReconnect: false });
  await c.connect();
  await waitFor(() => c.world.meta !== undefined, 'first snapshot');
  return c;
}

/** Join and return the error code the server refused the join with. */
async function refusedJoin(server: Server, room: string): Promise<string | undefined> {
  const c = testClient(server.url, { room, game: 'probe', autoReconnect: false });
  const codes: string[] = [];
  c.on('error', (e) => codes.push(e.code));
  await expect(c.connect()).rejects.toThrow();
  c.close();
  return codes[0];
}

/**
 * Leave (giving the seat up), wait for the room to unload, and return the tick it stopped at
 * and the world's tick counter as committed then (read from Redis, not from the room).
 */
async function leaveAndAwaitUnload(server: Server, c: MoonpatchClient, room: string): Promise<{ tick: number }> {
  c.leave();
  // Gone from the server at once, then handed back (lease released) once its last tick is in.
  await waitFor(async () => server.rooms.get(room) === undefined && (await server.store.leaseOf(room)) === null, `room ${room} unloaded and released`);
  const meta = await server.store.readMeta(room);
  return { tick: meta!.tick };
}

describe('idle rooms', () => {
  let server: Server;
  beforeAll(async () => {
    server = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', roomIdleUnloadMs: 300, resumeWindowMs: 1500 });
  });
  afterAll(async () => server?.close());

  it('an idle room is unloaded, stops ticking and leaves the resume index; the next join opens it where it stopped', async () => {
    const room = 'idle-' + Date.now();
    const events: string[] = [];
    const onRoom = (e: unknown) => {
      if ((e as RoomLifecycleEvent).roomId === room) events.push((e as RoomLifecycleEvent).what);
    };
    channels.room.subscribe(onRoom);
    const first = await join(server, room);
    await waitFor(() => worldTicks(first) >= 5, 'a few ticks');
    const { tick: stoppedAt } = await leaveAndAwaitUnload(server, first, room);
    // Ops see it (metrics count room events by `what`).
    await waitFor(() => events.includes('unloaded'), 'unloaded event');
    channels.room.unsubscribe(onRoom);
    expect(events).toEqual(['started', 'stopped', 'unloaded']);
    const records = await server.store.readRecords(room);
    expect(records.size).toBeGreaterThan(0);
    expect(await server.store.listRooms()).not.toContain(room);

    // Unloaded means not ticking: the committed tick stays put.
    await new Promise((r) => setTimeout(r, 200));
    expect((await server.store.readMeta(room))!.tick).toBe(stoppedAt);

    const ticks: TickCommittedEvent[] = [];
    const onTick = (e: unknown) => {
      if ((e as TickCommittedEvent).roomId === room) ticks.push(e as TickCommittedEvent);
    };
    channels.tickCommitted.subscribe(onTick);
    try {
      const second = await join(server, room, 'again');
      // The first tick after reopening follows the last one committed before the unload, and the
      // world's own counter agrees: it kept its state and did not tick while unloaded.
      expect(ticks[0]!.tick).toBe(stoppedAt + 1);
      const at = second.tick;
      expect(worldTicks(second)).toBe(at);
      expect(await server.store.listRooms()).toContain(room);
      second.leave();
    } finally {
      channels.tickCommitted.unsubscribe(onTick);
    }
  });

  it('a seat held for the resume window keeps the room loaded; the player resumes into it', async () => {
    const room = 'held-' + Date.now();
    const c = await join(server, room);
    const id = c.playerId;
    const token = c.resumeToken;
    const loaded = server.rooms.get(room)!;
    c.close(); // a dropped connection, not a leave: the seat is held
    await waitFor(() => loaded.seats.get(id)?.link === null, 'seat detached');
    // Longer than roomIdleUnloadMs, shorter than the resume window.
    await new Promise((r) => setTimeout(r, 700));
    expect(server.rooms.get(room)).toBe(loaded);
    const back = testClient(server.url, { room, autoReconnect: false });
    (back as unknown as { resumeToken: string }).resumeToken = token;
    await back.connect();
    expect(back.playerId).toBe(id);
    const { tick } = await leaveAndAwaitUnload(server, back, room);
    expect(tick).toBeGreaterThan(0);
  });

  it('a join that arrives while the room is being unloaded gets the room back, nothing lost and nothing fenced', async () => {
    const room = 'race-' + Date.now();
    const lines: Record<string, unknown>[] = [];
    // maxRooms 1: the room being unloaded must not count against its own reopening.
    const slow = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', roomIdleUnloadMs: 3_600_000, maxRooms: 1, logLines: lines });
    try {
      const c = await join(slow, room);
      const seq = c.send({ op: 'add', n: 7 });
      await waitFor(() => c.lastAckedSeq >= seq, 'input acked');
      c.leave();
      await waitFor(() => slow.rooms.get(room)?.isIdle === true, 'room idle');
      // Drive the sweep by hand: first pass notes the room idle, second (an hour later) unloads it.
      const now = Date.now();
      expect(slow.rooms.sweepIdle(now)).toEqual([]);
      expect(slow.rooms.sweepIdle(now + 3_600_000)).toEqual([room]);
      // In the same turn, before the unload has finished: this join must wait, not fail.
      const again = await join(slow, room, 'racer');
      expect(slow.rooms.get(room)).toBeDefined();
      expect(worldTicks(again)).toBe(again.tick);
      expect(await slow.store.leaseOf(room)).not.toBeNull();
      expect(await slow.store.listRooms()).toContain(room);
      // The unload finished before the room was opened again: its checkpoint and hand-back were
      // not fenced by the new claim (which would only be logged, fencing keeps the state safe).
      const trouble = lines.filter((l) => (l.level as number) >= 40 && l.roomId === room);
      expect(trouble.map((l) => l.msg)).toEqual([]);
      expect(lines.some((l) => l.msg === 'idle room unloaded' && l.roomId === room)).toBe(true);
      again.leave();
    } finally {
      await slow.close();
    }
  });

  it('a server restarted on the same Redis does not bring an unloaded room back until someone joins it', async () => {
    const prefix = 'restart-idle-' + Date.now();
    const room = 'dormant-' + Date.now();
    const a = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', roomIdleUnloadMs: 300, redisPrefix: prefix });
    let stoppedAt: number;
    try {
      const c = await join(a, room);
      await waitFor(() => worldTicks(c) >= 3, 'a few ticks');
      stoppedAt = (await leaveAndAwaitUnload(a, c, room)).tick;
    } finally {
      await a.close();
    }
    const b = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', roomIdleUnloadMs: 300, redisPrefix: prefix });
    try {
      expect(b.rooms.get(room)).toBeUndefined();
      expect((await b.store.readMeta(room))!.tick).toBe(stoppedAt);
      const c = await join(b, room);
      expect(c.tick).toBeGreaterThan(stoppedAt);
      expect(worldTicks(c)).toBe(c.tick);
      c.leave();
    } finally {
      await b.close();
    }
  });
});

describe('maxRooms', () => {
  let server: Server;
  beforeAll(async () => {
    server = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', maxRooms: 2, roomIdleUnloadMs: 300 });
  });
  afterAll(async () => server?.close());

  it('a client naming room after room is refused with ROOM_LIMIT past the limit; running rooms are unharmed, and an unloaded room frees its place', async () => {
    const base = 'many-' + Date.now();
    const a = await join(server, `${base}-a`);
    const b = await join(server, `${base}-b`);
    for (let i = 0; i < 5; i++) expect(await refusedJoin(server, `${base}-x${i}`)).toBe('ROOM_LIMIT');
    expect(server.rooms.list().map((r) => r.id).sort()).toEqual([`${base}-a`, `${base}-b`]);
    // A room refused is not created either.
    expect(await server.store.readMeta(`${base}-x0`)).toBeNull();
    // The running rooms still take joins and inputs.
    const a2 = await join(server, `${base}-a`, 'second');
    const seq = a2.send({ op: 'add', n: 1 });
    await waitFor(() => a2.lastAckedSeq >= seq, 'input acked in a full server');
    const tickB = b.tick;
    await waitFor(() => b.tick > tickB, 'room b still ticking');

    a.leave();
    a2.leave();
    // Unloaded and handed back: until then its isolate still counts against the limit.
    await waitFor(async () => server.rooms.get(`${base}-a`) === undefined && (await server.store.leaseOf(`${base}-a`)) === null, 'room a unloaded');
    const c = await join(server, `${base}-c`);
    expect(server.rooms.get(`${base}-c`)).toBeDefined();
    c.leave();
    b.leave();
  });
});

describe("a game's target version", () => {
  const TOKEN = 'target-admin-token-0123456789';
  let server: Server;
  beforeAll(async () => {
    server = await startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', roomIdleUnloadMs: 300, adminToken: TOKEN });
  });
  afterAll(async () => server?.close());

  async function admin(method: string, route: string, body?: unknown, token = TOKEN): Promise<{ status: number; body: any }> {
    const res = await fetch(`http://127.0.0.1:${server.port}${route}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  }

  /** Open a room, let `prepare` act on it, then leave and wait until it is unloaded. */
  async function dormantRoom(room: string, prepare: () => Promise<void> = async () => {}): Promise<void> {
    const c = await join(server, room);
    await prepare();
    await leaveAndAwaitUnload(server, c, room);
  }

  const versionOf = (room: string) => server.rooms.get(room)?.current?.number;

  it('rooms unloaded before a promote open on the target version; pinned rooms and rooms ahead of it stay', async () => {
    const base = 'target-' + Date.now();
    await dormantRoom(`${base}-behind`);
    await dormantRoom(`${base}-pinned`, async () => {
      expect((await admin('POST', `/admin/rooms/${base}-pinned/pin`, { pinned: true })).status).toBe(200);
    });
    await dormantRoom(`${base}-ahead`, async () => {
      expect((await server.rooms.applyVersion(`${base}-ahead`, 2)).ok).toBe(true);
    });

    // Target v1 (the base): a room on v2 is ahead of it, a canary, and keeps its version.
    expect((await admin('PUT', '/admin/games/probe/target', { version: 1 })).body).toMatchObject({ current: 1 });
    const ahead = await join(server, `${base}-ahead`);
    const t0 = ahead.tick;
    await waitFor(() => ahead.tick > t0 + 10, 'ahead room ticking');
    expect(versionOf(`${base}-ahead`)).toBe(2);
    ahead.leave();

    const set = await admin('PUT', '/admin/games/probe/target', { version: 2 });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({ game: 'probe', current: 2, previous: 1, withdrawn: [] });
    expect((await admin('GET', '/admin/games/probe/target')).body).toMatchObject({ current: 2 });

    // Behind the target: patched to it as it opens, migration included (v2 renames sum to score).
    const behind = await join(server, `${base}-behind`);
    await waitFor(() => versionOf(`${base}-behind`) === 2, 'behind room patched to v2');
    await waitFor(() => (behind.world.players as Record<string, { score?: number }>)[behind.playerId]?.score !== undefined, 'migrated state reached the player');
    const history = await server.rooms.history(`${base}-behind`);
    expect(history[0]).toMatchObject({ kind: 'applied' });
    behind.leave();

    // Pinned: stays on its version.
    const pinned = await join(server, `${base}-pinned`);
    const t1 = pinned.tick;
    await waitFor(() => pinned.tick > t1 + 10, 'pinned room ticking');
    expect(versionOf(`${base}-pinned`)).toBe(1);
    pinned.leave();
  });

  it('withdrawing the target sends it back to the one before, and a room still on the withdrawn version moves off it when it opens', async () => {
    const room = 'withdrawn-' + Date.now();
    expect((await admin('PUT', '/admin/games/probe/target', { version: 1 })).status).toBe(200);
    expect((await admin('PUT', '/admin/games/probe/target', { version: 2 })).status).toBe(200);
    // A new room starts on the target version itself: no patch needed.
    await dormantRoom(room, async () => {
      expect(versionOf(room)).toBe(2);
      expect(await server.rooms.history(room)).toEqual([]);
    });
    const w = await admin('POST', '/admin/games/probe/target/withdraw', { version: 2 });
    expect(w.status).toBe(200);
    expect(w.body).toMatchObject({ current: 1, withdrawn: [2] });
    const c = await join(server, room);
    // v2 -> v1 crosses the schema back: the patch's downgrade runs in the swap tick.
    await waitFor(() => versionOf(room) === 1, 'moved off the withdrawn version');
    c.leave();
  });

  it('bad target requests are refused with a stable code and change nothing', async () => {
    const before = (await admin('GET', '/admin/games/probe/target')).body;
    const unknownVersion = await admin('PUT', '/admin/games/probe/target', { version: 99 });
    expect([unknownVersion.status, unknownVersion.body.code]).toEqual([404, 'GAME_NOT_FOUND']);
    const unknownGame = await admin('PUT', '/admin/games/no-such-game/target', { version: 1 });
    expect([unknownGame.status, unknownGame.body.code]).toEqual([404, 'GAME_NOT_FOUND']);
    for (const version of ['2', 0, -1, 1.5, null]) {
      const bad = await admin('PUT', '/admin/games/probe/target', { version });
      expect([bad.status, bad.body.code], String(version)).toEqual([400, 'BAD_FIELD']);
    }
    expect((await admin('PUT', '/admin/games/probe/target', { version: 1 }, 'wrong-token')).status).toBe(401);
    expect((await admin('GET', '/admin/games/probe/target')).body).toEqual(before);
  });
});

describe('tick phases', () => {
  it('rooms opened together tick at spread points of the period; a deleted room\'s point is free for the next', async () => {
    const s = await startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe' });
    try {
      const [a, b, c] = await Promise.all(['ph-a', 'ph-b', 'ph-c'].map((id) => s.rooms.open(id, 'probe')));
      expect([a!, b!, c!].map((r) => r.tickPhase).sort()).toEqual([0, 0.25, 0.5]);
      // With b's point free again, d goes to the widest gap between a's and c's points, which
      // is not where it would go were b's point still taken.
      const phases = (...rooms: typeof a[]) => rooms.map((r) => r!.tickPhase!).sort((x, y) => x - y);
      await s.rooms.deleteRoom('ph-b');
      const d = await s.rooms.open('ph-d', 'probe');
      expect(d.tickPhase).toBe(widestGapMiddle(phases(a, c)));
      expect(d.tickPhase).not.toBe(widestGapMiddle(phases(a, b, c)));
    } finally {
      await s.close();
    }
  });

  it('with TICK_PHASES=free a room ticks wherever its clock started', async () => {
    const s = await startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', tickPhases: 'free' });
    try {
      const room = await s.rooms.open('ph-free', 'probe');
      expect(room.tickPhase).toBeUndefined();
      await waitFor(() => room.tick > 2, 'it ticks');
    } finally {
      await s.close();
    }
  });
});
