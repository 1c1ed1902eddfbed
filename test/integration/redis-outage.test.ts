/**
 * Redis goes away while players play, then comes back: the room stops committing and stops
 * publishing, keeps the players' inputs, reports not-ready, and resumes on its own with every
 * input applied exactly once. Uses a private Redis of its own (AOF on) that the test stops.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { unpack } from 'msgpackr';
import { startPrivateRedis, type PrivateRedis } from '../../server/state/redis-launcher.ts';
import { reportFigure } from '../helpers/figures.ts';
import { FIXTURE_GAMES, startTestServer, testClient, waitFor, type TestServerOptions } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;

/**
 * A Redis of the test's own, so it can be stopped, killed and started again on the same port and
 * data dir, with a probe server on it. Both are torn down after the describe block that calls this.
 */
function ownRedis(appendOnly: boolean) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-redis-fault-'));
  let redis: PrivateRedis | null = null;
  let server: Server | null = null;
  afterAll(async () => {
    await server?.close();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    get url(): string {
      return redis!.url;
    },
    async start(serverOptions: TestServerOptions = {}): Promise<Server> {
      redis = await startPrivateRedis({ dir, appendOnly });
      server = await startTestServer({ redisUrl: redis.url, scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', ...serverOptions });
      return server;
    },
    /** Take Redis down: `stop` is graceful (the AOF is flushed), `kill` is SIGKILL. */
    async down(how: 'stop' | 'kill'): Promise<void> {
      if (how === 'kill') {
        redis!.kill();
        await redis!.exited;
      } else {
        await redis!.stop();
      }
    },
    /** Start it again on the same port and data dir. */
    async up(): Promise<void> {
      redis = await startPrivateRedis({ dir, appendOnly, port: redis!.port });
    },
  };
}

describe('Redis outage', () => {
  const own = ownRedis(true);

  it('holds inputs while Redis is down and applies each exactly once when it returns', async () => {
    const server = await own.start();
    const roomId = 'outage';
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'p' });
    await c.connect();
    const room = server.rooms.get(roomId)!;
    let applied = 0;
    c.on('settled', (s) => {
      if (!s.rejected) applied += 1;
    });
    for (let i = 0; i < 5; i++) c.send({ op: 'add', n: 1 });
    await waitFor(() => c.unsettled === 0, 'inputs before the outage settled');

    await own.down('stop');
    const tickAtOutage = room.tick;
    for (let i = 0; i < 5; i++) c.send({ op: 'add', n: 1 });
    await waitFor(() => room.degraded, 'room notices the failed commits');
    const health = await fetch(`http://127.0.0.1:${server.port}/healthz`);
    expect(health.status).toBe(503);
    const degradedGauge = async () => /^moonpatch_rooms_degraded\{[^}]*\} (\d+)$/m.exec(await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text())?.[1];
    expect(await degradedGauge()).toBe('1');
    // Nothing uncommitted is published: no tick advanced, the inputs are neither acked nor lost.
    await new Promise((r) => setTimeout(r, 300));
    expect(room.tick).toBe(tickAtOutage);
    expect(c.tick).toBe(tickAtOutage);
    expect(c.unsettled).toBe(5);

    await own.up();
    await waitFor(() => !room.degraded && room.tick > tickAtOutage, 'commits resume', 30_000);
    await waitFor(() => c.unsettled === 0, 'held inputs settled');
    expect(applied).toBe(10);
    const p = unpack(room.committed.records.get(`players/${c.playerId}`)!) as { sum: number; inputs: number };
    expect(p.inputs).toBe(10);
    expect(p.sum).toBe(10);
    expect((await fetch(`http://127.0.0.1:${server.port}/healthz`)).status).toBe(200);
    expect(await degradedGauge()).toBe('0');
    expect(c.disconnects).toBe(0);
    reportFigure('redis-stop-start-aof', 'faults_injected', 1);
    reportFigure('redis-stop-start-aof', 'inputs_acknowledged', applied);
    reportFigure('redis-stop-start-aof', 'inputs_lost', 10 - applied);
    c.close();
  });
});

/**
 * Redis comes back without some or all of what it acknowledged: restarted with no persistence
 * (empty), or killed and restarted from an AOF written once a second. The owner still holds
 * the last committed state, so it writes the room back and nothing a player was acknowledged
 * for is lost, as long as the owner itself survives (see README, Durability).
 */
describe.each([
  { name: 'without AOF, stopped and started empty', appendOnly: false, crash: false },
  { name: 'with AOF (everysec), killed -9 and restarted', appendOnly: true, crash: true },
])('Redis restart $name', ({ appendOnly, crash }) => {
  const own = ownRedis(appendOnly);

  it('the owner writes back what Redis lost: no acknowledged input is lost, none applied twice', async () => {
    const server = await own.start();
    const roomId = 'loss';
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'p' });
    await c.connect();
    const room = server.rooms.get(roomId)!;
    let acked = 0;
    let sent = 0;
    c.on('settled', (s) => {
      if (!s.rejected) acked += 1;
    });
    const send = async (count: number) => {
      for (let i = 0; i < count; i++) {
        await waitFor(() => c.unsettled < 4, 'room in the input queue');
        c.send({ op: 'add', n: 1 });
        sent++;
      }
    };
    await send(12);
    await waitFor(() => c.unsettled === 0, 'inputs before the restart settled');

    await own.down(crash ? 'kill' : 'stop');
    await own.up();
    await send(6);
    await waitFor(() => c.unsettled === 0, 'inputs after the restart settled', 30_000);
    await waitFor(async () => (await server.store.readMeta(roomId))?.tick === room.tick, 'Redis to hold the room again');

    // What Redis holds is what the room committed: every acknowledged input, once.
    const records = await server.store.readRecords(roomId);
    const p = unpack(records.get(`players/${c.playerId}`)!) as { sum: number; inputs: number };
    expect(acked).toBe(sent);
    expect(p.inputs).toBe(acked);
    expect(p.sum).toBe(acked);
    expect(c.disconnects).toBe(0);
    // The seat is in Redis again too, so the player could resume on another server.
    expect(await server.redis.hexists(server.store.keys(roomId).seats, c.playerId)).toBe(1);
    reportFigure(`redis-restart-${appendOnly ? 'aof' : 'no-aof'}`, 'faults_injected', 1);
    reportFigure(`redis-restart-${appendOnly ? 'aof' : 'no-aof'}`, 'inputs_acknowledged', acked);
    reportFigure(`redis-restart-${appendOnly ? 'aof' : 'no-aof'}`, 'inputs_lost', sent - p.inputs);
    c.close();
  });
});

