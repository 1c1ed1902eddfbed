/**
 * What the live ops dashboard (`GET /dashboard`) shows, fed by the engine's diagnostics channels
 * like Metrics: per second, for the last 300 seconds, tick latency p50/p99 across all rooms
 * (script + commit, from committed ticks), ticks and failed ticks; and the last 50 events of
 * interest (patch outcomes, failed ticks, rooms moved to another server).
 *
 * With several servers on one Redis, each server's beat (net/cluster.ts) carries its last few
 * seconds of these figures ({@link DashboardFeed.recent}); the server a dashboard asks keeps
 * what it reads of the others' ({@link DashboardFeed.mergeServers}), so the chart shows every
 * server's latency, not only its own.
 */
import type diagnostics_channel from 'node:diagnostics_channel';
import { channels, subscribe, type RoomLifecycleEvent, type ScriptOutputEvent, type TickCommittedEvent, type TickFailedEvent } from './events.ts';
import { nearestRank } from './percentile.ts';
import type { RoomStatus } from '../room/room-manager.ts';

export const SERIES_SECONDS = 300;
export const EVENT_LIMIT = 50;
/**
 * Hook errors of one room and version within this long share one entry: a broken input hook
 * throws for every input, and one entry each would push everything else off the list.
 */
export const REFUSALS_WINDOW_MS = 10_000;
/** Latency samples kept per second (reservoir-sampled beyond this). */
const SAMPLES_PER_SECOND = 4096;

export interface SeriesPoint {
  /** Start of the second, ms since the epoch. */
  t: number;
  p50: number;
  p99: number;
  /**
   * The latest any tick of the second started against its slot, ms: hitches in the cadence
   * that tick durations do not show (a main thread blocked between ticks). Absent in beats
   * from servers older than this field.
   */
  late?: number;
  ticks: number;
  failed: number;
}

export interface DashboardEvent {
  /** ms since the epoch. */
  time: number;
  kind: 'patch' | 'error' | 'room';
  roomId: string;
  game: string;
  version: string;
  /**
   * 'patch-applied' | 'patch-refused' | ... for patches; 'tick-failed', or 'events-refused' (hooks
   * that threw, their events undone: one entry per room and version for every
   * {@link REFUSALS_WINDOW_MS}, counting them) or 'player-expelled' (close 4008) for errors; 'moved'
   * for a room moved to another server.
   */
  what: string;
  /** How many, for 'events-refused'. */
  count?: number;
  detail?: string;
  tick?: number;
  code?: string;
  message?: string;
}

/** Another server's latency, as far as its beats have told. */
export interface ServerSeries {
  node: string;
  series: SeriesPoint[];
}

export interface DashboardSnapshot {
  now: number;
  /** This server's node id (the rooms' `node`). */
  node: string;
  /** This server's latency. */
  series: SeriesPoint[];
  /** The other servers' latency (from their beats), by node id. */
  servers: ServerSeries[];
  events: DashboardEvent[];
  /** Every server's rooms, each with the node running it (net/cluster.ts). */
  rooms: (RoomStatus & { node?: string })[];
  /** Version numbers by bundle hash (GameRegistry.versionNumbers), to name events' versions. */
  versionNumbers: Record<string, number>;
}

interface Bucket {
  second: number;
  samples: number[];
  lateMax: number;
  ticks: number;
  failed: number;
  /** Percentiles, computed once the second is over. */
  done: { p50: number; p99: number } | null;
}

export class DashboardFeed {
  private readonly buckets: (Bucket | undefined)[] = new Array(SERIES_SECONDS);
  private readonly events: DashboardEvent[] = [];
  private readonly unsubscribe: (() => void)[] = [];
  /** The open 'events-refused' entry of each room and version (see REFUSALS_WINDOW_MS). */
  private readonly refusals = new Map<string, DashboardEvent>();

