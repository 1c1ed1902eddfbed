/**
 * Fans a room's committed changes out to its players at the broadcast rate.
 *
 * Every client in step gets the same delta frame, encoded once per broadcast. A slow client
 * never slows the room: when its socket buffer is above the soft limit it is skipped, and the
 * keys it missed are remembered (a set of record keys, not frames). When it drains, it gets one
 * merged delta built from the committed mirror, or a full snapshot when it missed most of the
 * world. Past the hard limit, or lagging for too long, it is disconnected.
 *
 * Field patches: a record that one tick changed only a few fields of is sent as those fields
 * (`patch` in the delta frame) instead of whole. A patch is exact only against the record as
 * it was before that tick, so it is used only when the record changed in exactly one tick since
 * the last flush; a record changed again, and every catch-up frame, goes whole from the mirror.
 *
 * Interest management (game.json `interest`): each client gets only the positioned entries
 * near its player (interest.ts), so frames differ per view: view-frames.ts builds them from
 * parts encoded once per flush. Snapshots are filtered the same way, and a lagging client
 * catches up with a snapshot of its view.
 */
import type { InterestSettings } from '../config/config.ts';
import { CloseCodes } from '../errors/codes.ts';
import { encodeRecordsFrame } from '../protocol/codec.ts';
import { MsgpackWriter } from '../sandbox/runtime/msgpack.ts';
import type { CommittedState } from '../state/committed-state.ts';
import type { RecordChanges } from '../state/record-patch.ts';
import { InterestGrid, NOWHERE } from './interest.ts';
import type { PlayerLink } from './link.ts';
import { ViewFrames } from './view-frames.ts';

export interface BroadcastLimits {
  /** Above this many buffered bytes a client is skipped and catches up later. @default 256 KiB */
  softLimitBytes: number;
  /** Above this many buffered bytes a client is disconnected (SLOW_CONSUMER). @default 4 MiB */
  hardLimitBytes: number;
  /** A client lagging longer than this is disconnected, ms. @default 10000 */
  maxLagMs: number;
}

interface Subscriber {
  /** Keys changed while this client was skipped; null when it is in step. */
  missed: Set<string> | null;
  laggingSince: number;
  /** With interest management: the key of this player's own entry, which centres their view. */
  viewerKey: string;
  /** With interest management: the view this client's world was last brought to. */
  view: number;
  /**
   * With interest management: subscribed since the last flush. Its snapshot was taken from
   * the state as it was then, while the changes pending describe views from the last flush:
   * it gets a snapshot of its view again at the next flush instead of a delta.
   */
  fresh: boolean;
}

export interface FlushStats {
  bytes: number;
  recipients: number;
  records: number;
  /** Of `records`, how many went as field patches in the in-step clients' delta. */
  patched: number;
}

export class Broadcaster {
  /** Keys changed since the last flush; the value is the record's field patch, if it has one. */
  private pending = new Map<string, Uint8Array | null>();
  private readonly subs = new Map<PlayerLink, Subscriber>();
  private readonly writer = new MsgpackWriter(64 * 1024);
  /** With interest management (game.json `interest`): per-view frames, over the grid of where positioned entries are. */
  private readonly views: ViewFrames | null;

  constructor(
    private readonly state: CommittedState,
    private readonly limits: BroadcastLimits,
    interest: InterestSettings | null = null,
  ) {
    this.views = interest ? new ViewFrames(new InterestGrid(interest), state) : null;
  }

  get size(): number {
    return this.subs.size;
  }

  /** Subscribe a client: it gets a snapshot of the committed state now (what it sees of it), then deltas. */
  add(link: PlayerLink, version: string, playerId: string): void {
    const grid = this.views?.grid;
    const viewerKey = grid ? grid.viewerKey(playerId) : '';
    const view = grid ? grid.viewAt(viewerKey) : NOWHERE;
    this.subs.set(link, { missed: null, laggingSince: 0, viewerKey, view, fresh: grid !== undefined });
    link.send(this.snapshotFrame(version, view));
  }

  remove(link: PlayerLink): void {
    this.subs.delete(link);
  }

