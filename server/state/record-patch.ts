/**
 * Field patches, folded into whole records on the host.
 *
 * A tick that changes only some top-level fields of a record (a player's x and y) reports just
 * those fields: a msgpack map of field -> new value, encoded by the isolate's writer exactly as
 * it encodes them inside the whole record. The patch is what players are sent and what the tick
 * log keeps; the host folds it into its mirror of the record when it needs the record whole.
 *
 * Folding works on the bytes: the record's map entries are kept as they are, a field the patch
 * names takes the patch's value bytes, and new fields are appended. No value is decoded, and the
 * result is byte for byte what the isolate would have encoded for the record, because both
 * come from one writer whose encoding of a value does not depend on where it sits. The one
 * case where appending is wrong is a new field named like an array index ("3"): JavaScript
 * orders those before the other keys of an object, so that case (never seen in practice) is
 * folded through a decode and an encode instead, which follow the same rules as the isolate.
 */
import { decode, MAX_DEPTH, MsgpackWriter } from '../sandbox/runtime/msgpack.ts';

/** A tick's changes to records: whole records, field patches of existing ones, deletions. */
export interface RecordChanges {
  /** Records written whole: created, replaced, or changed in ways a patch cannot say. */
  readonly sets: readonly (readonly [string, Uint8Array])[];
  /** Records deleted. */
  readonly dels: readonly string[];
  /** Field patches of records that existed before the tick; disjoint from `sets` and `dels`. */
  readonly patches: readonly (readonly [string, Uint8Array])[];
}

/** [key, bin, key, bin, ...] (the wire form of sets and patches) as pairs. */
export function pairsOf(flat: readonly (string | Uint8Array)[]): [string, Uint8Array][] {
  const pairs: [string, Uint8Array][] = new Array(flat.length >> 1);
  for (let i = 0; i < flat.length; i += 2) pairs[i >> 1] = [flat[i] as string, flat[i + 1] as Uint8Array];
  return pairs;
}

export const NO_PATCHES: readonly (readonly [string, Uint8Array])[] = Object.freeze([]);

/**
 * Apply changes to a map of record bytes, in place. A patch of a record the map does not have
 * is skipped: replaying a log over a checkpoint newer than some of its deltas can meet a patch
 * of a record a later delta of the same log deletes or writes whole (see docs/state.md).
 */
export function applyChanges(records: Map<string, Uint8Array>, changes: RecordChanges): void {
  for (const [k, v] of changes.sets) records.set(k, v);
  for (const k of changes.dels) records.delete(k);
  for (const [k, patch] of changes.patches) {
    const current = records.get(k);
    if (current) records.set(k, foldPatch(current, patch));
  }
}

/**
 * The changes with every patch folded into a whole record, taking each record's current bytes
 * from `base` (for consumers that take whole records only: a staged isolate's catch-up, a
 * merge of several ticks' changes). A patch whose record `base` lacks is dropped, as above.
 */
export function wholeChanges(changes: RecordChanges, base: { get(key: string): Uint8Array | undefined }): { sets: [string, Uint8Array][]; dels: string[] } {
  const sets: [string, Uint8Array][] = changes.sets.map(([k, v]) => [k, v]);
  for (const [k, patch] of changes.patches) {
    const current = base.get(k);
    if (current) sets.push([k, foldPatch(current, patch)]);
  }
  return { sets, dels: [...changes.dels] };
}

/** Whether `bytes` is a field patch the host can fold: one well-formed map with string keys. */
export function isFoldablePatch(bytes: Uint8Array): boolean {
  return mapEntries(bytes, 1) >= 0;
}

/**
 * The record with the patch's fields set: new bytes; neither input is modified. foldPatches
 * does the same for several; this one-patch version is kept because it is four times faster
 * for one (measured: about 1 us a record against 4-6 us through foldPatches, whose per-call
 * bookkeeping for added fields and their order one patch does not need), and single folds
 * come by the thousand on some paths (a staged version's catch-up, every tick).
 */
