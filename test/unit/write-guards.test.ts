/**
 * Every way a script can change an object of the world goes through the journal (or is refused),
 * so a tick stays a transaction: undone exactly, and committed exactly.
 *
 * Reads are plain property reads on the world's objects, and the bundler rewrites assignments
 * into journaled calls (server/sandbox/instrument-writes.ts); the built-ins that write without an
 * assignment are guarded in the isolate (server/sandbox/runtime/guards.ts). For each route below
 * a real isolate runs the mutation on a committed record twice:
 *
 *   - in an input that then throws: the input is undone, and the isolate's world must equal the
 *     committed one (a write past the journal would survive the undo);
 *   - in an input that returns: the tick's changes, applied to the committed records, must equal
 *     the isolate's world (a write past the journal would never be committed).
 *
 * Refused routes must fail the input with STATE_INVALID_VALUE and change nothing.
 */
import { applyChanges, pairsOf } from '../../server/state/record-patch.ts';
import { describe, expect, it } from 'vitest';
import { Unpackr } from 'msgpackr';
import { bundleGame } from '../../server/sandbox/bundler.ts';
import { GameSandbox, type TickOutcome } from '../../server/sandbox/sandbox.ts';
import { MsgpackWriter } from '../../server/sandbox/runtime/msgpack.ts';

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });
const LIMITS = { memoryLimitMb: 32, cpuBudgetMs: 500 };

/** Routes that must be journaled: name -> body run with `r`, the record `world.t.a`. */
const JOURNALED: Record<string, string> = {
  'assignment': `r.n = 2; r.obj.x = 5; r.list[0] = 9;`,
  'compound and update': `r.n += 3; r.obj.x *= 4; r.n++; --r.obj.x; r['n'] **= 2; (r.list as any)[1] <<= 2;`,
  'logical assignment': `r.obj.y ??= 7; r.obj.x ||= 8; r.obj.x &&= 6;`,
  'computed object': `const f = () => r.obj; f().x = 11; f().x += 1; f()['x']++;`,
  'delete': `delete r.obj.x; delete (r as any)['n'];`,
  'replace nested object': `r.obj = { x: 100, deep: { z: [1, 2] } }; r.obj.deep.z[0] = 3;`,
  'class field on a world object': `class Base { constructor(o: object) { return o; } } class Field extends Base { planted = 1; } new Field(r.obj);`,
  'push': `r.list.push(4, { k: 1 });`,
  'pop': `r.list.pop();`,
  'shift': `r.list.shift();`,
  'unshift': `r.list.unshift(0, -1);`,
  'splice': `r.list.splice(1, 1, 7, 8, 9);`,
  'sort': `r.list.sort((a: any, b: any) => b - a);`,
  'reverse': `r.list.reverse();`,
  'fill': `r.list.fill(5, 1);`,
  'copyWithin': `r.list.copyWithin(0, 1);`,
  'length': `r.list.length = 1;`,
  'push via call on the prototype': `Array.prototype.push.call(r.list, 42); Reflect.apply(Array.prototype.splice, r.list, [0, 1]);`,
  'Object.assign': `Object.assign(r.obj, { x: 2, added: 'yes' }, { more: [1] });`,
  'Reflect.set': `Reflect.set(r.obj, 'x', 12); Reflect.set(r, 'n', 13, r);`,
  'Reflect.deleteProperty': `Reflect.deleteProperty(r.obj, 'x');`,
  'a kept reference, written later in the hook': `const kept = r.obj; const list = r.list; kept.x = 21; list.push(22);`,
};

