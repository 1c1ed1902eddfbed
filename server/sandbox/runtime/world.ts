/**
 * The journaled world: the room's state as plain objects inside the isolate, seen by scripts
 * through proxies that record every write.
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
 * tree of plain data that only the proxies can reach, so no write can bypass the journal.
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

interface ProxySlot {
  proxy: Obj;
  generation: object;
}

/**
 * Each world object caches its proxy, and each proxy knows its raw target, in private class
 * fields stamped onto them (a constructor that returns another object lets a subclass add its
 * fields to that object). This replaced two WeakMaps: V8 scans WeakMap entries at every
 * young-generation GC, which made the GC cost of a tick grow with the number of proxied objects.
 *
 * Why private fields and not symbol-keyed properties (as before): a symbol key is visible. A
 * symbol property on a target shows in Object.getOwnPropertySymbols(worldProxy), and asking a
 * value for a symbol property (`value[RAW]`) hands the symbol to the value's own proxy trap or
 * getter, so a hostile script could learn RAW and read any world object raw, then write to it
 * without the journal (writes that are never committed and survive rollback). `#f in obj` and
 * `obj.#f` never run script code and no reflection can list or name them.
 */
class Stamp {
  constructor(o: object) {
    return o;
  }
}
class TargetSlot extends Stamp {
  #slot: ProxySlot;
  constructor(target: object, slot: ProxySlot) {
    super(target);
    this.#slot = slot;
  }
  static of(o: object): ProxySlot | undefined {
    return #slot in o ? (o as TargetSlot).#slot : undefined;
  }
}
class ProxyRaw extends Stamp {
  #raw: Obj;
  constructor(proxy: object, raw: Obj) {
    super(proxy);
    this.#raw = raw;
  }
  /** The raw target of a world proxy; undefined for anything else (no trap runs). */
  static of(o: object): Obj | undefined {
    return #raw in o ? (o as ProxyRaw).#raw : undefined;
  }
}

/** True for objects stored as maps: not arrays, prototype Object.prototype or null. */
export function isPlainObject(v: unknown): v is Obj {
  if (typeof v !== 'object' || v === null || isArray(v)) return false;
  const p = getProto(v);
  return p === ObjectProto || p === null;
}

/** Per-proxy handler; `this` in the traps is the handler, so each proxy carries its position. */
interface NodeHandler extends ProxyHandler<Obj> {
  world: JournaledWorld;
  level: Level;
  /** Table name for Level.Table. */
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
  root: NodeHandler | null;
  /** Level.Record below the root: the root's field this object sits under. */
  field: string;
  /** On a record root: the {@link JournaledWorld.stamp} its `fields` belong to. */
  stamp: number;
  /** On a record root: the top-level fields written during tick `stamp` (no repeats). */
  fields: string[];
}