export function foldPatch(record: Uint8Array, patch: Uint8Array): Uint8Array {
  // Offsets go to scratch arrays reused across calls: folds come by the thousand (a checkpoint
  // folds every record a tick patched), and allocating typed arrays and subarrays for each
  // cost more than the copying.
  const recCount = mapEntries(record, 0);
  const patCount = recCount < 0 ? -1 : mapEntries(patch, 1);
  if (recCount < 0 || patCount < 0) return foldByValue(record, patch);
  const rec = scratch[0]!;
  const pat = scratch[1]!;
  const replacedBy = fitReplaced(recCount);
  let added = 0;
  let size = 0;
  for (let p = 0; p < patCount; p++) {
    const r = findKey(record, rec, recCount, patch, pat, p);
    if (r >= 0) replacedBy[r] = p;
    else {
      if (isIndexLike(patch, pat[p * 3]!, pat[p * 3 + 1]!)) return foldByValue(record, patch);
      added++;
      size += pat[p * 3 + 2]! - pat[p * 3]!;
    }
  }
  const count = recCount + added;
  size += mapHeaderSize(count);
  for (let r = 0; r < recCount; r++) {
    const p = replacedBy[r]!;
    size += rec[r * 3 + 1]! - rec[r * 3]!; // the key
    size += p < 0 ? rec[r * 3 + 2]! - rec[r * 3 + 1]! : pat[p * 3 + 2]! - pat[p * 3 + 1]!;
  }
  const out = new Uint8Array(size);
  let o = writeMapHeader(out, count);
  for (let r = 0; r < recCount; r++) {
    const p = replacedBy[r]!;
    o = copy(record, rec[r * 3]!, rec[r * 3 + 1]!, out, o);
    o = p < 0 ? copy(record, rec[r * 3 + 1]!, rec[r * 3 + 2]!, out, o) : copy(patch, pat[p * 3 + 1]!, pat[p * 3 + 2]!, out, o);
  }
  if (added > 0) {
    for (let p = 0; p < patCount; p++) {
      if (findKey(record, rec, recCount, patch, pat, p) < 0) o = copy(patch, pat[p * 3]!, pat[p * 3 + 2]!, out, o);
    }
  }
  return out;
}

/**
 * The record with several patches folded in, oldest first: the same bytes as folding them one
 * at a time, in one pass. The committed mirror keeps a record's patches until it is read whole
 * (a checkpoint, every 20 ticks): folding 20 patches one by one parsed and rebuilt the record
 * 20 times, 2 ms of the server's main thread a tick at 1,000 players. Here each patch is parsed
 * once, newest first, and a field takes the value of the newest patch that names it.
 */
export function foldPatches(record: Uint8Array, patches: readonly Uint8Array[]): Uint8Array {
  if (patches.length === 1) return foldPatch(record, patches[0]!);
  const recCount = mapEntries(record, 0);
  if (recCount < 0) return foldEach(record, patches);
  const rec = scratch[0]!;
  // Where each record entry's value comes from: the patch (-1: the record) and its offsets.
  const from = fitSources(recCount);
  // Fields the patches add, in no order yet: where the key and value are (newest patch naming
  // it), and where it first appeared (oldest patch naming it, its position there).
  const added: { src: number; keyStart: number; valueStart: number; valueEnd: number; first: number; pos: number }[] = [];
  for (let q = patches.length - 1; q >= 0; q--) {
    const patch = patches[q]!;
    const n = mapEntries(patch, 1);
    if (n < 0) return foldEach(record, patches);
    const pat = scratch[1]!;
    for (let p = 0; p < n; p++) {
      const r = findKey(record, rec, recCount, patch, pat, p);
      if (r >= 0) {
        if (from[r * 3]! < 0) {
          from[r * 3] = q;
          from[r * 3 + 1] = pat[p * 3 + 1]!;
          from[r * 3 + 2] = pat[p * 3 + 2]!;
        }
        continue;
      }
      const keyStart = pat[p * 3]!;
      const keyEnd = pat[p * 3 + 1]!;
      if (isIndexLike(patch, keyStart, keyEnd)) return foldEach(record, patches);
      const seen = added.find((a) => sameBytes(patches[a.src]!, a.keyStart, a.valueStart, patch, keyStart, keyEnd));
      if (seen) {
        seen.first = q;
        seen.pos = p;
      } else added.push({ src: q, keyStart, valueStart: keyEnd, valueEnd: pat[p * 3 + 2]!, first: q, pos: p });
    }
  }
  // New fields go last, in the order they first appeared, as assigning them one tick after
  // another would have put them.
  added.sort((a, b) => a.first - b.first || a.pos - b.pos);
  const count = recCount + added.length;
  let size = mapHeaderSize(count);
  for (let r = 0; r < recCount; r++) {
    size += rec[r * 3 + 1]! - rec[r * 3]!;
    size += from[r * 3]! < 0 ? rec[r * 3 + 2]! - rec[r * 3 + 1]! : from[r * 3 + 2]! - from[r * 3 + 1]!;
  }
  for (const a of added) size += a.valueEnd - a.keyStart;
  const out = new Uint8Array(size);
  let o = writeMapHeader(out, count);
  for (let r = 0; r < recCount; r++) {
    o = copy(record, rec[r * 3]!, rec[r * 3 + 1]!, out, o);
    const q = from[r * 3]!;
    o = q < 0 ? copy(record, rec[r * 3 + 1]!, rec[r * 3 + 2]!, out, o) : copy(patches[q]!, from[r * 3 + 1]!, from[r * 3 + 2]!, out, o);
  }
  for (const a of added) o = copy(patches[a.src]!, a.keyStart, a.valueEnd, out, o);
  return out;
}

