/**
 * The record of one committed tick, as appended to a room's log in Redis:
 * msgpack [tick, [key, bin, key, bin, ...], [deletedKey, ...], [playerId, seq, ...]].
 * Values are absolute (the record's new bytes), so replaying deltas is idempotent: applying a
 * delta to a state that already contains it, or something newer, gives the same result.
 */
import { Unpackr } from 'msgpackr';
import { MsgpackWriter } from '../sandbox/runtime/msgpack.ts';

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export function encodeTickDelta(
  tick: number,
  sets: readonly (readonly [string, Uint8Array])[],
  dels: readonly string[],
  seqs: ReadonlyMap<string, number>,
  w: MsgpackWriter = new MsgpackWriter(),
): Buffer {
  w.reset();
  w.arrayHeader(4);
  w.uint(tick);
  w.arrayHeader(sets.length * 2);
  for (const [k, v] of sets) {
    w.str(k);
    w.binHeader(v.length);
    w.raw(v);
  }
  w.arrayHeader(dels.length);
  for (const k of dels) w.str(k);
  w.arrayHeader(seqs.size * 2);
  for (const [id, seq] of seqs) {
    w.str(id);
    w.uint(seq);
  }
  return Buffer.from(w.bytes());
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
  const [tick, sets, dels, seqPairs] = unpackr.unpack(bytes) as [number, (string | Uint8Array)[], string[], (string | number)[]];
  for (let i = 0; i < sets.length; i += 2) {
    records.set(sets[i] as string, sets[i + 1] as Uint8Array);
    touched?.keys.add(sets[i] as string);
  }
  for (const k of dels) {
    records.delete(k);
    touched?.keys.add(k);
  }
  for (let i = 0; i < seqPairs.length; i += 2) {
    seqs.set(seqPairs[i] as string, seqPairs[i + 1] as number);
    touched?.players.add(seqPairs[i] as string);
  }
  return tick;
}
