/**
 * The script journal (server/ops/script-journal.ts over state/journal-store.ts) fed through the
 * engine's real event channels and kept in a real Redis: what it keeps, how readers page through
 * it, that it outlives the server that wrote it, and what it does with hostile or lost input.
 * Through the admin API and the command line: cli.test.ts ("moonpatch logs").
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { channels, publish, type RoomLifecycleEvent, type ScriptOutputEvent, type TickFailedEvent } from '../../server/ops/events.ts';
import { MAX_TEXT_CHARS, ScriptJournal } from '../../server/ops/script-journal.ts';
import { JOURNAL_KEPT, JournalStore } from '../../server/state/journal-store.ts';
import { RoomStore } from '../../server/state/room-store.ts';
import { findFreePort } from '../../server/state/redis-launcher.ts';
import { testRedisUrl, uniquePrefix } from '../helpers/redis.ts';

const logLines = (roomId: string, tick: number, lines: string[]) =>
  publish<ScriptOutputEvent>(channels.script, { roomId, game: 'g', version: 'v1', tick, kind: 'log', lines });

const META = { game: 'g', version: 'v1', schema: 1, seed: 1, createdAt: 0, tickHz: 20 };

describe('script journal', () => {
  const redis = new Redis(testRedisUrl());
  const journals: ScriptJournal[] = [];
  afterEach(async () => {
    for (const j of journals.splice(0)) await j.close();
  });
  afterAll(() => redis.disconnect());

  /** A fresh prefix with the named rooms created, and a journal writing there (flushed by hand). */
  async function setup(rooms: string[], opts: ConstructorParameters<typeof ScriptJournal>[1] = {}) {
    const prefix = uniquePrefix('journal');
    const store = new RoomStore(redis, prefix);
    for (const r of rooms) await store.create(r, META);
    const journal = new ScriptJournal(new JournalStore(redis, prefix), { flushMs: 60_000, ...opts });
    journals.push(journal);
    return { prefix, store, journal };
  }

  it('gives the abort path a room\'s unflushed lines, the newest that fit the byte cap, oldest first, and never sends them again', async () => {
    const { journal } = await setup(['a', 'b'], { clock: () => 1 });
    logLines('a', 1, ['first', 'x'.repeat(300)]);
    logLines('a', 2, ['third', 'fourth']);
    logLines('b', 2, ['other room']);
    const texts = (json: string[]) => json.map((t) => (JSON.parse(t) as { text: string }).text);
    // The two newest lines fit in 200 bytes; the long one does not, nor anything older than it.
    const taken = journal.takeForCrash('a', undefined, 200);
    expect(texts(taken)).toEqual(['third', 'fourth']);
    expect(journal.dropped).toBe(2);
    expect(journal.takeForCrash('a')).toEqual([]);
    expect(journal.takeForCrash('nobody')).toEqual([]);
    await journal.flush();
    expect((await journal.read('a')).entries).toEqual([]);
    expect((await journal.read('b')).entries.map((e) => e.text)).toEqual(['other room']);
  });

  it('keeps each room\'s lines and errors in order in Redis, and pages by the ids', async () => {
    const { journal } = await setup(['a', 'b'], { clock: () => 1234, node: () => 'node-1' });
    logLines('a', 5, ['one', 'two']);
    logLines('b', 9, ['other room']);
    const thrown = { name: 'TypeError', message: 'boom', stack: 'TypeError: boom\n    at input (main.ts:3:4)', code: null };
    publish<ScriptOutputEvent>(channels.script, { roomId: 'a', game: 'g', version: 'v1', tick: 6, kind: 'hook-error', hook: 'input', playerId: 'p1', code: 'SCRIPT_ERROR', thrown });
    publish<TickFailedEvent>(channels.tickFailed, { roomId: 'a', game: 'g', version: 'v1', tick: 7, code: 'CPU_BUDGET_EXCEEDED', thrown: null, scriptMs: 1, rollbackMs: 0, isolateRebuilt: false });
    expect((await journal.read('a')).entries).toEqual([]); // not flushed yet
    await journal.flush();
    const page = await journal.read('a');
    const ids = page.entries.map((e) => e.id);
    expect(page.entries).toEqual([
      { id: ids[0], at: 1234, tick: 5, version: 'v1', kind: 'log', text: 'one', node: 'node-1' },
      { id: ids[1], at: 1234, tick: 5, version: 'v1', kind: 'log', text: 'two', node: 'node-1' },
      { id: ids[2], at: 1234, tick: 6, version: 'v1', kind: 'hook-error', text: 'TypeError: boom', code: 'SCRIPT_ERROR', hook: 'input', playerId: 'p1', stack: thrown.stack, node: 'node-1' },
      { id: ids[3], at: 1234, tick: 7, version: 'v1', kind: 'tick-failed', text: 'CPU_BUDGET_EXCEEDED', code: 'CPU_BUDGET_EXCEEDED', node: 'node-1' },
    ]);
    expect(new Set(ids).size).toBe(4);
    expect(page).toMatchObject({ next: ids[3], truncated: false });
    expect((await journal.read('b')).entries.map((e) => e.text)).toEqual(['other room']);
    expect((await journal.read('a', ids[1], 1)).entries.map((e) => e.id)).toEqual([ids[2]]);
    expect(await journal.read('a', ids[3])).toEqual({ entries: [], next: ids[3], truncated: false });
    expect(await journal.read('never-logged')).toEqual({ entries: [], next: '0', truncated: false });
  });

  it('keeps to the rooms its server runs (two servers in one process share the event channels)', async () => {
    const { journal } = await setup(['mine', 'theirs'], { runsHere: (id) => id === 'mine' });
    logLines('mine', 1, ['here']);
    logLines('theirs', 1, ['there']);
    await journal.flush();
    expect((await journal.read('mine')).entries.map((e) => e.text)).toEqual(['here']);
    expect((await journal.read('theirs')).entries).toEqual([]);
  });

  it('outlives the server that wrote it: another one reads it, and appends after it', async () => {
    const { prefix, journal: first } = await setup(['moving']);
    logLines('moving', 1, ['on the first server']);
    await first.flush();
    const cursor = (await first.read('moving')).next;
    await first.close(); // the first server stops; its journal object is gone

    const second = new ScriptJournal(new JournalStore(redis, prefix), { flushMs: 60_000 });
    journals.push(second);
    expect((await second.read('moving')).entries.map((e) => e.text)).toEqual(['on the first server']);
    logLines('moving', 2, ['on the second server']);
    await second.flush();
    // The first server's cursor still reads on: one sequence across owners.
    expect((await second.read('moving', cursor)).entries.map((e) => e.text)).toEqual(['on the second server']);
  });

  it('keeps the newest entries only, and tells a reader who fell behind', async () => {
    const { journal } = await setup(['a']);
    logLines('a', 1, ['line 1']);
    await journal.flush();
    const early = (await journal.read('a')).next;
    for (let i = 2; i <= JOURNAL_KEPT + 50; i++) {
      logLines('a', i, [`line ${i}`]);
      if (i % 60 === 0) await journal.flush();
    }
    await journal.flush();
    const all = await journal.read('a');
    expect(all.entries).toHaveLength(JOURNAL_KEPT);
    expect(all.entries[0]!.text).toBe('line 51');
    expect(all.entries.at(-1)!.text).toBe(`line ${JOURNAL_KEPT + 50}`);
    expect(await journal.read('a', early)).toMatchObject({ truncated: true });
    expect((await journal.read('a', early)).entries[0]!.text).toBe('line 51');
    expect(await journal.read('a', all.entries[10]!.id)).toMatchObject({ truncated: false });
    expect(journal.dropped).toBe(0);
  });

  it('sends only the newest entries of a burst bigger than the journal, and counts the rest', async () => {
    const { journal } = await setup(['burst']);
    logLines('burst', 1, Array.from({ length: JOURNAL_KEPT + 30 }, (_, i) => `l${i}`));
    await journal.flush();
    const page = await journal.read('burst');
    expect(page.entries).toHaveLength(JOURNAL_KEPT);
    expect(page.entries[0]!.text).toBe('l30');
    expect(journal.dropped).toBe(30);
  });

  it('cuts long texts; skips what is not an entry of its own; refuses a cursor that is not one', async () => {
    const { prefix, store, journal } = await setup(['a']);
    logLines('a', 1, ['x'.repeat(MAX_TEXT_CHARS + 10)]);
    await journal.flush();
    const key = store.keys('a').journal;
    // Written into the stream by someone else: other fields, not JSON, JSON of the wrong shape.
    await redis.xadd(key, '*', 'other', 'field');
    await redis.xadd(key, '*', 'e', '{not json');
    await redis.xadd(key, '*', 'e', JSON.stringify({ kind: 'rm -rf', text: 1 }));
    await redis.xadd(key, '*', 'e', JSON.stringify(['log']));
    logLines('a', 2, ['short']);
    await journal.flush();
    const page = await journal.read('a');
    expect(page.entries.map((e) => e.text.length)).toEqual([MAX_TEXT_CHARS + 1, 5]);
    expect(page.next).toBe(page.entries[1]!.id);
    await expect(new JournalStore(redis, prefix).read('a', '1-2-3', 10)).rejects.toThrow(/not a journal cursor/);
  });

  it('writes nothing for a room that does not exist or was deleted, and the room\'s deletion takes its journal', async () => {
    const { store, journal } = await setup(['doomed']);
    logLines('doomed', 1, ['before']);
    logLines('no-such-room', 1, ['nobody']);
    await journal.flush();
    expect(await redis.exists(store.keys('doomed').journal)).toBe(1);
    expect(await redis.exists(store.keys('no-such-room').journal)).toBe(0);
    expect(await store.deleteRoom('doomed')).toBe(true);
    expect(await redis.exists(store.keys('doomed').journal)).toBe(0);
    logLines('doomed', 2, ['after the delete']); // a flush racing the deletion
    await journal.flush();
    expect(await redis.exists(store.keys('doomed').journal)).toBe(0);
    // A new room on the same id starts with an empty journal.
    await store.create('doomed', META);
    expect((await journal.read('doomed')).entries).toEqual([]);
  });

  it('drops a flush Redis cannot take (counted, reported once), and goes on when Redis is back', async () => {
    // A real connection refused: a port nothing listens on, no retries, no offline queue.
    const port = await findFreePort();
    const down = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    down.on('error', () => {});
    const errors: number[] = [];
    const journal = new ScriptJournal(new JournalStore(down, 'unused'), { flushMs: 60_000, onFlushError: (_e, dropped) => errors.push(dropped) });
    journals.push(journal);
    logLines('a', 1, ['lost one', 'lost two']);
    await journal.flush();
    logLines('a', 2, ['lost three']);
    await journal.flush();
    expect(journal.dropped).toBe(3);
    expect(errors).toEqual([2]); // once a minute, not once a flush
    down.disconnect();
  });

  it('sends what is left when a room leaves this server and when it closes; a closed journal stops listening', async () => {
    const { journal } = await setup(['a', 'b']);
    logLines('a', 1, ['last words']);
    publish<RoomLifecycleEvent>(channels.room, { roomId: 'a', game: 'g', version: 'v1', what: 'moved' });
    await new Promise((r) => setTimeout(r, 100)); // the flush it started (the timer is a minute away)
    expect((await journal.read('a')).entries.map((e) => e.text)).toEqual(['last words']);
    logLines('b', 1, ['at the close']);
    await journal.close();
    journals.splice(journals.indexOf(journal), 1);
    logLines('b', 2, ['after the close']);
    expect((await journal.read('b')).entries.map((e) => e.text)).toEqual(['at the close']);
  });
});
