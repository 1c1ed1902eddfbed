/**
 * The dashboard feed's list of events (server/ops/dashboard-feed.ts), fed through the engine's
 * real event channels: hook errors of one room and version share an entry per window.
 */
import { describe, expect, it } from 'vitest';
import { channels, publish, type RoomLifecycleEvent, type ScriptOutputEvent, type TickCommittedEvent, type TickFailedEvent } from '../../server/ops/events.ts';
import { DashboardFeed, EVENT_LIMIT, REFUSALS_WINDOW_MS } from '../../server/ops/dashboard-feed.ts';

const thrown = { name: 'TypeError', message: 'boom', stack: '', code: null };
const hookError = (roomId: string, version: string, tick: number) =>
  publish<ScriptOutputEvent>(channels.script, { roomId, game: 'g', version, tick, kind: 'hook-error', hook: 'input', playerId: 'p', code: 'SCRIPT_ERROR', thrown });

describe('dashboard feed: events refused by the scripts', () => {
  it('counts a room and version\'s hook errors in one entry per window, and never floods the list', () => {
    let now = 1_000_000;
    const feed = new DashboardFeed(() => now);
    try {
      for (let i = 0; i < EVENT_LIMIT * 2; i++) hookError('r1', 'v1', i);
      hookError('r1', 'v2', 7); // another version: its own entry
      hookError('r2', 'v1', 7); // another room: its own entry
      let events = feed.snapshot([]).events.filter((e) => e.what === 'events-refused');
      expect(events.map((e) => [e.roomId, e.version, e.count])).toEqual([['r1', 'v1', EVENT_LIMIT * 2], ['r1', 'v2', 1], ['r2', 'v1', 1]]);
      expect(events[0]).toMatchObject({ kind: 'error', code: 'SCRIPT_ERROR', message: 'TypeError: boom', tick: 0 });

      now += REFUSALS_WINDOW_MS; // a new window: a new entry
      hookError('r1', 'v1', 500);
      events = feed.snapshot([]).events.filter((e) => e.what === 'events-refused' && e.roomId === 'r1' && e.version === 'v1');
      expect(events.map((e) => e.count)).toEqual([EVENT_LIMIT * 2, 1]);

      // Log lines are not errors; a stopped room starts a new entry when it runs again.
      publish<ScriptOutputEvent>(channels.script, { roomId: 'r1', game: 'g', version: 'v1', tick: 501, kind: 'log', lines: ['hi'] });
      publish<RoomLifecycleEvent>(channels.room, { roomId: 'r1', game: 'g', version: 'v1', what: 'stopped' });
      hookError('r1', 'v1', 1);
      events = feed.snapshot([]).events.filter((e) => e.what === 'events-refused' && e.roomId === 'r1' && e.version === 'v1');
      expect(events.map((e) => e.count)).toEqual([EVENT_LIMIT * 2, 1, 1]);
    } finally {
      feed.close();
    }
  });
});

/** A feed on a fixed clock for the length of `check`. */
function withFeed(check: (feed: DashboardFeed) => void): void {
  const feed = new DashboardFeed(() => 1_000);
  try {
    check(feed);
  } finally {
    feed.close();
  }
}

describe('dashboard feed: room events', () => {
  it('lists an expelled player as an error, moves as room events, and leaves out the rest of a room\'s life', () => {
    withFeed((feed) => {
      for (const what of ['started', 'player-expelled', 'moved', 'sandbox-rebuilt', 'patch-applied'] as const) {
        publish<RoomLifecycleEvent>(channels.room, { roomId: 'r9', game: 'g', version: 'v', what, detail: `${what} detail` });
      }
      const events = feed.snapshot([]).events.filter((e) => e.roomId === 'r9');
      expect(events.map((e) => [e.what, e.kind])).toEqual([['player-expelled', 'error'], ['moved', 'room'], ['patch-applied', 'patch']]);
      expect(events[0]!.detail).toBe('player-expelled detail');
    });
  });
});

describe('dashboard feed: failed ticks', () => {
  it('names the player a tick stopped in, when it stopped in a player\'s hook', () => {
    withFeed((feed) => {
      const failed = (culprit?: TickFailedEvent['culprit']) =>
        publish<TickFailedEvent>(channels.tickFailed, {
          roomId: 'rf', game: 'g', version: 'v', tick: 7, code: 'CPU_BUDGET_EXCEEDED', thrown: null, scriptMs: 150, rollbackMs: 1, isolateRebuilt: false, ...(culprit ? { culprit } : {}),
        });
      failed({ kind: 'input', playerId: 'p1', seq: 42 });
      failed({ kind: 'leave', playerId: 'p2' });
      failed();
      const events = feed.snapshot([]).events.filter((e) => e.roomId === 'rf');
      expect(events.map((e) => [e.what, e.code, e.detail])).toEqual([
        ['tick-failed', 'CPU_BUDGET_EXCEEDED', "stopped in player p1's input 42"],
        ['tick-failed', 'CPU_BUDGET_EXCEEDED', "stopped in player p2's leave"],
        ['tick-failed', 'CPU_BUDGET_EXCEEDED', undefined],
      ]);
    });
  });
});

describe('dashboard feed: the latency series', () => {
  const tick = (lateMs: number, ms: number) =>
    publish<TickCommittedEvent>(channels.tickCommitted, {
      roomId: 'r', game: 'g', version: 'v', tick: 1, scriptMs: ms, cpuMs: ms, inline: false, reruns: 0, commitMs: 0, totalMs: ms, lateMs,
      records: 0, dels: 0, writes: 0, events: 0, rejections: 0,
    });

  it('carries the worst tick lateness of each second beside the durations', () => {
    let now = 2_000_000;
    const feed = new DashboardFeed(() => now);
    try {
      tick(0.4, 1);
      tick(230, 1); // a hitch: this tick started 230 ms late, its duration normal
      tick(3, 2);
      now += 1000;
      tick(1.5, 1);
      now += 1000;
      const [first, second] = feed.snapshot([]).series;
      expect(first).toMatchObject({ t: 2_000_000, ticks: 3, late: 230, p99: 2 });
      expect(second).toMatchObject({ t: 2_001_000, ticks: 1, late: 1.5 });
    } finally {
      feed.close();
    }
  });
});
