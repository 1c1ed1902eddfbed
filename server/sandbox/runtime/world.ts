/**
 * The journaled world: the room's state as plain objects inside the isolate. Scripts read them
 * directly; every write reaches {@link JournaledWorld.write} through the calls the bundler puts
 * in place of assignments (server/sandbox/instrument-writes.ts, runtime/writes.ts), or through
 * the guarded built-ins (runtime/guards.ts).
 *
 * Why a journal: a tick must be a transaction. Every write appends (object, key, old value) to an
 * undo journal before it happens, so rolling back a failed tick costs in proportion to what the
 * tick wrote, never to the size of the world, and no copy of the world is ever taken.
 *
 * Why records: the world is stored (in Redis, in the host's mirror, on clients) as records.
 * Each top-level key of `world` is a table. A table whose value is a plain object is an "object
 * table": each of its entries is a record of its own, key `table/entry` (players/p1). Any other
 * table value (number, string, array...) is a single record, key `table`. An object table also
 * has a marker record at `table` whose value is an empty map. A write anywhere inside a record
 * marks that record dirty; at the end of a tick only dirty records are encoded and leave the isolate.
 *
 * Values are copied when assigned (`world.a = obj` stores a copy of obj): this keeps the world a
 * tree of plain data, each object of it stamped with its position (record, top-level field),
 * and no object of the script's own shared with it.
 */

export class StateValueError extends TypeError {
  readonly code = 'STATE_INVALID_VALUE';
  constructor(message: string) {
    super(message);
    // Not `this.name = ...`: lockdown froze Error.prototype, and assigning a property that is
    // read-only on the prototype throws in strict code (the "override mistake").
    Object.defineProperty(this, 'name', { value: 'StateValueError', configurable: true });
  }
}

type Obj = Record<string, unknown>;

const enum Level {
  Root,
  Table,
  Record,
}

const hasOwn = Object.prototype.hasOwnProperty;
const ObjectProto = Object.prototype;
const getProto = Object.getPrototypeOf;
const defineProperty = Object.defineProperty;
const objectKeys = Object.keys;
const isArray = Array.isArray;
const MAX_DEPTH = 64;

/**
 * The largest record, in encoded bytes (entry.ts refuses a bigger one when it encodes the
 * tick's changes). A string or an array longer than this can never fit in a record, so
 * {@link JournaledWorld.toStored} refuses it at the write, before copying anything: a 50 MB
 * string would otherwise be stored in Redis and sent to every player, and copying a sparse
 * array of length 2**32-1 element by element grows a dictionary until V8 aborts the process.
 */
export const MAX_RECORD_BYTES = 1024 * 1024;

/**
 * Each object of the world carries its position (a {@link WorldNode}) in a private class field
 * stamped onto it (a constructor that returns another object lets a subclass add its fields to
 * that object). The write helpers (writes.ts) find it with `#node in o`, which no script can
 * fake, see, list or remove, and which never runs script code. Objects without it are not part
 * of the world, and writes to them are plain assignments.
 */
