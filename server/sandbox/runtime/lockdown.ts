/**
 * Runs first in every game isolate, before any designer module is evaluated.
 *
 * 1. Determinism: Math.random, Date.now and `new Date()` read the engine's tick clock and seeded
 *    RNG; WeakRef and FinalizationRegistry (which expose GC timing) are removed.
 * 2. Containment: WebAssembly (its memory is not bounded by the isolate's memoryLimit),
 *    SharedArrayBuffer and Atomics are removed.
 * 3. Integrity: no intrinsic reachable from the global object can get new properties (so a
 *    script cannot plant a getter or setter that hijacks the engine's objects), and the objects
 *    whose methods the engine's own code calls (Set, Map, String, Function, Number, Error,
 *    Math, JSON, Reflect, the Object and Array constructors, the Set/Map iterators, and the
 *    DataView the msgpack codec writes results with) are frozen outright. The few
 *    Object.prototype and typed-array methods the runtime uses are captured before any
 *    designer code runs, and Object.prototype's properties cannot be redefined. The global
 *    bindings themselves are read-only: the runtime names globals (Reflect, Object...) when it
 *    runs, not only when it loads.
 * 4. Transactions: the built-ins that write to objects without an assignment (Array.prototype
 *    mutators, Object.assign, Reflect.set...) journal or refuse writes to the world, and code
 *    from strings (eval, Function) is refused: see guards.ts. Assignments in designer code are
 *    journaled by the bundler's rewrite (server/sandbox/instrument-writes.ts).
 *
 * Why not freeze everything: freezing Object.prototype, Array.prototype and the array iterator
 * switches off V8 fast paths for every object and array operation in the isolate. Measured on
 * the arena with 1,000 players: 9.5 ms a tick with everything frozen, 5.3 ms with nothing
 * frozen, 5.4-6.4 ms with this scheme. Those prototypes are made non-extensible instead, and
 * the runtime does not call their replaceable methods on its own data (it indexes arrays
 * directly and loops with counters, see entry.ts and world.ts).
 *
 * The isolate never holds a host Reference or Callback at all: the host calls in, nothing calls out.
 */
import { now, random } from './clock.ts';
import { installWriteGuards } from './guards.ts';

const g = globalThis as Record<string, unknown>;

for (const name of ['WebAssembly', 'SharedArrayBuffer', 'Atomics', 'WeakRef', 'FinalizationRegistry']) {
  delete g[name];
}

Object.defineProperty(Math, 'random', { value: random, writable: false, configurable: false });

const RealDate = Date;
function EngineDate(this: unknown, ...args: unknown[]): unknown {
  if (!new.target) return new RealDate(now()).toString();
  return args.length === 0 ? new RealDate(now()) : new (RealDate as unknown as new (...a: unknown[]) => Date)(...args);
}
EngineDate.prototype = RealDate.prototype;
Object.defineProperties(EngineDate, {
  now: { value: now },
  parse: { value: RealDate.parse },
  UTC: { value: RealDate.UTC },
});
Object.defineProperty(RealDate.prototype, 'constructor', { value: EngineDate });
g.Date = EngineDate;

// Before anything is frozen: the guards replace methods of Object, Reflect, Array.prototype...
installWriteGuards(g);

/** Apply `lock` to `roots` and everything reachable from them through properties and prototypes. */
function lockAll(roots: unknown[], lock: (o: object) => void): void {
  const seen = new Set<unknown>();
  const stack: unknown[] = roots.slice();
  while (stack.length > 0) {
    const v = stack.pop();
    if ((typeof v !== 'object' && typeof v !== 'function') || v === null || seen.has(v)) continue;
    seen.add(v);
    lock(v as object);
    stack.push(Object.getPrototypeOf(v));
    for (const key of Reflect.ownKeys(v as object)) {
      const d = Reflect.getOwnPropertyDescriptor(v as object, key);
      if (!d) continue;
      if ('value' in d) stack.push(d.value);
      if (d.get) stack.push(d.get);
      if (d.set) stack.push(d.set);
    }
  }
}

const setIterator = Object.getPrototypeOf(new Set()[Symbol.iterator]());
const mapIterator = Object.getPrototypeOf(new Map()[Symbol.iterator]());

// Intrinsics not reachable by name from the global object.
const hidden = [
  Object.getPrototypeOf([][Symbol.iterator]()),
  setIterator,
  mapIterator,
  Object.getPrototypeOf(''[Symbol.iterator]()),
  Object.getPrototypeOf(/x/[Symbol.matchAll]('')),
  Object.getPrototypeOf(function* () {}),
  Object.getPrototypeOf(async function () {}),
  Object.getPrototypeOf(async function* () {}),
  Object.getPrototypeOf(Uint8Array),
];

const intrinsics: unknown[] = hidden.slice();
for (const name of Reflect.ownKeys(g)) {
  if (name === 'globalThis') continue;
  const d = Reflect.getOwnPropertyDescriptor(g, name);
  if (d && 'value' in d && (typeof d.value === 'function' || typeof d.value === 'object')) intrinsics.push(d.value);
}

// Shallow on purpose: walking from these would reach Object.prototype (see above).
for (const o of [Math, JSON, Reflect, Object, Array, setIterator, mapIterator]) Object.freeze(o);
// The codec (msgpack.ts) writes every tick result with DataView methods (setUint32,
// setFloat64...). Left writable, a script could replace one, receive the engine's result
// buffer's view as `this`, and forge what the host commits. The typed-array methods and getters
// it needs are captured by the codec at load instead: freezing %TypedArray%.prototype made the
// arena benchmark's ticks ~4 ms slower (5 -> 9 ms), freezing DataView costs nothing measurable.
for (const ctor of [Set, Map, String, Function, Number, Error, DataView]) {
  Object.freeze(ctor.prototype);
  Object.freeze(ctor);
}
lockAll(intrinsics, Object.preventExtensions);

// Object.prototype stays writable (see above) but its properties become non-configurable: else
// a script could turn one into an accessor (`Object.defineProperty(Object.prototype, 'valueOf',
// { set() {} })`), and the engine's own `copy[key] = value` when it copies a value into the world
// (or decodes a record) would call that setter instead of storing the field: the world would
// silently lose data the script wrote. Methods can still be replaced, not turned into accessors.
for (const key of Reflect.ownKeys(Object.prototype)) Object.defineProperty(Object.prototype, key, { configurable: false });

// The runtime's code looks globals up by name each time it runs (`Reflect.apply(hook, ...)`,
// `Object.keys(world.root)`). If a script could rebind one (`globalThis.Reflect = {...}`), its
// code would run inside the engine's, between a hook and the commit, with the engine's own
// objects in hand (the journal, the result buffer). So every global that exists now becomes
// read-only. Scripts can still add globals of their own.
for (const name of Reflect.ownKeys(g)) {
  const d = Reflect.getOwnPropertyDescriptor(g, name);
  if (d && d.configurable) Object.defineProperty(g, name, 'value' in d ? { writable: false, configurable: false } : { configurable: false });
}
