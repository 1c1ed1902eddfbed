/**
 * Players playing on a real server (real sockets, isolates and Redis, the room's own clock)
 * while some send inputs that stop the tick (an input hook that never returns): every input of
 * every honest player settles exactly once, the world holds exactly the inputs its players were
 * acknowledged for, and one player cannot hold the room still. The rules are
 * server/room/stopped-ticks.ts; rollback.test.ts takes them one at a time with the clock paused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpack } from 'msgpackr';
import type { MoonpatchClient } from '../../client/client.ts';
import { CloseCodes } from '../../server/errors/codes.ts';
import { channels, subscribe, type TickFailedEvent } from '../../server/ops/events.ts';
import { EXPEL_AFTER_STOPS } from '../../server/room/stopped-ticks.ts';
import { FIXTURE_GAMES, startTestServer, testClient, waitFor } from '../helpers/server.ts';
import { stateHash } from '../../server/state/committed-state.ts';
import { mulberry32 } from '../helpers/prng.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;
let server: Server;

beforeAll(async () => {
  server = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe' });
});
afterAll(async () => server?.close());

/** A player sending adds, and what became of each: 'applied' or the refusal's code, and how often it settled. */
function track(c: MoonpatchClient) {
  const sent = new Map<number, number>();
  const outcome = new Map<number, string>();
  const settles = new Map<number, number>();
  c.on('settled', (s) => {
    outcome.set(s.seq, s.rejected?.code ?? 'applied');
    settles.set(s.seq, (settles.get(s.seq) ?? 0) + 1);
  });
  return {
    add(n: number) {
      sent.set(c.send({ op: 'add', n }), n);
    },
    appliedSum: () => [...sent].reduce((sum, [seq, n]) => sum + (outcome.get(seq) === 'applied' ? n : 0), 0),
    sent,
    outcome,
    settles,
  };
}

describe('inputs that stop the tick, among honest play', () => {
  it('cost only their senders: every honest input settles once, the world holds exactly the acknowledged ones, and the looper is expelled', async () => {
    const room = `poison-${Date.now()}`;
    const rand = mulberry32(0x5eed); // the adds' sizes
    const honest = await Promise.all(['ann', 'ben', 'cat', 'dan'].map(async (name) => {
      const c = testClient(server.url, { room, game: 'probe', name });
      await c.connect();
      return c;
    }));
    const careless = testClient(server.url, { room, game: 'probe', name: 'careless' }); // loops twice: never expelled
    const looper = testClient(server.url, { room, game: 'probe', name: 'looper', autoReconnect: false });
    await careless.connect();
    await looper.connect();
    const looperClosed = new Promise<number>((r) => looper.on('disconnect', (d) => r(d.code)));
    const tracked = [...honest, careless].map(track);
    const r = server.rooms.get(room)!;
    const tickAtStart = r.tick;
    let stopped = 0;
    const off = subscribe<TickFailedEvent>(channels.tickFailed, (e) => {
      if (e.roomId === room) stopped++;
    });

    // Honest play at ~20 inputs a second each, throughout. Meanwhile the looper sends loops
    // until it is expelled, then the careless player two: one at a time, each once the last
    // was refused and a few ticks have committed since, so that no two stopped ticks are
    // back to back (an input in two of them is refused by design, whatever the timing).
    const playing = setInterval(() => {
      for (const t of tracked) if (rand() < 0.9) t.add(1 + Math.floor(rand() * 9));
    }, 50);
    const loopRefused = new Set<number>();
    for (const c of [looper, careless]) c.on('error', (e) => e.seq !== undefined && loopRefused.add(e.seq));
    const poison = async (c: MoonpatchClient) => {
      const seq = c.send({ op: 'loop' });
      await waitFor(() => loopRefused.has(seq), 'the loop refused');
      const t = r.tick;
      await waitFor(() => r.tick >= t + 3, 'ticks committed after it');
    };
    try {
      for (let i = 0; i < EXPEL_AFTER_STOPS; i++) await poison(looper);
      expect(await looperClosed).toBe(CloseCodes.EXPELLED);
      await poison(careless);
      await poison(careless);
    } finally {
      clearInterval(playing);
    }
    off();
    expect(stopped).toBe(EXPEL_AFTER_STOPS + 2);
    await waitFor(() => [...honest, careless].every((c) => c.unsettled === 0), 'every honest input settled', 30_000);

    const records = r.committed.records;
    const sumOf = (c: MoonpatchClient) => (unpack(records.get(`players/${c.playerId}`)!) as { sum: number }).sum;
    [...honest, careless].forEach((c, i) => {
      const t = tracked[i]!;
      // Settled exactly once each, all of them, and applied: an honest input in a stopped tick
      // ran again in the next one.
      expect([...t.sent.keys()].filter((seq) => t.settles.get(seq) !== 1), `${c.playerId}: inputs not settled exactly once`).toEqual([]);
      expect([...t.sent.keys()].filter((seq) => t.outcome.get(seq) !== 'applied'), `${c.playerId}: honest inputs refused`).toEqual([]);
      // The world has exactly what the player was acknowledged for.
      expect(sumOf(c), `${c.playerId}: the world's sum against the acknowledged adds`).toBe(t.appliedSum());
    });
    expect(tracked.reduce((n, t) => n + t.sent.size, 0)).toBeGreaterThan(50);
    expect(r.tick).toBeGreaterThan(tickAtStart + 5 * 3);
    await waitFor(() => !r.seats.has(looper.playerId), "the looper's seat given up");
    expect(r.seats.get(careless.playerId)?.link).not.toBeNull();
    // And the three copies of the state agree.
    await r.pauseClock();
    const flat = unpack(await r.isolateRecords()) as (string | Uint8Array)[];
    const isolate = new Map<string, Uint8Array>();
    for (let i = 0; i < flat.length; i += 2) isolate.set(flat[i] as string, flat[i + 1] as Uint8Array);
    expect(stateHash(isolate)).toBe(r.committed.hash());
    expect(stateHash(await server.store.readRecords(room))).toBe(r.committed.hash());
    r.resumeClock();
    for (const c of [...honest, careless, looper]) c.close();
  });
});
