/**
 * What each room's scripts said lately, for the designers: the lines they logged and the errors
 * they threw (a hook whose event was undone, a tick rolled back), stacks mapped to their source
 * files. `moonpatch logs --room ID [--follow]` reads it through the admin API, so a designer
 * sees a room's output without access to the servers' logs (which carry the same lines).
 *
 * Kept in Redis (state/journal-store.ts: a stream per room, the newest {@link JOURNAL_KEPT}
 * entries), so it outlives the server that wrote it: after a crash, the lines and errors that
 * led up to it are still there, a room that moves keeps one journal, and any server answers a
 * read. This server collects its rooms' entries from the engine's events (ops/events.ts) and
 * appends them every {@link FLUSH_MS} ms (JOURNAL_FLUSH_MS), all rooms in one round trip, off the
 * tick path. When a room's script aborts the process, the dying process appends the crash itself
 * (crashJournalEntry of ops/crash-wire.mjs, ops/crash-beacon.ts) and, before it, that room's lines not flushed yet
 * and those its script logged in the call that crashed (from the sandbox's log ring,
 * sandbox/log-ring.mjs; takeForCrash, up to {@link CRASH_LINES_BYTES}); other rooms lose at
 * most one interval of lines. When the main-thread watchdog, not the main thread, writes the
 * crash (sandbox/main-thread-watchdog.ts), it sends the crashing call's lines from the ring, and
 * the room's unflushed lines are lost with the parked thread's memory.
 *
 * Best effort: with Redis away, a flush's entries are dropped (counted, and logged once a
 * minute) rather than held without bound. Each text is cut to {@link MAX_TEXT_CHARS}, and a room
 * that writes more than JOURNAL_KEPT entries between two flushes sends only the newest
 * JOURNAL_KEPT.
 */
import { JOURNAL_KEPT, type JournalStore } from '../state/journal-store.ts';
import { crashLinesJournalEntries, cutText as cut, MAX_TEXT_CHARS } from './crash-wire.mjs';
import { channels, subscribe, type RoomLifecycleEvent, type ScriptOutputEvent, type TickFailedEvent } from './events.ts';

export { MAX_TEXT_CHARS };
/** The most entries one read returns. */
export const MAX_READ = JOURNAL_KEPT;
/** How often collected entries are appended to Redis, ms (default of JOURNAL_FLUSH_MS). */
export const FLUSH_MS = 250;
/**
 * The most bytes of a crashing room's unflushed lines the dying process sends with its crash:
 * with the crash list and the crash entry, the abort path's one write stays within an idle
 * socket's send buffer (ops/crash-beacon.ts).
 */
export const CRASH_LINES_BYTES = 8 * 1024;

export interface JournalEntry {
  /** The entry's id in the room's journal: read after it to get what came later. */
  id: string;
  /** ms since epoch, on the server that ran the room */
  at: number;
  tick: number;
  version: string;
  /**
   * 'log': a line the script logged; 'hook-error': a join/input/leave hook threw, its event
   * undone; 'tick-failed': the whole tick was rolled back; 'crash': the script made V8 abort the
   * server process (the tick never committed; the room resumes from the one before).
   */
  kind: 'log' | 'hook-error' | 'tick-failed' | 'crash';
  /** The line, or the error as `Name: message`. */
  text: string;
  /** The error's code (SCRIPT_ERROR, CPU_BUDGET_EXCEEDED, MEMORY_LIMIT...). */
  code?: string;
  hook?: string;
  playerId?: string;
  /** The script's stack, mapped to its source files. */
  stack?: string;
  /** The server that ran the room. */
  node?: string;
}

export interface JournalPage {
  /** Entries after the cursor, oldest first. */
  entries: JournalEntry[];
  /** The cursor to read after next time: the last entry's id, or the cursor given. */
  next: string;
  /** The entry read last is no longer kept (more than JOURNAL_KEPT came since): entries after it may have been dropped. */
  truncated: boolean;
}

/** Lifecycle events after which the room no longer runs on this server: its entries go out at once. */
const GONE = new Set<RoomLifecycleEvent['what']>(['stopped', 'unloaded', 'moved', 'deleted', 'fenced']);

export interface ScriptJournalOptions {
  /** This server's node id, stamped on each entry (read at each entry: it is set after the start). */
  node?: () => string;
  /**
   * Whether this server runs the room. The engine's event channels are the process's: where
   * one process runs two servers (tests), each would otherwise append the other's entries too.
   */
  runsHere?: (roomId: string) => boolean;
  clock?: () => number;
  flushMs?: number;
  /** A flush failed (Redis away): its entries are dropped. Called at most once a minute. */
  onFlushError?: (err: unknown, droppedSoFar: number) => void;
}

export class ScriptJournal {
  /** Entries not yet in Redis, per room, as JSON texts, oldest first (at most JOURNAL_KEPT). */
  private pending = new Map<string, string[]>();
  private flushing: Promise<void> | null = null;
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribe: (() => void)[] = [];
  private readonly clock: () => number;
  /** Entries lost: dropped by a failed flush, or more than JOURNAL_KEPT between two flushes. */
  dropped = 0;
  private lastErrorReport = -Infinity;