function foldEach(record: Uint8Array, patches: readonly Uint8Array[]): Uint8Array {
  let v = record;
  for (const p of patches) v = foldPatch(v, p);
  return v;
}

function sameBytes(a: Uint8Array, aStart: number, aEnd: number, b: Uint8Array, bStart: number, bEnd: number): boolean {
  if (aEnd - aStart !== bEnd - bStart) return false;
  for (let i = 0; i < aEnd - aStart; i++) if (a[aStart + i] !== b[bStart + i]) return false;
  return true;
}

let sourcesScratch = new Int32Array(64 * 3);

function fitSources(n: number): Int32Array {
  if (sourcesScratch.length < n * 3) sourcesScratch = new Int32Array(n * 6);
  for (let r = 0; r < n; r++) sourcesScratch[r * 3] = -1;
  return sourcesScratch;
}

/** Entry offsets of the record ([0]) and the patch ([1]), three per entry (see mapEntries). */
const scratch: Int32Array[] = [new Int32Array(64 * 3), new Int32Array(64 * 3)];
let replacedScratch = new Int32Array(64);

function fitReplaced(n: number): Int32Array {
  if (replacedScratch.length < n) replacedScratch = new Int32Array(n * 2);
  replacedScratch.fill(-1, 0, n);
  return replacedScratch;
}

/** Byte copy of src[start, end) to dst at `at`; returns the position after it. Short runs: a loop beats set(subarray()). */
function copy(src: Uint8Array, start: number, end: number, dst: Uint8Array, at: number): number {
  if (end - start > 64) {
    dst.set(src.subarray(start, end), at);
    return at + end - start;
  }
  for (let i = start; i < end; i++) dst[at++] = src[i]!;
  return at;
}

/** The same fold through decoded values: slower, follows JavaScript's key order exactly. */
function foldByValue(record: Uint8Array, patch: Uint8Array): Uint8Array {
  // A patch of something that is not a map record, or bytes that do not decode, change
  // nothing: only a subverted isolate or a tampered log could hold one, and a throw here would
  // stop every later checkpoint, snapshot and replay of the room (the same bytes would throw
  // again each time). Mirror and replay both skip it, so they agree.
  let target: unknown;
  let fields: unknown;
  try {
    target = decode(record);
    fields = decode(patch);
  } catch {
    return record;
  }
  if (!isPlainMap(target) || !isPlainMap(fields)) return record;
  for (const k of Object.keys(fields)) {
    // An own data property even for "__proto__" (an assignment would set the prototype).
    Object.defineProperty(target, k, { value: fields[k], enumerable: true, writable: true, configurable: true });
  }
  const w = new MsgpackWriter();
  w.value(target);
  return w.copyBytes();
}

function isPlainMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/**
 * The entries of a msgpack map as offsets into scratch[slot], three per entry: key start,
 * value start, value end. Returns the entry count, or -1 when the bytes are not one
 * well-formed map with string keys (folded by value then, which reports why).
 */
function mapEntries(bytes: Uint8Array, slot: number): number {
  if (bytes.length === 0) return -1;
  const t = bytes[0]!;
  let count: number;
  let pos: number;
  if (t >= 0x80 && t <= 0x8f) {
    count = t & 0x0f;
    pos = 1;
  } else if (t === 0xde && bytes.length >= 3) {
    count = (bytes[1]! << 8) | bytes[2]!;
    pos = 3;
  } else if (t === 0xdf && bytes.length >= 5) {
    count = u32(bytes, 1);
    pos = 5;
  } else return -1;
  if (count * 2 > bytes.length - pos) return -1;
  if (scratch[slot]!.length < count * 3) scratch[slot] = new Int32Array(count * 6);
  const at = scratch[slot]!;
  for (let i = 0; i < count; i++) {
    at[i * 3] = pos;
    const keyType = bytes[pos]!;
    // Keys are strings as the writer encodes them (fixstr, str8/16/32); anything else, by value.
    if (!((keyType >= 0xa0 && keyType <= 0xbf) || (keyType >= 0xd9 && keyType <= 0xdb))) return -1;
    pos = skip(bytes, pos, 1);
    if (pos < 0) return -1;
    at[i * 3 + 1] = pos;
    pos = skip(bytes, pos, 1);
    if (pos < 0) return -1;
    at[i * 3 + 2] = pos;
  }
  return pos === bytes.length ? count : -1;
}