  constructor(private readonly clock: () => number = Date.now) {
    this.on(channels.tickCommitted, (e: TickCommittedEvent) => {
      const b = this.bucket();
      b.ticks++;
      if (e.lateMs > b.lateMax) b.lateMax = e.lateMs;
      const ms = e.scriptMs + e.commitMs;
      if (b.samples.length < SAMPLES_PER_SECOND) b.samples.push(ms);
      else {
        const i = Math.floor(Math.random() * b.ticks);
        if (i < SAMPLES_PER_SECOND) b.samples[i] = ms;
      }
    });
    this.on(channels.tickFailed, (e: TickFailedEvent) => {
      this.bucket().failed++;
      this.push({
        time: this.clock(),
        kind: 'error',
        roomId: e.roomId,
        game: e.game,
        version: e.version,
        what: 'tick-failed',
        tick: e.tick,
        code: e.code,
        ...(e.thrown ? { message: e.thrown.message } : {}),
        ...(e.culprit ? { detail: `stopped in player ${e.culprit.playerId}'s ${e.culprit.kind}${e.culprit.seq !== undefined ? ` ${e.culprit.seq}` : ''}` } : {}),
      });
    });
    this.on(channels.script, (e: ScriptOutputEvent) => {
      if (e.kind !== 'hook-error') return;
      const key = `${e.roomId} ${e.version}`;
      const open = this.refusals.get(key);
      const now = this.clock();
      if (open && now - open.time < REFUSALS_WINDOW_MS && this.events.includes(open)) {
        open.count = (open.count ?? 1) + 1;
        return;
      }
      const entry: DashboardEvent = {
        time: now, kind: 'error', roomId: e.roomId, game: e.game, version: e.version, what: 'events-refused',
        tick: e.tick, code: e.code, message: `${e.thrown.name}: ${e.thrown.message}`, count: 1,
      };
      this.refusals.set(key, entry);
      this.push(entry);
    });
    this.on(channels.room, (e: RoomLifecycleEvent) => {
      if (e.what === 'stopped') for (const key of this.refusals.keys()) if (key.startsWith(`${e.roomId} `)) this.refusals.delete(key);
      const patch = e.what.startsWith('patch-');
      const expelled = e.what === 'player-expelled';
      if (!patch && !expelled && e.what !== 'moved') return;
      this.push({
        time: this.clock(),
        kind: patch ? 'patch' : expelled ? 'error' : 'room',
        roomId: e.roomId,
        game: e.game,
        version: e.version,
        what: e.what,
        ...(e.detail !== undefined ? { detail: e.detail } : {}),
      });
    });
  }

  private on<T>(channel: diagnostics_channel.Channel, fn: (e: T) => void): void {
    this.unsubscribe.push(subscribe(channel, fn));
  }

  /** The bucket of the current second (recycling the slot of the second 300 s ago). */
  private bucket(): Bucket {
    const second = Math.floor(this.clock() / 1000);
    const slot = second % SERIES_SECONDS;
    let b = this.buckets[slot];
    if (!b || b.second !== second) {
      b = { second, samples: [], lateMax: 0, ticks: 0, failed: 0, done: null };
      this.buckets[slot] = b;
    }
    return b;
  }

  private push(e: DashboardEvent): void {
    this.events.push(e);
    if (this.events.length > EVENT_LIMIT) this.events.splice(0, this.events.length - EVENT_LIMIT);
  }

  /** Points of other servers, by node, then by second. */
  private readonly servers = new Map<string, Map<number, SeriesPoint>>();

  /** Keep what other servers' beats said of their latency (the same second again replaces it). */
  mergeServers(latency: { node: string; points: SeriesPoint[] }[]): void {
    for (const { node, points } of latency) {
      let byTime = this.servers.get(node);
      if (!byTime) this.servers.set(node, (byTime = new Map()));
      for (const p of points) byTime.set(p.t, p);
    }
  }

  /** This server's last `seconds` whole seconds with ticks (what its beat carries). */
  recent(seconds: number): SeriesPoint[] {
    const current = Math.floor(this.clock() / 1000) * 1000;
    return this.series().filter((p) => p.t < current && p.t >= current - seconds * 1000 && p.ticks > 0);
  }

  snapshot(rooms: (RoomStatus & { node?: string })[], node = '', versionNumbers: Record<string, number> = {}): DashboardSnapshot {
    const now = this.clock();
    const oldest = (Math.floor(now / 1000) - SERIES_SECONDS + 1) * 1000;
    const servers: ServerSeries[] = [];
    for (const [other, byTime] of this.servers) {
      for (const t of byTime.keys()) if (t < oldest) byTime.delete(t);
      if (byTime.size === 0 || other === node) {
        this.servers.delete(other);
        continue;
      }
      servers.push({ node: other, series: [...byTime.values()].sort((a, b) => a.t - b.t) });
    }
    servers.sort((a, b) => a.node.localeCompare(b.node));
    return { now, node, series: this.series(), servers, events: [...this.events], rooms, versionNumbers };
  }

  /** This server's points in the window, oldest first. */
  private series(): SeriesPoint[] {
    const now = this.clock();
    const current = Math.floor(now / 1000);
    const series: SeriesPoint[] = [];
    for (const b of this.buckets) {
      if (!b || b.second <= current - SERIES_SECONDS || b.second > current) continue;
      let p: { p50: number; p99: number };
      if (b.done) p = b.done;
      else {
        const sorted = [...b.samples].sort((x, y) => x - y);
        p = { p50: nearestRank(sorted, 0.5), p99: nearestRank(sorted, 0.99) };
        // A finished second never changes again: keep its figures, drop its samples.
        if (b.second < current) {
          b.done = p;
          b.samples = [];
        }
      }
      series.push({ t: b.second * 1000, p50: round(p.p50), p99: round(p.p99), late: round(b.lateMax), ticks: b.ticks, failed: b.failed });
    }
    series.sort((a, b) => a.t - b.t);
    return series;
  }

  close(): void {
    for (const u of this.unsubscribe) u();
    this.unsubscribe.length = 0;
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
