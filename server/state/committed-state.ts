/**
 * The host's mirror of a room's last committed state: record key -> msgpack bytes, exactly what
 * Redis holds. It is updated only after a commit lands, so everything served from it (join
 * snapshots, broadcasts, rebuilding a dead isolate) is committed state by construction.
 */
import { createHash } from 'node:crypto';
import { MsgpackWriter } from '../sandbox/runtime/msgpack.ts';

export class CommittedState {
  readonly records = new Map<string, Uint8Array>();

  constructor(
    /** Last committed tick. */
    public tick: number,
    records?: Iterable<readonly [string, Uint8Array]>,
  ) {
    if (records) for (const [k, v] of records) this.records.set(k, v);
  }

  apply(tick: number, sets: Iterable<readonly [string, Uint8Array]>, dels: Iterable<string>): void {
    for (const [k, v] of sets) this.records.set(k, v);
    for (const k of dels) this.records.delete(k);
    this.tick = tick;
  }

  /** msgpack [key, bin, key, bin, ...]: the format the isolate's `load` takes. */
  encodeForLoad(): Uint8Array {
    const w = new MsgpackWriter();
    w.arrayHeader(this.records.size * 2);
    for (const [k, v] of this.records) {
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
