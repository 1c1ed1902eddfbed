/**
 * The servers of one deployment (sharing a Redis prefix), as the admin API sees them.
 *
 * Each server writes what it runs to Redis every couple of seconds: a key per server with a TTL
 * of a few beats, so a server that dies drops out on its own, and a set naming them. Any server
 * can then list every room of the deployment (GET /admin/rooms?scope=cluster), which is what
 * `moonpatch status`, `push --all`, `--canary`, `promote` and `abort` work from. An admin request
 * about a room that another server runs is forwarded to that server (see admin-api.ts), so one
 * address reaches every room.
 */
import type { Redis } from 'ioredis';
import type { RoomStatus } from '../room/room-manager.ts';
import type { SeriesPoint } from '../ops/dashboard-feed.ts';
import { channels, type RoomLifecycleEvent } from '../ops/events.ts';
import { nodeKey, nodesKey } from '../state/keys.ts';
import type { LeaseHolder } from '../state/room-store.ts';

/** Room events that change which rooms a server runs (see NodeDirectory.onRoomEvent). */
const ROOM_SET_CHANGES = new Set<RoomLifecycleEvent['what']>(['started', 'stopped', 'unloaded', 'moved', 'deleted', 'fenced']);

/** A room as listed cluster-wide: its status, and the server running it. */
export type ClusterRoom = RoomStatus & { node: string };

interface Beat {
  node: string;
  url: string;
  at: number;
  rooms: RoomStatus[];
  /** The server's last few whole seconds of tick latency, DashboardFeed.recent (absent from older servers' beats). */
  latency?: SeriesPoint[];
}

/** What one read of the beats gives: every room, and each other server's recent latency. */
export interface ClusterView {
  /** Every live server's node id, this one first (a server with no rooms is listed too). */
  nodes: string[];
  /** When each other server wrote the status this view read of it (ms since the epoch). */
  beatAt: Map<string, number>;
  rooms: ClusterRoom[];
  latency: { node: string; points: SeriesPoint[] }[];
}

export class NodeDirectory {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly self: () => LeaseHolder,
    private readonly status: () => RoomStatus[],
    private readonly latency: () => SeriesPoint[] = () => [],
    private readonly intervalMs = 2000,
  ) {}

  start(): void {
    if (this.timer) return;
    const beat = () => void this.beat().catch(() => {}); // Redis trouble: the next beat retries
    beat();
    this.timer = setInterval(beat, this.intervalMs);
    this.timer.unref();
    channels.room.subscribe(this.onRoomEvent);
  }

  /**
   * A room started, stopped, moved or went away here: write the status now rather than at the
   * next beat, so the other servers (their rebalancers, the command line) see it within
   * milliseconds. Several events in a row make one write.
   */
  private readonly onRoomEvent = (m: unknown): void => {
    const what = (m as RoomLifecycleEvent).what;
    if (!ROOM_SET_CHANGES.has(what) || !this.timer || this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = null;
      if (this.timer) void this.beat().catch(() => {});
    }, 20);
    this.soon.unref();
  };

  private soon: NodeJS.Timeout | null = null;

  /** Write this server's rooms; they stay listed for three beats unless written again. */
  async beat(): Promise<void> {
    const { node, url } = this.self();
    const beat: Beat = { node, url, at: Date.now(), rooms: this.status(), latency: this.latency() };
    await this.redis.multi().set(nodeKey(this.prefix, node), JSON.stringify(beat), 'PX', this.intervalMs * 3).sadd(nodesKey(this.prefix), node).exec();
  }

  /** Stop writing, and leave the list at once (a clean shutdown). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    channels.room.unsubscribe(this.onRoomEvent);
    if (this.soon) clearTimeout(this.soon);
    this.soon = null;
    const { node } = this.self();
    await this.redis.multi().del(nodeKey(this.prefix, node)).srem(nodesKey(this.prefix), node).exec();
  }

  /**
   * Every room of every live server, each with its server's node id. This server's rooms are
   * its current ones, not its last beat's. A server whose key lapsed is dropped from the set.
   */
  async rooms(): Promise<ClusterRoom[]> {
    return (await this.view()).rooms;
  }

  /** The address (lease URL) of a live server of the deployment, by node id; null if none. */
  async urlOf(node: string): Promise<string | null> {
    const raw = await this.redis.get(nodeKey(this.prefix, node));
    const beat = raw === null ? null : parseBeat(raw);
    return beat && beat.node === node && typeof beat.url === 'string' ? beat.url : null;
  }

  /** {@link rooms}, and the latency each other live server last reported (for the dashboard). */
  async view(): Promise<ClusterView> {
    const me = this.self().node;
    const view: ClusterView = { nodes: [me], beatAt: new Map(), rooms: this.status().map((r) => ({ ...r, node: me })), latency: [] };
    const nodes = (await this.redis.smembers(nodesKey(this.prefix))).filter((n) => n !== me);
    if (nodes.length === 0) return view;
    const beats = await this.redis.mget(nodes.map((n) => nodeKey(this.prefix, n)));
    const gone: string[] = [];
    beats.forEach((raw, i) => {
      if (raw === null) return void gone.push(nodes[i]!);
      const beat = parseBeat(raw);
      // Not one of ours (an older server, or something else wrote the key): leave it out.
      if (!beat) return;
      view.nodes.push(beat.node);
      view.beatAt.set(beat.node, typeof beat.at === 'number' ? beat.at : 0);
      for (const r of beat.rooms) view.rooms.push({ ...r, node: beat.node });
      if (beat.latency) view.latency.push({ node: beat.node, points: beat.latency });
    });
    if (gone.length > 0) await this.redis.srem(nodesKey(this.prefix), ...gone);
    return view;
  }
}

