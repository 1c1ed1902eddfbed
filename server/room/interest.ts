/**
 * Interest management: which positioned records each player receives.
 *
 * A game that sets `interest` in its game.json names object tables whose entries are
 * positioned by numeric `x` and `y` fields (top-level, or inside the field `interest.position`
 * names). The world is cut into square cells of `cellSize`;
 * a player sees the cells within `radius` of the cell of their own entry in the `viewer` table
 * (a (2r+1) x (2r+1) block). Positioned entries outside that block are not sent to them. An
 * entry of such a table without a numeric x and y, and every other record, goes to everyone. A
 * player who has no positioned entry of their own sees no positioned entry: what they receive
 * stays bounded however big the world is (docs/scripting.md, "Interest management").
 *
 * This grid is the host's index of where each positioned entry is, kept from the committed
 * changes: positions are read from the record's msgpack bytes (a whole record, or a field
 * patch that names x or y) without decoding the rest (readPosition, which walks maps as
 * folding does). The broadcaster (view-frames.ts) asks it which cells a view sees and where
 * each entry is.
 */
import type { InterestSettings } from '../config/config.ts';
import { MsgpackWriter } from '../sandbox/runtime/msgpack.ts';
import { readPosition, type RecordChanges } from '../state/record-patch.ts';

/** Cell codes besides real cells (>= 0): no such record. */
export const ABSENT = -1;
/** An entry of a positioned table without a numeric x and y: everyone sees it. */
export const UNPLACED = -2;
/** The view of a player without a positioned entry of their own: no cell. */
export const NOWHERE = -3;

/** Cell coordinates are clamped to [-HALF, HALF) and packed as (cx + HALF) * SPAN + (cy + HALF). */
const SPAN = 65536;
const HALF = 32768;

interface Place {
  x: number;
  y: number;
  cell: number;
}

export class InterestGrid {
  private readonly places = new Map<string, Place>();
  /** Cell -> the positioned entries in it (UNPLACED entries are in no cell). */
  private readonly members = new Map<number, Set<string>>();
  /** "table/" of each positioned table (startsWith allocates nothing; slicing the key would). */
  private readonly prefixes: string[];
  private readonly viewerPrefix: string;
  /** The key of the field holding x and y (`interest.position`), as the record encoder writes it; null: top level. */
  private readonly positionKey: Uint8Array | null;

  constructor(readonly settings: InterestSettings) {
    this.prefixes = settings.tables.map((t) => t + '/');
    this.viewerPrefix = settings.viewer + '/';
    this.positionKey = settings.position === null ? null : encodedKey(settings.position);
  }

  /** Whether `key` is an entry of a positioned table. */
  tracks(key: string): boolean {
    const prefixes = this.prefixes;
    for (let i = 0; i < prefixes.length; i++) if (key.startsWith(prefixes[i]!)) return key.length > prefixes[i]!.length;
    return false;
  }

  /** The key of player `playerId`'s own entry, whose cell centres their view. */
  viewerKey(playerId: string): string {
    return this.viewerPrefix + playerId;
  }

  /** Index every record (a room's committed state when its broadcaster starts). */
  load(records: Iterable<readonly [string, Uint8Array]>): void {
    this.places.clear();
    this.members.clear();
    for (const [key, bytes] of records) if (this.tracks(key)) this.place(key, bytes, true);
  }

  /** Follow one committed tick's changes. */
  apply(changes: RecordChanges): void {
    for (const [key, bytes] of changes.sets) if (this.tracks(key)) this.place(key, bytes, true);
    for (const key of changes.dels) this.remove(key);
    for (const [key, bytes] of changes.patches) if (this.tracks(key)) this.place(key, bytes, false);
  }

  /** Where `key` is now: a cell, UNPLACED, or ABSENT. */
  cellOf(key: string): number {
    return this.places.get(key)?.cell ?? ABSENT;
  }

  /** The view centred on entry `viewerKey` (see viewerKey): its cell, or NOWHERE. */
  viewAt(viewerKey: string): number {
    const cell = this.places.get(viewerKey)?.cell ?? ABSENT;
    return cell >= 0 ? cell : NOWHERE;
  }

  /** Whether a player with `view` sees an entry in `cell`. */
  sees(view: number, cell: number): boolean {
    if (cell === ABSENT) return false;
    if (cell === UNPLACED) return true;
    if (view === NOWHERE) return false;
    const r = this.settings.radius;
    return Math.abs(Math.floor(view / SPAN) - Math.floor(cell / SPAN)) <= r && Math.abs((view % SPAN) - (cell % SPAN)) <= r;
  }

  /** The cells holding entries that `view` sees. */
  cellsSeenFrom(view: number): number[] {
    const out: number[] = [];
    if (view === NOWHERE) return out;
    const r = this.settings.radius;
    const vx = Math.floor(view / SPAN);
    const vy = view % SPAN;
    for (let x = Math.max(0, vx - r); x <= Math.min(SPAN - 1, vx + r); x++) {
      for (let y = Math.max(0, vy - r); y <= Math.min(SPAN - 1, vy + r); y++) {
        const cell = x * SPAN + y;
        if (this.members.has(cell)) out.push(cell);
      }
    }
    return out;
  }

  /** The positioned entries in `cell`. */
  membersOf(cell: number): ReadonlySet<string> {
    return this.members.get(cell) ?? NO_MEMBERS;
  }

  private cellAt(x: number, y: number): number {
    const size = this.settings.cellSize;
    const cx = Math.min(HALF - 1, Math.max(-HALF, Math.floor(x / size))) + HALF;
    const cy = Math.min(HALF - 1, Math.max(-HALF, Math.floor(y / size))) + HALF;
    return cx * SPAN + cy;
  }

  /** Place an entry from its whole bytes, or move it by a patch's x and y. */
  private place(key: string, bytes: Uint8Array, whole: boolean): void {
    let p = this.places.get(key);
    if (!p) {
      p = { x: NaN, y: NaN, cell: ABSENT };
      this.places.set(key, p);
    } else if (whole) {
      p.x = NaN;
      p.y = NaN;
    }
    readPosition(bytes, p, this.positionKey);
    const cell = Number.isFinite(p.x) && Number.isFinite(p.y) ? this.cellAt(p.x, p.y) : UNPLACED;
    if (cell === p.cell) return;
    if (p.cell >= 0) this.leaveCell(key, p.cell);
    if (cell >= 0) {
      let set = this.members.get(cell);
      if (!set) this.members.set(cell, (set = new Set()));
      set.add(key);
    }
    p.cell = cell;
  }

  private remove(key: string): void {
    const p = this.places.get(key);
    if (!p) return;
    if (p.cell >= 0) this.leaveCell(key, p.cell);
    this.places.delete(key);
  }

  private leaveCell(key: string, cell: number): void {
    const set = this.members.get(cell);
    if (!set) return;
    set.delete(key);
    if (set.size === 0) this.members.delete(cell);
  }
}

const NO_MEMBERS: ReadonlySet<string> = new Set();

function encodedKey(name: string): Uint8Array {
  const w = new MsgpackWriter(64);
  w.str(name);
  return w.bytes().slice();
}
