/**
 * The example game's real patches (patches/arena/002-004) applied live, in turn, while bots
 * play: each swap keeps everyone connected and every input settled, and the state has the
 * shape each migration promises. Also v1 straight to v4, which runs the chained migrations.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Unpackr } from 'msgpackr';
import type { MoonpatchClient } from '../../client/client.ts';
import type { Room } from '../../server/room/room.ts';
import { startTestServer, testClient, waitFor } from '../helpers/server.ts';

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

type Server = Awaited<ReturnType<typeof startTestServer>>;
let server: Server;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => server?.close());

function players(room: Room): Record<string, unknown>[] {
  return [...room.committed.records].filter(([k]) => k.startsWith('players/')).map(([, v]) => unpackr.unpack(v) as Record<string, unknown>);
}

async function botsIn(roomId: string, n: number): Promise<{ clients: MoonpatchClient[]; stop(): Promise<void> }> {
  const clients: MoonpatchClient[] = [];
  for (let i = 0; i < n; i++) {
    const c = testClient(server.url, { room: roomId, game: 'arena', name: `bot${i}` });
    await c.connect();
    clients.push(c);
  }
  let running = true;
  const loops = clients.map(async (c, i) => {
    for (let k = 0; running; k++) {
      c.send({ move: [Math.cos(k / 5 + i) > 0 ? 1 : -1, Math.sin(k / 7 + i) > 0 ? 1 : -1] });
      if (k % 30 === 0) c.send({ boost: true });
      await new Promise((r) => setTimeout(r, 40));
    }
  });
  return {
    clients,
    async stop() {
      running = false;
      await Promise.all(loops);
      await waitFor(() => clients.every((c) => c.unsettled === 0), 'bot inputs settled');
    },
  };
}

describe('arena patches 002-004, live', () => {
  it('applies stars, balance, then the boost restructure, one after another, while bots play', async () => {
    const roomId = 'arena-patches-' + Date.now();
    const bots = await botsIn(roomId, 3);
    const room = server.rooms.get(roomId)!;
    const r2 = await server.rooms.applyVersion(roomId, 2);
    expect(r2).toMatchObject({ ok: true, fromSchema: 1, toSchema: 2 });
    for (const p of players(room)) expect(p.stars).toBe(0);
    const r3 = await server.rooms.applyVersion(roomId, 3);
    expect(r3).toMatchObject({ ok: true, fromSchema: 2, toSchema: 2 });
    const r4 = await server.rooms.applyVersion(roomId, 4);
    expect(r4).toMatchObject({ ok: true, fromSchema: 2, toSchema: 3 });
    for (const p of players(room)) {
      expect(p).toHaveProperty('boost');
      expect(p).not.toHaveProperty('boostUntil');
      expect(p).not.toHaveProperty('boostReadyAt');
    }
    await bots.stop();
    for (const c of bots.clients) {
      expect(c.disconnects).toBe(0);
      expect(c.version).toBe(room.version);
      c.close();
    }
  });

  it('takes a room on version 1 straight to version 4 through the chained migrations', async () => {
    const roomId = 'arena-1-to-4-' + Date.now();
    const bots = await botsIn(roomId, 2);
    const room = server.rooms.get(roomId)!;
    const r = await server.rooms.applyVersion(roomId, 4);
    expect(r).toMatchObject({ ok: true, fromSchema: 1, toSchema: 3 });
    for (const p of players(room)) {
      expect(p.stars).toBe(0);
      expect(p.boost).toEqual({ until: expect.any(Number), readyAt: expect.any(Number) });
    }
    await bots.stop();
    for (const c of bots.clients) c.close();
  });
});
