/**
 * Draining a server that is stopping (a rolling restart, a scale-down): before its rooms stop,
 * each is handed to another live server, the same hand-over as an admin move
 * (RoomManager.moveRoom). Its players are closed with 4005, reconnect to this server (still
 * listening), are redirected to the new owner and resume their seats there at once, instead of
 * being closed with 4000 and waiting for this server to come back or for a takeover.
 *
 * Rooms go to the least loaded servers (by players or rooms, as the rebalancer weighs them:
 * REBALANCE_BY), heaviest first, each to the one least loaded at that point. Moves run a few at
 * a time until a deadline; the rooms not moved by then stop as before (their leases handed
 * back, so any server can take them). A move a target refuses leaves that room to the same
 * fallback. Off with DRAIN_ON_SHUTDOWN=0; without an admin token (moves go through the
 * targets' admin API) or another live server there is nothing to do.
 */
import type { Logger } from 'pino';

/** Moves in flight at once: each costs the target an isolate build and a state load. */
const CONCURRENT_MOVES = 4;

/**
 * Which server each room goes to: the heaviest room first, each to the server least loaded at
 * that moment, counting the rooms given before it (ties: the lowest node id). Empty when there
 * is no other server.
 */
export function assignTargets(rooms: readonly { id: string; weight: number }[], otherServers: ReadonlyMap<string, number>): Map<string, string> {
  const load = [...otherServers].sort(([a], [b]) => a.localeCompare(b));
  const out = new Map<string, string>();
  if (load.length === 0) return out;
  for (const room of [...rooms].sort((a, b) => b.weight - a.weight)) {
    let best = 0;
    for (let i = 1; i < load.length; i++) if (load[i]![1] < load[best]![1]) best = i;
    out.set(room.id, load[best]![0]);
    load[best]![1] += room.weight;
  }
  return out;
}

export interface DrainResult {
  moved: string[];
  /** Rooms whose move failed, and rooms not tried before the deadline. */
  left: string[];
}

/** Move each room to its assigned server, a few at a time, starting none after `deadline` (ms since epoch). */
export async function drainRooms(
  targets: ReadonlyMap<string, string>,
  move: (roomId: string, to: string) => Promise<unknown>,
  deadline: number,
  log: Logger,
): Promise<DrainResult> {
  const queue = [...targets];
  const result: DrainResult = { moved: [], left: [] };
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const [room, to] = next;
      if (Date.now() >= deadline) {
        result.left.push(room);
        continue;
      }
      try {
        await move(room, to);
        result.moved.push(room);
      } catch (e) {
        log.warn({ roomId: room, to, err: e }, 'drain: could not hand the room over; it stops here and any server may take it');
        result.left.push(room);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENT_MOVES, queue.length) }, worker));
  return result;
}
