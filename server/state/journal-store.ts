/**
 * A room's script journal in Redis (ops/script-journal.ts decides what goes in it): one stream
 * per room, `mp:room:{roomId}:journal`, each entry one field `e` holding a JSON text, the newest
 * {@link JOURNAL_KEPT} kept. A stream because its entry ids are ordered by Redis itself: the
 * servers that run a room one after another (a restart, a move, a takeover) append to the same
 * sequence, and a reader's cursor (the id of the last entry it saw) stays valid through all of
 * them.
 *
 * Append goes through a script that writes only while the room exists, so a flush racing the
 * room's deletion cannot leave a journal behind with no room; the room's own scripts
 * (room-store.ts: create, delete, expire, claim) treat the key like the room's other keys.
 */
import type { Redis } from 'ioredis';
import { roomKeys } from './keys.ts';

export const JOURNAL_KEPT = 200;

/** A reader's position: '0' (before everything) or the id of the last entry it saw. */
const CURSOR = /^(0|\d{1,20}-\d{1,20})$/;

export function isJournalCursor(s: string): boolean {
  return CURSOR.test(s);
}

// KEYS: meta, journal. ARGV: entries to keep, then the JSON texts. Appends unless the room is
// gone (no meta, or a deleted room's tombstone). Returns the number appended.
const APPEND_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'deleted') == 1 then return 0 end
for i = 2, #ARGV do redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], '*', 'e', ARGV[i]) end
return #ARGV - 1
`;

export interface StoredJournalEntry {
  /** The stream entry's id: the cursor to read after. */
  id: string;
  /** The JSON text as appended. */
  text: string;
}

export interface StoredJournalPage {
  entries: StoredJournalEntry[];
  /** The reader's last entry was trimmed away, and entries after it may have been too. */
  missed: boolean;
}

interface JournalCommands {
  mpJournalAppend(meta: string, journal: string, kept: string, ...texts: string[]): Promise<number>;
}

/** Compare two stream ids ("ms-seq"); '0' is before everything. */
export function compareStreamIds(a: string, b: string): number {
  const [am, as = '0'] = a.split('-');
  const [bm, bs = '0'] = b.split('-');
  const d = BigInt(am!) - BigInt(bm!);
  if (d !== 0n) return d < 0n ? -1 : 1;
  const e = BigInt(as) - BigInt(bs);
  return e === 0n ? 0 : e < 0n ? -1 : 1;
}

export class JournalStore {
  private readonly redis: Redis & JournalCommands;

  constructor(
    redis: Redis,
    private readonly prefix: string,
  ) {
    this.redis = redis as Redis & JournalCommands;
    if (!('mpJournalAppend' in redis)) redis.defineCommand('mpJournalAppend', { numberOfKeys: 2, lua: APPEND_LUA });
  }

  /** Append each room's texts, oldest first, all rooms in one round trip. Throws on a Redis failure. */
  async append(batches: ReadonlyMap<string, readonly string[]>): Promise<void> {
    const pipeline = this.redis.pipeline() as ReturnType<Redis['pipeline']> & { mpJournalAppend(...args: string[]): unknown };
    for (const [roomId, texts] of batches) {
      if (texts.length === 0) continue;
      const k = roomKeys(this.prefix, roomId);
      pipeline.mpJournalAppend(k.meta, k.journal, String(JOURNAL_KEPT), ...texts);
    }
    const results = (await pipeline.exec()) ?? [];
    const failed = results.find(([err]) => err);
    if (failed) throw failed[0];
  }

  /** Up to `limit` entries after `cursor`, oldest first. */
  async read(roomId: string, cursor: string, limit: number): Promise<StoredJournalPage> {
    if (!isJournalCursor(cursor)) throw new Error(`not a journal cursor: ${cursor}`);
    const key = roomKeys(this.prefix, roomId).journal;
    type Range = [string, string[]][];
    const replies = (await this.redis
      .pipeline()
      .xrange(key, cursor === '0' ? '-' : `(${cursor}`, '+', 'COUNT', limit)
      // Whether the reader's last entry is still kept, and the oldest kept: see `missed` below.
      .xrange(key, cursor === '0' ? '-' : cursor, cursor === '0' ? '-' : cursor)
      .xrange(key, '-', '+', 'COUNT', 1)
      .exec())! as [Error | null, Range][];
    const failed = replies.find(([err]) => err);
    if (failed) throw failed[0];
    const [[, range], [, self], [, oldest]] = replies as [[null, Range], [null, Range], [null, Range]];
    const entries: StoredJournalEntry[] = [];
    for (const [id, fields] of range) {
      // Anything else in the stream (written by hand, say) is not ours to show.
      const at = fields.indexOf('e');
      if (at >= 0 && at % 2 === 0 && typeof fields[at + 1] === 'string') entries.push({ id, text: fields[at + 1]! });
    }
    // Trimming drops the oldest first. So while the reader's last entry is kept, nothing after
    // it was dropped; once it is gone and the oldest kept is newer, entries after it may have
    // been (all of them, unless the reader's was exactly the last one dropped).
    const missed = cursor !== '0' && self.length === 0 && oldest.length > 0 && compareStreamIds(oldest[0]![0], cursor) > 0;
    return { entries, missed };
  }
}
