/**
 * The built-ins that can change an object without an assignment expression, guarded so that
 * none of them changes an object of the world behind the journal's back.
 *
 * The bundler rewrites every assignment in designer scripts into a journaled call
 * (server/sandbox/instrument-writes.ts). What it cannot rewrite is native code that writes to
 * objects it is given, and code it never sees (code made from strings). Each is replaced here,
 * before any designer module runs (lockdown.ts calls {@link installWriteGuards} before it
 * freezes anything), by a function that behaves natively for every object outside the world and,
 * for an object of the world, either journals the change or refuses it with STATE_INVALID_VALUE:
 *
 * - Array.prototype mutators (push, pop, shift, unshift, splice, sort, reverse, fill,
 *   copyWithin): journaled; push and pop element by element, the others by running the native
 *   method on a copy and writing back the elements that differ;
 * - Object.assign and Reflect.set: journaled; Reflect.deleteProperty: journaled;
 * - Object.defineProperty/defineProperties/setPrototypeOf/freeze/seal/preventExtensions,
 *   Reflect.defineProperty/setPrototypeOf/preventExtensions, the `__proto__` setter,
 *   `__defineGetter__`/`__defineSetter__`, Error.captureStackTrace, `new Proxy(worldObject)` and
 *   Proxy.revocable: refused (a world object stays plain data with its prototype);
 * - eval, Function and the generator/async function constructors: refused for everyone (code
 *   made from strings would never be rewritten).
 *
 * A write that escaped would not reach the host, but it would break the transaction: it would
 * survive a rollback and never be committed. test/unit/write-guards.test.ts runs every route
 * (each guard, and the rewritten assignments) in a real isolate, undone and committed.
 */
import { StateValueError, world, worldNodeOf, type WorldNode } from './world.ts';
import { __mp_del, __mp_set } from './writes.ts';

// Captured before anything is replaced: the guards call the natives through these only.
const apply = Reflect.apply;
const ownKeys = Reflect.ownKeys;
const defineProperty = Object.defineProperty;
const getOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
const getProto = Object.getPrototypeOf;

type Fn = (...args: any[]) => any;

function refuse(what: string): never {
  throw new StateValueError(`moonpatch: ${what} is not allowed on the world; assign plain values instead`);
}

/** Replace `holder[name]` by `make(native)`, keeping the property's attributes. */
function replace(holder: object, name: PropertyKey, make: (native: Fn) => Fn): void {
  const d = getOwnPropertyDescriptor(holder, name)!;
  defineProperty(holder, name, { ...d, value: make(d.value as Fn) });
}

/** The native function unchanged when its first argument is outside the world; `refuse` when it is a world object. */
function refuseOnWorld(holder: object, name: string, what: string): void {
  replace(holder, name, (native) =>
    function (this: unknown) {
      if (worldNodeOf(arguments[0]) !== undefined) refuse(what);
      return apply(native, this, arguments);
    },
  );
}

/** A world array changed by `native` (a mutator): journaled, element by element. */
function mutateArray(n: WorldNode, arr: unknown[], native: Fn, args: IArguments): unknown {
  if (!n.isArray) refuse('an array method on an object that is not an array');
  const len = arr.length;
  const copy: unknown[] = [];
  for (let i = 0; i < len; i++) copy[i] = arr[i];
  const result = apply(native, copy, args);
  for (let i = 0; i < copy.length; i++) if (copy[i] !== arr[i] || !(i in arr)) __mp_set(arr, i, copy[i]);
  if (copy.length < len) __mp_set(arr, 'length', copy.length);
  // sort, reverse, fill and copyWithin return the array they worked on: the world's, not the copy.
  return result === copy ? arr : result;
}

function guardArrays(): void {
  const proto = Array.prototype as unknown as Record<string, Fn>;
  replace(proto, 'push', (native) =>
    function push(this: unknown[]) {
      const n = worldNodeOf(this);
      if (n === undefined) return apply(native, this, arguments);
      if (!n.isArray) refuse('an array method on an object that is not an array');
      for (let i = 0; i < arguments.length; i++) __mp_set(this, this.length, arguments[i]);
      return this.length;
    },
  );
  replace(proto, 'pop', (native) =>
    function pop(this: unknown[]) {
      const n = worldNodeOf(this);
      if (n === undefined) return apply(native, this, arguments);
      if (!n.isArray) refuse('an array method on an object that is not an array');
      if (this.length === 0) return undefined;
      const last = this[this.length - 1];
      __mp_set(this, 'length', this.length - 1);
      return last;
    },
  );
  for (const name of ['shift', 'unshift', 'splice', 'sort', 'reverse', 'fill', 'copyWithin']) {
    replace(proto, name, (native) =>
      function (this: unknown[]) {
        const n = worldNodeOf(this);
        if (n === undefined) return apply(native, this, arguments);
        return mutateArray(n, this, native, arguments);
      },
    );
  }
}

