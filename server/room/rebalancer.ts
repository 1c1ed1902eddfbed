/**
 * Spreads rooms over the servers of a deployment, when turned on (REBALANCE_INTERVAL_MS > 0).
 *
 * Rooms land on whichever server claims them first: a server that joins a running deployment
 * gets only new rooms, and after a server dies its rooms all go to whoever swept first. Every
 * interval, each server compares its load with the least loaded live server's (from the
 * servers' status in Redis, net/cluster.ts); when it carries clearly more, it moves one room
 * there, the same hand-over as an admin move (RoomManager.moveRoom): its players reconnect and
 * resume their seats on the other server.
 *
 * Load (REBALANCE_BY): by "players" (the default), a room weighs its connected players plus
 * one, an empty room still ticking; by "rooms", every room weighs one. Players are what a
 * server's time goes to (its sockets and the scripts' work grow with them: docs/performance.md),
 * so ten full rooms against ten empty ones is an imbalance that counting rooms cannot see. By
 * "cpu", a room weighs the thousandths of a core it used lately (load-meter.ts, in every room's
 * status): what players cannot see, a game whose script costs ten times another's, or a world
 * ten times the size. It lags a change by seconds and moves with the machine's noise, which
 * the gap below absorbs.
 *
 * Which room: the one whose move leaves the two servers closest to even, then the one with the
 * fewest connected players (the fewest people see the reconnect), then the lowest id; only a
 * move that narrows the gap (a room weighing less than the gap), so two servers never hand a
 * room back and forth; never one in the middle of a live patch. A move waits for a gap of at
 * least two (by cpu, 50: a twentieth of a core), and by players or cpu also a tenth of this
 * server's load, so that players coming and going, or a noisy measure, do not keep rooms
 * moving. One move per pass and per server, so a new server fills up
 * gradually. The other servers' loads come from their status in Redis, written every 2 s and
 * whenever a room starts or stops there: a room this server moved counts for its new server
 * until that server's status shows it, so back-to-back passes do not pile rooms onto one
 * server.
 */
import type { Logger } from 'pino';
import { loadPerServer, roomWeight, type LoadMeasure, type NodeDirectory, type WeighedRoom } from '../net/cluster.ts';
import type { RoomManager } from './room-manager.ts';

/** A server moves a room only when its load is at least this much over the least loaded one's... */
const MIN_GAP: Record<LoadMeasure, number> = { rooms: 2, players: 2, cpu: 50 };
/** ...and, by players or cpu, at least this share of its own load. */
const MIN_GAP_SHARE = 0.1;

export interface RebalanceMove {
  room: string;
  to: string;
  /** What the room weighed (roomWeight): its load moves with it. */
  weight: number;
}

export class Rebalancer {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  /** Rooms this server moved, to count for their new server until its status shows them. */
  private moved: { to: string; at: number; weight: number }[] = [];
  /**
   * Servers a move to failed, and until when they are left alone: a failed move still closes
   * the room's players (they resume here), so retrying the same server every pass would make
   * them reconnect every pass.
   */
  private readonly failed = new Map<string, number>();

  constructor(
    private readonly nodes: NodeDirectory,
    private readonly rooms: RoomManager,
    /** Hand a room to another server (the admin move: net/room-move.ts). */
    private readonly move: (roomId: string, to: string) => Promise<unknown>,
    private readonly self: () => string,
    private readonly intervalMs: number,
    private readonly log: Logger,
    private readonly by: LoadMeasure = 'players',
  ) {}

  start(): void {
    if (this.timer || this.intervalMs <= 0) return;
    this.timer = setInterval(() => void this.pass(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One pass: the move it made, or null. Never throws (a failed move is logged). */
  async pass(): Promise<RebalanceMove | null> {
    if (this.running || this.rooms.isClosing) return null;
    this.running = true;
    let choice: RebalanceMove | null = null;
    try {
      choice = await this.choose();
      if (!choice) return null;
      const at = Date.now();
      await this.move(choice.room, choice.to);
      this.moved.push({ to: choice.to, at, weight: choice.weight });
      this.log.info({ roomId: choice.room, to: choice.to, weight: choice.weight, by: this.by }, 'rebalanced: room moved to a less loaded server');
      return choice;
    } catch (e) {
      if (choice) this.failed.set(choice.to, Date.now() + Math.max(60_000, 10 * this.intervalMs));
      this.log.warn({ err: e, roomId: choice?.room, to: choice?.to }, 'rebalancing move failed; that server is left alone for a while');
      return null;
    } finally {
      this.running = false;
    }
  }

  /** The servers still left alone after a failed move (forgetting those whose time is up). */
  private avoided(): Set<string> {
    const now = Date.now();
    for (const [node, until] of this.failed) if (until <= now) this.failed.delete(node);
    return new Set(this.failed.keys());
  }

  private async choose(): Promise<RebalanceMove | null> {
    const view = await this.nodes.view();
    // Moves the target's status does not show yet (written before the move) still count for it.
    this.moved = this.moved.filter((m) => (view.beatAt.get(m.to) ?? Infinity) <= m.at);
    const mine = this.rooms.list().filter((r) => !r.isStopped);
    return pickMove(
      this.self(),
      view,
      mine.map((r) => ({ id: r.id, connected: r.connectedCount, cpuCores: r.cpuCores, switching: r.isSwitchingVersion })),
      this.moved,
      this.avoided(),
      this.by,
    );
  }
}

/** One of this server's rooms, as the choice sees it. */
export interface LocalRoom {
  id: string;
  connected: number;
  /** Cores it used lately (load-meter.ts); only weighed by cpu. */
  cpuCores?: number;
  /** In the middle of a live patch: not moved. */
  switching: boolean;
}

/**
 * The move a pass should make, or null: the policy of the class comment, on data alone.
 * `moved`: this server's recent moves that the target's status may not show yet; `avoid`:
 * servers not to move to (a move there failed lately).
 */
export function pickMove(
  me: string,
  view: { nodes: readonly string[]; rooms: readonly (WeighedRoom & { node: string })[] },
  mine: readonly LocalRoom[],
  moved: readonly { to: string; weight: number }[],
  avoid: ReadonlySet<string> = new Set(),
  by: LoadMeasure = 'players',
): RebalanceMove | null {
  const loads = loadPerServer(view, me, by);
  for (const m of moved) if (loads.has(m.to)) loads.set(m.to, loads.get(m.to)! + m.weight);
  let target: string | null = null;
  let least = Infinity;
  for (const [node, load] of [...loads].sort(([a], [b]) => a.localeCompare(b))) {
    if (!avoid.has(node) && load < least) {
      least = load;
      target = node;
    }
  }
  if (target === null) return null;
  // This server's own rooms, not its last status: they are current.
  let mineLoad = 0;
  for (const r of mine) mineLoad += roomWeight(by, r);
  const gap = mineLoad - least;
  if (gap < MIN_GAP[by] || (by !== 'rooms' && gap < mineLoad * MIN_GAP_SHARE)) return null;
  let best: { room: LocalRoom; weight: number; after: number } | null = null;
  for (const room of mine) {
    const weight = roomWeight(by, room);
    // Only a room lighter than the gap narrows it; one as heavy only turns it around.
    if (room.switching || weight >= gap) continue;
    const after = Math.abs(gap - 2 * weight);
    if (!best || after < best.after || (after === best.after && (room.connected < best.room.connected || (room.connected === best.room.connected && room.id < best.room.id)))) {
      best = { room, weight, after };
    }
  }
  return best && { room: best.room.id, to: target, weight: best.weight };
}
