/**
 * The in-isolate half of the tick transaction. The host calls these functions (through
 * References it takes from `globalThis.__moonpatch` and then deletes); scripts never see them.
 *
 * Wire format between host and isolate is msgpack in one Uint8Array each way, so a tick crosses
 * the boundary as two buffer copies however many inputs and changes it carries.
 *
 *   events  = [[kind, playerId, name, seq, data], ...]          kind: 1 join, 2 leave, 3 input,
 *                                                               4 leave without running the hook
 *   result  = [ok, error|nil, rejections, logs, sets, dels, writes, patches]
 *             rejections = [[eventIndex, error], ...]  (events whose hook threw; undone alone)
 *             sets = [key, recordBytes(bin), key, recordBytes, ...]   dels = [key, ...]
 *             patches = [key, fieldsBytes(bin), ...]: records that existed before the tick and
 *             changed only in some top-level fields, as a msgpack map of just those fields.
 *             A record is in at most one of sets, dels and patches: a patched record is not
 *             encoded whole (the host folds the patch into its copy; server/state/record-patch.ts).
 *   records = [key, recordBytes(bin), key, recordBytes, ...]          (load / export)
 */
import './lockdown.ts';
import { beginTick } from './clock.ts';
import { attachLogRing, noteRunningEvent, takeLogs } from './logs.ts';
import { decode, MsgpackWriter } from './msgpack.ts';
import { isPlainObject, MAX_RECORD_BYTES, type PatchableRecord, setOwn, SIZE_UNKNOWN, StateValueError, world, type WorldNode, worldNodeOf } from './world.ts';

type Hook = ((...args: unknown[]) => unknown) | undefined;
interface Hooks {
  init?: Hook;
  join?: Hook;
  leave?: Hook;
  input?: Hook;
  tick?: Hook;
  migrate?: Hook;
  validate?: Hook;
  downgrade?: Hook;
  safeToPatch?: Hook;
}

/** Captured before any designer module runs: Object.prototype's methods stay replaceable. */
const hasOwn = Object.prototype.hasOwnProperty;
const objectKeys = Object.keys;

const EVENT_JOIN = 1;
const EVENT_LEAVE = 2;
const EVENT_INPUT = 3;
/** The player leaves without the `leave` hook: it stopped (overran, ran out of memory) two ticks already. */
const EVENT_LEAVE_WITHOUT_HOOK = 4;
const MAX_TEXT = 4000;

/** A thrown value, whatever it was, as plain data. Never throws (hostile getters included). */
interface ThrownInfo {
  name: string;
  message: string;
  stack: string;
  code: string | null;
}

function clip(s: string): string {
  return s.length > MAX_TEXT ? s.slice(0, MAX_TEXT) + '…' : s;
}

function describeThrown(e: unknown): ThrownInfo {
  const info: ThrownInfo = { name: 'Error', message: '', stack: '', code: null };
  try {
    if (typeof e === 'string') {
      info.name = 'string';
      info.message = clip(e);
    } else if (e instanceof Error) {
      info.name = clip(String(e.name));
      info.message = clip(String(e.message));
      info.stack = clip(String(e.stack ?? ''));
      const code = (e as { code?: unknown }).code;
      if (typeof code === 'string') info.code = clip(code);
    } else {
      info.name = e === null ? 'null' : typeof e;
      let shown: string | undefined;
      try {
        shown = JSON.stringify(e);
      } catch {
        shown = undefined;
      }
      info.message = clip(`non-Error value thrown: ${shown ?? String(e)}`);
    }
  } catch {
    info.message = info.message || 'a value was thrown that could not be described';
  }
  return info;
}

function writeThrown(w: MsgpackWriter, t: ThrownInfo): void {
  w.mapHeader(4);
  w.str('name');
  w.str(t.name);
  w.str('message');
  w.str(t.message);
  w.str('stack');
  w.str(t.stack);
  w.str('code');
  if (t.code === null) w.nil();
  else w.str(t.code);
}