function parseBeat(raw: string): Beat | null {
  try {
    const b = JSON.parse(raw) as Partial<Beat> | null;
    if (!b || typeof b.node !== 'string' || !Array.isArray(b.rooms)) return null;
    // Latency is only drawn: points that are not what they should be are dropped, not trusted.
    if (b.latency !== undefined) b.latency = Array.isArray(b.latency) ? b.latency.filter(isSeriesPoint) : undefined;
    return b as Beat;
  } catch {
    return null;
  }
}

function isSeriesPoint(p: unknown): p is SeriesPoint {
  const q = p as Partial<SeriesPoint> | null;
  return !!q && [q.t, q.p50, q.p99, q.ticks, q.failed].every((v) => typeof v === 'number' && Number.isFinite(v));
}

/** The admin API's base URL of a server, from the address its lease names (ws -> http). */
export function adminBaseUrl(leaseUrl: string): string | null {
  const m = /^(wss?):\/\/([^/\s]+)/.exec(leaseUrl);
  if (!m) return null;
  return `${m[1] === 'wss' ? 'https' : 'http'}://${m[2]}`;
}

/** What a server's load is weighed by (REBALANCE_BY): see room/rebalancer.ts. */
export type LoadMeasure = 'players' | 'rooms' | 'cpu';

/** What a room's weight is read from: its status, or the room itself on its own server. */
export interface WeighedRoom {
  connected?: number;
  /** Cores the room used lately (room/load-meter.ts). */
  cpuCores?: number;
}

/**
 * What a room adds to its server's load: one per room; by players its connected players plus
 * one (an empty room still ticks); by cpu the thousandths of a core it used lately, at least
 * one. A figure that is not one (a status from elsewhere, or an older server's without
 * `cpuCores`) counts as nothing, leaving the one.
 */
export function roomWeight(by: LoadMeasure, room: WeighedRoom): number {
  if (by === 'rooms') return 1;
  if (by === 'cpu') {
    const c = room.cpuCores;
    return typeof c === 'number' && Number.isFinite(c) && c > 0.001 ? Math.round(c * 10_000) / 10 : 1;
  }
  const n = room.connected;
  return 1 + (Number.isSafeInteger(n) && n! > 0 ? n! : 0);
}

/**
 * The load of each live server other than `me`, as a ClusterView shows its rooms (a server
 * without rooms carries 0): what the rebalancer and the drain (room/drain.ts) compare.
 */
export function loadPerServer(view: { nodes: readonly string[]; rooms: readonly (WeighedRoom & { node: string })[] }, me: string, by: LoadMeasure): Map<string, number> {
  const loads = new Map<string, number>();
  for (const n of view.nodes) if (n !== me) loads.set(n, 0);
  for (const r of view.rooms) if (loads.has(r.node)) loads.set(r.node, loads.get(r.node)! + roomWeight(by, r));
  return loads;
}
