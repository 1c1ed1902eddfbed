/**
 * The Redis side of the tick transaction: the log stays short because checkpoints fold it in,
 * what Redis holds always equals what the room committed, and the fence refuses a stale or
 * duplicate writer as a whole.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CloseCodes } from '../../server/errors/codes.ts';
import { stateHash } from '../../server/state/committed-state.ts';
import { encodeTickDelta } from '../../server/state/tick-delta.ts';
import { STORAGE_FORMAT, type ClaimedRoom } from '../../server/state/room-store.ts';
import type { ErrorMsg } from '../../server/protocol/messages.ts';
import { FIXTURE_GAMES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;
let server: Server;
beforeAll(async () => {
  // A short lease, so a takeover test need not wait the default 5 s for it to lapse.
  // Generous input rate: these tests send an input per hand-driven tick, as fast as ticks run.
  server = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', leaseMs: 1000, inputRatePerSecond: 2000, inputBurst: 2000 });
});
afterAll(async () => server?.close());

describe('log and checkpoints', () => {
  it('keeps the log short and Redis equal to the committed mirror', async () => {
    const roomId = 'ckpt-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'c' });
    await c.connect();
    const room = server.rooms.get(roomId)!;
    await room.pauseClock();
    for (let i = 0; i < 100; i++) {
      c.send({ op: 'add', n: i });
      await waitFor(() => room.queue.size > 0, 'input queued');
      await room.runTick();
    }
    await room.checkpoint();
    const meta = (await server.store.readMeta(roomId))!;
    expect(meta.checkpoint).toBe(room.tick);
    expect(await server.store.logLength(roomId)).toBe(0);
    expect(stateHash(await server.store.readRecords(roomId))).toBe(room.committed.hash());
    // And between checkpoints, the log holds at most a checkpoint interval or so of ticks.
    for (let i = 0; i < 30; i++) await room.runTick();
    expect(await server.store.logLength(roomId)).toBeLessThan(30);
    expect(stateHash(await server.store.readRecords(roomId))).toBe(room.committed.hash());
    c.close();
  });
});

describe('a takeover in the middle of a checkpoint interval', () => {
  it('loses nothing the previous owner committed but had not checkpointed', async () => {
    const prefix = server.prefix;
    const roomId = 'takeover-ckpt-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'first', autoReconnect: false });
    await c.connect();
    const first = server.rooms.get(roomId)!;
    await first.pauseClock();
    // Ticks past the last checkpoint: their changes live only in the log.
    for (let i = 0; i < 25; i++) {
      c.send({ op: 'add', n: 1 });
      await waitFor(() => first.queue.size > 0, 'queued');
      await first.runTick();
    }
    expect(await server.store.logLength(roomId)).toBeGreaterThan(0);
    const committedHash = first.committed.hash();
    // The first owner stalls (its clock stays paused: no commits renew its lease). Once the
    // lease lapses, a second server takes the room over (fencing the first), ticks past its
    // own first checkpoint, and shuts down cleanly.
    await waitFor(async () => (await server.store.leaseOf(roomId)) === null, "the stalled owner's lease to lapse");
    const second = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', redisPrefix: prefix });
    const room2 = await second.rooms.open(roomId);
    expect(room2.committed.hash()).toBe(committedHash);
    await room2.pauseClock();
    for (let i = 0; i < 45; i++) await room2.runTick();
    await room2.checkpoint();
    expect(await second.store.logLength(roomId)).toBe(0);
    // What Redis holds now is exactly what the second owner committed, first owner's ticks included.
    expect(stateHash(await second.store.readRecords(roomId))).toBe(room2.committed.hash());
    const player = (await second.store.readRecords(roomId)).get(`players/${c.playerId}`);
    expect(player).toBeDefined();
    c.close();
    await second.close();
  });
});

describe('fencing', () => {
  it('a second claim fences the running owner: its next commit is refused and the room stops here', async () => {
    const roomId = 'fence-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'c', autoReconnect: false });
    await c.connect();
    const room = server.rooms.get(roomId)!;
    await room.pauseClock();
    const closed = new Promise<number>((resolve) => c.on('disconnect', (d) => resolve(d.code)));
    const before = await server.store.readMeta(roomId);
    const newOwner = (await server.store.claim(roomId)) as ClaimedRoom; // another process taking the room over
    expect(newOwner!.meta.epoch).toBe(before!.epoch + 1);
    await room.runTick();
    expect(room.isStopped).toBe(true);
    expect(await closed).toBe(CloseCodes.ROOM_CLOSED);
    expect((await server.store.readMeta(roomId))!.tick).toBe(before!.tick);
  });

  it('a duplicate or out-of-order tick is refused as a whole', async () => {
    const roomId = 'dup-' + Date.now();
    await server.store.create(roomId, { game: 'probe', version: 'v', schema: 1, seed: 1, createdAt: 0, tickHz: 20 });
    const { meta } = (await server.store.claim(roomId)) as ClaimedRoom;
    const delta = (t: number) => encodeTickDelta(t, { sets: [['k', new Uint8Array([t])]], dels: [], patches: [] }, new Map());
    const commit = (prevTick: number, tick: number, epoch = meta.epoch) =>
      server.store.commit(roomId, { epoch, prevTick, tick, delta: delta(tick), seatSets: [], seatDels: [] });
    expect(await commit(0, 1)).toBe('ok');
    expect(await commit(0, 1)).toBe('tick-mismatch'); // the same tick again
    // A writer under the current epoch that builds on a tick Redis does not have: Redis lost
    // ticks (restarted without them); the owner writes the room back (see Room.restoreStore).
    expect(await commit(2, 3)).toBe('lost');
    expect(await commit(1, 2, meta.epoch - 1)).toBe('fenced'); // an older owner
    expect(await commit(1, 2)).toBe('ok');
    const records = await server.store.readRecords(roomId);
    expect([...records.get('k')!]).toEqual([2]);
    expect(await server.store.logLength(roomId)).toBe(2);
  });
});

describe('storage format', () => {
  /** A room a client played in and left, unloaded here as idle: in Redis, run by nobody. */
  async function storedRoom(name: string): Promise<string> {
    const roomId = `${name}-${Date.now().toString(36)}`;
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'c', autoReconnect: false });
    await c.connect();
    const seq = c.send({ op: 'add', n: 7 });
    await waitFor(() => c.lastAckedSeq >= seq, 'the input committed');
    c.leave();
    await waitFor(() => server.rooms.get(roomId)!.isIdle, 'the seat gone');
    server.rooms.sweepIdle(0);
    expect(server.rooms.sweepIdle(Number.MAX_SAFE_INTEGER)).toContain(roomId);
    await waitFor(async () => (await server.store.leaseOf(roomId)) === null, 'the room unloaded and its lease handed back');
    c.close();
    return roomId;
  }

  async function joinError(roomId: string): Promise<ErrorMsg[]> {
    const late = testClient(server.url, { room: roomId, game: 'probe', name: 'late', autoReconnect: false });
    const errors: ErrorMsg[] = [];
    late.on('error', (e) => errors.push(e));
    await expect(late.connect()).rejects.toThrow();
    late.close();
    return errors;
  }

  it('a room is created in this server\'s format', async () => {
    const roomId = await storedRoom('fmt-new');
    expect((await server.store.readMeta(roomId))!.format).toBe(STORAGE_FORMAT);
  });

  for (const stored of [String(STORAGE_FORMAT + 1), '0', 'garbage']) {
    it(`a room stored in format "${stored}" is refused with ROOM_FORMAT_NEWER before anything changes`, async () => {
      const roomId = await storedRoom('fmt-' + stored);
      const meta = server.store.keys(roomId).meta;
      await server.redis.hset(meta, 'format', stored);
      const before = await server.redis.hgetall(meta);
      const recordsBefore = stateHash(await server.redis.hgetallBuffer(server.store.keys(roomId).state).then((h) => new Map(Object.entries(h))));

      expect(await server.store.claim(roomId)).toEqual({ format: stored });
      expect((await joinError(roomId)).map((e) => e.code)).toContain('ROOM_FORMAT_NEWER');
      await expect(server.store.readCommitted(roomId)).rejects.toMatchObject({ code: 'ROOM_FORMAT_NEWER' });
      await expect(server.store.readRecords(roomId)).rejects.toMatchObject({ code: 'ROOM_FORMAT_NEWER' });

      // Not claimed: no lease taken, the epoch (the running owner's fence) and the rest as they were.
      expect(await server.redis.hgetall(meta)).toEqual(before);
      expect(await server.store.leaseOf(roomId)).toBeNull();
      expect(server.rooms.get(roomId)).toBeUndefined();
      expect(stateHash(await server.redis.hgetallBuffer(server.store.keys(roomId).state).then((h) => new Map(Object.entries(h))))).toBe(recordsBefore);
    });
  }

  it('a room from before formats were recorded (format 1, four-element deltas) opens, replays, and is raised to this format', async () => {
    const roomId = await storedRoom('fmt-legacy');
    const k = server.store.keys(roomId);
    const records = await server.store.readRecords(roomId);
    await server.redis.hdel(k.meta, 'format');
    // A four-element delta on its log, as format 1 wrote them: one more record.
    const meta = (await server.store.readMeta(roomId))!;
    const extra = new Uint8Array([0x81, 0xa1, 0x6e, 0x05]); // {n: 5}
    const delta = encodeTickDelta(meta.tick + 1, { sets: [['legacy/extra', extra]], dels: [], patches: [] }, new Map());
    expect(delta[0]).toBe(0x94); // a fixarray of four
    await server.redis.rpush(k.log, delta);
    await server.redis.hset(k.meta, 'tick', meta.tick + 1);
    expect((await server.store.readMeta(roomId))!.format).toBe(1);

    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'back', autoReconnect: false });
    await c.connect();
    const room = server.rooms.get(roomId)!;
    expect(Buffer.from(room.committed.get('legacy/extra')!)).toEqual(Buffer.from(extra));
    // (The room has ticked since it opened, so its records are compared by key, not by value.)
    for (const key of records.keys()) expect(room.committed.has(key), key).toBe(true);
    expect((await server.store.readMeta(roomId))!.format).toBe(STORAGE_FORMAT);
    const seq = c.send({ op: 'add', n: 1 });
    await waitFor(() => c.lastAckedSeq >= seq, 'an input committed after the upgrade');
    c.close();
  });
});