  constructor(
    private readonly store: JournalStore,
    private readonly opts: ScriptJournalOptions = {},
  ) {
    this.clock = opts.clock ?? Date.now;
    this.unsubscribe.push(
      subscribe<ScriptOutputEvent>(channels.script, (e) => {
        const at = this.clock();
        if (e.kind === 'log') {
          for (const line of e.lines) this.add(e.roomId, { at, tick: e.tick, version: e.version, kind: 'log', text: cut(line) });
        } else {
          this.add(e.roomId, { at, tick: e.tick, version: e.version, kind: 'hook-error', text: cut(`${e.thrown.name}: ${e.thrown.message}`), code: e.code, hook: e.hook, playerId: e.playerId, stack: cut(e.thrown.stack) });
        }
      }),
      subscribe<TickFailedEvent>(channels.tickFailed, (e) => {
        const text = e.thrown ? `${e.thrown.name}: ${e.thrown.message}` : e.code;
        this.add(e.roomId, { at: this.clock(), tick: e.tick, version: e.version, kind: 'tick-failed', text: cut(text), code: e.code, ...(e.thrown?.stack ? { stack: cut(e.thrown.stack) } : {}) });
      }),
      subscribe<RoomLifecycleEvent>(channels.room, (e) => {
        // The room's next owner appends after these: send them before it can start.
        if (GONE.has(e.what) && this.pending.has(e.roomId)) void this.flush();
      }),
    );
    this.timer = setInterval(() => void this.flush(), opts.flushMs ?? FLUSH_MS);
    this.timer.unref();
  }

  private add(roomId: string, entry: Omit<JournalEntry, 'id'>): void {
    if (this.opts.runsHere && !this.opts.runsHere(roomId)) return;
    let texts = this.pending.get(roomId);
    if (!texts) this.pending.set(roomId, (texts = []));
    texts.push(JSON.stringify(this.opts.node ? { ...entry, node: this.opts.node() } : entry));
    // Redis keeps only the newest JOURNAL_KEPT: sending more would only have them trimmed.
    if (texts.length > JOURNAL_KEPT) {
      texts.shift();
      this.dropped++;
    }
  }

  /**
   * The abort path's share: the room's entries not yet handed to a flush, then what its script
   * logged in the call that crashed (`crashed`), the newest that fit in `maxBytes`, oldest
   * first, taken out of the journal (so that a process that lived on would not send them
   * twice). Synchronous; never throws.
   */
  takeForCrash(roomId: string, crashed?: Parameters<typeof crashLinesJournalEntries>[0], maxBytes = CRASH_LINES_BYTES): string[] {
    // The lines of the call that crashed (sandbox/log-ring.mjs) come last: they were logged last.
    const texts = [...(this.pending.get(roomId) ?? []), ...(crashed ? crashLinesJournalEntries(crashed) : [])];
    this.pending.delete(roomId);
    let bytes = 0;
    let first = texts.length;
    while (first > 0 && bytes + Buffer.byteLength(texts[first - 1]!) <= maxBytes) bytes += Buffer.byteLength(texts[--first]!);
    this.dropped += first;
    return texts.slice(first);
  }

  /** Append what was collected to Redis. One flush at a time, so each room's entries keep their order. */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing.then(() => this.flush());
    if (this.pending.size === 0) return Promise.resolve();
    const batch = this.pending;
    this.pending = new Map();
    this.flushing = this.store
      .append(batch)
      .catch((err: unknown) => {
        for (const texts of batch.values()) this.dropped += texts.length;
        const now = this.clock();
        if (now - this.lastErrorReport >= 60_000) {
          this.lastErrorReport = now;
          this.opts.onFlushError?.(err, this.dropped);
        }
      })
      .finally(() => {
        this.flushing = null;
      });
    return this.flushing;
  }

  /** The room's entries after `cursor` ('0': all kept), at most `limit`. */
  async read(roomId: string, cursor = '0', limit = MAX_READ): Promise<JournalPage> {
    const page = await this.store.read(roomId, cursor, Math.max(1, Math.min(limit, MAX_READ)));
    const entries: JournalEntry[] = [];
    for (const { id, text } of page.entries) {
      const entry = parseEntry(text);
      if (entry) entries.push({ id, ...entry });
    }
    const next = page.entries.length > 0 ? page.entries[page.entries.length - 1]!.id : cursor;
    return { entries, next, truncated: page.missed };
  }

  /** Stop collecting and send what is left (waiting at most `waitMs` for Redis). */
  async close(waitMs = 1000): Promise<void> {
    for (const u of this.unsubscribe) u();
    this.unsubscribe.length = 0;
    clearInterval(this.timer);
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([this.flush(), new Promise((r) => (timeout = setTimeout(r, waitMs)))]);
    clearTimeout(timeout);
  }
}

const KINDS = new Set(['log', 'hook-error', 'tick-failed', 'crash']);

/** An entry as stored, or null for anything that is not one (the key is Redis's, anyone can write it). */
function parseEntry(text: string): Omit<JournalEntry, 'id'> | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const e = v as Record<string, unknown>;
  if (!KINDS.has(e.kind as string) || typeof e.text !== 'string' || typeof e.at !== 'number' || typeof e.tick !== 'number' || typeof e.version !== 'string') return null;
  const entry: Omit<JournalEntry, 'id'> = { at: e.at, tick: e.tick, version: e.version, kind: e.kind as JournalEntry['kind'], text: e.text };
  for (const f of ['code', 'hook', 'playerId', 'stack', 'node'] as const) if (typeof e[f] === 'string') entry[f] = e[f];
  return entry;
}