class Stamp {
  constructor(o: object) {
    return o;
  }
}
class NodeSlot extends Stamp {
  #node: WorldNode;
  private constructor(o: object, node: WorldNode) {
    super(o);
    this.#node = node;
  }
  static of(o: object): WorldNode | undefined {
    return #node in o ? (o as NodeSlot).#node : undefined;
  }
  static put(o: object, node: WorldNode): void {
    if (#node in o) (o as NodeSlot).#node = node;
    else new NodeSlot(o, node);
  }
}

/** True for objects stored as maps: not arrays, prototype Object.prototype or null. */
export function isPlainObject(v: unknown): v is Obj {
  if (typeof v !== 'object' || v === null || isArray(v)) return false;
  const p = getProto(v);
  return p === ObjectProto || p === null;
}

/** Where an object sits in the world, and the field-patch bookkeeping of a record's root. */
export interface WorldNode {
  world: JournaledWorld;
  /** The {@link JournaledWorld.generation} the object was stamped in: older ones are detached. */
  gen: object;
  level: Level;
  /** Table name for Level.Table, and for a record root in an object table. */
  table: string;
  /** Record key for Level.Record. */
  record: string;
  /** The target is an array (decided once, not per write). */
  isArray: boolean;
  /** The target (on a record root, the record's value: what a field patch reads). */
  target: Obj;
  /**
   * Level.Record: the handler of the record's root value, when that value is a plain object
   * whose writes can be sent as field patches; null when they cannot (an array record).
   */
  root: WorldNode | null;
  /** Level.Record below the root: the root's field this object sits under. */
  field: string;
  /**
   * On a record root: the object holding it (its table, or the world's root) and its key
   * there, to tell a record still in the world from one replaced or deleted (see isAttached).
   */
  holder: Obj | null;
  entry: string;
  /** On a record root: the {@link JournaledWorld.stamp} its `fields` belong to. */
  stamp: number;
  /**
   * On a record root: the top-level fields written during tick `stamp` (no repeats) are the
   * first `fieldCount` of `fields`. The array is kept from tick to tick and overwritten: a new
   * one for every record every tick was a tenth of a 1,000-player tick's garbage.
   */
  fields: string[];
  fieldCount: number;
  /**
   * On a record root: at least the record's encoded size, bytes ({@link SIZE_UNKNOWN} until
   * it is first encoded whole). A record sent as field patches is not encoded whole, so this
   * bound is what tells when it may have grown past MAX_RECORD_BYTES (entry.ts).
   */
  bytes: number;
}

/** {@link WorldNode.bytes} of a record not yet measured: over any limit, so it gets measured. */
export const SIZE_UNKNOWN = MAX_RECORD_BYTES + 1;

/** A record changed this tick in a few of its top-level fields (see JournaledWorld.patchRecords). */
export interface PatchableRecord {
  readonly record: string;
  readonly target: Obj;
  /** The fields are the first `fieldCount` of these. */
  readonly fields: string[];
  readonly fieldCount: number;
}

/**
 * A record with more distinct fields written in one tick than this is sent whole: the field
 * list is searched linearly on every write, and a patch of most of a record saves nothing.
 */
const MAX_PATCH_FIELDS = 16;

/**
 * Past this many journal slots after a tick, the journal's storage is dropped instead of kept
 * for reuse, so one huge tick does not pin its memory for the life of the isolate.
 */
const JOURNAL_KEEP_SLOTS = 1 << 20;

export class JournaledWorld {
  /** The world's root object, tables by name: what the hooks receive. */
  root: Obj = {};
  /**
   * Undo journal, flat: target, key, old value, had own property. Written by index with its
   * own length counter and never shrunk between ticks: regrowing an array every tick (push
   * after `length = 0`) cost more than the writes themselves.
   */
  private journal: unknown[] = [];
  private journalEnd = 0;
  /** Record keys written since the last {@link beginChanges} or full {@link rollback}. */
  dirty = new Set<string>();
  /**
   * Field patches. Most writes in a game tick change a field or two of a record (a player's
   * x and y), and the record's other fields need not go to every player again. Each record
   * root's node keeps the list of its top-level fields written this tick (`stamp` says
   * which tick), and `patchable` lists those roots. A record whose change cannot be described
   * as "these fields now have these values" (created, deleted, replaced, a field deleted, an
   * array record, too many fields) is in `whole` and is sent whole.
   */
  stamp = 1;
  patchable: WorldNode[] = [];
  whole = new Set<string>();
  /**
   * Which world an object's node belongs to: a script may keep objects of a world that
   * reset() replaced, and writes to those must not touch this one (they are plain writes).
   */
  generation = {};
  /**
   * Writes are accepted only while the engine is running a hook. A write from anywhere else
   * (a promise callback that runs after the tick returned, module top-level code) would change
   * the isolate's world outside any transaction: it would never be committed nor rolled back.
   */
  open = false;

  constructor() {
    this.reset({});
  }

