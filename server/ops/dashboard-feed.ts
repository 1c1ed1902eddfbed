/**
 * What the live ops dashboard (`GET /dashboard`) shows, fed by the engine's diagnostics channels
 * like Metrics: per second, for the last 300 seconds, tick latency p50/p99 across all rooms
 * (script + commit, from committed ticks), ticks and failed ticks; and the last 50 events of
 * interest (patch outcomes and failed ticks).
 */
import { channels, type RoomLifecycleEvent, type TickCommittedEvent, type TickFailedEvent } from './events.ts';
import type { RoomStatus } from '../room/room-manager.ts';

export const SERIES_SECONDS = 300;
export const EVENT_LIMIT = 50;
/** Latency samples kept per second (reservoir-sampled beyond this). */
const SAMPLES_PER_SECOND = 4096;

export interface SeriesPoint {
  /** Start of the second, ms since the epoch. */
  t: number;
  p50: number;
  p99: number;
  ticks: number;
  failed: number;
}

export interface DashboardEvent {
  /** ms since the epoch. */
  time: number;
  kind: 'patch' | 'error';
  roomId: string;
  game: string;
  version: string;
  /** 'patch-applied' | 'patch-refused' | ... for patches, 'tick-failed' for errors. */
  what: string;
  detail?: string;
  tick?: number;
  code?: string;
  message?: string;
}

export interface DashboardSnapshot {
  now: number;
  series: SeriesPoint[];
  events: DashboardEvent[];
  /** Every server's rooms, each with the node running it (net/cluster.ts). */
  rooms: (RoomStatus & { node?: string })[];
}

interface Bucket {
  second: number;
  samples: number[];
  ticks: number;
  failed: number;
  /** Percentiles, computed once the second is over. */
  done: { p50: number; p99: number } | null;
}

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

export class DashboardFeed {
  private readonly buckets: (Bucket | undefined)[] = new Array(SERIES_SECONDS);
  private readonly events: DashboardEvent[] = [];
  private readonly unsubscribe: (() => void)[] = [];

  constructor(private readonly clock: () => number = Date.now) {
    this.on(channels.tickCommitted, (e: TickCommittedEvent) => {
      const b = this.bucket();
      b.ticks++;
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
      });
    });
    this.on(channels.room, (e: RoomLifecycleEvent) => {
      if (!e.what.startsWith('patch-')) return;
      this.push({
        time: this.clock(),
        kind: 'patch',
        roomId: e.roomId,
        game: e.game,
        version: e.version,
        what: e.what,
        ...(e.detail !== undefined ? { detail: e.detail } : {}),
      });
    });
  }

  private on<T>(channel: { subscribe(fn: (m: unknown) => void): void; unsubscribe(fn: (m: unknown) => void): void }, fn: (e: T) => void): void {
    const handler = (m: unknown) => fn(m as T);
    channel.subscribe(handler);
    this.unsubscribe.push(() => channel.unsubscribe(handler));
  }

  /** The bucket of the current second (recycling the slot of the second 300 s ago). */
  private bucket(): Bucket {
    const second = Math.floor(this.clock() / 1000);
    const slot = second % SERIES_SECONDS;
    let b = this.buckets[slot];
    if (!b || b.second !== second) {
      b = { second, samples: [], ticks: 0, failed: 0, done: null };
      this.buckets[slot] = b;
    }
    return b;
  }

  private push(e: DashboardEvent): void {
    this.events.push(e);
    if (this.events.length > EVENT_LIMIT) this.events.splice(0, this.events.length - EVENT_LIMIT);
  }

  snapshot(rooms: (RoomStatus & { node?: string })[]): DashboardSnapshot {
    const now = this.clock();
    const current = Math.floor(now / 1000);
    const series: SeriesPoint[] = [];
    for (const b of this.buckets) {
      if (!b || b.second <= current - SERIES_SECONDS || b.second > current) continue;
      let p: { p50: number; p99: number };
      if (b.done) p = b.done;
      else {
        const sorted = [...b.samples].sort((x, y) => x - y);
        p = { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) };
        // A finished second never changes again: keep its figures, drop its samples.
        if (b.second < current) {
          b.done = p;
          b.samples = [];
        }
      }
      series.push({ t: b.second * 1000, p50: round(p.p50), p99: round(p.p99), ticks: b.ticks, failed: b.failed });
    }
    series.sort((a, b) => a.t - b.t);
    return { now, series, events: [...this.events], rooms };
  }

  close(): void {
    for (const u of this.unsubscribe) u();
    this.unsubscribe.length = 0;
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