function guardObject(): void {
  replace(Object, 'assign', (native) =>
    function assign(target: unknown) {
      if (worldNodeOf(target) === undefined) return apply(native, undefined, arguments);
      // Gather the sources natively into a fresh object (getters, order, symbols as natively),
      // then write each field through the journal.
      const args: unknown[] = [{}];
      for (let i = 1; i < arguments.length; i++) args[i] = arguments[i];
      const gathered = apply(native, undefined, args) as Record<PropertyKey, unknown>;
      const keys = ownKeys(gathered);
      for (let i = 0; i < keys.length; i++) __mp_set(target, keys[i], gathered[keys[i] as string]);
      return target;
    },
  );
  refuseOnWorld(Object, 'defineProperty', 'Object.defineProperty');
  refuseOnWorld(Object, 'defineProperties', 'Object.defineProperties');
  refuseOnWorld(Object, 'setPrototypeOf', 'changing the prototype');
  refuseOnWorld(Object, 'freeze', 'freezing');
  refuseOnWorld(Object, 'seal', 'sealing');
  refuseOnWorld(Object, 'preventExtensions', 'Object.preventExtensions');

  const proto = Object.prototype;
  const protoAccessor = getOwnPropertyDescriptor(proto, '__proto__')!;
  const nativeSetProto = protoAccessor.set!;
  defineProperty(proto, '__proto__', {
    ...protoAccessor,
    set: function (this: unknown, value: unknown) {
      if (worldNodeOf(this) !== undefined) refuse('changing the prototype');
      apply(nativeSetProto, this, [value]);
    },
  });
  for (const name of ['__defineGetter__', '__defineSetter__']) {
    replace(proto, name, (native) =>
      function (this: unknown) {
        if (worldNodeOf(this) !== undefined) refuse(name);
        return apply(native, this, arguments);
      },
    );
  }
}

function guardReflect(): void {
  replace(Reflect, 'set', (native) =>
    function set(target: unknown, key: unknown, value: unknown, receiver?: unknown) {
      const onWorld = worldNodeOf(target) !== undefined || (arguments.length > 3 && worldNodeOf(receiver) !== undefined);
      if (!onWorld) return apply(native, undefined, arguments);
      if (arguments.length > 3 && receiver !== target) refuse('Reflect.set with another receiver');
      __mp_set(target, key, value);
      return true;
    },
  );
  replace(Reflect, 'deleteProperty', (native) =>
    function deleteProperty(target: unknown, key: unknown) {
      if (worldNodeOf(target) === undefined) return apply(native, undefined, arguments);
      return __mp_del(target, key);
    },
  );
  refuseOnWorld(Reflect, 'defineProperty', 'Reflect.defineProperty');
  refuseOnWorld(Reflect, 'setPrototypeOf', 'changing the prototype');
  refuseOnWorld(Reflect, 'preventExtensions', 'Reflect.preventExtensions');
}

function guardProxyAndErrors(g: Record<string, unknown>): void {
  // The default traps of a proxy write to its target natively.
  const NativeProxy = Proxy;
  const GuardedProxy = function Proxy(this: unknown, target: object, handler: ProxyHandler<object>) {
    if (!new.target) throw new TypeError("Constructor Proxy requires 'new'");
    if (worldNodeOf(target) !== undefined) refuse('a Proxy over a world object');
    return new NativeProxy(target, handler);
  } as unknown as ProxyConstructor;
  defineProperty(GuardedProxy, 'revocable', {
    value: function revocable(target: object, handler: ProxyHandler<object>) {
      if (worldNodeOf(target) !== undefined) refuse('a Proxy over a world object');
      return NativeProxy.revocable(target, handler);
    },
    writable: true,
    configurable: true,
  });
  g.Proxy = GuardedProxy;
  refuseOnWorld(Error, 'captureStackTrace', 'Error.captureStackTrace');
}

/** Code made from strings is never rewritten, so it is not made at all. */
function refuseCodeFromStrings(g: Record<string, unknown>): void {
  const refused = function Function(): never {
    throw new EvalError('moonpatch: code from strings (eval, Function) is not allowed in game scripts');
  };
  const RealFunction = Function;
  defineProperty(refused, 'prototype', { value: RealFunction.prototype });
  g.Function = refused;
  g.eval = refused;
  const prototypes = [
    RealFunction.prototype,
    getProto(function* () {}),
    getProto(async function () {}),
    getProto(async function* () {}),
  ];
  for (const p of prototypes) defineProperty(p, 'constructor', { value: refused, writable: false, configurable: false });
}

/**
 * The guards of the built-ins that change objects they are given. Alone (without Proxy and
 * code-from-strings), this is safe to install in a Node process too: the journaled world's unit
 * tests run with it (test/unit/world.instrumented.test.ts).
 */
export function installMutatorGuards(): void {
  guardArrays();
  guardObject();
  guardReflect();
}

export function installWriteGuards(g: Record<string, unknown>): void {
  // The world must exist before anything can be guarded against writing to it (and its own
  // code must have captured the natives it uses: it was evaluated first, as an import).
  void world;
  installMutatorGuards();
  guardProxyAndErrors(g);
  refuseCodeFromStrings(g);
}
