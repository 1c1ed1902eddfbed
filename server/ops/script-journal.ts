/**
 * What each room's scripts said lately, for the designers: the lines they logged and the errors
 * they threw (a hook whose event was undone, a tick rolled back), stacks mapped to their source
 * files. `moonpatch logs --room ID [--follow]` reads it through the admin API, so a designer
 * sees a live room's output without access to the servers' logs (which carry the same lines).
 *
 * Kept in memory on the server that runs the room, from the engine's events (ops/events.ts),
 * and only while the room runs here: a room that stops, unloads or moves takes its journal with
 * it. Bounded: the newest {@link ENTRIES_PER_ROOM} entries per room, each text cut to
 * {@link MAX_TEXT_CHARS}. Entries are numbered per room from 1; a reader asks for those after the
 * last number it saw. The numbering restarts when the room starts again (here or elsewhere), so
 * each room's journal has a random `stream` id: a reader that sees it change starts over.
 */
import { randomBytes } from 'node:crypto';
import { channels, subscribe, type RoomLifecycleEvent, type ScriptOutputEvent, type TickFailedEvent } from './events.ts';

export const ENTRIES_PER_ROOM = 200;
export const MAX_TEXT_CHARS = 2000;
/** The most entries one read returns. */
export const MAX_READ = ENTRIES_PER_ROOM;

export interface JournalEntry {
  seq: number;
  /** ms since epoch */
  at: number;
  tick: number;
  version: string;
  /** 'log': a line the script logged; 'hook-error': a join/input/leave hook threw, its event undone; 'tick-failed': the whole tick was rolled back. */
  kind: 'log' | 'hook-error' | 'tick-failed';
  /** The line, or the error as `Name: message`. */
  text: string;
  /** The error's code (SCRIPT_ERROR, CPU_BUDGET_EXCEEDED, MEMORY_LIMIT...). */
  code?: string;
  hook?: string;
  playerId?: string;
  /** The script's stack, mapped to its source files. */
  stack?: string;
}

export interface JournalPage {
  /** Changes whenever the room's numbering starts over (see the module comment). */
  stream: string;
  /** Entries after `after`, oldest first. */
  entries: JournalEntry[];
  /** The number to ask after next time. */
  next: number;
  /** Entries older than those kept were dropped: the reader may have missed some. */
  truncated: boolean;
}

/** Lifecycle events after which the room no longer runs on this server. */
const GONE = new Set<RoomLifecycleEvent['what']>(['stopped', 'unloaded', 'moved', 'deleted', 'fenced']);

class RoomJournal {
  readonly stream = randomBytes(6).toString('hex');
  /** A ring of ENTRIES_PER_ROOM slots; `last` is the seq of the newest entry. */
  private readonly ring: (JournalEntry | undefined)[] = new Array(ENTRIES_PER_ROOM);
  private last = 0;

  add(entry: Omit<JournalEntry, 'seq'>): void {
    this.last++;
    this.ring[this.last % ENTRIES_PER_ROOM] = { seq: this.last, ...entry };
  }

  read(after: number, limit: number): JournalPage {
    const oldest = Math.max(1, this.last - ENTRIES_PER_ROOM + 1);
    // A number from another stream (or from the future) reads from the oldest kept.
    const from = after >= 0 && after <= this.last ? Math.max(after + 1, oldest) : oldest;
    const entries: JournalEntry[] = [];
    for (let seq = from; seq <= this.last && entries.length < limit; seq++) entries.push(this.ring[seq % ENTRIES_PER_ROOM]!);
    const next = entries.length > 0 ? entries[entries.length - 1]!.seq : Math.min(Math.max(after, 0), this.last);
    return { stream: this.stream, entries, next, truncated: from > after + 1 && after < this.last };
  }
}

const cut = (s: string) => (s.length > MAX_TEXT_CHARS ? s.slice(0, MAX_TEXT_CHARS) + '…' : s);

export class ScriptJournal {
  private readonly rooms = new Map<string, RoomJournal>();
  private readonly unsubscribe: (() => void)[] = [];

  constructor(private readonly clock: () => number = Date.now) {
    this.unsubscribe.push(
      subscribe<ScriptOutputEvent>(channels.script, (e) => {
        const journal = this.journal(e.roomId);
        const at = this.clock();
        if (e.kind === 'log') {
          for (const line of e.lines) journal.add({ at, tick: e.tick, version: e.version, kind: 'log', text: cut(line) });
        } else {
          journal.add({ at, tick: e.tick, version: e.version, kind: 'hook-error', text: cut(`${e.thrown.name}: ${e.thrown.message}`), code: e.code, hook: e.hook, playerId: e.playerId, stack: cut(e.thrown.stack) });
        }
      }),
      subscribe<TickFailedEvent>(channels.tickFailed, (e) => {
        const text = e.thrown ? `${e.thrown.name}: ${e.thrown.message}` : e.code;
        this.journal(e.roomId).add({ at: this.clock(), tick: e.tick, version: e.version, kind: 'tick-failed', text: cut(text), code: e.code, ...(e.thrown?.stack ? { stack: cut(e.thrown.stack) } : {}) });
      }),
      subscribe<RoomLifecycleEvent>(channels.room, (e) => {
        if (GONE.has(e.what)) this.rooms.delete(e.roomId);
      }),
    );
  }

  private journal(roomId: string): RoomJournal {
    let j = this.rooms.get(roomId);
    if (!j) this.rooms.set(roomId, (j = new RoomJournal()));
    return j;
  }

  /** The room's entries after `after` (0: all kept), at most `limit`. */
  read(roomId: string, after = 0, limit = MAX_READ): JournalPage {
    // Reading never creates a journal: only a running room's events do (and its end removes it).
    const journal = this.rooms.get(roomId);
    if (!journal) return { stream: 'none', entries: [], next: 0, truncated: false };
    return journal.read(after, Math.max(1, Math.min(limit, MAX_READ)));
  }

  close(): void {
    for (const u of this.unsubscribe) u();
    this.unsubscribe.length = 0;
  }
}
