/**
 * Rolling back a patch that changed the schema and has no downgrade: the room replays the
 * ticks committed since the swap on the old version (ticks are deterministic), and swaps back
 * with nothing players did lost. Real isolates, Redis and sockets; players keep playing (and
 * one joins, one leaves) while the patch is live and while the rollback replays.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpack } from 'msgpackr';
import type { MoonpatchClient } from '../../client/client.ts';
import { stateHash } from '../../server/state/committed-state.ts';
import { FIXTURE_GAMES, REPO_ROOT, startTestServer, testClient, waitFor } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;
let server: Server;
beforeAll(async () => {
  server = await startTestServer({
    scriptsDir: FIXTURE_GAMES,
    // Version 2 renames players' sum to score and has no downgrade.
    patchesDir: path.join(REPO_ROOT, 'test', 'fixtures', 'patches-replay'),
    defaultGame: 'probe',
    inputRatePerSecond: 500,
    inputBurst: 200,
  });
});
afterAll(async () => server?.close());

/** A player adding 1-9 every ~15 ms, keeping the books of what was acknowledged. */
function player(c: MoonpatchClient) {
  const sent = new Map<number, number>();
  const t = { ackedSum: 0, acked: 0, rejected: 0, twice: 0, sending: true };
  const seen = new Set<number>();
  c.on('settled', (s) => {
    if (seen.has(s.seq)) t.twice++;
    seen.add(s.seq);
    if (s.rejected) t.rejected++;
    else (t.acked++, (t.ackedSum += sent.get(s.seq)!));
  });
  const loop = (async () => {
    let i = 0;
    while (t.sending) {
      if (c.unsettled < 4) {
        const n = 1 + (i++ % 9);
        sent.set(c.send({ op: 'add', n }), n);
      }
      await new Promise((r) => setTimeout(r, 15));
    }
  })();
  return { t, stop: async () => ((t.sending = false), await loop) };
}

describe('rollback by replay', () => {
  it('goes back across a schema change with no downgrade, replaying every tick since the swap: nothing players did is lost', async () => {
    const roomId = 'replay-' + Date.now();
    const clients: MoonpatchClient[] = [];
    for (let i = 0; i < 3; i++) {
      const c = testClient(server.url, { room: roomId, game: 'probe', name: `p${i}` });
      await c.connect();
      clients.push(c);
    }
    const room = server.rooms.get(roomId)!;
    const v1 = room.version;
    const players = clients.map(player);
    await waitFor(() => players.every((p) => p.t.acked > 5), 'inputs before the patch');

    const patch = await server.rooms.applyVersion(roomId, 2);
    expect(patch.ok).toBe(true);
    expect(room.schema).toBe(2);
    // While the patch is live: a player joins, another leaves; inputs keep coming.
    const late = testClient(server.url, { room: roomId, game: 'probe', name: 'late' });
    await late.connect();
    clients.push(late);
    players.push(player(late));
    const leaver = clients[0]!;
    await players[0]!.stop();
    await waitFor(() => leaver.unsettled === 0, 'the leaver settled');
    const leaverId = leaver.playerId;
    leaver.leave();
    leaver.close();
    const t = room.tick;
    await waitFor(() => room.tick > t + 20, 'twenty ticks on the patch');
    // One player goes idle before the rollback: its record changes only through the replay
    // (the rollback's own tick does not touch it), so it shows whether the replay is applied.
    await players[1]!.stop();
    await waitFor(() => clients[1]!.unsettled === 0, 'the idle player settled');

    const back = await server.rooms.rollback(roomId);
    expect(back).toMatchObject({ ok: true, to: v1, fromSchema: 2, toSchema: 1 });
    const t2 = room.tick;
    await waitFor(() => room.tick > t2 + 5, 'ticks after the rollback');
    for (const p of players.slice(2)) await p.stop();
    await waitFor(() => clients.slice(1).every((c) => c.unsettled === 0), 'every input settled');

    expect(room.version).toBe(v1);
    expect(room.schema).toBe(1);
    const records = room.committed.records;
    for (const [i, c] of clients.entries()) {
      if (c === leaver) continue;
      const p = players[i]!.t;
      const rec = unpack(records.get(`players/${c.playerId}`)!) as { sum: number; inputs: number; score?: number };
      // Every input acknowledged before, during and after the patch is in the old schema's sum.
      expect(rec).not.toHaveProperty('score');
      expect(rec.sum).toBe(p.ackedSum);
      expect(rec.inputs).toBe(p.acked);
      expect(p.rejected).toBe(0);
      expect(p.twice).toBe(0);
      expect(c.disconnects).toBe(0);
    }
    // The leave that happened while the patch was live was replayed too.
    expect(records.has(`players/${leaverId}`)).toBe(false);
    // meta.ticks counts ticks the scripts ran: one per committed tick, none lost or doubled.
    expect(unpack(records.get('meta/ticks')!)).toBe(room.tick);
    // Redis holds exactly what the room shows.
    expect(stateHash(await server.store.readRecords(roomId))).toBe(room.committed.hash());
    const history = await server.rooms.history(roomId);
    expect(history[0]).toMatchObject({ kind: 'rolled-back', to: v1 });
    expect(history[0]!.reason).toMatch(/replayed \d+ ticks/);
    for (const c of clients) c.close();
  });

  it('is refused with ROLLBACK_NEEDS_DOWNGRADE when the ticks since the swap were not recorded (a restart), changing nothing', async () => {
    const roomId = 'replay-restart-' + Date.now();
    await server.rooms.open(roomId, 'probe');
    const patch = await server.rooms.applyVersion(roomId, 2);
    expect(patch.ok).toBe(true);
    // The recording lives in the owner's memory: a restarted server resumes the room on
    // version 2 with nothing to replay.
    const again = await startTestServer({
      scriptsDir: FIXTURE_GAMES,
      patchesDir: path.join(REPO_ROOT, 'test', 'fixtures', 'patches-replay'),
      defaultGame: 'probe',
      redisPrefix: server.prefix,
      nodeId: server.store.leaseHolder.node,
    });
    try {
      const room = await again.rooms.open(roomId);
      const before = room.committed.hash();
      await room.pauseClock();
      const err = await again.rooms.rollback(roomId, 1).catch((e: { code: string }) => e);
      expect(err).toMatchObject({ code: 'ROLLBACK_NEEDS_DOWNGRADE' });
      expect(room.version).toBe(patch.ok ? patch.to : '');
      expect(room.schema).toBe(2);
      expect(room.committed.hash()).toBe(before);
    } finally {
      await again.close();
    }
  });
});
