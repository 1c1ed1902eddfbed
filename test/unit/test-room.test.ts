/**
 * TestRoom (server/testing/test-room.ts), the harness designers test their games with, on the
 * probe fixture: what a failed tick, a dead isolate and mistakes in the test itself do. Its
 * everyday use is scripts/tests/arena.test.ts.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TestRoom, TestTickFailed } from '../../server/testing/test-room.ts';
import { FIXTURE_GAMES, FIXTURE_PATCHES } from '../helpers/server.ts';

const rooms: TestRoom[] = [];
async function probe(): Promise<TestRoom> {
  // No patches: the probe's fixture patches include one that does not build, on purpose.
  const room = await TestRoom.open({ game: path.join(FIXTURE_GAMES, 'probe'), patchesDir: mkdtempSync(path.join(os.tmpdir(), 'no-patches-')) });
  rooms.push(room);
  return room;
}
afterEach(() => {
  for (const r of rooms.splice(0)) r.close();
});

type Probe = { players: Record<string, { sum: number; inputs: number }> };

describe('TestRoom', () => {
  it('a tick that fails throws TestTickFailed with the script\'s stack, keeps nothing it did, and the room plays on', async () => {
    const room = await probe();
    const a = room.join('a');
    await room.run();
    room.input(a, { op: 'add', n: 2 });
    await room.run();
    const before = JSON.stringify(room.world);
    room.input(a, { op: 'add', n: 5 });
    room.input(a, { op: 'fail-tick' });
    const failed = await room.run().catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(TestTickFailed);
    expect(failed).toMatchObject({ tick: 3, code: 'SCRIPT_ERROR' });
    expect((failed as TestTickFailed).scriptStack).toMatch(/main\.ts:\d+:\d+/);
    expect(JSON.stringify(room.world)).toBe(before);
    room.input(a, { op: 'add', n: 1 });
    await room.run();
    expect((room.world as unknown as Probe).players[a]).toMatchObject({ sum: 3, inputs: 2 });
    expect(room.tick).toBe(3);
  });

  it('an input hook that throws refuses only its input, named in refusals', async () => {
    const room = await probe();
    const a = room.join('a');
    await room.run();
    room.input(a, { op: 'throw' });
    room.input(a, { op: 'add', n: 4 });
    await room.run();
    expect(room.refusals).toEqual([expect.objectContaining({ tick: 2, hook: 'input', playerId: a, message: 'Error: input asked to throw' })]);
    expect((room.world as unknown as Probe).players[a]!.sum).toBe(4); // the throw's own write undone
  });

  it('after a memory bomb kills the isolate, it says so instead of running on a world it no longer has', async () => {
    const room = await probe();
    const a = room.join('a');
    await room.run();
    room.input(a, { op: 'bomb' });
    await expect(room.run()).rejects.toMatchObject({ name: 'TestTickFailed', code: 'MEMORY_LIMIT' });
    await expect(room.run()).rejects.toThrow(/isolate died in tick 2 \(MEMORY_LIMIT\)/);
    expect(() => room.world).toThrow(/open a new TestRoom/);
  });

  it('a patch whose migration throws fails its swap tick and leaves the room on the version before, world untouched', async () => {
    const room = await TestRoom.open({ game: path.join(FIXTURE_GAMES, 'probe'), patchesDir: FIXTURE_PATCHES });
    rooms.push(room);
    const a = room.join('a');
    await room.run();
    room.input(a, { op: 'add', n: 3 });
    await room.run();
    const before = JSON.stringify(room.world);
    await room.patch(4); // 004-bad-migration
    await expect(room.run()).rejects.toMatchObject({ name: 'TestTickFailed', tick: 3 });
    expect(room.version).toBe(1);
    expect(JSON.stringify(room.world)).toBe(before);
    room.input(a, { op: 'add', n: 1 });
    await room.run();
    expect((room.world as unknown as Probe).players[a]!.sum).toBe(4);
    // The versions after a patch that does not build are not there, and it says why.
    await expect(room.patch(6)).rejects.toThrow(/no version 6 \(there are 1, 2, 3, 4, 5; patches\/probe\/006-syntax-error did not load: /);
    // A version that migrates does, and keeps what it migrated.
    await room.patch(2); // 002-score: players' sum becomes score
    await room.run();
    expect(room.version).toBe(2);
    expect((room.world as unknown as { players: Record<string, { score: number }> }).players[a]!.score).toBe(4);
  });

  it('refuses what the test gets wrong: an unknown player, an unknown version', async () => {
    const room = await probe();
    expect(() => room.input('p99', { op: 'add', n: 1 })).toThrow(/no player p99/);
    await expect(room.patch(9)).rejects.toThrow(/no version 9 \(there are 1\)/);
    await expect(TestRoom.open({ game: path.join(FIXTURE_GAMES, 'probe'), version: 2, patchesDir: os.tmpdir() + '/none' })).rejects.toThrow(/probe has no version 2/);
  });
});
