/**
 * The main-thread watchdog (server/sandbox/main-thread-watchdog.ts), for real, in child
 * processes (test/helpers/watchdog-child.ts): a main thread parked for good inside a watched
 * call is aborted and its crash recorded where the server's crash recorder would (the local
 * file, the room's crash list and script journal, read back through the readers the server
 * uses); a process stopped past a call's deadline and then resumed is not; and the `fatal`
 * game's real attack in a tick run inline aborts the process instead of hanging it.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { takeCrashRecord } from '../../server/ops/crash-record.ts';
import { ScriptJournal } from '../../server/ops/script-journal.ts';
import { JournalStore } from '../../server/state/journal-store.ts';
import { RoomStore } from '../../server/state/room-store.ts';
import { testRedisUrl, uniquePrefix } from '../helpers/redis.ts';

const CHILD = path.join(import.meta.dirname, '..', 'helpers', 'watchdog-child.ts');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
}

describe('the main-thread watchdog', () => {
  const redis = new Redis(testRedisUrl());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-watchdog-'));
  afterAll(() => {
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Starts the child; `onLine` sees each line of its stdout as it comes. */
  function runChild(mode: string, prefix: string, roomId: string, crashFile: string, onLine?: (line: string, pid: number) => void): Promise<Run> {
    const proc = spawn(process.execPath, ['--no-node-snapshot', '--import', 'tsx', CHILD], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, WATCHDOG_MODE: mode, REDIS_URL: testRedisUrl(), PREFIX: prefix, CRASH_FILE: crashFile, ROOM_ID: roomId },
    });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d;
      for (const line of String(d).split('\n')) if (line && onLine) onLine(line, proc.pid!);
    });
    proc.stderr.on('data', (d) => (out += d));
    return new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal, out })));
  }

  const abortLine = (out: string) =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.by === 'main-thread-watchdog');

  it('aborts a process whose main thread never comes back from a watched call, and records the crash where the server would', async () => {
    const prefix = uniquePrefix('watchdog-hang');
    const roomId = 'hung-room';
    const crashFile = path.join(dir, 'hang', 'crash.json');
    const run = await runChild('hang', prefix, roomId, crashFile);
    expect(run.signal === 'SIGABRT' || run.code === 134, `exit ${run.code} ${run.signal}:\n${run.out.slice(-2000)}`).toBe(true);
    expect(abortLine(run.out)).toMatchObject({ level: 60, code: 'MEMORY_LIMIT', roomId, game: 'probe', version: 'v7', tick: 1234, node: 'watchdog-node' });

    // The local file, as the node's next start reads it.
    expect(takeCrashRecord(crashFile)).toMatchObject({ roomId, game: 'probe', version: 'v7', tick: 1234, node: 'watchdog-node', message: expect.stringMatching(/out-of-memory/) });
    // The room's crash list, counted by the quarantine rule.
    const store = new RoomStore(redis, prefix);
    expect(await store.crashesSince(roomId, 0)).toBe(1);
    // The script journal, as `moonpatch logs` reads it.
    const journal = new ScriptJournal(new JournalStore(redis, prefix));
    const page = await journal.read(roomId);
    await journal.close();
    expect(page.entries).toEqual([expect.objectContaining({ kind: 'crash', code: 'MEMORY_LIMIT', tick: 1234, version: 'v7', node: 'watchdog-node' })]);
    await redis.del(store.keys(roomId).crashes, store.keys(roomId).journal);
  });

  it('does not kill a process that was stopped past a call\'s deadline and then resumed', async () => {
    const prefix = uniquePrefix('watchdog-pause');
    const crashFile = path.join(dir, 'pause', 'crash.json');
    // SIGSTOP stops every thread; SIGCONT resumes them together, the call long overdue by the
    // clock. The call then returns at once, and the watchdog must not have taken it for a hang.
    const run = await runChild('pause', prefix, 'paused-room', crashFile, (line, pid) => {
      if (line !== 'in-call') return;
      process.kill(pid, 'SIGSTOP');
      setTimeout(() => process.kill(pid, 'SIGCONT'), 7000);
    });
    expect({ code: run.code, signal: run.signal }, run.out.slice(-2000)).toEqual({ code: 0, signal: null });
    expect(run.out).toContain('survived');
    expect(abortLine(run.out)).toBeUndefined();
    expect(takeCrashRecord(crashFile)).toBeNull();
  });

  it('turns the fatal game\'s attack in a tick run on the main thread into an abort, not a hang, with what the attack logged', async () => {
    const prefix = uniquePrefix('watchdog-fatal');
    const roomId = 'fatal-room';
    const crashFile = path.join(dir, 'fatal', 'crash.json');
    // V8 now and then contains the attack (the isolate dies, MEMORY_LIMIT): the child then
    // exits 3, and the attack is tried again in a new process. So is an attack that outran its
    // leash on a loaded machine: it went on on the isolate's thread, where isolated-vm's
    // callback aborts the process (another path, tested by quarantine.test.ts), not this one.
    const notInline = (r: Run) => r.code === 3 || (abortLine(r.out) === undefined && r.out.includes('an isolate hit a catastrophic error'));
    let run: Run | null = null;
    for (let i = 0; i < 4 && (run === null || notInline(run)); i++) run = await runChild('fatal', prefix, roomId, crashFile);
    expect(run!.code, `V8 contained the attack every time:\n${run!.out}`).not.toBe(3);
    expect(run!.signal === 'SIGABRT' || run!.code === 134, `exit ${run!.code} ${run!.signal}:\n${run!.out.slice(-2000)}`).toBe(true);
    expect(abortLine(run!.out), run!.out.slice(-2000)).toMatchObject({ code: 'MEMORY_LIMIT', roomId, game: 'fatal' });
    expect(takeCrashRecord(crashFile)).toMatchObject({ roomId, game: 'fatal' });
    const store = new RoomStore(redis, prefix);
    expect(await store.crashesSince(roomId, 0)).toBe(1);
    // What the attack logged before it filled the heap, read by this thread from the sandbox's
    // log ring (the main thread that holds the call's lines is parked), then the crash.
    const journal = new ScriptJournal(new JournalStore(redis, prefix));
    const page = await journal.read(roomId);
    await journal.close();
    expect(page.entries.map((e) => [e.kind, e.text])).toEqual([
      ['log', expect.stringMatching(/^growing a map until the heap gives out, for /)],
      ['crash', expect.stringMatching(/^the script aborted the server process: /)],
    ]);
    await redis.del(store.keys(roomId).crashes, store.keys(roomId).journal);
  });
});