/**
 * Redis answering slowly: every client is paused for 1.5 s (CLIENT PAUSE, on the test's own
 * private Redis), as a blocked or overloaded Redis would be. Commits wait, nothing uncommitted
 * is shown, inputs are held up to the queue's bound (past it they are refused with QUEUE_FULL,
 * not lost), /healthz says not ready, and everything resumes on its own.
 */
describe('Redis slow', () => {
  const own = ownRedis(true);

  it('holds inputs up to the bound while commits wait, shows nothing uncommitted, and catches up by itself', async () => {
    const server = await own.start({ inputRatePerSecond: 500, inputBurst: 200 });
    const c = testClient(server.url, { room: 'slow', game: 'probe', name: 'p' });
    await c.connect();
    const room = server.rooms.get('slow')!;
    let acked = 0;
    const refused: string[] = [];
    c.on('settled', (s) => {
      if (s.rejected) refused.push(s.rejected.code);
      else acked++;
    });
    const { Redis } = await import('ioredis');
    const admin = new Redis(own.url);
    try {
      await admin.call('CLIENT', 'PAUSE', '1500', 'ALL');
      const tickAtPause = room.tick;
      // More inputs than one player may have queued (the probe's bound is 8).
      for (let i = 0; i < 20; i++) c.send({ op: 'add', n: 1 });
      const health = await fetch(`http://127.0.0.1:${server.port}/healthz`);
      expect(health.status).toBe(503);
      // Nothing past the last commit is shown while Redis holds the commit back.
      expect(c.tick).toBeLessThanOrEqual(tickAtPause + 1);
      await waitFor(() => c.unsettled === 0, 'every input settled after the pause', 30_000);
    } finally {
      admin.disconnect();
    }
    expect(acked + refused.length).toBe(20);
    expect(refused.every((code) => code === 'QUEUE_FULL')).toBe(true);
    expect(acked).toBeGreaterThanOrEqual(8);
    const p = unpack(room.committed.records.get(`players/${c.playerId}`)!) as { sum: number; inputs: number };
    expect(p.inputs).toBe(acked);
    expect(p.sum).toBe(acked);
    expect(c.disconnects).toBe(0);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${server.port}/healthz`)).status === 200, 'ready again');
    reportFigure('redis-slow', 'faults_injected', 1);
    reportFigure('redis-slow', 'inputs_acknowledged', acked);
    reportFigure('redis-slow', 'inputs_lost', 20 - acked - refused.length);
    c.close();
  });
});

/**
 * Redis killed and restarted again and again while a player sends inputs: some commits are in
 * flight when the connection drops, so whether they landed is unknown until Redis answers. The
 * room must find out (not retry blindly, not undo a commit that landed): every acknowledged
 * input is applied exactly once and the room never stops.
 */
describe('Redis restarted repeatedly under load', () => {
  const own = ownRedis(true);

  it('commits in flight when Redis goes away are resolved, never applied twice or lost', async () => {
    const server = await own.start({ inputRatePerSecond: 500, inputBurst: 200 });
    const c = testClient(server.url, { room: 'flap', game: 'probe', name: 'p' });
    await c.connect();
    const room = server.rooms.get('flap')!;
    let acked = 0;
    let refused = 0;
    c.on('settled', (s) => (s.rejected ? refused++ : acked++));
    let sending = true;
    let sent = 0;
    const sender = (async () => {
      while (sending) {
        if (c.unsettled < 6) (c.send({ op: 'add', n: 1 }), sent++);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const RESTARTS = 6;
    for (let i = 0; i < RESTARTS; i++) {
      await new Promise((r) => setTimeout(r, 150 + i * 37));
      // Graceful (the AOF is flushed, so a commit Redis applied survives even if its reply is
      // lost) and crash (kill -9) alternately.
      await own.down(i % 2 === 0 ? 'stop' : 'kill');
      await own.up();
    }
    sending = false;
    await sender;
    await waitFor(() => c.unsettled === 0, 'every input settled', 60_000);
    expect(room.isStopped).toBe(false);
    expect(refused).toBe(0);
    expect(acked).toBe(sent);
    await waitFor(async () => (await server.store.readMeta('flap'))?.tick === room.tick, 'Redis caught up');
    const inRedis = unpack((await server.store.readRecords('flap')).get(`players/${c.playerId}`)!) as { sum: number; inputs: number };
    expect(inRedis.inputs).toBe(acked);
    expect(inRedis.sum).toBe(acked);
    expect(c.disconnects).toBe(0);
    reportFigure('redis-restarts-under-load', 'faults_injected', RESTARTS);
    reportFigure('redis-restarts-under-load', 'inputs_acknowledged', acked);
    reportFigure('redis-restarts-under-load', 'inputs_lost', sent - acked - refused);
    c.close();
  });
});

