/**
 * The host's mirror of a room's last committed state: record key -> msgpack bytes, exactly what
 * Redis holds. It is updated only after a commit lands, so everything served from it (join
 * snapshots, broadcasts, rebuilding a dead isolate) is committed state by construction.
 *
 * Field patches are folded in lazily. Most ticks change most records by a patch (a player's
 * position), and folding every patch as it commits would cost the host about a microsecond a
 * record a tick for bytes nobody reads: players in step get the patches themselves. A record's
 * patches wait here until something needs the record whole (a join's snapshot, a checkpoint, a
 * lagging client's catch-up), and are folded then, oldest first.
 */
import { createHash } from 'node:crypto';
import { MsgpackWriter } from '../sandbox/runtime/msgpack.ts';
import { foldPatches, type RecordChanges } from './record-patch.ts';

/**
 * A record with this many patches pending is folded at once, whatever reads it: checkpoints
 * fold every 20 ticks, but one that stalls (Redis down) must not let the lists grow forever.
 */
const MAX_UNFOLDED = 64;

export class CommittedState {
  /** Record bytes, as of the tick before any patches in `unfolded`. */
  private readonly whole = new Map<string, Uint8Array>();
  /** Committed patches not yet folded into `whole`, per record, oldest first. */
  private readonly unfolded = new Map<string, Uint8Array[]>();

  constructor(
    /** Last committed tick. */
    public tick: number,
    records?: Iterable<readonly [string, Uint8Array]>,
  ) {
    if (records) for (const [k, v] of records) this.whole.set(k, v);
  }

  /** Every record, whole (folds what is pending). Read-only: change it through {@link apply}. */
  get records(): ReadonlyMap<string, Uint8Array> {
    if (this.unfolded.size > 0) for (const k of [...this.unfolded.keys()]) this.get(k);
    return this.whole;
  }

  /** Number of records (nothing is folded to count them). */
  get size(): number {
    return this.whole.size;
  }

  has(key: string): boolean {
    return this.whole.has(key);
  }

  /** One record, whole (folding its pending patches). */
  get(key: string): Uint8Array | undefined {
    const patches = this.unfolded.get(key);
    if (patches === undefined) return this.whole.get(key);
    const v = foldPatches(this.whole.get(key)!, patches);
    this.whole.set(key, v);
    this.unfolded.delete(key);
    return v;
  }

  apply(tick: number, changes: RecordChanges): void {
    for (const [k, v] of changes.sets) {
      this.whole.set(k, v);
      this.unfolded.delete(k);
    }
    for (const k of changes.dels) {
      this.whole.delete(k);
      this.unfolded.delete(k);
    }
    for (const [k, p] of changes.patches) {
      // A patch of a record this mirror lacks cannot happen (a patch is of a record that
      // existed before the tick, and this mirror is that state); skipped like a replay does.
      if (!this.whole.has(k)) continue;
      const pending = this.unfolded.get(k);
      if (!pending) this.unfolded.set(k, [p]);
      else if (pending.push(p) >= MAX_UNFOLDED) this.get(k);
    }
    this.tick = tick;
  }

  /** msgpack [key, bin, key, bin, ...]: the format the isolate's `load` takes. */
  encodeForLoad(): Uint8Array {
    const records = this.records;
    const w = new MsgpackWriter();
    w.arrayHeader(records.size * 2);
    for (const [k, v] of records) {
      w.str(k);
      w.binHeader(v.length);
      w.raw(v);
    }
    return w.bytes().slice();
  }

  /** sha256 over the records in key order: equal hashes mean equal states. */
  hash(): string {
    return stateHash(this.records);
  }
}

export function stateHash(records: ReadonlyMap<string, Uint8Array>): string {
  const h = createHash('sha256');
  for (const k of [...records.keys()].sort()) {
    const v = records.get(k)!;
    h.update(k).update('\0').update(String(v.length)).update('\0').update(v);
  }
  return h.digest('hex');
}
