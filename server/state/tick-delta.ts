/**
 * The record of one committed tick, as appended to a room's log in Redis:
 * msgpack [tick, [key, bin, ...], [deletedKey, ...], [playerId, seq, ...], [key, patchBin, ...]].
 * Sets and deletes are absolute (the record's new bytes, or its absence); a patch sets some
 * top-level fields of a record that existed before the tick (record-patch.ts). Replaying the
 * log oldest first over a checkpoint at least as new as the log's first tick lands on the
 * committed state: a record's last absolute change in the log fixes it, and the patches after
 * that write the fields they name (docs/state.md, "The tick delta"). Logs written before
 * patches existed have four elements and replay as before.
 */
import { Unpackr } from 'msgpackr';
import { MsgpackWriter } from '../sandbox/runtime/msgpack.ts';
import { applyChanges, NO_PATCHES, pairsOf, type RecordChanges } from './record-patch.ts';

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export function encodeTickDelta(tick: number, changes: RecordChanges, seqs: ReadonlyMap<string, number>, w: MsgpackWriter = new MsgpackWriter()): Buffer {
  w.reset();
  w.arrayHeader(changes.patches.length > 0 ? 5 : 4);
  w.uint(tick);
  writePairs(w, changes.sets);
  w.arrayHeader(changes.dels.length);
  for (const k of changes.dels) w.str(k);
  w.arrayHeader(seqs.size * 2);
  for (const [id, seq] of seqs) {
    w.str(id);
    w.uint(seq);
  }
  if (changes.patches.length > 0) writePairs(w, changes.patches);
  return Buffer.from(w.bytes());
}

function writePairs(w: MsgpackWriter, pairs: readonly (readonly [string, Uint8Array])[]): void {
  w.arrayHeader(pairs.length * 2);
  for (const [k, v] of pairs) {
    w.str(k);
    w.binHeader(v.length);
    w.raw(v);
  }
}

/**
 * Apply a logged delta onto records and seqs (in place); returns the delta's tick. When
 * `touched` is given, the record keys and player ids the delta wrote are added to it.
 */
export function applyTickDelta(
  bytes: Uint8Array,
  records: Map<string, Uint8Array>,
  seqs: Map<string, number>,
  touched?: { keys: Set<string>; players: Set<string> },
): number {
  const delta = unpackr.unpack(bytes) as [number, (string | Uint8Array)[], string[], (string | number)[], (string | Uint8Array)[] | undefined];
  // More than this code knows of: a newer storage format, which claims refuse (room-store.ts);
  // replaying it partly would land on a state that never was.
  if (!Array.isArray(delta) || delta.length < 4 || delta.length > 5) throw new Error(`a tick delta of ${Array.isArray(delta) ? delta.length : typeof delta} elements: not storage format 1 or 2`);
  const [tick, sets, dels, seqPairs, patches] = delta;
  const changes: RecordChanges = { sets: pairsOf(sets), dels, patches: patches ? pairsOf(patches) : NO_PATCHES };
  applyChanges(records, changes);
  if (touched) {
    for (const [k] of changes.sets) touched.keys.add(k);
    for (const k of dels) touched.keys.add(k);
    for (const [k] of changes.patches) touched.keys.add(k);
  }
  for (let i = 0; i < seqPairs.length; i += 2) {
    seqs.set(seqPairs[i] as string, seqPairs[i + 1] as number);
    touched?.players.add(seqPairs[i] as string);
  }
  return tick;
}