  /** Replace the whole world (restore from records); clears the journal and dirty set. */
  reset(root: Obj): void {
    this.root = root;
    this.generation = {};
    const node = this.node(Level.Root, '', '', false, root, null, '', null, '');
    NodeSlot.put(root, node);
    const tables = objectKeys(root);
    for (let i = 0; i < tables.length; i++) this.attach(root[tables[i]!], node, tables[i]!);
    this.forget();
    this.beginChanges();
  }

  /** Stamp the positions of the record(s) at `key` of the root: after the runtime replaced them directly (applyRecords). */
  attachAt(key: string): void {
    const slash = key.indexOf('/');
    const rootNode = NodeSlot.of(this.root)!;
    if (slash < 0) {
      if (hasOwn.call(this.root, key)) this.attach(this.root[key], rootNode, key);
      return;
    }
    const table = this.root[key.slice(0, slash)];
    const tableNode = worldNodeOf(table);
    if (tableNode === undefined || tableNode.level !== Level.Table) return;
    const entry = key.slice(slash + 1);
    if (hasOwn.call(table, entry)) this.attach((table as Obj)[entry], tableNode, entry);
  }

  /** Start collecting a new tick's changes: no record dirty, no field patch pending. */
  beginChanges(): void {
    this.dirty.clear();
    this.whole.clear();
    this.stamp++;
    this.patchable.length = 0;
  }

  /** A position in the journal to roll back to (a savepoint). */
  mark(): number {
    this.savepoint = this.journalEnd;
    return this.journalEnd;
  }

  /** The journal position of the latest savepoint: entries before it are never merged into. */
  private savepoint = 0;

  /** Undo every write after `mark`, newest first. Cost: the number of writes undone. */
  rollback(mark = 0): void {
    const j = this.journal;
    for (let i = this.journalEnd - 4; i >= mark; i -= 4) {
      const target = j[i] as Obj;
      const key = j[i + 1] as string;
      const had = j[i + 3];
      // (Undoing newest first, a key journaled as existing exists again when its entry is
      // undone, so a plain assignment sets that own property, even one named "__proto__".)
      if (had === true) target[key] = j[i + 2];
      else if (had === false) delete target[key];
      else {
        // A delete: the key comes back last, and the keys that followed it go back behind it,
        // since iteration order is part of the state (a replay must see the world as it was).
        setOwn(target, key, j[i + 2]);
        moveToEnd(target, had as string[]);
      }
    }
    this.truncate(mark);
    // The dirty set (and field lists) may now name records whose value is back to what it
    // was: they will be re-encoded unchanged, which is harmless. A full rollback empties them.
    if (mark === 0) this.beginChanges();
  }

  /** Forget the journal: the tick is committed. */
  forget(): void {
    this.truncate(0);
  }

  /** Drop journal entries from `end` on, releasing what they point to. */
  private truncate(end: number): void {
    if (end === 0 && this.journal.length > JOURNAL_KEEP_SLOTS) {
      this.journal = [];
    } else {
      // A loop, not Array.prototype.fill: scripts can replace that method, and it would be
      // called with the journal (raw world objects) as `this`.
      const j = this.journal;
      for (let i = end; i < this.journalEnd; i++) j[i] = undefined;
    }
    this.journalEnd = end;
    if (this.savepoint > end) this.savepoint = end;
  }

  /** `had`: the key existed (true), did not (false), or was deleted, with these keys after it. */
  private record(target: Obj, key: string, old: unknown, had: boolean | string[]): void {
    const j = this.journal;
    const n = this.journalEnd;
    // The slot the previous entry saved, written again with no savepoint in between: that
    // entry already holds the value to restore, so this write needs none. It keeps a loop that
    // hammers one field (`for (;;) me.x += 1`) from growing the journal until the isolate runs
    // out of memory before the CPU budget stops it.
    if (typeof had === 'boolean' && n - 4 >= this.savepoint && j[n - 4] === target && j[n - 3] === key) return;
    j[n] = target;
    j[n + 1] = key;
    j[n + 2] = old;
    j[n + 3] = had;
    this.journalEnd = n + 4;
  }

  get journalLength(): number {
    return this.journalEnd / 4;
  }

  // ---- positions ----

