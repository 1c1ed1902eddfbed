/**
 * Single owner per room: a room is owned through a lease in Redis, commits are fenced by the
 * claim's epoch, and a room whose owner died is taken over by another server once the lease
 * lapses. Real processes: the paused owner is a child server stopped with SIGSTOP (a GC pause
 * or a partition, for real), the dead one is killed with SIGKILL.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Unpackr } from 'msgpackr';
import type { MoonpatchClient } from '../../client/client.ts';
import { RoomOwnedElsewhereError } from '../../server/errors/errors.ts';
import { findFreePort } from '../../server/state/redis-launcher.ts';
import { startChildServer, type ChildServer } from '../helpers/child-server.ts';
import { reportFigure } from '../helpers/figures.ts';
import { testRedisUrl, uniquePrefix } from '../helpers/redis.ts';
import { FIXTURE_GAMES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });
const LEASE_MS = 1000;

const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
});

function server(prefix: string, takeover: boolean): Promise<Server> {
  return startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', redisPrefix: prefix, leaseMs: LEASE_MS, takeover }).then((s) => {
    cleanup.push(() => s.close());
    return s;
  });
}

function child(prefix: string, port: number): Promise<ChildServer> {
  return startChildServer({
    REDIS_URL: testRedisUrl(), REDIS_PREFIX: prefix, PORT: String(port), HOST: '127.0.0.1', SCRIPTS_DIR: FIXTURE_GAMES,
    DEFAULT_GAME: 'probe', LEASE_MS: String(LEASE_MS), TAKEOVER: '0', INPUT_RATE: '200', INPUT_BURST: '100',
  }).then((c) => {
    cleanup.push(() => c.kill9());
    return c;
  });
}

/** Sends `add` inputs and keeps the books: what was sent, what was acknowledged (once each). */
function player(c: MoonpatchClient) {
  const t = { sent: 0, sentSum: 0, acked: 0, ackedSum: 0, settledTwice: 0, rejected: 0 };
  const values = new Map<number, number>();
  const settled = new Set<number>();
  c.on('settled', (s) => {
    if (settled.has(s.seq)) t.settledTwice++;
    settled.add(s.seq);
    if (s.rejected) t.rejected++;
    else (t.acked++, (t.ackedSum += values.get(s.seq)!));
  });
  const send = (n: number) => {
    values.set(c.send({ op: 'add', n }), n);
    t.sent++;
    t.sentSum += n;
  };
  return {
    t,
    send,
    /** Send `add` 1..count, keeping at most 4 unsettled (the probe's input queue holds 8). */
    async sendPaced(from: number, to: number) {
      for (let n = from; n <= to; n++) {
        await waitFor(() => t.sent - t.acked - t.rejected < 4, 'room for another input');
        send(n);
      }
    },
  };
}

async function playerSum(s: Server, roomId: string, playerId: string): Promise<number> {
  const rec = (await s.store.readRecords(roomId)).get(`players/${playerId}`);
  return rec ? (unpackr.unpack(rec) as { sum: number }).sum : NaN;
}

