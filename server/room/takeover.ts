/**
 * Takes over rooms whose owner died: every so often, each room in Redis that no server holds a
 * lease on (its owner's lease lapsed without a clean shutdown) and that this server is not
 * running is opened here, which claims it (see RoomStore.claim). Several servers may sweep at
 * once; the claim is atomic, so exactly one of them gets each room and the others are told it
 * is owned elsewhere.
 *
 * Cost: one SMEMBERS plus one GET per room not running here, per sweep. Fine for thousands of
 * rooms; beyond that, sweep a sorted set of lease deadlines instead.
 */
import type { Logger } from 'pino';
import { MoonpatchError, RoomOwnedElsewhereError } from '../errors/errors.ts';
import type { RoomStore } from '../state/room-store.ts';
import type { RoomManager } from './room-manager.ts';

export class OrphanTakeover {
  private timer: NodeJS.Timeout | null = null;
  private sweeping = false;

  constructor(
    private readonly store: RoomStore,
    private readonly rooms: RoomManager,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sweep(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One pass; returns the rooms taken over. */
  async sweep(): Promise<string[]> {
    if (this.sweeping) return [];
    this.sweeping = true;
    const taken: string[] = [];
    try {
      for (const id of await this.store.listRooms()) {
        if (this.rooms.get(id) || this.rooms.isClosing) continue;
        if (await this.store.leaseOf(id)) continue;
        // No lease, but perhaps because it was unloaded as idle since the list was read: an
        // unload takes the room off the index before it hands the lease back, so a room still
        // listed now that its lease is gone is an orphan. (Without this, a sweep that read the
        // list just before an unload reopened the idle room straight away.)
        if (!(await this.store.isListed(id))) continue;
        try {
          await this.rooms.open(id);
          taken.push(id);
          this.log.warn({ roomId: id }, 'took over a room whose owner stopped renewing its lease');
        } catch (e) {
          if (e instanceof MoonpatchError && e.code === 'ROOM_LIMIT') {
            // This server is full: leave the rest of the orphans to servers with room to spare.
            this.log.warn({ roomId: id, code: e.code }, 'at maxRooms; not taking over orphaned rooms');
            break;
          }
          // A room a newer moonpatch stores is left to it (it takes the room over itself).
          if (e instanceof MoonpatchError && e.code === 'ROOM_FORMAT_NEWER') this.log.warn({ roomId: id, code: e.code }, e.message);
          else if (!(e instanceof RoomOwnedElsewhereError)) this.log.error({ roomId: id, err: e }, 'could not take over an orphaned room');
        }
      }
    } catch (e) {
      this.log.warn({ err: e }, 'takeover sweep failed; will try again');
    } finally {
      this.sweeping = false;
    }
    return taken;
  }
}