  private node(level: Level, table: string, record: string, array: boolean, target: Obj, root: WorldNode | null, field: string, holder: Obj | null, entry: string): WorldNode {
    return { world: this, gen: this.generation, level, table, record, isArray: array, target, root, field, holder, entry, stamp: 0, fields: [], fieldCount: 0, bytes: SIZE_UNKNOWN };
  }

  /**
   * Stamp `value`, found at `key` of the object `parent` describes, and everything inside it,
   * with their positions. Called for every object that enters the world: at load, and for the
   * copy each assignment stores.
   */
  attach(value: unknown, parent: WorldNode, key: string): void {
    if (typeof value !== 'object' || value === null) return;
    const obj = value as Obj;
    const array = isArray(obj);
    let node: WorldNode;
    switch (parent.level) {
      case Level.Root:
        // A plain object at the root is a table of records; anything else is one record.
        node = array
          ? this.node(Level.Record, '', key, true, obj, null, '', parent.target, key)
          : this.node(Level.Table, key, '', false, obj, null, '', null, '');
        break;
      case Level.Table:
        node = this.node(Level.Record, parent.table, parent.table + '/' + key, array, obj, null, '', parent.target, key);
        if (!array) node.root = node;
        break;
      default:
        node = this.node(Level.Record, '', parent.record, array, obj, parent.root, parent.root === parent ? key : parent.field, null, '');
    }
    NodeSlot.put(obj, node);
    if (array) {
      const arr = obj as unknown as unknown[];
      for (let i = 0; i < arr.length; i++) {
        const v = arr[i];
        if (typeof v === 'object' && v !== null) this.attach(v, node, '' + i);
      }
    } else {
      const keys = objectKeys(obj);
      for (let i = 0; i < keys.length; i++) {
        const v = obj[keys[i]!];
        if (typeof v === 'object' && v !== null) this.attach(v, node, keys[i]!);
      }
    }
  }

  /**
   * A record root still in the world at its position. A script can keep a record's object
   * after the record was deleted or replaced and write to it in a later tick: those writes
   * are journaled like any other (harmless), but the record must be sent as what the world
   * holds at its key, not as a patch of the object it kept.
   */
  private isAttached(h: WorldNode): boolean {
    const holder = h.holder;
    if (holder === null) return false;
    if (holder !== this.root && this.root[h.table] !== holder) return false;
    return holder[h.entry] === h.target;
  }

  // ---- field patches ----

  /** A write to `key` of the object `h` handles, inside a record: note the field it changes. */
  private noteField(h: WorldNode, key: string): void {
    const root = h.root;
    if (root === null) {
      this.whole.add(h.record);
      return;
    }
    const field = root === h ? key : h.field;
    if (root.stamp !== this.stamp) {
      root.stamp = this.stamp;
      root.fields[0] = field;
      root.fieldCount = 1;
      this.patchable[this.patchable.length] = root;
      return;
    }
    const fields = root.fields;
    const n = root.fieldCount;
    for (let i = 0; i < n; i++) if (fields[i] === field) return;
    if (n >= MAX_PATCH_FIELDS) this.whole.add(h.record);
    else {
      fields[n] = field;
      root.fieldCount = n + 1;
    }
  }

  /**
   * The records whose changes this tick can be sent as a patch: only fields set (none deleted),
   * the record neither created nor replaced. `target` is the record's value, `fields` the
   * top-level fields that changed. The list is reused: read it before the next call.
   */
  patchRecords(): readonly PatchableRecord[] {
    const out = this.patchOut;
    out.length = 0;
    const list = this.patchable;
    for (let i = 0; i < list.length; i++) {
      const h = list[i]!;
      if (h.stamp !== this.stamp || this.whole.has(h.record) || !allOwn(h.target, h.fields, h.fieldCount) || !this.isAttached(h)) continue;
      out[out.length] = h;
    }
    return out;
  }

  private readonly patchOut: PatchableRecord[] = [];

  // ---- writes ----

  private assertOpen(): void {
    if (!this.open) throw new StateValueError('moonpatch: the world can only be changed inside a hook call (not from a promise callback or module code)');
  }