/** Index of the record entry whose key bytes equal patch entry `p`'s, or -1. */
function findKey(record: Uint8Array, rec: Int32Array, recCount: number, patch: Uint8Array, pat: Int32Array, p: number): number {
  const ps = pat[p * 3]!;
  const len = pat[p * 3 + 1]! - ps;
  for (let r = 0; r < recCount; r++) {
    const rs = rec[r * 3]!;
    if (rec[r * 3 + 1]! - rs !== len) continue;
    let i = 0;
    while (i < len && record[rs + i] === patch[ps + i]) i++;
    if (i === len) return r;
  }
  return -1;
}

/**
 * Read the `x` and `y` fields of a record or field patch into `p` (interest management,
 * server/room/interest.ts): a number, or NaN for a field that is there but not a number.
 * Fields the map does not name are left as they are (a patch names only what changed). Bytes
 * that are not a well-formed map with string keys change nothing. Walks the map as folding
 * does (mapEntries), in the patch's scratch slot: nothing here runs during a fold.
 *
 * With `field` (the msgpack bytes of a top-level key, as the writer encodes it), x and y are
 * read inside that field's map instead (entries shaped `{ pos: { x, y } }`). A patch carries a
 * top-level field whole, so a `field` that is there sets both: one it does not name is NaN.
 */
export function readPosition(bytes: Uint8Array, p: { x: number; y: number }, field: Uint8Array | null = null): void {
  if (field === null) return readXY(bytes, p);
  const count = mapEntries(bytes, 1);
  const at = scratch[1]!;
  for (let i = 0; i < count; i++) {
    const key = at[i * 3]!;
    const value = at[i * 3 + 1]!;
    if (!sameBytes(bytes, key, value, field, 0, field.length)) continue;
    p.x = NaN;
    p.y = NaN;
    readXY(bytes.subarray(value, at[i * 3 + 2]!), p); // the outer walk is done: slot 1 is free
    return;
  }
}

function readXY(bytes: Uint8Array, p: { x: number; y: number }): void {
  const count = mapEntries(bytes, 1);
  const at = scratch[1]!;
  for (let i = 0; i < count; i++) {
    const key = at[i * 3]!;
    // The keys "x" and "y" as the writer encodes them: the fixstrs a1 78 and a1 79.
    if (at[i * 3 + 1]! - key !== 2 || bytes[key] !== 0xa1) continue;
    if (bytes[key + 1] === 0x78) p.x = readNumber(bytes, at[i * 3 + 1]!);
    else if (bytes[key + 1] === 0x79) p.y = readNumber(bytes, at[i * 3 + 1]!);
  }
}

const numberView = new DataView(new ArrayBuffer(8));

/** The msgpack number at `pos` (mapEntries has checked that the value is complete), or NaN. */
function readNumber(b: Uint8Array, pos: number): number {
  const t = b[pos]!;
  if (t < 0x80) return t;
  if (t >= 0xe0) return t - 0x100;
  const size = t === 0xcb || t === 0xcf || t === 0xd3 ? 8 : t === 0xca || t === 0xce || t === 0xd2 ? 4 : t === 0xcd || t === 0xd1 ? 2 : 1;
  for (let i = 0; i < size; i++) numberView.setUint8(i, b[pos + 1 + i]!);
  switch (t) {
    case 0xcc: return numberView.getUint8(0);
    case 0xcd: return numberView.getUint16(0);
    case 0xce: return numberView.getUint32(0);
    case 0xcf: return Number(numberView.getBigUint64(0));
    case 0xd0: return numberView.getInt8(0);
    case 0xd1: return numberView.getInt16(0);
    case 0xd2: return numberView.getInt32(0);
    case 0xd3: return Number(numberView.getBigInt64(0));
    case 0xca: return numberView.getFloat32(0);
    case 0xcb: return numberView.getFloat64(0);
    default: return NaN;
  }
}

