/**
 * Spreads rooms over the servers of a deployment, when turned on (REBALANCE_INTERVAL_MS > 0).
 *
 * Rooms land on whichever server claims them first: a server that joins a running deployment
 * gets only new rooms, and after a server dies its rooms all go to whoever swept first. Every
 * interval, each server compares the rooms it runs with the least loaded live server's (from
 * the servers' status in Redis, net/cluster.ts); when it runs at least two more, it moves one
 * room there, the same hand-over as an admin move (RoomManager.moveRoom): its players reconnect
 * and resume their seats on the other server.
 *
 * Which room: the one with the fewest connected players (the fewest people see the reconnect),
 * then the lowest id; never one in the middle of a live patch. One move per pass and per
 * server, so a new server fills up gradually; a move narrows the gap by two, so two servers
 * never hand the same room back and forth. The other servers' counts come from their status in
 * Redis, written every 2 s and whenever a room starts or stops there: a room this server moved
 * counts for its new server until that server's status shows it, so back-to-back passes do not
 * pile rooms onto one server. Rooms are counted, not players or CPU: rooms of one
 * game are alike enough for that, and a count is stable where player numbers are not.
 */
import type { Logger } from 'pino';
import { roomsPerServer, type NodeDirectory } from '../net/cluster.ts';
import type { RoomManager } from './room-manager.ts';

/** A server moves a room only when it runs at least this many more than the least loaded one. */
const MIN_GAP = 2;

export interface RebalanceMove {
  room: string;
  to: string;
}

export class Rebalancer {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  /** Rooms this server moved, to count for their new server until its status shows them. */
  private moved: { to: string; at: number }[] = [];
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
      this.moved.push({ to: choice.to, at });
      this.log.info({ roomId: choice.room, to: choice.to }, 'rebalanced: room moved to a less loaded server');
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
      mine.map((r) => ({ id: r.id, connected: r.connectedCount, switching: r.isSwitchingVersion })),
      this.moved,
      this.avoided(),
    );
  }
}

/** One of this server's rooms, as the choice sees it. */
export interface LocalRoom {
  id: string;
  connected: number;
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
  view: { nodes: readonly string[]; rooms: readonly { node: string }[] },
  mine: readonly LocalRoom[],
  moved: readonly { to: string }[],
  avoid: ReadonlySet<string> = new Set(),
): RebalanceMove | null {
  const counts = roomsPerServer(view, me);
  for (const m of moved) if (counts.has(m.to)) counts.set(m.to, counts.get(m.to)! + 1);
  let target: string | null = null;
  let least = Infinity;
  for (const [node, n] of [...counts].sort(([a], [b]) => a.localeCompare(b))) {
    if (!avoid.has(node) && n < least) {
      least = n;
      target = node;
    }
  }
  if (target === null || mine.length - least < MIN_GAP) return null;
  const room = mine.filter((r) => !r.switching).sort((a, b) => a.connected - b.connected || a.id.localeCompare(b.id))[0];
  return room ? { room: room.id, to: target } : null;
}
