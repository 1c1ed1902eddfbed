/**
 * The Redis side of the tick transaction: the log stays short because checkpoints fold it in,
 * what Redis holds always equals what the room committed, and the fence refuses a stale or
 * duplicate writer as a whole.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CloseCodes } from '../../server/errors/codes.ts';
import { stateHash } from '../../server/state/committed-state.ts';
import { encodeTickDelta } from '../../server/state/tick-delta.ts';
import type { ClaimedRoom } from '../../server/state/room-store.ts';
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