  write(h: WorldNode, target: Obj, key: string, value: unknown): void {
    this.assertOpen();
    // Fast path: a number, string or boolean over an existing property of a record (most
    // writes in a game tick: positions, counters, flags).
    const t = typeof value;
    if (h.level === Level.Record && !h.isArray && (t === 'number' || t === 'boolean' || (t === 'string' && (value as string).length <= MAX_RECORD_BYTES)) && hasOwn.call(target, key)) {
      const old = target[key];
      if (old === value) return; // the same value again changes nothing, and costs no commit
      if (t === 'number' && !Number.isFinite(value)) this.toStored(value, 0, key); // throws
      this.record(target, key, old, true);
      target[key] = value;
      // A record root stamped with this tick is in the dirty set already (noteField stamps it
      // on the record's first write of the tick, beginChanges empties both): most writes are
      // a record's second to sixth of the tick, and skip the set.
      const root = h.root;
      if (root === null || root.stamp !== this.stamp) this.dirty.add(h.record);
      this.noteField(h, key);
      return;
    }
    if (key === '__proto__') throw new StateValueError('moonpatch: "__proto__" cannot be a key in the world');
    if (value === undefined) {
      this.remove(h, target, key);
      return;
    }
    if (h.level === Level.Root && key.includes('/')) {
      throw new StateValueError(`moonpatch: table names cannot contain "/": ${JSON.stringify(key)}`);
    }
    const had = hasOwn.call(target, key);
    const old = had ? target[key] : undefined;
    const stored = this.toStored(value, 0, key);
    if (had && old === stored && (typeof stored !== 'object' || stored === null)) return;
    if (h.isArray) {
      const arr = target as unknown as unknown[];
      if (key !== 'length') {
        // Growing an array past its end changes `length` without a write to it: journal it
        // too, or undoing the element would leave the array longer than before.
        if (Number(key) >= arr.length) this.record(target, 'length', arr.length, true);
      } else if ((stored as number) < arr.length) {
        // Shrinking drops elements without a write to each: journal them so undo restores them.
        for (let i = stored as number; i < arr.length; i++) {
          if (hasOwn.call(arr, i)) this.record(target, String(i), arr[i], true);
        }
      }
    }
    this.record(target, key, old, had);
    target[key] = stored;
    if (typeof stored === 'object' && stored !== null) this.attach(stored, h, key);
    this.markDirty(h, key, old, stored);
  }

  remove(h: WorldNode, target: Obj, key: string): void {
    this.assertOpen();
    if (!hasOwn.call(target, key)) return;
    const old = target[key];
    this.record(target, key, old, h.isArray ? NOTHING_AFTER : keysAfter(target, key));
    delete target[key];
    // A field deleted from a record's root value cannot be described as a patch of set fields.
    if (h.level === Level.Record && h.root === h) this.whole.add(h.record);
    this.markDirty(h, key, old, undefined);
  }

  private dirtyEntries(table: string, obj: Obj): void {
    const keys = objectKeys(obj);
    for (let i = 0; i < keys.length; i++) {
      const record = table + '/' + keys[i];
      this.dirty.add(record);
      this.whole.add(record);
    }
  }

  private markDirty(h: WorldNode, key: string, old: unknown, now: unknown): void {
    switch (h.level) {
      case Level.Root:
        // Replacing or deleting a table touches every record in the old and the new table.
        if (isPlainObject(old)) this.dirtyEntries(key, old);
        if (isPlainObject(now)) this.dirtyEntries(key, now);
        this.dirty.add(key);
        this.whole.add(key);
        return;
      case Level.Table: {
        // Created, replaced or deleted: sent whole (or as a deletion).
        const record = h.table + '/' + key;
        this.dirty.add(record);
        this.whole.add(record);
        return;
      }
      default:
        this.dirty.add(h.record);
        this.noteField(h, key);
    }
  }