/** Routes that must be refused: name -> body. */
const REFUSED: Record<string, string> = {
  'Object.defineProperty': `Object.defineProperty(r.obj, 'x', { value: 99 });`,
  'Object.defineProperties': `Object.defineProperties(r.obj, { x: { value: 99 } });`,
  'Object.setPrototypeOf': `Object.setPrototypeOf(r.obj, { evil: 1 });`,
  'Object.freeze': `Object.freeze(r.obj);`,
  'Object.seal': `Object.seal(r.list);`,
  'Object.preventExtensions': `Object.preventExtensions(r.obj);`,
  '__proto__ setter': `(r.obj as any).__proto__ = { evil: 1 };`,
  '__proto__ setter via the accessor': `Object.getOwnPropertyDescriptor(Object.prototype, '__proto__')!.set!.call(r.obj, { evil: 1 });`,
  '__defineGetter__': `(r.obj as any).__defineGetter__('x', () => 99);`,
  '__defineSetter__': `(r.obj as any).__defineSetter__('x', () => 0);`,
  'Reflect.defineProperty': `Reflect.defineProperty(r.obj, 'x', { value: 99 });`,
  'Reflect.setPrototypeOf': `Reflect.setPrototypeOf(r.obj, null);`,
  'Reflect.preventExtensions': `Reflect.preventExtensions(r.obj);`,
  'Reflect.set with another receiver': `Reflect.set({}, 'x', 99, r.obj);`,
  'Error.captureStackTrace': `Error.captureStackTrace(r.obj);`,
  'a Proxy over a world object': `const p = new Proxy(r.obj, {}); (p as any).x = 99;`,
  'Proxy.revocable over a world object': `const { proxy } = Proxy.revocable(r.obj, {}); (proxy as any).x = 99;`,
  'an array method on a world object that is not an array': `Array.prototype.push.call(r.obj, 99);`,
};

function script(routes: Record<string, string>): string {
  const cases = Object.entries(routes).map(([name, body]) => `  ${JSON.stringify(name)}: (r: any) => { ${body} },`).join('\n');
  return `
const ROUTES: Record<string, (r: any) => void> = {
${cases}
};
export function init(world: any) {
  world.t = { a: { n: 1, obj: { x: 1 }, list: [3, 1, 2] } };
}
export function input(world: any, _player: unknown, msg: { route: string; fail: boolean }) {
  ROUTES[msg.route]!(world.t.a);
  if (msg.fail) throw new Error('undo me');
}
`;
}

type Records = Map<string, unknown>;

function decodeRecords(flat: unknown[]): Records {
  const out: Records = new Map();
  for (let i = 0; i < flat.length; i += 2) out.set(flat[i] as string, unpackr.unpack(flat[i + 1] as Uint8Array));
  return out;
}

function recordBytes(exported: Uint8Array): Map<string, Uint8Array> {
  return new Map(pairsOf(unpackr.unpack(exported) as (string | Uint8Array)[]));
}

async function worldOf(sb: GameSandbox): Promise<Records> {
  return decodeRecords(unpackr.unpack(await sb.exportRecords()) as unknown[]);
}

function events(route: string, fail: boolean): Uint8Array {
  const w = new MsgpackWriter();
  w.value([[3, 'p1', 'P', 1, { route, fail }]]);
  return w.bytes().slice();
}

const plain = (r: Records) => Object.fromEntries([...r].map(([k, v]) => [k, JSON.stringify(v)]));

/** Run the route in a failing input, then in a returning one; return what the test compares. */
async function exercise(routes: Record<string, string>, route: string) {
  const bundle = await bundleGame({ name: 'guards', entry: 'main.ts', files: new Map([['main.ts', script(routes)]]) });
  const sb = await GameSandbox.create(bundle, LIMITS);
  try {
    let tick = 1;
    const run = async (ev: Uint8Array, runInit = false) => {
      const out = await sb.tick({ events: ev, seed: 1, tick: tick++, nowMs: 1_700_000_000_000, dtSeconds: 0.05, runInit });
      if (!out.ok) throw new Error(`tick failed: ${out.code} ${out.thrown?.message}`);
      return out;
    };
    const none = new MsgpackWriter();
    none.value([]);
    await run(none.bytes().slice(), true);
    const committedBytes = recordBytes(await sb.exportRecords());
    const committed = await worldOf(sb);

    const failing = await run(events(route, true));
    const afterUndo = await worldOf(sb);

    const returning = await run(events(route, false));
    // What the host makes of the tick's changes (whole records, patches folded in, deletions).
    applyChanges(committedBytes, returning);
    const applied: Records = new Map([...committedBytes].map(([k, v]) => [k, unpackr.unpack(v)]));
    const afterCommit = await worldOf(sb);
    return { committed, failing, afterUndo, returning, applied, afterCommit };
  } finally {
    sb.dispose();
  }
}

