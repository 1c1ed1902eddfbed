/**
 * /metrics in Prometheus format, fed by engine events: tick latency by game and version, failed
 * ticks by cause, events and the ones hooks refused, patch outcomes, players, isolate heap.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channels, type TickCommittedEvent } from '../../server/ops/events.ts';
import { FIXTURE_GAMES, FIXTURE_PATCHES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;
let server: Server;
beforeAll(async () => {
  server = await startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe' });
});
afterAll(async () => server?.close());

const scrape = async () => (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
const value = (text: string, pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? NaN);

describe('/metrics', () => {
  it('reports ticks by version, failures by cause, patch outcomes and players', async () => {
    const roomId = 'metrics-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'm' });
    await c.connect();
    const room = server.rooms.get(roomId)!;
    const v1 = room.version;
    await waitFor(() => room.tick > 5, 'some ticks');
    const failedBefore = value(await scrape(), /moonpatch_ticks_failed_total\{game="probe",version="\w+",code="SCRIPT_ERROR"\} (\d+)/);
    const errors: number[] = [];
    c.on('error', (e) => e.seq !== undefined && errors.push(e.seq));
    const seq = c.send({ op: 'fail-tick' });
    await waitFor(() => errors.includes(seq), 'the failed tick reported');
    const refusedSeq = c.send({ op: 'throw' }); // refused alone; its tick commits
    await waitFor(() => errors.includes(refusedSeq), 'the refused input reported');
    expect((await server.rooms.applyVersion(roomId, 2)).ok).toBe(true);
    const text = await scrape();
    expect(value(text, new RegExp(`moonpatch_tick_duration_seconds_count\\{game="probe",version="${v1}"\\} (\\d+)`))).toBeGreaterThan(0);
    expect(value(text, /moonpatch_ticks_failed_total\{game="probe",version="\w+",code="SCRIPT_ERROR"\} (\d+)/)).toBeGreaterThan(Number.isNaN(failedBefore) ? 0 : failedBefore);
    expect(value(text, /moonpatch_patch_events_total\{game="probe",what="patch-applied"\} (\d+)/)).toBeGreaterThanOrEqual(1);
    // The join and the refused input, at least; the refused one counted as such.
    expect(value(text, new RegExp(`moonpatch_events_total\\{game="probe",version="${v1}"\\} (\\d+)`))).toBeGreaterThanOrEqual(2);
    expect(value(text, new RegExp(`moonpatch_events_refused_total\\{game="probe",version="${v1}"\\} (\\d+)`))).toBeGreaterThanOrEqual(1);
    expect(value(text, new RegExp(`moonpatch_players\\{game="probe",version="${room.version}"\\} (\\d+)`))).toBeGreaterThanOrEqual(1);
    expect(value(text, new RegExp(`moonpatch_isolate_heap_bytes\\{game="probe",version="${room.version}"\\} (\\d+)`))).toBeGreaterThan(0);
    c.close();
  });

  it('shows a main thread blocked between ticks as tick lateness, which the tick durations do not show', async () => {
    const roomId = 'metrics-late-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'l' });
    await c.connect();
    const room = server.rooms.get(roomId)!;
    await waitFor(() => room.tick > 5, 'some ticks');
    const lateBucket = async () => value(await scrape(), /moonpatch_tick_lateness_seconds_bucket\{le="0\.1",game="probe"\} (\d+)/);
    const lateCount = async () => value(await scrape(), /moonpatch_tick_lateness_seconds_count\{game="probe"\} (\d+)/);
    const [bucketBefore, countBefore] = [await lateBucket(), await lateCount()];
    const lates: number[] = [];
    const onTick = (e: unknown) => (e as TickCommittedEvent).roomId === roomId && lates.push((e as TickCommittedEvent).lateMs);
    channels.tickCommitted.subscribe(onTick);
    try {
      // Block the main thread for 300 ms, as a synchronous build did: the tick due meanwhile
      // starts at least 250 ms late (one 50 ms period at most had passed when it was set).
      const tickBefore = room.tick;
      const until = performance.now() + 300;
      while (performance.now() < until) { /* the main thread is blocked */ }
      await waitFor(() => room.tick > tickBefore + 2, 'ticks after the block');
      expect(Math.max(...lates)).toBeGreaterThanOrEqual(250);
      // Those ticks counted, one of them above the 100 ms bucket.
      const [bucketAfter, countAfter] = [await lateBucket(), await lateCount()];
      expect(countAfter - countBefore).toBeGreaterThanOrEqual(lates.length);
      expect(countAfter - bucketAfter).toBeGreaterThan(countBefore - bucketBefore);
    } finally {
      channels.tickCommitted.unsubscribe(onTick);
      c.close();
    }
  });

  it('counts the ticks run on the main thread, and says the watchdog that allows them is up', async () => {
    const roomId = 'metrics-inline-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'i' });
    await c.connect();
    const room = server.rooms.get(roomId)!;
    const inlineCount = async () => value(await scrape(), new RegExp(`moonpatch_ticks_inline_total\\{game="probe",version="${room.version}"\\} (\\d+)`));
    // The probe's ticks are cheap: after a sandbox's first ticks they run inline.
    await waitFor(async () => (await inlineCount()) > 0, 'a tick run inline');
    const before = await inlineCount();
    const tickBefore = room.tick;
    await waitFor(() => room.tick > tickBefore + 3, 'more ticks');
    expect(await inlineCount()).toBeGreaterThan(before);
    expect(value(await scrape(), /moonpatch_main_thread_watchdog_up (\d+)/)).toBe(1);
    c.close();
  });
});