  /**
   * A deep copy of `value` as plain data, or a StateValueError naming what is wrong and where.
   */
  toStored(value: unknown, depth: number, path: string): unknown {
    switch (typeof value) {
      case 'string':
        if (value.length > MAX_RECORD_BYTES) {
          throw new StateValueError(`moonpatch: a string of ${value.length} characters at "${path}" is larger than a record can be (${MAX_RECORD_BYTES} bytes)`);
        }
        return value;
      case 'boolean':
        return value;
      case 'number':
        if (value !== value || value === Infinity || value === -Infinity) {
          throw new StateValueError(`moonpatch: ${value} at "${path}" is not a finite number`);
        }
        return value;
      case 'undefined':
        return null;
      case 'object':
        break;
      default:
        throw new StateValueError(`moonpatch: a ${typeof value} at "${path}" cannot be stored in the world`);
    }
    if (value === null) return null;
    if (depth >= MAX_DEPTH) throw new StateValueError(`moonpatch: value at "${path}" is nested deeper than ${MAX_DEPTH} (a cycle?)`);
    const src = value as Obj;
    if (isArray(src)) {
      // Length read once (a script's Proxy could answer differently each time) and bounded
      // before anything is allocated; the copy grows from empty, so it stays a packed array.
      const n = src.length;
      if (n > MAX_RECORD_BYTES) {
        throw new StateValueError(`moonpatch: an array of length ${n} at "${path}" is larger than a record can be (${MAX_RECORD_BYTES} bytes)`);
      }
      const out: unknown[] = [];
      for (let i = 0; i < n; i++) out[i] = this.toStored(src[i], depth + 1, path + '.' + i);
      return out;
    }
    if (!isPlainObject(src)) {
      const name = (getProto(src) as { constructor?: { name?: string } } | null)?.constructor?.name ?? 'object';
      throw new StateValueError(`moonpatch: a ${name} at "${path}" is not plain data (use plain objects and arrays)`);
    }
    const out: Obj = {};
    const keys = objectKeys(src);
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      if (k === '__proto__') throw new StateValueError(`moonpatch: "__proto__" cannot be a key (at "${path}")`);
      const v = src[k];
      if (v !== undefined) out[k] = this.toStored(v, depth + 1, path + '.' + k);
    }
    return out;
  }
}

/** For a deleted array element: an array's index keys keep their order by themselves. */
const NOTHING_AFTER: string[] = [];

/** The own keys that follow `key` in `target`'s order. */
function keysAfter(target: Obj, key: string): string[] {
  const keys = objectKeys(target);
  let at = keys.length - 1;
  while (at >= 0 && keys[at] !== key) at--;
  if (at < 0 || at === keys.length - 1) return NOTHING_AFTER;
  // A loop, not slice: scripts can replace Array.prototype methods.
  const after: string[] = [];
  for (let i = at + 1; i < keys.length; i++) after[after.length] = keys[i]!;
  return after;
}

/** Delete and re-add each key, in order, so they come last in `target`'s iteration order. */
function moveToEnd(target: Obj, keys: string[]): void {
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const v = target[k];
    delete target[k];
    setOwn(target, k, v);
  }
}

/**
 * `target[key] = value` as an own data property, even for the key "__proto__". With the native
 * defineProperty, captured before the lockdown guarded it (guards.ts).
 */
export function setOwn(target: Obj, key: string, value: unknown): void {
  if (key === '__proto__') defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  else target[key] = value;
}

/**
 * False when a listed field is gone: a field added by an event whose writes were then undone
 * to its savepoint. Such a record is sent whole (a patch cannot say "absent").
 */
function allOwn(target: Obj, fields: string[], n: number): boolean {
  for (let i = 0; i < n; i++) if (!hasOwn.call(target, fields[i]!)) return false;
  return true;
}

/** The isolate's one world: what the entry points (entry.ts) run the hooks on. */
export const world = new JournaledWorld();

/**
 * The node of `o` when `o` is an object of a world (as that world is now: not one it replaced);
 * undefined for any other value. What the write helpers (writes.ts) and the guarded built-ins
 * (guards.ts) ask of every object they are given.
 */
export function worldNodeOf(o: unknown): WorldNode | undefined {
  if (typeof o !== 'object' || o === null) return undefined;
  const n = NodeSlot.of(o);
  return n !== undefined && n.gen === n.world.generation ? n : undefined;
}
