/**
 * Delta frames per view, for interest management (interest.ts): each player's frame holds the
 * changes to what they see, plus the entries that came into their view whole and deletions
 * of those that left it.
 *
 * Cost: the changes of a broadcast are encoded once, in parts: one for what everyone sees
 * (records that are not positioned), and one per cell for the positioned entries that stayed
 * in their cell. A player's frame is those parts for the cells they see, copied together,
 * plus the few entries that crossed a cell boundary (checked one by one against their view)
 * and, when the player's own cell changed, the cells that came into or went out of view.
 * Players who are in the same cell and were in the same one at the last broadcast share one
 * frame. Nothing here decodes a record.
 */
import { encodeDeltaFromParts } from '../protocol/codec.ts';
import { MsgpackWriter } from '../sandbox/runtime/msgpack.ts';
import type { CommittedState } from '../state/committed-state.ts';
import type { RecordChanges } from '../state/record-patch.ts';
import type { InterestGrid } from './interest.ts';

/** Pending changes: key -> its field patch, or null when it goes whole (or is deleted). */
type Pending = ReadonlyMap<string, Uint8Array | null>;

/** Encoded changes: map pairs for `set` and `patch`, strings for `del`, with their counts. */
class Part {
  readonly sets = new MsgpackWriter(1024);
  readonly dels = new MsgpackWriter(256);
  readonly patches = new MsgpackWriter(1024);
  nSets = 0;
  nDels = 0;
  nPatches = 0;

  reset(): void {
    this.sets.reset();
    this.dels.reset();
    this.patches.reset();
    this.nSets = this.nDels = this.nPatches = 0;
  }

  set(key: string, bytes: Uint8Array): void {
    this.sets.str(key);
    this.sets.raw(bytes);
    this.nSets++;
  }

  del(key: string): void {
    this.dels.str(key);
    this.nDels++;
  }

  patch(key: string, bytes: Uint8Array): void {
    this.patches.str(key);
    this.patches.raw(bytes);
    this.nPatches++;
  }

  /** A change as the pending map has it: the patch, the whole record, or its deletion. */
  change(key: string, pending: Pending, state: CommittedState): void {
    if (!state.has(key)) return this.del(key);
    // (A patch goes as it is: the mirror's copy of a patched record is not needed whole.)
    const patch = pending.get(key);
    if (patch) this.patch(key, patch);
    else this.set(key, state.get(key)!);
  }

  append(other: Part): void {
    if (other.nSets > 0) this.sets.raw(other.sets.bytes());
    if (other.nDels > 0) this.dels.raw(other.dels.bytes());
    if (other.nPatches > 0) this.patches.raw(other.patches.bytes());
    this.nSets += other.nSets;
    this.nDels += other.nDels;
    this.nPatches += other.nPatches;
  }
}

interface Plan {
  /** Changes everyone sees: records that are not positioned entries, and unplaced entries. */
  everyone: Part;
  /** Positioned entries that changed but stayed in their cell, by cell. */
  byCell: Map<number, Part>;
  /** Positioned entries that changed cell (or appeared, or went): [key, cell then, cell now]. */
  movers: [string, number, number][];
  moverKeys: Set<string>;
  patched: number;
}

export class ViewFrames {
  /** Positioned entries changed since the last flush -> their cell at the last flush. */
  private readonly before = new Map<string, number>();
  private plan: Plan | null = null;
  private readonly frame = new Part();
  private readonly out = new MsgpackWriter(64 * 1024);
  /** Parts kept between flushes (their writers' buffers are reused). */
  private readonly spare: Part[] = [];
  /** This flush's frames, by the view they start from and the view they bring a client to. */
  private readonly built = new Map<number, Map<number, Uint8Array>>();

  constructor(
    /** Where the positioned entries are: loaded from `state` here, then kept by changed(). */
    readonly grid: InterestGrid,
    private readonly state: CommittedState,
  ) {
    grid.load(state.records);
  }