describe('two servers on one room', () => {
  it('race to open it: exactly one owns it; a player sent to the other is redirected to the owner', async () => {
    const prefix = uniquePrefix('own');
    const a = await server(prefix, false);
    const b = await server(prefix, false);
    const roomId = 'race-' + Date.now();
    const results = await Promise.allSettled([a.rooms.open(roomId, 'probe'), b.rooms.open(roomId, 'probe')]);
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    const [owner, other] = results[0]!.status === 'fulfilled' ? [a, b] : [b, a];
    const refusal = (results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason;
    expect(refusal).toBeInstanceOf(RoomOwnedElsewhereError);
    expect(refusal.ownerUrl).toBe(owner.url);
    expect((await owner.store.readMeta(roomId))!.epoch).toBe(1); // one claim only

    // A player who asks the other server is sent to the owner and plays there.
    const c = testClient(other.url, { room: roomId, game: 'probe', name: 'p' });
    cleanup.push(async () => c.close());
    const redirected: string[] = [];
    c.on('error', (e) => redirected.push(e.code));
    const p = player(c);
    await c.connect();
    expect(redirected).toContain('ROOM_OWNED_ELSEWHERE');
    expect(c.currentUrl).toBe(owner.url);
    await p.sendPaced(1, 10);
    await waitFor(() => p.t.acked === 10, 'inputs acknowledged');
    await waitFor(async () => (await playerSum(owner, roomId, c.playerId)) === 55, 'inputs committed');
    expect(other.rooms.get(roomId)).toBeUndefined();
    expect((await owner.store.readMeta(roomId))!.epoch).toBe(1);
  });
});

describe('an owner that stops renewing its lease', () => {
  it('paused past its lease (SIGSTOP): another server takes the room; the old owner is fenced when it wakes, and nothing is lost', async () => {
    const prefix = uniquePrefix('own');
    const a = await child(prefix, await findFreePort());
    const b = await server(prefix, true);
    const roomId = 'paused-' + Date.now();
    const c = testClient(a.url, { room: roomId, game: 'probe', name: 'p', fallbackUrls: [b.url] });
    cleanup.push(async () => c.close());
    const p = player(c);
    await c.connect();
    const onA = c.currentUrl;
    await p.sendPaced(1, 20);
    await waitFor(() => p.t.acked === 20, 'inputs acknowledged by the first owner');

    a.proc.kill('SIGSTOP');
    const ticksAtPause = (await b.store.readMeta(roomId))!.tick;
    // Inputs sent while the owner is frozen sit in its socket buffer; it will read them when it
    // wakes, but it can no longer commit them: the client resends them to the new owner.
    for (let i = 21; i <= 24; i++) p.send(i);
    await waitFor(() => b.rooms.get(roomId) !== undefined, 'the second server to take the room over');
    const takenAt = (await b.store.readMeta(roomId))!;
    expect(takenAt.tick).toBeGreaterThanOrEqual(ticksAtPause);
    expect(takenAt.epoch).toBe(2);
    a.proc.kill('SIGCONT');

    // The old owner wakes, its next commit is refused (fenced), it closes the room there; the
    // client reconnects, is redirected to the new owner and resumes its seat.
    await waitFor(() => c.connected && c.currentUrl === b.url, 'the client to resume its seat on the new owner');
    expect(c.currentUrl).not.toBe(onA);
    await waitFor(() => p.t.acked + p.t.rejected === 24, 'every input settled');
    expect(p.t.rejected).toBe(0);
    expect(p.t.settledTwice).toBe(0);
    await waitFor(async () => (await playerSum(b, roomId, c.playerId)) === p.t.sentSum, 'every input applied exactly once');
    expect(a.output()).toMatch(/owned elsewhere now/);
    // The room runs in one place only: the new owner's epoch is still the latest.
    expect((await b.store.readMeta(roomId))!.epoch).toBe(2);
    reportFigure('ownership-paused-owner', 'faults_injected', 1);
    reportFigure('ownership-paused-owner', 'inputs_acknowledged', p.t.acked);
    reportFigure('ownership-paused-owner', 'inputs_lost', p.t.sent - p.t.acked);
  });

  it('killed (SIGKILL): the room is taken over from Redis at its last committed tick once the lease lapses', async () => {
    const prefix = uniquePrefix('own');
    const a = await child(prefix, await findFreePort());
    const b = await server(prefix, true);
    const roomId = 'dead-' + Date.now();
    const c = testClient(a.url, { room: roomId, game: 'probe', name: 'p', fallbackUrls: [b.url] });
    cleanup.push(async () => c.close());
    const p = player(c);
    await c.connect();
    const seat = c.playerId;
    await p.sendPaced(1, 15);
    await waitFor(() => p.t.acked === 15, 'inputs acknowledged');
    await a.kill9();
    const lastCommitted = (await b.store.readMeta(roomId))!.tick;
    const recordsAtKill = await b.store.readRecords(roomId);
    expect(await b.store.leaseOf(roomId)).not.toBeNull(); // the dead owner's lease still runs

    await waitFor(() => b.rooms.get(roomId) !== undefined, 'the second server to take the room over');
    const room = b.rooms.get(roomId)!;
    // It resumed exactly where the dead owner stopped: no committed tick lost, none twice.
    const takenAt = await b.store.readMeta(roomId);
    expect(takenAt!.epoch).toBe(2);
    expect(recordsAtKill.get(`players/${seat}`)).toBeDefined();
    expect(await playerSum(b, roomId, seat)).toBe(p.t.ackedSum);
    expect(room.tick).toBeGreaterThanOrEqual(lastCommitted);

    for (let i = 16; i <= 19; i++) p.send(i);
    await waitFor(() => c.connected && c.currentUrl === b.url, 'the client to resume on the new owner');
    expect(c.playerId).toBe(seat);
    await waitFor(() => p.t.acked === 19, 'every input acknowledged');
    expect(p.t.settledTwice).toBe(0);
    await waitFor(async () => (await playerSum(b, roomId, seat)) === p.t.sentSum, 'every input applied exactly once');
    reportFigure('ownership-dead-owner', 'faults_injected', 1);
    reportFigure('ownership-dead-owner', 'inputs_acknowledged', p.t.acked);
    reportFigure('ownership-dead-owner', 'inputs_lost', p.t.sent - p.t.acked);
    reportFigure('ownership-dead-owner', 'committed_ticks_lost', Math.max(0, lastCommitted - room.tick));
  });

  it('a clean shutdown hands the lease back at once', async () => {
    const prefix = uniquePrefix('own');
    const a = await server(prefix, false);
    const roomId = 'clean-' + Date.now();
    await a.rooms.open(roomId, 'probe');
    expect((await a.store.leaseOf(roomId))?.url).toBe(a.url);
    await a.close();
    // b is another node: it could not claim the room while a's lease ran (up to LEASE_MS).
    // It resumes it at startup, at once, because a handed the lease back.
    const b = await server(prefix, false);
    expect(b.rooms.get(roomId)).toBeDefined();
    expect((await b.store.leaseOf(roomId))?.url).toBe(b.url);
  });
});
