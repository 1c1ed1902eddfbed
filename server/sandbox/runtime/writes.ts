/**
 * What the bundler's rewrite of designer scripts calls for their assignments
 * (server/sandbox/instrument-writes.ts): `o.k = v` becomes
 * `(__mp_w(o) ? __mp_set(o, "k", v) : o.k = v)`. For an object of the world the write goes
 * through the journal. Called with anything else (only a script calling them itself does), the
 * helpers are the plain assignment, with the same result and the same errors (the runtime is
 * strict code).
 *
 * Scripts may import this module themselves ('moonpatch:writes'): it exports these helpers and
 * nothing else, so that gives them no more than the assignments they could write.
 */
import { StateValueError, worldNodeOf } from './world.ts';

/** A property key as the world stores it (string), from what a script computed. */
function propertyKey(k: unknown): string {
  if (typeof k === 'string') return k;
  if (typeof k === 'number') return '' + k;
  if (typeof k === 'symbol') throw new StateValueError('moonpatch: symbol keys cannot be stored in the world');
  return String(k);
}

export function __mp_set(o: any, k: any, v: unknown): unknown {
  const n = worldNodeOf(o);
  if (n === undefined) {
    o[k] = v;
    return v;
  }
  n.world.write(n, o, propertyKey(k), v);
  return v;
}

/** `o.k++` (postfix true: the old value) and `--o.k` (false: the new one). */
export function __mp_inc(o: any, k: any, delta: number, postfix: boolean): unknown {
  const old = o[k];
  const n = typeof old === 'bigint' ? old : +old;
  const next = typeof n === 'bigint' ? n + (delta > 0 ? 1n : -1n) : n + delta;
  __mp_set(o, k, next);
  return postfix ? n : next;
}

export function __mp_del(o: any, k: any): boolean {
  const n = worldNodeOf(o);
  if (n === undefined) return delete o[k];
  if (typeof k === 'symbol') return true; // never stored
  n.world.remove(n, o, propertyKey(k));
  return true;
}

/** Whether `o` is an object of the world: the test in front of every rewritten write. */
export function __mp_w(o: unknown): boolean {
  return worldNodeOf(o) !== undefined;
}
