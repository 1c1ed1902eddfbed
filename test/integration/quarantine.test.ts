/**
 * A crash loop, for real: a script that makes V8 abort the whole server process (the
 * `fatal` fixture game's `fatal-oom-map`), and a player whose client resends that unacknowledged input
 * after every restart. The first crash is survived (the room resumes); after the second within
 * ten minutes the room is quarantined: the restarted server runs every other room but not that
 * one, until ops release it. Each crash reaches Redis from the dying process (the crash beacon),
 * so the count does not depend on the same machine coming back with its disk.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { unpack } from 'msgpackr';
import { JournalStore } from '../../server/state/journal-store.ts';
import { RoomStore } from '../../server/state/room-store.ts';
import { findFreePort } from '../../server/state/redis-launcher.ts';
import { runCli } from '../helpers/cli.ts';
import { crashWithAttack, startChildServer, type ChildServer } from '../helpers/child-server.ts';
import { reportFigure } from '../helpers/figures.ts';
import { testRedisUrl, uniquePrefix } from '../helpers/redis.ts';
import { FIXTURE_GAMES, testClient, waitFor } from '../helpers/server.ts';

const ADMIN = 'quarantine-admin-token-0123456789';

describe('a room that keeps aborting the server process', () => {
  let child: ChildServer | null = null;
  const redis = new Redis(testRedisUrl());
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-quarantine-'));
  const dataDirs = [dataDir];
  afterAll(async () => {
    await child?.kill9();
    redis.disconnect();
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
  });

  it('is quarantined after the second crash; the other rooms run; ops release it', async () => {
    const prefix = uniquePrefix('quarantine');
    const port = await findFreePort();
    const env = {
      REDIS_URL: testRedisUrl(), REDIS_PREFIX: prefix, PORT: String(port), HOST: '127.0.0.1', SCRIPTS_DIR: FIXTURE_GAMES,
      DEFAULT_GAME: 'fatal', DATA_DIR: dataDir, ADMIN_TOKEN: ADMIN,
    };
    const store = new RoomStore(redis, prefix);

    child = await startChildServer(env);
    const roomId = 'poison-' + Date.now().toString(36);
    const mallory = testClient(child.url, { room: roomId, game: 'fatal', name: 'mallory', reconnectDelayMs: 100 });
    await mallory.connect();
    const add = mallory.send({ op: 'add', n: 5 });
    await waitFor(() => mallory.lastAckedSeq >= add, 'the honest input acknowledged');
    const journal = new JournalStore(redis, prefix);
    const journalTexts = async () => (await journal.read(roomId, '0', 50)).entries.map((e) => JSON.parse(e.text).text as string);
    await waitFor(async () => (await journalTexts()).includes('added 5 for mallory'), 'the line it logged in the journal');

    // Crash 1: the attack aborts the process. The abort path itself puts the crash in Redis
    // (the crash beacon), where every server sees it, before any restart.
    let lastAttack = 0;
    const attack = () => (lastAttack = mallory.send({ attack: 'fatal-oom-map' }));
    await crashWithAttack(child, mallory, attack);
    await waitFor(async () => (await store.crashesSince(roomId, 0)) === 1, 'crash 1 in Redis without a restart');
    // The supervisor restarts it; the room resumes, the client reconnects and resends the
    // unacknowledged attack (sent again if V8 contains it this time): crash 2. The restart
    // also found crash 1 in its local file: the same crash, not counted again.
    child = await startChildServer(env);
    expect(await store.crashesSince(roomId, 0)).toBe(1);
    await crashWithAttack(child, mallory, attack, 6, lastAttack);
    mallory.close(); // the player gives up; what happens next is the server's doing
    await waitFor(async () => (await store.crashesSince(roomId, 0)) === 2, 'crash 2 in Redis without a restart');

    // Started again, on a fresh disk (a replaced container: the local crash file is gone):
    // the room is quarantined from what Redis holds, and not resumed.
    const freshDisk = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-quarantine-'));
    dataDirs.push(freshDisk);
    child = await startChildServer({ ...env, DATA_DIR: freshDisk });
    expect(await store.crashesSince(roomId, 0)).toBe(2);
    const late = testClient(child.url, { room: roomId, game: 'fatal', name: 'late', autoReconnect: false });
    const codes: string[] = [];
    late.on('error', (e) => codes.push(e.code));
    await expect(late.connect()).rejects.toThrow();
    expect(codes).toContain('ROOM_QUARANTINED');
    // What its script logged before the crashes is still there for the designer, from a server
    // that does not run the room.
    const logs = await fetch(`${child.url.replace('ws://', 'http://')}/admin/rooms/${roomId}/logs`, { headers: { authorization: `Bearer ${ADMIN}` } }).then((r) => r.json() as Promise<any>);
    expect(logs).toMatchObject({ room: roomId, truncated: false });
    expect(logs.entries.map((e: { text: string }) => e.text)).toContain('added 5 for mallory');
    // And the two crashes, sent from the abort path itself.
    const crashes = logs.entries.filter((e: { kind: string }) => e.kind === 'crash');
    expect(crashes).toHaveLength(2);
    expect(crashes[0]).toMatchObject({ code: expect.stringMatching(/^(MEMORY_LIMIT|ENGINE_ERROR)$/), version: expect.any(String), tick: expect.any(Number) });
    expect(crashes[0].text).toMatch(/^the script aborted the server process: /);
    const cli = await runCli(child.url.replace('ws://', 'http://'), ADMIN, 'logs', '--room', roomId);
    expect(cli.code).toBe(0);
    expect(cli.out.match(/server process aborted \(\S+\), tick not committed: the script aborted/g)).toHaveLength(2);

    // Every other room on this server runs.
    const other = testClient(child.url, { room: 'other-' + Date.now().toString(36), game: 'fatal', name: 'bystander' });
    await other.connect();
    const ok = other.send({ op: 'add', n: 2 });
    await waitFor(() => other.lastAckedSeq >= ok, 'a healthy room plays on');

    // Redis still holds the poisoned room's last committed tick: the honest add, not the attack.
    const bytes = (await store.readRecords(roomId)).get(`players/${mallory.playerId}`)!;
    expect((unpack(bytes) as { sum: number }).sum).toBe(5);

    // Ops release it (after rolling the script back, say): it runs again.
    const res = await fetch(`${child.url.replace('ws://', 'http://')}/admin/rooms/${roomId}/release`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ room: roomId, released: true, running: true });
    expect(await store.crashesSince(roomId, 0)).toBe(0);
    const bob = testClient(child.url, { room: roomId, game: 'fatal', name: 'bob' });
    await bob.connect();
    const seq = bob.send({ op: 'add', n: 1 });
    await waitFor(() => bob.lastAckedSeq >= seq, 'the released room plays');
    reportFigure('crash-loop-quarantine', 'faults_injected', 2);
    bob.close();
    other.close();
  });

  it('the lines its script logged since the last journal flush, and in the call that crashed, reach Redis with the crash, sent by the dying process', async () => {
    const prefix = uniquePrefix('crash-lines');
    const crashDir = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-crash-lines-'));
    dataDirs.push(crashDir);
    // The first test's last server is still running: stopped here, so that it is not left behind.
    await child?.kill9();
    child = await startChildServer({
      REDIS_URL: testRedisUrl(), REDIS_PREFIX: prefix, PORT: String(await findFreePort()), HOST: '127.0.0.1', SCRIPTS_DIR: FIXTURE_GAMES,
      DEFAULT_GAME: 'fatal', DATA_DIR: crashDir, ADMIN_TOKEN: ADMIN,
      // No timed flush within the test: only the abort path can get the line to Redis.
      JOURNAL_FLUSH_MS: '60000',
      // Every tick on the isolate's thread, so the abort always comes through isolated-vm's
      // callback on the main thread, which holds the unflushed lines (when the main-thread
      // watchdog writes the crash instead, only the crashing call's are: script-journal.ts).
      INLINE_TICK_MAX_MS: '0',
    });
    const roomId = 'last-words-' + Date.now().toString(36);
    const eve = testClient(child.url, { room: roomId, game: 'fatal', name: 'eve', autoReconnect: false });
    await eve.connect();
    const add = eve.send({ op: 'add', n: 7 });
    await waitFor(() => eve.lastAckedSeq >= add, 'the honest input committed (its line logged)');
    const journal = new JournalStore(redis, prefix);
    const entries = async () => (await journal.read(roomId, '0', 50)).entries.map((e) => JSON.parse(e.text) as { kind: string; text: string });
    expect(await entries()).toEqual([]); // not flushed: the line is only in the server's memory

    await crashWithAttack(child, eve, () => eve.send({ attack: 'fatal-oom-map' }));
    child = null; // it has exited
    const after = await entries();
    // The line, then (after any attack V8 contained: tick-failed) what the crashing call
    // logged (from the sandbox's log ring: that call never returned its lines) and the crash, last.
    expect(after[0]).toMatchObject({ kind: 'log', text: 'added 7 for eve' });
    expect(after.at(-2)).toMatchObject({ kind: 'log', text: 'growing a map until the heap gives out, for eve' });
    expect(after.at(-1)).toMatchObject({ kind: 'crash', text: expect.stringMatching(/^the script aborted the server process: /) });
    expect(after.slice(1, -2).every((e) => e.kind === 'tick-failed')).toBe(true);
    expect(await new RoomStore(redis, prefix).crashesSince(roomId, 0)).toBe(1);
    eve.close();
  });
});
