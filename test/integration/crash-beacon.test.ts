/**
 * The crash beacon (server/ops/crash-beacon.ts) against a real Redis: the abort path's
 * synchronous write lands as the commands it means, whatever the record holds, and fails
 * quietly when it cannot; the restart that finds the same crash in its local file does not
 * count it twice. The write from a process that really aborts is in quarantine.test.ts.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { crashFilePath, takeCrashRecord, writeCrashRecordSync } from '../../server/ops/crash-record.ts';
import { Redis } from 'ioredis';
import { CrashBeacon } from '../../server/ops/crash-beacon.ts';
import { crashJournalEntry, crashListEntry, respCommand } from '../../server/ops/crash-wire.mjs';
import { RoomStore, type RoomCrash } from '../../server/state/room-store.ts';
import { ScriptJournal } from '../../server/ops/script-journal.ts';
import { JournalStore } from '../../server/state/journal-store.ts';
import { testRedisUrl, uniquePrefix } from '../helpers/redis.ts';
import { FIXTURE_GAMES, startTestServer, waitFor } from '../helpers/server.ts';

describe('crash beacon', () => {
  const redis = new Redis(testRedisUrl());
  afterAll(() => redis.disconnect());

  it('writes the crash onto the room\'s list with one synchronous write, byte for byte', async () => {
    const store = new RoomStore(redis, uniquePrefix('beacon'));
    const beacon = await CrashBeacon.open(testRedisUrl(), 'test-node');
    try {
      const key = store.crashListKey('room-1');
      // Multi-byte characters, CRLF and a RESP-looking payload: lengths are in bytes, and a
      // record must not be able to smuggle a command of its own.
      const crash: RoomCrash = { at: 1_700_000_000_123, tick: 42, version: 'v2 ✓\r\n*1\r\n$8\r\nFLUSHALL\r\n', node: 'node-a' };
      expect(beacon.sendSync(key, crashListEntry(crash))).toBe(true);
      await waitFor(async () => (await redis.llen(key)) === 1, 'the crash on the list');
      expect(await redis.lrange(key, 0, -1)).toEqual([crashListEntry(crash)]);
      expect(await store.crashesSince('room-1', 0)).toBe(1);
      expect(await redis.dbsize()).toBeGreaterThan(0); // nothing flushed
    } finally {
      beacon.close();
    }
  });

  it('keeps the newest entries only', async () => {
    const store = new RoomStore(redis, uniquePrefix('beacon'));
    const beacon = await CrashBeacon.open(testRedisUrl(), 'test-node');
    try {
      const key = store.crashListKey('room-2');
      for (let i = 0; i < 5; i++) expect(beacon.sendSync(key, crashListEntry({ at: 1000 + i, tick: i, version: '1', node: 'n' }), 3)).toBe(true);
      await waitFor(async () => (await redis.lindex(key, 0)) === crashListEntry({ at: 1004, tick: 4, version: '1', node: 'n' }), 'the last crash first');
      expect((await redis.lrange(key, 0, -1)).map((s) => (JSON.parse(s) as RoomCrash).tick)).toEqual([4, 3, 2]);
    } finally {
      beacon.close();
    }
  });

  it('puts the crash in the room\'s script journal in the same write, where the designers\' reader finds it', async () => {
    const prefix = uniquePrefix('beacon');
    const store = new RoomStore(redis, prefix);
    await store.create('room-j', { game: 'g', version: 'v3', schema: 1, seed: 1, createdAt: 0, tickHz: 20 });
    const beacon = await CrashBeacon.open(testRedisUrl(), 'test-node');
    const journal = new ScriptJournal(new JournalStore(redis, prefix), { flushMs: 60_000 });
    try {
      const crash = { at: 1_700_000_000_000, tick: 77, version: 'v3', node: 'node-x', message: 'Catastrophic out-of-memory error\r\n*1\r\n$4\r\nPING\r\n' };
      expect(beacon.sendSync(store.crashListKey('room-j'), crashListEntry(crash), undefined, { key: store.keys('room-j').journal, entries: [crashJournalEntry(crash)] })).toBe(true);
      await waitFor(async () => (await journal.read('room-j')).entries.length === 1, 'the crash in the journal');
      const [entry] = (await journal.read('room-j')).entries;
      expect(entry).toMatchObject({ at: crash.at, tick: 77, version: 'v3', kind: 'crash', code: 'MEMORY_LIMIT', node: 'node-x', text: `the script aborted the server process: ${crash.message}` });
      expect(await store.crashesSince('room-j', 0)).toBe(1);
    } finally {
      await journal.close();
      beacon.close();
    }
  });

  it('returns false, and throws nothing, once its connection is gone', async () => {
    const store = new RoomStore(redis, uniquePrefix('beacon'));
    const beacon = await CrashBeacon.open(testRedisUrl(), 'test-node');
    beacon.close();
    const key = store.crashListKey('room-3');
    expect(beacon.sendSync(key, crashListEntry({ at: 1, tick: 1, version: '1', node: 'n' }))).toBe(false);
    expect(await redis.exists(key)).toBe(0);
  });

  it('after Redis drops its connection, sends nothing until ioredis has reconnected, then sends again', async () => {
    const store = new RoomStore(redis, uniquePrefix('beacon'));
    const node = `node ${Math.random()}`; // a space, replaced in the connection's name
    const beacon = await CrashBeacon.open(testRedisUrl(), node);
    try {
      const key = store.crashListKey('room-6');
      // Kill this beacon's connection only: other test files share this Redis.
      const name = `moonpatch-crash-beacon:${node.replace(' ', '_')}`;
      const clients = String(await redis.client('LIST')).split('\n').filter((line) => line.includes(` name=${name} `));
      expect(clients).toHaveLength(1);
      await redis.client('KILL', 'ID', /\bid=(\d+)/.exec(clients[0]!)![1]!);
      await waitFor(() => !beacon.sendSync(key, crashListEntry({ at: 1, tick: 1, version: '1', node: 'n' })), 'the beacon to see its connection gone');
      await waitFor(() => beacon.sendSync(key, crashListEntry({ at: 2, tick: 2, version: '1', node: 'n' })), 'the beacon reconnected');
      await waitFor(async () => (await redis.llen(key)) >= 1, 'the crash sent after the reconnect');
      expect((await redis.lrange(key, 0, -1)).map((s) => (JSON.parse(s) as RoomCrash).at)).toContain(2);
    } finally {
      beacon.close();
    }
  });

  it('refuses to connect to nothing with an error instead of hanging', async () => {
    await expect(CrashBeacon.open('redis://127.0.0.1:1', 'test-node')).rejects.toThrow();
  });

  it('a crash the beacon sent is not counted again when the local file brings it back', async () => {
    const store = new RoomStore(redis, uniquePrefix('beacon'));
    const beacon = await CrashBeacon.open(testRedisUrl(), 'test-node');
    try {
      const crash: RoomCrash = { at: 1_700_000_000_500, tick: 7, version: '3', node: 'node-b' };
      expect(beacon.sendSync(store.crashListKey('room-4'), crashListEntry(crash))).toBe(true);
      await waitFor(async () => (await store.crashesSince('room-4', 0)) === 1, 'the beacon\'s crash');
      expect(await store.recordCrash('room-4', crash)).toBe(false);
      expect(await store.crashesSince('room-4', 0)).toBe(1);
      // Another crash (another node, or the same node later) is one more.
      expect(await store.recordCrash('room-4', { ...crash, node: 'node-c' })).toBe(true);
      expect(await store.recordCrash('room-4', { ...crash, at: crash.at + 1 })).toBe(true);
      expect(await store.crashesSince('room-4', 0)).toBe(3);
    } finally {
      beacon.close();
    }
  });

  it('a crash only the local file kept (the beacon failed: written here as the abort path writes it, since that failure is not produced for real) is counted at the next start, with its last lines in the journal before it', async () => {
    const prefix = uniquePrefix('crash-file');
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-crash-file-'));
    const node = 'file-node';
    const roomId = 'room-file';
    const crash = { roomId, game: 'probe', version: 'v9', tick: 12, at: 1_700_000_000_900, node, message: 'Catastrophic out-of-memory error' };
    writeCrashRecordSync(crashFilePath(dataDir, node), { ...crash, lines: ['wave 3 spawning', 'allocating the boss'] });
    // A file written by something else: lines that are not strings are dropped, not trusted.
    const junk = path.join(dataDir, 'junk.json');
    writeFileSync(junk, JSON.stringify({ ...crash, lines: ['ok', { not: 'a line' }] }));
    expect(takeCrashRecord(junk)?.lines).toBeUndefined();
    // The room exists (the journal takes entries only for a room that does).
    await new RoomStore(redis, prefix).create(roomId, { game: 'probe', version: '', schema: 1, seed: 1, createdAt: Date.now(), tickHz: 20 });
    const server = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', redisPrefix: prefix, dataDir, nodeId: node });
    try {
      expect(await new RoomStore(redis, prefix).crashesSince(roomId, 0)).toBe(1);
      const journal = new ScriptJournal(new JournalStore(redis, prefix));
      const page = await journal.read(roomId);
      await journal.close();
      expect(page.entries.map((e) => [e.kind, e.text, e.tick])).toEqual([
        ['log', 'wave 3 spawning', 12],
        ['log', 'allocating the boss', 12],
        ['crash', 'the script aborted the server process: Catastrophic out-of-memory error', 12],
      ]);
      expect(existsSync(crashFilePath(dataDir, node))).toBe(false); // taken
    } finally {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('an entry that is not a crash (written by hand) is not counted and does not break counting', async () => {
    const store = new RoomStore(redis, uniquePrefix('beacon'));
    const key = store.crashListKey('room-5');
    await redis.lpush(key, 'not json', '{"at":"soon"}', 'null');
    expect(await store.recordCrash('room-5', { at: 5, tick: 1, version: '1', node: 'n' })).toBe(true);
    expect(await store.crashesSince('room-5', 0)).toBe(1);
  });

  it('RESP framing: bulk lengths count bytes', () => {
    expect(respCommand(['LPUSH', 'k', 'é']).toString('utf8')).toBe('*3\r\n$5\r\nLPUSH\r\n$1\r\nk\r\n$2\r\né\r\n');
  });
});