/** A record changed this tick in a few of its top-level fields (see JournaledWorld.patchRecords). */
export interface PatchableRecord {
  readonly record: string;
  readonly target: Obj;
  readonly fields: string[];
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
  /** The raw root object: tables by name. Only the runtime touches it directly. */
  root: Obj = {};
  /** The proxy handed to scripts. */
  proxy: Obj;
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
   * root's handler keeps the list of its top-level fields written this tick (`stamp` says
   * which tick), and `patchable` lists those roots. A record whose change cannot be described
   * as "these fields now have these values" (created, deleted, replaced, a field deleted, an
   * array record, too many fields) is in `whole` and is sent whole.
   */
  stamp = 1;
  patchable: NodeHandler[] = [];
  whole = new Set<string>();
  /**
   * Which world a proxy cached on a target belongs to: a world built by reset() must not hand
   * out the proxies (and handlers) of the world before it.
   */
  private generation = {};
  private readonly traps: ProxyHandler<Obj>;
  /**
   * Writes are accepted only while the engine is running a hook. A write from anywhere else
   * (a promise callback that runs after the tick returned, module top-level code) would change
   * the isolate's world outside any transaction: it would never be committed nor rolled back.
   */
  open = false;

  constructor() {
    this.traps = makeTraps();
    this.proxy = this.wrap(this.root, Level.Root, '', '');
  }

  /** Replace the whole world (restore from records); clears the journal and dirty set. */
  reset(root: Obj): void {
    this.root = root;
    this.generation = {};
    this.proxy = this.wrap(root, Level.Root, '', '');
    this.forget();
    this.beginChanges();
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
      if (j[i + 3]) target[key] = j[i + 2];
      else delete target[key];
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

  private record(target: Obj, key: string, old: unknown, had: boolean): void {
    const j = this.journal;
    const n = this.journalEnd;
    // The slot the previous entry saved, written again with no savepoint in between: that
    // entry already holds the value to restore, so this write needs none. It keeps a loop that
    // hammers one field (`for (;;) me.x += 1`) from growing the journal until the isolate runs
    // out of memory before the CPU budget stops it.
    if (n - 4 >= this.savepoint && j[n - 4] === target && j[n - 3] === key) return;
    j[n] = target;
    j[n + 1] = key;
    j[n + 2] = old;
    j[n + 3] = had;
    this.journalEnd = n + 4;
  }

  get journalLength(): number {
    return this.journalEnd / 4;
  }

  // ---- proxies ----

  /**
   * The proxy of a world object, made on first use. For Level.Record, `parent` is the handler
   * of the object it was found in (null for a record's root value) and `field` its key there.
   */
  wrap(target: Obj, level: Level, table: string, record: string, parent: NodeHandler | null = null, field = ''): Obj {
    const cached = this.cachedProxy(target);
    if (cached) return cached;
    const handler = Object.create(this.traps) as NodeHandler;
    handler.world = this;
    handler.level = level;
    handler.table = table;
    handler.record = record;
    handler.isArray = isArray(target);
    handler.target = target;
    if (parent === null) {
      handler.root = level === Level.Record && !handler.isArray ? handler : null;
      handler.field = '';
    } else {
      handler.root = parent.root;
      handler.field = parent.root === parent ? field : parent.field;
    }
    handler.stamp = 0;
    handler.fields = [];
    const proxy = new Proxy(target, handler);
    new ProxyRaw(proxy, target);
    const slot = TargetSlot.of(target);
    if (slot) {
      slot.proxy = proxy;
      slot.generation = this.generation;
    } else {
      new TargetSlot(target, { proxy, generation: this.generation });
    }
    return proxy;
  }

  private cachedProxy(target: Obj): Obj | undefined {
    const slot = TargetSlot.of(target);
    return slot && slot.generation === this.generation ? slot.proxy : undefined;
  }

  /** The proxy for `child`, found at `key` of the object `parent` handles. */
  wrapChild(child: Obj, parent: NodeHandler, key: string): Obj {
    const cached = this.cachedProxy(child);
    if (cached) return cached;
    switch (parent.level) {
      case Level.Root:
        return isArray(child)
          ? this.wrap(child, Level.Record, '', key)
          : this.wrap(child, Level.Table, key, '');
      case Level.Table:
        return this.wrap(child, Level.Record, '', parent.table + '/' + key);
      default:
        return this.wrap(child, Level.Record, '', parent.record, parent, key);
    }
  }

  // ---- field patches ----

  /** A write to `key` of the object `h` handles, inside a record: note the field it changes. */
  private noteField(h: NodeHandler, key: string): void {
    const root = h.root;
    if (root === null) {
      this.whole.add(h.record);
      return;
    }
    const field = root === h ? key : h.field;
    if (root.stamp !== this.stamp) {
      root.stamp = this.stamp;
      root.fields = [field];
      this.patchable[this.patchable.length] = root;
      return;
    }
    const fields = root.fields;
    for (let i = 0; i < fields.length; i++) if (fields[i] === field) return;
    if (fields.length >= MAX_PATCH_FIELDS) this.whole.add(h.record);
    else fields[fields.length] = field;
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
      if (h.stamp !== this.stamp || this.whole.has(h.record) || !allOwn(h.target, h.fields)) continue;
      out[out.length] = h;
    }
    return out;
  }

  private readonly patchOut: PatchableRecord[] = [];

  // ---- writes ----

  private assertOpen(): void {
    if (!this.open) throw new StateValueError('moonpatch: the world can only be changed inside a hook call (not from a promise callback or module code)');
  }

  write(h: NodeHandler, target: Obj, key: string, value: unknown): void {
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
      this.dirty.add(h.record);
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
    this.markDirty(h, key, old, stored);
  }

  remove(h: NodeHandler, target: Obj, key: string): void {
    this.assertOpen();
    if (!hasOwn.call(target, key)) return;
    const old = target[key];
    this.record(target, key, old, true);
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

  private markDirty(h: NodeHandler, key: string, old: unknown, now: unknown): void {
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
   * Copying a proxy reads its raw target directly (no traps).
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
    // Copying a proxy reads its raw target directly (no traps).
    const src = ProxyRaw.of(value) ?? (value as Obj);
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

/**
 * False when a listed field is gone: a field added by an event whose writes were then undone
 * to its savepoint. Such a record is sent whole (a patch cannot say "absent").
 */
function allOwn(target: Obj, fields: string[]): boolean {
  for (let i = 0; i < fields.length; i++) if (!hasOwn.call(target, fields[i]!)) return false;
  return true;
}

function makeTraps(): ProxyHandler<Obj> {
  const refuse = (what: string) => () => {
    throw new StateValueError(`moonpatch: ${what} is not allowed on world tables; assign plain values instead`);
  };
  const traps: ProxyHandler<Obj> & ThisType<NodeHandler> = {
    get(target, key) {
      const v = target[key as string];
      if (typeof v !== 'object' || v === null || !hasOwn.call(target, key)) return v;
      return this.world.wrapChild(v as Obj, this, key as string);
    },
    set(target, key, value) {
      if (typeof key === 'symbol') throw new StateValueError('moonpatch: symbol keys cannot be stored in the world');
      this.world.write(this, target, key, value);
      return true;
    },
    deleteProperty(target, key) {
      if (typeof key === 'symbol') return true;
      this.world.remove(this, target, key);
      return true;
    },
    getOwnPropertyDescriptor(target, key) {
      const d = Reflect.getOwnPropertyDescriptor(target, key);
      // Spread and Object.entries read through here: hand out proxies, never raw children,
      // or a write to the copy's nested objects would bypass the journal.
      if (d && typeof d.value === 'object' && d.value !== null && typeof key === 'string') {
        d.value = this.world.wrapChild(d.value as Obj, this, key);
      }
      return d;
    },
    defineProperty: refuse('Object.defineProperty'),
    setPrototypeOf: refuse('changing the prototype'),
    preventExtensions: refuse('freezing or sealing'),
  };
  return traps;
}
