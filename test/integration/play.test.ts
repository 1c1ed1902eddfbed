/**
 * Players play the example game over real WebSockets against real isolates and a real Redis:
 * they join, see each other, move, get every input settled exactly once, drop and resume into
 * the same seat, and leave.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpack } from 'msgpackr';
import type { MoonpatchClient } from '../../client/client.ts';
import { FIXTURE_GAMES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;
type ArenaPlayer = { x: number; y: number; name: string; score: number };

describe('playing the arena', () => {
  let server: Server;
  const clients: MoonpatchClient[] = [];
  const room = 'arena-play-' + Date.now();

  beforeAll(async () => {
    server = await startTestServer();
    for (const name of ['ann', 'ben', 'cy']) {
      const c = testClient(server.url, { room, game: 'arena', name });
      clients.push(c);
      await c.connect();
    }
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await server?.close();
  });

  const players = (c: MoonpatchClient) => (c.world.players ?? {}) as Record<string, ArenaPlayer>;

  it('every player sees every player, with the script version and a rising tick', async () => {
    const ids = clients.map((c) => c.playerId);
    expect(new Set(ids).size).toBe(3);
    for (const c of clients) await waitFor(() => ids.every((id) => id in players(c)), 'all players visible');
    const t = clients[0]!.tick;
    await waitFor(() => clients[0]!.tick > t + 2, 'ticks advancing');
    expect(clients[0]!.version).toBe(server.rooms.get(room)!.version);
    expect(players(clients[1]!)[ids[0]!]!.name).toBe('ann');
  });

  it('inputs move a player as every client sees it, and each input is settled exactly once', async () => {
    const [ann, ben] = clients as [MoonpatchClient, MoonpatchClient];
    const settled: number[] = [];
    ann.on('settled', (s) => settled.push(s.seq));
    const x0 = players(ben)[ann.playerId]!.x;
    const first = ann.send({ move: [x0 < 500 ? 1 : -1, 0] });
    for (let i = 0; i < 9; i++) ann.send({ move: [x0 < 500 ? 1 : -1, 0] });
    await waitFor(() => settled.length === 10, '10 inputs settled');
    expect(settled).toEqual(Array.from({ length: 10 }, (_, i) => first + i));
    await waitFor(() => Math.abs(players(ben)[ann.playerId]!.x - x0) > 20, 'ann moves as ben sees it');
    // The world the client rebuilt from deltas equals what Redis holds.
    const rec = (await server.store.readRecords(room)).get(`players/${ann.playerId}`)!;
    expect((unpack(rec) as ArenaPlayer).name).toBe('ann');
  });

  it('a player whose connection drops resumes into the same seat with nothing lost', async () => {
    const cy = clients[2]!;
    const id = cy.playerId;
    const resumed = new Promise((r) => cy.on('reconnect', r));
    cy.dropConnection();
    // Sent while disconnected: kept by the client and delivered after the resume.
    const seq = cy.send({ move: [0, 1] });
    await resumed;
    expect(cy.playerId).toBe(id);
    await waitFor(() => cy.lastAckedSeq >= seq, 'input sent while offline is acknowledged');
    expect(cy.disconnects).toBe(1);
    expect(players(clients[0]!)[id]).toBeDefined();
  });

  it('a player who leaves is removed for everyone', async () => {
    const cy = clients[2]!;
    const id = cy.playerId;
    cy.leave();
    await waitFor(() => !(id in players(clients[0]!)), 'cy gone for ann');
    expect(server.rooms.get(room)!.seats.has(id)).toBe(false);
  });
});

describe('exactly-once inputs with the probe game', () => {
  let server: Server;

  beforeAll(async () => {
    server = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', resumeWindowMs: 60_000, inputRatePerSecond: 500 });
  });
  afterAll(async () => server?.close());

  it('the sum of applied inputs equals what the clients were acknowledged for, across drops', async () => {
    const room = 'probe-once-' + Date.now();
    const c = testClient(server.url, { room, game: 'probe', name: 'p' });
    await c.connect();
    let expected = 0;
    let applied = 0;
    c.on('settled', (s) => {
      if (s.rejected) return;
      expected += s.seq; // each input adds its own seq
      applied++;
    });
    for (let i = 0; i < 200; i++) {
      const seq = i + 1;
      c.send({ op: 'add', n: seq });
      if (i % 50 === 25) c.dropConnection();
      await new Promise((r) => setTimeout(r, 8));
    }
    await waitFor(() => c.unsettled === 0 && c.connected, 'all inputs settled');
    const r = server.rooms.get(room)!;
    await waitFor(() => {
      const rec = r.committed.records.get(`players/${c.playerId}`);
      return rec !== undefined && (unpack(rec) as { sum: number }).sum === expected;
    }, `committed sum reaches ${expected}`);
    const rec = unpack(r.committed.records.get(`players/${c.playerId}`)!) as { sum: number; inputs: number };
    // No input applied twice, none lost: the count matches the acknowledged inputs exactly.
    expect(rec.sum).toBe(expected);
    expect(rec.inputs).toBe(applied);
    expect(applied).toBeGreaterThan(0);
    c.close();
  });

  it('a join refused by the script gets an error, and no seat', async () => {
    const room = 'probe-refuse-' + Date.now();
    const c = testClient(server.url, { room, game: 'probe', name: 'reject-me', autoReconnect: false });
    await expect(c.connect()).rejects.toThrow(/SCRIPT_ERROR/);
    const r = server.rooms.get(room)!;
    expect(r.seats.size).toBe(0);
    c.close();
  });
});