describe('every route that writes to the world is journaled', () => {
  for (const route of Object.keys(JOURNALED)) {
    it(route, async () => {
      const r = await exercise(JOURNALED, route);
      expect(r.failing.rejections.map((x) => x.thrown.message)).toEqual(['undo me']);
      expect(plain(r.afterUndo)).toEqual(plain(r.committed));
      expect(r.returning.rejections).toEqual([]);
      // The route changed something, and what the tick reports is exactly what the isolate holds.
      expect(plain(r.afterCommit)).not.toEqual(plain(r.committed));
      expect(plain(r.applied)).toEqual(plain(r.afterCommit));
    });
  }
});

describe('every route that would make a world object anything but plain data is refused', () => {
  for (const route of Object.keys(REFUSED)) {
    it(route, async () => {
      const r = await exercise(REFUSED, route);
      for (const out of [r.failing, r.returning]) {
        expect(out.rejections).toHaveLength(1);
        expect(out.rejections[0]!.thrown.code).toBe('STATE_INVALID_VALUE');
        expect(out.rejections[0]!.thrown.message).toMatch(/is not allowed on the world|"__proto__" cannot be a key in the world/);
      }
      expect(plain(r.afterUndo)).toEqual(plain(r.committed));
      expect(plain(r.afterCommit)).toEqual(plain(r.committed));
    });
  }
});

