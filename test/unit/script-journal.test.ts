/**
 * The script journal (server/ops/script-journal.ts) fed through the engine's real event
 * channels: what it keeps, how readers page through it, and its bounds.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { channels, publish, type RoomLifecycleEvent, type ScriptOutputEvent, type TickFailedEvent } from '../../server/ops/events.ts';
import { ENTRIES_PER_ROOM, MAX_TEXT_CHARS, ScriptJournal } from '../../server/ops/script-journal.ts';

const logLines = (roomId: string, tick: number, lines: string[]) =>
  publish<ScriptOutputEvent>(channels.script, { roomId, game: 'g', version: 'v1', tick, kind: 'log', lines });

describe('script journal', () => {
  let journal: ScriptJournal;
  afterEach(() => journal.close());

  it('keeps each room\'s lines and errors in order, numbered from 1', () => {
    journal = new ScriptJournal(() => 1234);
    logLines('a', 5, ['one', 'two']);
    logLines('b', 9, ['other room']);
    const thrown = { name: 'TypeError', message: 'boom', stack: 'TypeError: boom\n    at input (main.ts:3:4)', code: null };
    publish<ScriptOutputEvent>(channels.script, { roomId: 'a', game: 'g', version: 'v1', tick: 6, kind: 'hook-error', hook: 'input', playerId: 'p1', code: 'SCRIPT_ERROR', thrown });
    publish<TickFailedEvent>(channels.tickFailed, { roomId: 'a', game: 'g', version: 'v1', tick: 7, code: 'CPU_BUDGET_EXCEEDED', thrown: null, scriptMs: 1, rollbackMs: 0, isolateRebuilt: false });
    const page = journal.read('a');
    expect(page.entries).toEqual([
      { seq: 1, at: 1234, tick: 5, version: 'v1', kind: 'log', text: 'one' },
      { seq: 2, at: 1234, tick: 5, version: 'v1', kind: 'log', text: 'two' },
      { seq: 3, at: 1234, tick: 6, version: 'v1', kind: 'hook-error', text: 'TypeError: boom', code: 'SCRIPT_ERROR', hook: 'input', playerId: 'p1', stack: thrown.stack },
      { seq: 4, at: 1234, tick: 7, version: 'v1', kind: 'tick-failed', text: 'CPU_BUDGET_EXCEEDED', code: 'CPU_BUDGET_EXCEEDED' },
    ]);
    expect(page).toMatchObject({ next: 4, truncated: false });
    expect(journal.read('b').entries.map((e) => e.text)).toEqual(['other room']);
    expect(journal.read('a', 2, 1).entries.map((e) => e.seq)).toEqual([3]);
    expect(journal.read('a', 4)).toMatchObject({ entries: [], next: 4 });
  });

  it('keeps the newest entries only, and tells a reader who fell behind', () => {
    journal = new ScriptJournal();
    for (let i = 1; i <= ENTRIES_PER_ROOM + 50; i++) logLines('a', i, [`line ${i}`]);
    const all = journal.read('a');
    expect(all.entries).toHaveLength(ENTRIES_PER_ROOM);
    expect(all.entries[0]!.text).toBe('line 51');
    expect(all.entries.at(-1)!.text).toBe(`line ${ENTRIES_PER_ROOM + 50}`);
    expect(journal.read('a', 10)).toMatchObject({ truncated: true });
    expect(journal.read('a', 10).entries[0]!.seq).toBe(51);
    expect(journal.read('a', 100)).toMatchObject({ truncated: false });
    expect(journal.read('a', 100).entries[0]!.seq).toBe(101);
  });

  it('cuts long texts, and a number from elsewhere (the future, another stream) reads from the oldest kept', () => {
    journal = new ScriptJournal();
    logLines('a', 1, ['x'.repeat(MAX_TEXT_CHARS + 10), 'short']);
    const [long] = journal.read('a').entries;
    expect(long!.text).toHaveLength(MAX_TEXT_CHARS + 1);
    expect(journal.read('a', 999).entries.map((e) => e.seq)).toEqual([1, 2]);
  });

  it('forgets a room that stops running here; it starts over, with a new stream, when it runs again', () => {
    journal = new ScriptJournal();
    logLines('a', 1, ['before']);
    const first = journal.read('a').stream;
    for (const what of ['stopped', 'unloaded', 'moved', 'deleted', 'fenced'] as const) {
      logLines('a', 2, ['again']);
      publish<RoomLifecycleEvent>(channels.room, { roomId: 'a', game: 'g', version: 'v1', what });
      expect(journal.read('a')).toMatchObject({ stream: 'none', entries: [], next: 0 });
    }
    logLines('a', 3, ['after']);
    const page = journal.read('a');
    expect(page.stream).not.toBe(first);
    expect(page.entries).toMatchObject([{ seq: 1, text: 'after' }]);
    // Other lifecycle events leave it alone.
    publish<RoomLifecycleEvent>(channels.room, { roomId: 'a', game: 'g', version: 'v1', what: 'patch-applied' });
    expect(journal.read('a').entries).toHaveLength(1);
  });

  it('reading a room never seen keeps nothing, and a closed journal stops listening', () => {
    journal = new ScriptJournal();
    expect(journal.read('never')).toMatchObject({ stream: 'none', entries: [] });
    journal.close();
    logLines('never', 1, ['late']);
    expect(journal.read('never').entries).toEqual([]);
  });
});
