/**
 * 50 successive live patches of the arena under load: players keep sending inputs at 20 Hz
 * while the room goes v2 -> v3 -> v2 -> v3 ... (apply, then roll back, same schema). Every swap
 * succeeds at a tick boundary, nobody is disconnected, every input is settled exactly once, and
 * at the end the process holds as many isolates as before and its memory is back near where it
 * started: swapping does not leak isolates or heap.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MoonpatchClient } from '../../client/client.ts';
import { GameSandbox } from '../../server/sandbox/sandbox.ts';
import { startTestServer, testClient, waitFor } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;
let server: Server;
beforeAll(async () => {
  server = await startTestServer({ defaultGame: 'arena' });
});
afterAll(async () => server?.close());

const PATCHES = 50;
const PLAYERS = 12;

/** Process memory after a full GC, MB (isolates' heaps are outside the Node heap, so rss). */
function rssMb(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().rss / 2 ** 20;
}

describe(`${PATCHES} successive patches under load`, () => {
  it('all swap, nobody is disconnected, every input settles once, isolates and memory return to their start', async () => {
    const roomId = 'churn-' + Date.now();
    const clients: MoonpatchClient[] = [];
    const settledTwice: number[] = [];
    let acked = 0;
    let rejected = 0;
    for (let i = 0; i < PLAYERS; i++) {
      const c = testClient(server.url, { room: roomId, game: 'arena', name: `bot${i}`, trackWorld: false });
      const seen = new Set<number>();
      c.on('settled', (s) => {
        if (seen.has(s.seq)) settledTwice.push(s.seq);
        seen.add(s.seq);
        if (s.rejected) rejected++;
        else acked++;
      });
      await c.connect();
      clients.push(c);
    }
    let sent = 0;
    let sending = true;
    const senders = clients.map(async (c, i) => {
      while (sending) {
        c.send({ move: [Math.cos(sent + i), Math.sin(sent + i)] });
        sent++;
        await new Promise((r) => setTimeout(r, 50));
      }
    });

    // The first patch changes the schema (1 -> 2); v2 <-> v3 then share schema 2.
    const first = await server.rooms.applyVersion(roomId, 2);
    expect(first.ok).toBe(true);
    const isolatesAtStart = GameSandbox.live;
    const rssAtStart = rssMb();
    const room = server.rooms.get(roomId)!;

    const outcomes: boolean[] = [];
    const ticks: number[] = [];
    for (let i = 0; i < PATCHES; i++) {
      const r = i % 2 === 0 ? await server.rooms.applyVersion(roomId, 3) : await server.rooms.rollback(roomId, 2);
      outcomes.push(r.ok);
      if (r.ok) ticks.push(r.tick);
    }
    sending = false;
    await Promise.all(senders);
    await waitFor(() => clients.every((c) => c.unsettled === 0), 'every input settled');

    expect(outcomes.filter((ok) => !ok)).toHaveLength(0);
    expect(room.current?.number).toBe(2); // 50 operations: the last one was a rollback to v2
    // Each swap happened at its own tick boundary, in order.
    for (let i = 1; i < ticks.length; i++) expect(ticks[i]!).toBeGreaterThan(ticks[i - 1]!);
    for (const c of clients) expect(c.disconnects).toBe(0);
    expect(settledTwice).toEqual([]);
    expect(acked + rejected).toBe(sent);
    expect(rejected).toBe(0);

    // One isolate per room again: every staged isolate was swapped in or disposed, and every
    // replaced one disposed.
    expect(GameSandbox.live).toBe(isolatesAtStart);
    // An isolate that leaked would keep its heap (the arena's is several MB, capped at 64): 50
    // of them would add hundreds of MB. Allow the allocator's slack, not leaks.
    const growth = rssMb() - rssAtStart;
    console.log(`patch churn: ${PATCHES} swaps, ${acked} inputs acknowledged, isolates ${isolatesAtStart} -> ${GameSandbox.live}, rss growth ${growth.toFixed(1)} MB, room heap ${((await room.heapUsed()) / 2 ** 20).toFixed(1)} MB`);
    expect(growth).toBeLessThan(100);
    for (const c of clients) c.close();
  });
});