/** Whether the string encoded at [start, end) is an array index, "0" to "4294967294". */
function isIndexLike(bytes: Uint8Array, start: number, end: number): boolean {
  const t = bytes[start]!;
  const headerLen = t >= 0xa0 && t <= 0xbf ? 1 : t === 0xd9 ? 2 : t === 0xda ? 3 : 5;
  const s = start + headerLen;
  const n = end - s;
  if (n < 1 || n > 10) return false;
  if (bytes[s] === 0x30 /* 0 */) return n === 1;
  let value = 0;
  for (let i = s; i < end; i++) {
    const c = bytes[i]!;
    if (c < 0x30 || c > 0x39) return false;
    value = value * 10 + (c - 0x30);
  }
  return value <= 4294967294;
}

/**
 * Position just after the msgpack value at `pos`, or -1 when it is malformed, truncated or
 * nested deeper than the isolate's writer ever nests (bytes from an isolate are untrusted).
 */
function skip(b: Uint8Array, pos: number, depth: number): number {
  if (pos >= b.length || depth > MAX_DEPTH + 1) return -1;
  const t = b[pos]!;
  if (t < 0x80 || t >= 0xe0) return pos + 1; // fixints
  if (t < 0x90) return skipItems(b, pos + 1, (t & 0x0f) * 2, depth);
  if (t < 0xa0) return skipItems(b, pos + 1, t & 0x0f, depth);
  if (t < 0xc0) return within(b, pos + 1 + (t & 0x1f));
  switch (t) {
    case 0xc0:
    case 0xc2:
    case 0xc3:
      return pos + 1;
    case 0xcc:
    case 0xd0:
      return within(b, pos + 2);
    case 0xcd:
    case 0xd1:
      return within(b, pos + 3);
    case 0xca:
    case 0xce:
    case 0xd2:
      return within(b, pos + 5);
    case 0xcb:
    case 0xcf:
    case 0xd3:
      return within(b, pos + 9);
    case 0xc4:
    case 0xd9:
      return pos + 2 > b.length ? -1 : within(b, pos + 2 + b[pos + 1]!);
    case 0xc5:
    case 0xda:
      return pos + 3 > b.length ? -1 : within(b, pos + 3 + ((b[pos + 1]! << 8) | b[pos + 2]!));
    case 0xc6:
    case 0xdb:
      return pos + 5 > b.length ? -1 : within(b, pos + 5 + u32(b, pos + 1));
    case 0xdc:
      return pos + 3 > b.length ? -1 : skipItems(b, pos + 3, (b[pos + 1]! << 8) | b[pos + 2]!, depth);
    case 0xdd:
      return pos + 5 > b.length ? -1 : skipItems(b, pos + 5, u32(b, pos + 1), depth);
    case 0xde:
      return pos + 3 > b.length ? -1 : skipItems(b, pos + 3, ((b[pos + 1]! << 8) | b[pos + 2]!) * 2, depth);
    case 0xdf:
      return pos + 5 > b.length ? -1 : skipItems(b, pos + 5, u32(b, pos + 1) * 2, depth);
    default:
      return -1; // ext types and 0xc1: the writer never produces them
  }
}

function skipItems(b: Uint8Array, pos: number, n: number, depth: number): number {
  if (n > b.length - pos) return -1; // every item takes at least a byte
  for (let i = 0; i < n && pos >= 0; i++) pos = skip(b, pos, depth + 1);
  return pos;
}

function within(b: Uint8Array, end: number): number {
  return end <= b.length ? end : -1;
}

function u32(b: Uint8Array, pos: number): number {
  return ((b[pos]! << 24) | (b[pos + 1]! << 16) | (b[pos + 2]! << 8) | b[pos + 3]!) >>> 0;
}

function mapHeaderSize(n: number): number {
  return n < 16 ? 1 : n < 0x10000 ? 3 : 5;
}

function writeMapHeader(out: Uint8Array, n: number): number {
  if (n < 16) {
    out[0] = 0x80 | n;
    return 1;
  }
  if (n < 0x10000) {
    out[0] = 0xde;
    out[1] = n >> 8;
    out[2] = n & 0xff;
    return 3;
  }
  out[0] = 0xdf;
  out[1] = n >>> 24;
  out[2] = (n >> 16) & 0xff;
  out[3] = (n >> 8) & 0xff;
  out[4] = n & 0xff;
  return 5;
}
