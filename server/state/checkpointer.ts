/**
 * Folds a room's tick log into its checkpoint hashes, off the tick path.
 *
 * Every `everyTicks` committed ticks it writes the current committed values of the records
 * (and input seqs) changed since the last checkpoint, in small chunks so Redis is never busy
 * for long, then trims the log. Values newer than the checkpoint tick are fine: the log after
 * it is kept and deltas are absolute, so a later replay lands on the same state.
 *
 * Taking a record's value whole folds its pending field patches (committed-state.ts): about 7
 * ms per 1,000 records with 20 patches each. Done in one go right after a commit, that held
 * the main thread (every room's inputs, acks and broadcasts) for 6-8 ms once a second at 1,000
 * players (`npm run bench -- --dump`: the work after the commit at checkpoint ticks, 7.3 ms at
 * the median against 1.3 at other ticks). So a checkpoint starts after the tick's own work and
 * takes the values a slice at a time, letting the event loop run between slices.
 */
import type { CommittedState } from './committed-state.ts';
import type { RecordChanges } from './record-patch.ts';
import type { RoomStore } from './room-store.ts';

export interface CheckpointerOptions {
  /** Committed ticks between checkpoints. @default 20 */
  everyTicks: number;
  /** Records per Redis call. @default 256 */
  chunkSize: number;
  /** Records whose value is taken (patches folded) between two turns of the event loop. @default 64 */
  sliceSize: number;
}

/** Let the event loop run (I/O, timers, other rooms) before going on. */
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export class Checkpointer {
  private changed = new Set<string>();
  private players = new Set<string>();
  private ticksSince = 0;
  private running: Promise<void> | null = null;

  constructor(
    private readonly store: RoomStore,
    private readonly roomId: string,
    private readonly epoch: number,
    private readonly committed: CommittedState,
    /** The current applied seq of a seated player; undefined when the seat is gone. */
    private readonly seqOf: (playerId: string) => number | undefined,
    private readonly onError: (e: unknown) => void,
    private readonly opts: CheckpointerOptions = { everyTicks: 20, chunkSize: 256, sliceSize: 64 },
  ) {}

  /** Changes already in the log when this owner claimed the room (see Room.inheritUncheckpointed). */
  inherit(keys: Iterable<string>, players: Iterable<string>): void {
    for (const k of keys) this.changed.add(k);
    for (const p of players) this.players.add(p);
  }

  /** A tick committed: remember what it touched, and start a checkpoint when one is due. */
  noteTick(changes: RecordChanges, players: Iterable<string>): void {
    for (const [k] of changes.sets) this.changed.add(k);
    for (const k of changes.dels) this.changed.add(k);
    for (const [k] of changes.patches) this.changed.add(k);
    for (const p of players) this.players.add(p);
    if (++this.ticksSince >= this.opts.everyTicks && !this.running) {
      this.running = this.run().finally(() => (this.running = null));
    }
  }

  /** Checkpoint now and wait for it (graceful shutdown). */
  async flush(): Promise<void> {
    await this.running;
    await this.run();
  }

  private async run(): Promise<void> {
    this.ticksSince = 0;
    const upTo = this.committed.tick;
    const keys = [...this.changed];
    const players = [...this.players];
    this.changed = new Set();
    this.players = new Set();
    try {
      const { chunkSize, sliceSize } = this.opts;
      for (let i = 0; i < Math.max(keys.length, players.length); i += chunkSize) {
        const sets: [string, Uint8Array][] = [];
        const dels: string[] = [];
        const end = Math.min(keys.length, i + chunkSize);
        for (let j = i; j < end; j++) {
          if ((j - i) % sliceSize === 0) await yieldToEventLoop();
          const k = keys[j]!;
          const v = this.committed.get(k);
          if (v) sets.push([k, v]);
          else dels.push(k);
        }
        const seqSets: [string, number][] = [];
        for (const p of players.slice(i, i + chunkSize)) {
          const seq = this.seqOf(p);
          if (seq !== undefined) seqSets.push([p, seq]);
        }
        if ((await this.store.checkpointChunk(this.roomId, { epoch: this.epoch, sets, dels, seqSets })) === 'fenced') return;
      }
      await this.store.checkpointFinish(this.roomId, this.epoch, upTo);
    } catch (e) {
      // Redis trouble: nothing was trimmed, so nothing is lost; try these keys again next time.
      for (const k of keys) this.changed.add(k);
      for (const p of players) this.players.add(p);
      this.onError(e);
    }
  }
}