  /** A committed tick's changes. */
  changed(changes: RecordChanges): void {
    this.views?.changed(changes);
    const pending = this.pending;
    for (const [k] of changes.sets) pending.set(k, null);
    for (const k of changes.dels) pending.set(k, null);
    // A second change before the flush: the first patch no longer describes the difference.
    for (const [k, patch] of changes.patches) pending.set(k, pending.has(k) ? null : patch);
  }

  /** Send what changed since the last flush. */
  flush(version: string, now = performance.now()): FlushStats {
    const stats: FlushStats = { bytes: 0, recipients: 0, records: this.pending.size, patched: 0 };
    let shared: Uint8Array | null = null;
    for (const [link, sub] of this.subs) {
      if (!link.isOpen) {
        this.subs.delete(link);
        continue;
      }
      const buffered = link.bufferedAmount;
      if (buffered > this.limits.hardLimitBytes || (sub.missed && now - sub.laggingSince > this.limits.maxLagMs)) {
        this.subs.delete(link);
        link.close(CloseCodes.SLOW_CONSUMER, 'client too slow to keep up with the broadcast');
        continue;
      }
      if (sub.missed) {
        for (const k of this.pending.keys()) sub.missed.add(k);
        if (buffered > this.limits.softLimitBytes) continue;
        // With interest management a lagging client catches up with a snapshot of its view:
        // what it saw when it fell behind is not worth reconstructing.
        if (this.views) {
          sub.view = this.views.grid.viewAt(sub.viewerKey);
          sub.fresh = false;
        }
        const frame = this.views || sub.missed.size * 2 > this.state.size ? this.snapshotFrame(version, sub.view) : this.deltaFrame(version, sub.missed).frame;
        sub.missed = null;
        link.send(frame);
        stats.bytes += frame.length;
        stats.recipients++;
        continue;
      }
      if (this.pending.size === 0) continue;
      if (buffered > this.limits.softLimitBytes) {
        sub.missed = new Set(this.pending.keys());
        sub.laggingSince = now;
        continue;
      }
      if (this.views) {
        // Each view gets its own frame, built from the per-cell parts of this flush.
        const view = this.views.grid.viewAt(sub.viewerKey);
        const frame = sub.fresh ? this.snapshotFrame(version, view) : this.views.frameFor(version, this.pending, sub.view, view);
        sub.view = view;
        sub.fresh = false;
        link.send(frame);
        stats.bytes += frame.length;
        stats.recipients++;
        continue;
      }
      if (!shared) {
        const delta = this.deltaFrame(version, this.pending.keys(), this.pending);
        shared = delta.frame;
        stats.patched = delta.patched;
      }
      link.send(shared);
      stats.bytes += shared.length;
      stats.recipients++;
    }
    if (this.views) stats.patched = this.views.endFlush();
    this.pending.clear();
    return stats;
  }

  /** The committed state, or with interest management what `view` sees of it. */
  private snapshotFrame(version: string, view: number): Uint8Array {
    const s = this.state;
    const grid = this.views?.grid;
    if (!grid) return encodeRecordsFrame('snap', s.tick, version, s.records, s.size, [], this.writer);
    const seen: [string, Uint8Array][] = [];
    for (const [k, v] of s.records) if (!grid.tracks(k) || grid.sees(view, grid.cellOf(k))) seen.push([k, v]);
    return encodeRecordsFrame('snap', s.tick, version, seen, seen.length, [], this.writer);
  }

  /** A delta of `keys` from the mirror, with field patches where `patchesByKey` has them; `patched` counts those. */
  private deltaFrame(version: string, keys: Iterable<string>, patchesByKey?: ReadonlyMap<string, Uint8Array | null>): { frame: Uint8Array; patched: number } {
    const state = this.state;
    const sets: [string, Uint8Array][] = [];
    const dels: string[] = [];
    const patches: [string, Uint8Array][] = [];
    for (const k of keys) {
      if (!state.has(k)) {
        dels.push(k);
        continue;
      }
      // (A patch is sent as it is: the mirror's copy of a patched record is not needed whole.)
      const patch = patchesByKey?.get(k);
      if (patch) patches.push([k, patch]);
      else sets.push([k, state.get(k)!]);
    }
    return { frame: encodeRecordsFrame('delta', this.state.tick, version, sets, sets.length, dels, this.writer, patches), patched: patches.length };
  }
}