  /** A committed tick's changes: where the entries were at the last flush, then where they are. */
  changed(changes: RecordChanges): void {
    for (const [k] of changes.sets) this.noteOne(k);
    for (const k of changes.dels) this.noteOne(k);
    for (const [k] of changes.patches) this.noteOne(k);
    this.grid.apply(changes);
  }

  private noteOne(key: string): void {
    if (!this.before.has(key) && this.grid.tracks(key)) this.before.set(key, this.grid.cellOf(key));
  }

  /**
   * The delta frame for a client whose world was brought to view `was` at the last flush and
   * whose view is `now`, for this flush's pending changes.
   */
  frameFor(version: string, pending: Pending, was: number, now: number): Uint8Array {
    // Players in the same cell who were in the same cell get the same frame: build it once.
    let fromWas = this.built.get(was);
    if (!fromWas) this.built.set(was, (fromWas = new Map()));
    let frame = fromWas.get(now);
    if (!frame) fromWas.set(now, (frame = this.build(version, pending, was, now)));
    return frame;
  }

  private build(version: string, pending: Pending, was: number, now: number): Uint8Array {
    const grid = this.grid;
    const plan = (this.plan ??= this.makePlan(pending));
    const f = this.frame;
    f.reset();
    f.append(plan.everyone);
    const moved = was !== now;
    for (const cell of grid.cellsSeenFrom(now)) {
      if (!moved || grid.sees(was, cell)) {
        const part = plan.byCell.get(cell);
        if (part) f.append(part);
      } else {
        // Came into view: all of it, whole (its changes included).
        for (const k of grid.membersOf(cell)) if (!plan.moverKeys.has(k)) f.set(k, this.state.get(k)!);
      }
    }
    if (moved) {
      // Went out of view: the client forgets what it held there.
      for (const cell of grid.cellsSeenFrom(was)) {
        if (grid.sees(now, cell)) continue;
        for (const k of grid.membersOf(cell)) if (!plan.moverKeys.has(k)) f.del(k);
      }
    }
    for (const [k, then, nowCell] of plan.movers) {
      const saw = grid.sees(was, then);
      const sees = grid.sees(now, nowCell);
      if (saw && sees) f.change(k, pending, this.state);
      else if (sees) f.set(k, this.state.get(k)!);
      else if (saw) f.del(k);
    }
    return this.encode(version);
  }

  /** The flush is over: returns how many of its changes were field patches. */
  endFlush(): number {
    const patched = this.plan?.patched ?? 0;
    if (this.plan) {
      this.spare.push(this.plan.everyone, ...this.plan.byCell.values());
      this.plan = null;
    }
    this.before.clear();
    this.built.clear();
    return patched;
  }

  private makePlan(pending: Pending): Plan {
    const grid = this.grid;
    const plan: Plan = { everyone: this.part(), byCell: new Map(), movers: [], moverKeys: new Set(), patched: 0 };
    for (const [k, patch] of pending) {
      if (patch) plan.patched++;
      if (!grid.tracks(k)) {
        plan.everyone.change(k, pending, this.state);
        continue;
      }
      const now = grid.cellOf(k);
      const then = this.before.get(k) ?? now;
      if (then !== now) {
        plan.movers.push([k, then, now]);
        plan.moverKeys.add(k);
      } else if (now < 0) {
        plan.everyone.change(k, pending, this.state); // unplaced (everyone sees it), or came and went
      } else {
        let part = plan.byCell.get(now);
        if (!part) plan.byCell.set(now, (part = this.part()));
        part.change(k, pending, this.state);
      }
    }
    return plan;
  }

  private part(): Part {
    const p = this.spare.pop() ?? new Part();
    p.reset();
    return p;
  }

  private encode(version: string): Uint8Array {
    const f = this.frame;
    return encodeDeltaFromParts(this.out, this.state.tick, version, {
      sets: f.sets.bytes(), nSets: f.nSets, dels: f.dels.bytes(), nDels: f.nDels, patches: f.patches.bytes(), nPatches: f.nPatches,
    });
  }
}
