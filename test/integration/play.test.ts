/**
 * Players play the example game over real WebSockets against real isolates and a real Redis:
 * they join, see each other, move, get every input settled exactly once, drop and resume into
 * the same seat, and leave.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpack, Unpackr } from 'msgpackr';
import type { MoonpatchClient } from '../../client/client.ts';
import { WorldView } from '../../client/world-view.ts';
import { channels, type BroadcastEvent } from '../../server/ops/events.ts';
import type { Value } from '../../server/protocol/messages.ts';
import { FIXTURE_GAMES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;
/** Decodes as the client does (client/client.ts): large integers as numbers. */
const asClient = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });
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

  it("every client's world, rebuilt from snapshots, deltas and field patches, equals the committed state at its tick", async () => {
    // The room's committed mirror, decoded at every committed tick; each client's view is
    // compared with it whenever the client applies a frame.
    const roomState = server.rooms.get(room)!.committed;
    const committedAt = new Map<number, unknown>();
    const captureCommitted = () => {
      const view = new WorldView();
      const set: Record<string, Value> = {};
      for (const [k, v] of roomState.records) set[k] = asClient.unpack(v) as Value;
      view.applySnapshot(roomState.tick, '', set);
      committedAt.set(roomState.tick, view.world);
    };
    let patched = 0;
    const onBroadcast = (e: unknown) => {
      patched += (e as BroadcastEvent).patched;
    };
    const onCommitted = () => captureCommitted();
    captureCommitted();
    channels.tickCommitted.subscribe(onCommitted);
    channels.broadcast.subscribe(onBroadcast);
    let compared = 0;
    const mismatches: string[] = [];
    const stops = clients.slice(0, 2).map((c) =>
      c.on('state', ({ tick }) => {
        const expected = committedAt.get(tick);
        if (expected === undefined) return;
        compared++;
        try {
          expect(c.world).toStrictEqual(expected);
        } catch (e) {
          mismatches.push(`${c.playerId} at tick ${tick}: ${String((e as Error).message)}`);
        }
      }),
    );
    try {
      const [ann, ben] = clients as [MoonpatchClient, MoonpatchClient];
      for (let i = 0; i < 40; i++) {
        ann.send({ move: [i % 8 < 4 ? 1 : -1, 0.5] });
        ben.send(i % 5 === 0 ? { boost: true } : { move: [0, i % 6 < 3 ? 1 : -1] });
        await new Promise((r) => setTimeout(r, 25));
      }
      await waitFor(() => compared >= 40, '40 client frames compared');
    } finally {
      for (const stop of stops) stop();
      channels.tickCommitted.unsubscribe(onCommitted);
      channels.broadcast.unsubscribe(onBroadcast);
    }
    expect(mismatches).toEqual([]);
    expect(patched).toBeGreaterThan(0); // moving players went as field patches
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
