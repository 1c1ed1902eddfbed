/**
 * A new script version waiting to replace a room's current one at the next tick boundary.
 *
 * It is compiled and loaded with the committed state in a fresh isolate OFF the tick path.
 * While it waits, every commit's changes go to its backlog (latest value per record), so at
 * the swap tick it catches up with a call proportional to what changed since it was loaded,
 * not to the size of the world. The swap tick itself (migration + validation + the tick) runs
 * in the staged isolate; see swap-tick.ts.
 */
import type { RecordChanges } from '../state/record-patch.ts';
import type { Replayer } from './replay.ts';
import type { GameVersion } from '../patch/versions.ts';
import type { GameSandbox } from '../sandbox/sandbox.ts';
import { MsgpackWriter } from '../sandbox/runtime/msgpack.ts';

export type SwapResult =
  | {
      ok: true;
      roomId: string;
      from: string;
      to: string;
      fromSchema: number;
      toSchema: number;
      /** The tick that ran on the new version first. */
      tick: number;
      /** Wall time of the swap tick's script call (migration + validation + tick), ms. */
      swapTickMs: number;
      /** Records the swap tick wrote (the migration's changes and the tick's). */
      records: number;
    }
  | {
      ok: false;
      roomId: string;
      /** Where it failed: building or starting the new isolate, the swap tick, or a rollback's downgrade. */
      stage: 'build' | 'migrate' | 'tick' | 'downgrade' | 'commit';
      code: string;
      message: string;
      /** The script's stack, mapped to the patch's files, when a script threw. */
      stack?: string;
    };

export class StagedVersion {
  /** Committed changes since the staged world was loaded: key -> bytes, or null for deleted. */
  private readonly backlog = new Map<string, Uint8Array | null>();
  ready = false;
  /** Swap ticks of this version that overran the CPU budget so far (see swap-tick.ts). */
  overruns = 0;
  /**
   * A rollback by replay (see replay.ts): the staged world started at the swap point and
   * catches up by replaying recorded ticks, not by taking the committed records.
   */
  replay: Replayer | null = null;
  /** A rollback's reason (manual, or the verification window's finding) for its history entry. */
  why = '';
  /** Added to the history entry's reason when this swap commits (how a replay went). */
  note = '';
  /** Catch-ups run one after another, in the staged isolate's thread, off the tick path. */
  private catchingUp: Promise<void> = Promise.resolve();
  private inFlight = 0;
  private settle!: (r: SwapResult) => void;
  readonly result: Promise<SwapResult>;

  constructor(
    readonly version: GameVersion,
    readonly sandbox: GameSandbox,
    /** Why: a patch going forward, or a rollback (manual or by the verification window). */
    readonly reason: 'patch' | 'rollback',
    /** A rollback to an older schema: the current version's downgrade runs first. */
    readonly downgrade: boolean,
    /** Wait for the running scripts' safeToPatch(world) until this time (ms since epoch); null: any tick. */
    readonly safePointDeadline: number | null = null,
    /** The version and schema the room ran when this was staged (a patch's swap point records them). */
    readonly replayFrom: { version: string; schema: number } = { version: '', schema: 0 },
  ) {
    this.result = new Promise((resolve) => (this.settle = resolve));
  }

  /**
   * A tick committed by the running version. `committed` is the room's mirror with the tick
   * applied: patched records are taken from it whole (the staged isolate applies whole
   * records; the patches are of the running version's world, which it does not share). Changes
   * not yet in the mirror (a downgrade's, swap-tick.ts) must come with their patches folded.
   */
  noteCommitted(changes: RecordChanges, committed: { get(key: string): Uint8Array | undefined }): void {
    if (this.replay) return; // the new version's records mean nothing to the old one
    for (const [k, v] of changes.sets) this.backlog.set(k, v);
    for (const k of changes.dels) this.backlog.set(k, null);
    for (const [k] of changes.patches) this.backlog.set(k, committed.get(k) ?? null);
  }

  /**
   * Apply the backlog to the staged isolate. Called after every commit while staged (so the
   * swap tick only has the last tick's changes left to apply) and at the swap tick.
   */
  catchUp(): Promise<void> {
    this.inFlight++;
    this.catchingUp = this.catchingUp.then(() => this.applyBacklog()).finally(() => this.inFlight--);
    return this.catchingUp;
  }

  /** Committed changes not yet applied to the staged isolate. */
  get hasBacklog(): boolean {
    return this.backlog.size > 0;
  }

  /**
   * Ready to take the next tick: loaded, warmed, and no catch-up still running. The room skips
   * swapping at a tick where a catch-up is still busy rather than wait for it on the tick path.
   */
  get canSwap(): boolean {
    return this.ready && this.inFlight === 0;
  }

  private async applyBacklog(): Promise<void> {
    if (this.sandbox.isDisposed) return;
    if (this.replay) return this.replay.advance();
    if (this.backlog.size === 0) return;
    const sets = new MsgpackWriter();
    const dels: string[] = [];
    let n = 0;
    for (const v of this.backlog.values()) if (v) n++;
    sets.arrayHeader(n * 2);
    for (const [k, v] of this.backlog) {
      if (!v) {
        dels.push(k);
        continue;
      }
      sets.str(k);
      sets.binHeader(v.length);
      sets.raw(v);
    }
    const delsW = new MsgpackWriter();
    delsW.value(dels);
    // Taken now: commits that land while the call runs go to the next catch-up.
    this.backlog.clear();
    await this.sandbox.applyRecords(sets.bytes().slice(), delsW.bytes().slice());
  }

  finish(result: SwapResult): void {
    this.settle(result);
  }
}