describe('rewritten writes keep JavaScript semantics', () => {
  // Evaluation order of object, key and value, the values of the expressions, and what the
  // target ends up holding, for each kind of write: run natively here, and rewritten in an
  // isolate on a world object and on a script's own object. All three must agree.
  const SNIPPET = `
    const log: string[] = [];
    let t: any = target;
    const o = () => { log.push('o'); return t; };
    const k = (name: string) => { log.push('k:' + name); return name; };
    const v = (x: number) => { log.push('v:' + x); return x; };
    log.push('=' + (o()[k('a')] = v(1)));
    log.push('+=' + (o()[k('a')] += v(2)));
    log.push('.+=' + (o().a *= v(3)));
    log.push('??=' + (o()[k('b')] ??= v(4)));
    log.push('||=' + (o()[k('a')] ||= v(5)));
    log.push('&&=' + (o()[k('c')] &&= v(6)));
    log.push('post++' + o()[k('a')]++);
    log.push('--pre' + --o()[k('b')]);
    log.push('delete' + delete o()[k('a')]);
    log.push('chain' + (o().d = o().e = v(7)));
    log.push('state ' + JSON.stringify(t));
  `;
  const native = (): string[] => {
    const js = SNIPPET.replace(/: string\[\]/g, '').replace(/: any/g, '').replace(/\(name: string\)/g, '(name)').replace(/\(x: number\)/g, '(x)');
    return new Function('target', js + 'return log;')({ c: 0 }) as string[];
  };

  /** Bundle `src` and run its first ticks (init in the first) with no events; the outcomes. */
  async function runTicks(src: string, ticks: number): Promise<TickOutcome[]> {
    const bundle = await bundleGame({ name: 'semantics', entry: 'main.ts', files: new Map([['main.ts', src]]) });
    const sb = await GameSandbox.create(bundle, LIMITS);
    try {
      const none = new MsgpackWriter();
      none.value([]);
      const outcomes: TickOutcome[] = [];
      for (let tick = 1; tick <= ticks; tick++) {
        outcomes.push(await sb.tick({ events: none.bytes().slice(), seed: 1, tick, nowMs: 0, dtSeconds: 0.05, runInit: tick === 1 }));
      }
      return outcomes;
    } finally {
      sb.dispose();
    }
  }

  /** The value of record `key` in a successful tick's changes. */
  function recordIn(out: TickOutcome, key: string): unknown {
    if (!out.ok) throw new Error(`${out.code}: ${out.thrown?.message}`);
    return unpackr.unpack(out.sets.find(([k]) => k === key)![1]);
  }

  it('in order, values and result, on world objects and on the script own objects alike', async () => {
    const [out] = await runTicks(`
      function run(target: any): string[] { ${SNIPPET} return log; }
      export function init(world: any) {
        world.tbl = { t: { c: 0 } };
        world.out = { seen: { world: run(world.tbl.t), local: run({ c: 0 }) } };
      }`, 1);
    const seen = recordIn(out!, 'out/seen') as { world: string[]; local: string[] };
    const expected = native();
    expect(expected).toContain('state {"c":0,"b":3,"e":7,"d":7}');
    expect(seen.local).toEqual(expected);
    expect(seen.world).toEqual(expected);
    // The world's record holds what the script's object held.
    expect(recordIn(out!, 'tbl/t')).toEqual({ c: 0, b: 3, e: 7, d: 7 });
  });

  it('a setter, a getter and a frozen object of the script behave natively', async () => {
    const [first, second] = await runTicks(`
      export function init(world: any) {
        const own = { get y() { return 1; } } as any;
        own.y += 1; // no setter for y: a TypeError in strict mode
      }
      export function tick(world: any) {
        const calls: string[] = [];
        const own = { set x(v: number) { calls.push('set ' + v); } } as any;
        own.x = 5;
        own['x'] = 6;
        let frozen = 'no error';
        try { Object.freeze({ a: 1 }).a = 2; } catch (e) { frozen = String(e); }
        world.out = { seen: { calls, frozen } };
      }`, 2);
    expect(first!.ok).toBe(false);
    expect(first!.ok ? '' : first!.thrown?.message).toMatch(/Cannot set property y of #<Object> which has only a getter/);
    const seen = recordIn(second!, 'out/seen') as { calls: string[]; frozen: string };
    expect(seen.calls).toEqual(['set 5', 'set 6']);
    expect(seen.frozen).toMatch(/TypeError: Cannot assign to read only property 'a' of object/);
  });
});

describe('the bundler refuses writes it could not journal', () => {
  const build = (body: string) =>
    bundleGame({ name: 'refused', entry: 'main.ts', files: new Map([['main.ts', `export function tick(world: any) { const o = world.t; ${body} }`]]) }).then(
      () => 'built',
      (e: Error) => e.message + '\n' + ((e as { details?: string[] }).details ?? []).join('\n'),
    );

  it('names the file and line of each, and builds the same code without them', async () => {
    const destructuring = await build(`[o.a, o.b] = [1, 2];`);
    expect(destructuring).toMatch(/\n {2}main\.ts:1:\d+: a property cannot be a destructuring target/);
    expect(destructuring).not.toMatch(/moonpatch-entry|moonpatch-game:/); // the designer's file, not the engine's
    expect(await build(`({ x: o.a } = { x: 1 });`)).toMatch(/destructuring target/);
    expect(await build(`for (o.k of [1]) {}`)).toMatch(/for-in\/for-of/);
    expect(await build(`const __mp_set = 1;`)).toMatch(/reserved for the engine/);
    expect(await build(`const obj = { m() { super.x = 1; } };`)).toMatch(/through `super`/);
    expect(await build(`const [a, b] = [o.a, o.b]; let c; [c] = [a]; o.k ??= b; o.f().k ||= 2; o.f()[o.g()] += 3; for (const k of [c]) o.k = k;`)).toBe('built');
  });
});