export function install(hooks: Hooks): void {
  const out = new MsgpackWriter();

  function call(hook: Hook, args: unknown[]): ThrownInfo | null {
    if (typeof hook !== 'function') return null;
    world.open = true;
    try {
      // Reflect.apply, not a spread: a spread runs Array.prototype[Symbol.iterator], which
      // scripts can replace.
      Reflect.apply(hook, undefined, args);
      return null;
    } catch (e) {
      return describeThrown(e);
    } finally {
      world.open = false;
    }
  }

  /**
   * The `player` argument of the hooks, one frozen object per player, kept between ticks:
   * building and freezing a new one for each of a tick's 1,000 inputs was garbage for nothing.
   * Dropped at the player's leave (and all of them if ever this many are kept, which only a
   * host that never sends leaves could cause).
   */
  const players = new Map<string, Readonly<{ id: string; name: string }>>();
  const MAX_KEPT_PLAYERS = 100_000;

  function playerObject(id: string, name: string): Readonly<{ id: string; name: string }> {
    const kept = players.get(id);
    if (kept !== undefined && kept.name === name) return kept;
    if (players.size >= MAX_KEPT_PLAYERS) players.clear();
    const player = Object.freeze({ id, name });
    players.set(id, player);
    return player;
  }

  /** The arguments of an input call, reused (Reflect.apply copies them into the call). */
  const inputArgs: unknown[] = [undefined, undefined, undefined];

  /** Encoded size of the value written by the last {@link writeRecord}. */
  let lastRecordBytes = 0;

  /** Write the value of a record into `out` as a bin; false when the record no longer exists. */
  function writeRecord(key: string): boolean {
    const root = world.root;
    const slash = key.indexOf('/');
    let value: unknown;
    if (slash < 0) {
      if (!hasOwn.call(root, key)) return false;
      value = root[key];
      if (isPlainObject(value)) value = {}; // the object-table marker
    } else {
      const table = root[key.slice(0, slash)];
      const entry = key.slice(slash + 1);
      if (!isPlainObject(table) || !hasOwn.call(table, entry)) return false;
      value = table[entry];
    }
    out.str(key);
    const mark = out.beginBin();
    out.value(value);
    out.endBin(mark);
    lastRecordBytes = out.length - mark;
    const node = worldNodeOf(value);
    if (node !== undefined && node.root === node) sized(node, lastRecordBytes);
    return true;
  }

  /**
   * Record roots whose size bound (WorldNode.bytes) this tick's result set. The bound belongs
   * to the record as committed: if the tick is undone instead, the record may be back to a
   * larger size, so these go back to unknown.
   */
  const resized: WorldNode[] = [];

  function sized(node: WorldNode, bytes: number): void {
    node.bytes = bytes;
    resized[resized.length] = node;
  }

  function forgetSizes(): void {
    for (let i = 0; i < resized.length; i++) resized[i]!.bytes = SIZE_UNKNOWN;
    resized.length = 0;
  }

  /** Writer for measuring a patched record whole, when its size bound passes the limit. */
  const measure = new MsgpackWriter();

  /**
   * Refuse a patched record that may have grown past MAX_RECORD_BYTES. Its new size is at most
   * the old one plus the patch (plus the map header growing, 4 bytes at most); only when that
   * bound passes the limit is the record encoded whole to measure it: after a load, once per
   * record, then about once per megabyte of patches.
   */
  function checkPatchedSize(h: PatchableRecord & WorldNode, patchBytes: number): void {
    const bound = h.bytes + patchBytes + 4;
    if (bound <= MAX_RECORD_BYTES) {
      sized(h, bound);
      return;
    }
    measure.reset();
    measure.value(h.target);
    if (measure.length > MAX_RECORD_BYTES) {
      throw new StateValueError(`moonpatch: record "${h.record}" is ${measure.length} bytes encoded, more than a record can be (${MAX_RECORD_BYTES})`);
    }
    sized(h, measure.length);
  }

  /**
   * Encode the dirty records as `sets` and `dels` (the caller has taken the patched ones out of
   * the dirty set: their field patches say all that changed, and encoding them whole too cost a
   * quarter of a 1,000-player tick).
   */
  function writeChanges(): void {
    // msgpack needs the array length before its items: sort keys into sets and dels first.
    // (Arrays are filled by index, not push: scripts can replace Array.prototype methods.)
    const sets: string[] = [];
    const dels: string[] = [];
    world.dirty.forEach((key) => {
      if (recordExists(key)) sets[sets.length] = key;
      else dels[dels.length] = key;
    });
    out.arrayHeader(sets.length * 2);
    for (let i = 0; i < sets.length; i++) {
      writeRecord(sets[i]!);
      // Many small values can add up past what one string or array may hold (world.ts checks
      // those at the write): refuse the record here. writeResult turns this into a failed tick.
      if (lastRecordBytes > MAX_RECORD_BYTES) {
        throw new StateValueError(`moonpatch: record "${sets[i]}" is ${lastRecordBytes} bytes encoded, more than a record can be (${MAX_RECORD_BYTES})`);
      }
    }
    out.arrayHeader(dels.length);
    for (let i = 0; i < dels.length; i++) out.str(dels[i]!);
  }

  /** Encode the field patches of the tick's changed records (see world.ts), then forget them. */
  function writePatches(records: readonly PatchableRecord[]): void {
    out.arrayHeader(records.length * 2);
    for (let i = 0; i < records.length; i++) {
      const { record, target, fields, fieldCount } = records[i]!;
      out.str(record);
      const mark = out.beginBin();
      out.mapHeader(fieldCount);
      for (let f = 0; f < fieldCount; f++) {
        out.str(fields[f]!);
        out.value(target[fields[f]!]);
      }
      out.endBin(mark);
      checkPatchedSize(records[i] as PatchableRecord & WorldNode, out.length - mark);
    }
    world.beginChanges();
  }

  function recordExists(key: string): boolean {
    const root = world.root;
    const slash = key.indexOf('/');
    if (slash < 0) return hasOwn.call(root, key);
    const table = root[key.slice(0, slash)];
    return isPlainObject(table) && hasOwn.call(table, key.slice(slash + 1));
  }

  /**
   * Run one tick. Each event runs at its own savepoint: an event whose hook throws is undone
   * alone and reported as a rejection. If `tick` (or `init`) throws, the whole tick is undone.
   * On success the journal is kept until the host says the commit landed (next tick) or failed
   * ({@link rollback}).
   */
  /**
   * `migrateFrom` >= 0 makes this the swap tick of a live patch: `migrate(world, migrateFrom)`
   * and then `validate(world)` run first, inside the same transaction as the tick, so a
   * migration that throws or leaves an invalid world fails the whole tick like any other error.
   */
  function tick(events: Uint8Array, seed: number, tickNo: number, nowMs: number, dt: number, runInit: boolean, migrateFrom = -1, downgradeTo = -1): Uint8Array {
    world.forget();
    world.beginChanges();
    resized.length = 0;
    beginTick(seed, tickNo, nowMs);
    noteRunningEvent(-1);
    const list = decode(events) as unknown[][];
    const rejections: [number, ThrownInfo][] = [];
    let failure: ThrownInfo | null = null;

    if (downgradeTo >= 0) return downgrade(downgradeTo);
    if (runInit) failure = call(hooks.init, [world.root]);
    if (migrateFrom >= 0 && failure === null) {
      failure = call(hooks.migrate, [world.root, migrateFrom]);
      if (failure === null) failure = call(hooks.validate, [world.root]);
      if (failure !== null) failure.name = 'migration: ' + failure.name;
    }
    for (let i = 0; i < list.length && failure === null; i++) {
      noteRunningEvent(i); // first: whatever this event costs, from here on, is charged to it
      const ev = list[i] as [number, string, string, number, unknown];
      const kind = ev[0];
      const id = ev[1];
      const name = ev[2];
      const data = ev[4];
      const player = playerObject(id, name);
      const mark = world.mark();
      let err: ThrownInfo | null = null;
      if (kind === EVENT_INPUT) {
        inputArgs[0] = world.root;
        inputArgs[1] = player;
        inputArgs[2] = data;
        err = call(hooks.input, inputArgs);
        inputArgs[2] = undefined; // not kept alive until the next input
      } else if (kind === EVENT_JOIN) err = call(hooks.join, [world.root, player]);
      else if (kind === EVENT_LEAVE) {
        err = call(hooks.leave, [world.root, player]);
        players.delete(id);
      } else if (kind === EVENT_LEAVE_WITHOUT_HOOK) players.delete(id);
      if (err !== null) {
        world.rollback(mark);
        rejections[rejections.length] = [i, err];
      }
    }
    noteRunningEvent(-1);
    if (failure === null) failure = call(hooks.tick, [world.root, dt]);

    return writeResult(failure, rejections);
  }

  /**
   * Rolling a patch back across a schema change: `downgrade(world, toSchema)` turns this
   * version's world into the older schema, journaled like a tick (no events, no tick hook).
   * The host hands the changes to the older version's isolate and commits them with its first
   * tick; if anything fails it rolls this back. Same result format as `tick`.
   */
  function downgrade(toSchema: number): Uint8Array {
    let failure: ThrownInfo | null;
    if (typeof hooks.downgrade !== 'function') {
      failure = { name: 'downgrade: Error', message: 'this version exports no downgrade(world, toSchema)', stack: '', code: 'NO_DOWNGRADE' };
    } else {
      failure = call(hooks.downgrade, [world.root, toSchema]);
      if (failure !== null) failure.name = 'downgrade: ' + failure.name;
    }
    return writeResult(failure, []);
  }

  /**
   * The result of a tick-like call (see the format at the top). A failure undoes the whole
   * journal first; a success encodes the dirty records. If encoding the changes fails (a
   * record over MAX_RECORD_BYTES, or no memory left for the result buffer), the tick fails
   * like a throwing `tick` hook: undone, with the reason, instead of an exception leaving
   * the engine half way through its result.
   */
  function writeResult(failure: ThrownInfo | null, rejections: [number, ThrownInfo][]): Uint8Array {
    const logs = takeLogs();
    if (failure === null) {
      try {
        return encodeResult(null, rejections, logs);
      } catch (e) {
        failure = describeThrown(e);
      }
    }
    return encodeResult(failure, rejections, logs);
  }

  function encodeResult(failure: ThrownInfo | null, rejections: [number, ThrownInfo][], logs: string[]): Uint8Array {
    out.reset();
    out.arrayHeader(8);
    if (failure !== null) {
      world.rollback(0);
      forgetSizes();
      out.value(false);
      writeThrown(out, failure);
    } else {
      out.value(true);
      out.nil();
    }
    out.arrayHeader(rejections.length);
    for (let r = 0; r < rejections.length; r++) {
      out.arrayHeader(2);
      out.uint(rejections[r]![0]);
      writeThrown(out, rejections[r]![1]);
    }
    out.arrayHeader(logs.length);
    for (let l = 0; l < logs.length; l++) out.str(logs[l]!);
    const writes = world.journalLength;
    if (failure !== null) {
      out.arrayHeader(0);
      out.arrayHeader(0);
      out.uint(writes);
      out.arrayHeader(0);
    } else {
      const patchable = world.patchRecords();
      // Patched records go as patches only. (The dirty set is not read again this tick: the
      // patches' beginChanges, or a rollback's, empties it.)
      for (let i = 0; i < patchable.length; i++) world.dirty.delete(patchable[i]!.record);
      writeChanges();
      out.uint(writes);
      writePatches(patchable);
    }
    // A copy sized exactly: the host copies the whole ArrayBuffer behind a view, not just the view.
    return out.copyBytes();
  }

  /**
   * Ask the script whether now is a good moment to swap in a patch (`safeToPatch(world)`, e.g.
   * between rounds). Read-only: the world refuses writes outside hook calls, and this is not
   * one. A script without the hook is always safe; one that throws is not.
   */
  function safeToPatch(): boolean {
    if (typeof hooks.safeToPatch !== 'function') return true;
    try {
      return hooks.safeToPatch(world.root) === true;
    } catch {
      return false;
    }
  }

  /** Undo the last tick: its commit did not land, or it was interrupted (CPU budget). */
  function rollback(): void {
    world.rollback(0);
    forgetSizes();
    takeLogs();
  }

  /** Replace the world with the given records (restore after load or rebuild). */
  function load(records: Uint8Array): void {
    const flat = decode(records) as unknown[];
    const root: Record<string, unknown> = {};
    const entries: [string, string, unknown, number][] = [];
    for (let i = 0; i < flat.length; i += 2) {
      const key = flat[i] as string;
      const bytes = flat[i + 1] as Uint8Array;
      const value = decode(bytes);
      const slash = key.indexOf('/');
      if (slash < 0) root[key] = isPlainObject(value) ? {} : value;
      else entries[entries.length] = [key.slice(0, slash), key.slice(slash + 1), value, bytes.length];
    }
    for (let e = 0; e < entries.length; e++) {
      const table = entries[e]![0];
      const entry = entries[e]![1];
      const value = entries[e]![2];
      let t = root[table];
      if (!isPlainObject(t)) {
        // A record without its table marker: tolerate it (older writers), create the table.
        t = {};
        root[table] = t;
      }
      setOwn(t as Record<string, unknown>, entry, value);
    }
    world.reset(root);
    // The records' sizes are known here: without them the first tick after a load (a rebuild,
    // or a live patch's swap tick) would encode every record it patches whole to measure it.
    for (let e = 0; e < entries.length; e++) knowSize(entries[e]![2], entries[e]![3]);
  }

  /** A record root's encoded size is `bytes` (the record as it was just loaded or applied). */
  function knowSize(value: unknown, bytes: number): void {
    const node = worldNodeOf(value);
    if (node !== undefined && node.root === node) node.bytes = bytes;
  }

  /**
   * Bring a staged isolate's world up to date with records committed since it was loaded:
   * msgpack [key, bin, ...] sets and [key, ...] dels, applied directly (not journaled).
   */
  function applyRecords(setsBuf: Uint8Array, delsBuf: Uint8Array): void {
    const root = world.root;
    const dels = decode(delsBuf) as string[];
    for (let i = 0; i < dels.length; i++) {
      const key = dels[i]!;
      const slash = key.indexOf('/');
      if (slash < 0) delete root[key];
      else {
        const t = root[key.slice(0, slash)];
        if (isPlainObject(t)) delete t[key.slice(slash + 1)];
      }
    }
    const flat = decode(setsBuf) as unknown[];
    // Table markers first, so entries land in their tables.
    for (let i = 0; i < flat.length; i += 2) {
      const key = flat[i] as string;
      if (key.indexOf('/') >= 0) continue;
      const value = decode(flat[i + 1] as Uint8Array);
      if (isPlainObject(value)) {
        if (!isPlainObject(root[key])) root[key] = {};
      } else root[key] = value;
      world.attachAt(key);
    }
    for (let i = 0; i < flat.length; i += 2) {
      const key = flat[i] as string;
      const slash = key.indexOf('/');
      if (slash < 0) continue;
      const name = key.slice(0, slash);
      let t = root[name];
      if (!isPlainObject(t)) {
        t = {};
        root[name] = t;
        world.attachAt(name);
      }
      const entry = key.slice(slash + 1);
      const bytes = flat[i + 1] as Uint8Array;
      const value = decode(bytes);
      // (setOwn: the guarded Object.defineProperty refuses world tables, see guards.ts.)
      if (entry === '__proto__') setOwn(t as Record<string, unknown>, entry, value);
      else {
        const table = t as Record<string, unknown>;
        const current = table[entry];
        if (!hasOwn.call(table, entry) || !assignInPlace(current, value)) table[entry] = value;
      }
      // The record's objects, new or assigned in place, get their positions in the world.
      world.attachAt(key);
      knowSize((t as Record<string, unknown>)[entry], bytes.length);
    }
  }

  /**
   * Make `current` equal to `next` by assigning its fields, when both are plain objects with the
   * same keys in the same order (nested plain objects likewise); false, with nothing changed,
   * when they are not. Why in place: a staged version catches up with every tick's changes
   * (applyRecords), and a record replaced by a new object loses the object shape the warm-up
   * compiled against. Same key order, because iteration order is part of the state: a replay
   * must see the world exactly as the version that ran it.
   */
  function assignInPlace(current: unknown, next: unknown): boolean {
    if (!isPlainObject(current) || !isPlainObject(next) || !sameShape(current, next)) return false;
    const keys = objectKeys(next);
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      const v = next[k];
      if (!assignInPlace(current[k], v)) current[k] = v;
    }
    return true;
  }

  /** Same own keys in the same order (nested objects are compared as they are assigned). */
  function sameShape(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
    const ka = objectKeys(a);
    const kb = objectKeys(b);
    if (ka.length !== kb.length) return false;
    // (A "__proto__" field is safe here: with the same keys, `current` has it as an own data
    // property, and assigning to that sets the field, never the prototype.)
    for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return false;
    return true;
  }

  /** Every record of the world, for snapshots taken inside the isolate (validation, tests). */
  function exportRecords(): Uint8Array {
    out.reset();
    const keys: string[] = [];
    const tables = Object.keys(world.root);
    for (let i = 0; i < tables.length; i++) {
      const table = tables[i]!;
      keys[keys.length] = table;
      const t = world.root[table];
      if (!isPlainObject(t)) continue;
      const entries = Object.keys(t);
      for (let e = 0; e < entries.length; e++) keys[keys.length] = table + '/' + entries[e]!;
    }
    out.arrayHeader(keys.length * 2);
    for (let i = 0; i < keys.length; i++) writeRecord(keys[i]!);
    // A copy sized exactly: the host copies the whole ArrayBuffer behind a view, not just the view.
    return out.copyBytes();
  }

  Object.defineProperty(globalThis, '__moonpatch', {
    value: Object.freeze({ tick, rollback, load, applyRecords, exportRecords, safeToPatch, attachLogRing, hooks: Object.freeze(Object.keys(hooks)) }),
    configurable: true,
  });
}
