/**
 * Runs first in every game isolate, before any designer module is evaluated.
 *
 * 1. Determinism: Math.random, Date.now and `new Date()` read the engine's tick clock and seeded
 *    RNG; WeakRef and FinalizationRegistry (which expose GC timing) are removed.
 * 2. Containment: WebAssembly (its memory is not bounded by the isolate's memoryLimit),
 *    SharedArrayBuffer and Atomics are removed.
 * 3. Integrity: every intrinsic reachable from the global object (constructors, prototypes,
 *    iterator prototypes, Math, JSON, Reflect...) is frozen, so a script cannot pollute a
 *    prototype the engine's own code (the journal, the encoder) relies on.
 * The isolate never holds a host Reference or Callback at all: the host calls in, nothing calls out.
 */
import { now, random } from './clock.ts';

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

/** Freeze `root` and everything reachable from it through properties and prototypes. */
function harden(root: unknown): void {
  const seen = new Set<unknown>();
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const v = stack.pop();
    if ((typeof v !== 'object' && typeof v !== 'function') || v === null || seen.has(v)) continue;
    seen.add(v);
    Object.freeze(v);
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

// Intrinsics not reachable by name from the global object.
const hidden = [
  Object.getPrototypeOf([][Symbol.iterator]()),
  Object.getPrototypeOf(new Map()[Symbol.iterator]()),
  Object.getPrototypeOf(new Set()[Symbol.iterator]()),
  Object.getPrototypeOf(''[Symbol.iterator]()),
  Object.getPrototypeOf(/x/[Symbol.matchAll]('')),
  Object.getPrototypeOf(function* () {}),
  Object.getPrototypeOf(async function () {}),
  Object.getPrototypeOf(async function* () {}),
  Object.getPrototypeOf(Uint8Array),
];

for (const name of Reflect.ownKeys(g)) {
  if (name === 'globalThis') continue;
  const d = Reflect.getOwnPropertyDescriptor(g, name);
  if (d && 'value' in d && (typeof d.value === 'function' || typeof d.value === 'object')) harden(d.value);
}
harden(hidden);
