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
import { FIXTURE_GAMES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

describe('Redis outage', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-outage-'));
  let redis: PrivateRedis | null = null;
  let server: Awaited<ReturnType<typeof startTestServer>> | null = null;
  afterAll(async () => {
    await server?.close();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('holds inputs while Redis is down and applies each exactly once when it returns', async () => {
    redis = await startPrivateRedis({ dir, appendOnly: true });
    const port = redis.port;
    server = await startTestServer({ redisUrl: redis.url, scriptsDir: FIXTURE_GAMES, defaultGame: 'probe' });
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

    await redis.stop();
    const tickAtOutage = room.tick;
    for (let i = 0; i < 5; i++) c.send({ op: 'add', n: 1 });
    await waitFor(() => room.degraded, 'room notices the failed commits');
    const health = await fetch(`http://127.0.0.1:${server.port}/healthz`);
    expect(health.status).toBe(503);
    // Nothing uncommitted is published: no tick advanced, the inputs are neither acked nor lost.
    await new Promise((r) => setTimeout(r, 300));
    expect(room.tick).toBe(tickAtOutage);
    expect(c.tick).toBe(tickAtOutage);
    expect(c.unsettled).toBe(5);

    redis = await startPrivateRedis({ dir, appendOnly: true, port });
    await waitFor(() => !room.degraded && room.tick > tickAtOutage, 'commits resume', 30_000);
    await waitFor(() => c.unsettled === 0, 'held inputs settled');
    expect(applied).toBe(10);
    const p = unpack(room.committed.records.get(`players/${c.playerId}`)!) as { sum: number; inputs: number };
    expect(p.inputs).toBe(10);
    expect(p.sum).toBe(10);
    expect((await fetch(`http://127.0.0.1:${server.port}/healthz`)).status).toBe(200);
    expect(c.disconnects).toBe(0);
    c.close();
  });
});
