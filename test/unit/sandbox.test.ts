/**
 * What a script can and cannot reach inside its isolate, and how build and start-up failures
 * are reported. Real esbuild, real isolates.
 */
import { describe, expect, it } from 'vitest';
import { Unpackr } from 'msgpackr';
import { BuildError } from '../../server/errors/errors.ts';
import { bundleGame } from '../../server/sandbox/bundler.ts';
import { GameSandbox, SandboxStartError } from '../../server/sandbox/sandbox.ts';
import { MsgpackWriter } from '../../server/sandbox/runtime/msgpack.ts';

const LIMITS = { memoryLimitMb: 32, cpuBudgetMs: 500 };
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

function game(files: Record<string, string>) {
  return bundleGame({ name: 't', entry: 'main.ts', files: new Map(Object.entries(files)) });
}

/** Run one tick of a game whose init stores what it observed in world.seen; return it. */
async function observe(initBody: string, tick = 7, seed = 99): Promise<Record<string, unknown>> {
  const bundle = await game({ 'main.ts': `export function init(world: any) { world.seen = {}; ${initBody} }` });
  const sb = await GameSandbox.create(bundle, LIMITS);
  try {
    const w = new MsgpackWriter();
    w.value([]);
    const out = await sb.tick({ events: w.bytes().slice(), seed, tick, nowMs: 1_700_000_000_000, dtSeconds: 0.05, runInit: true });
    if (!out.ok) throw new Error(`${out.code}: ${out.thrown?.message}`);
    const seen: Record<string, unknown> = {};
    for (const [k, v] of out.sets) if (k.startsWith('seen/')) seen[k.slice(5)] = unpackr.unpack(v);
    return seen;
  } finally {
    sb.dispose();
  }
}

describe('the sandbox reaches nothing of the host', () => {
  it('has no require, process, timers, fetch, WebAssembly, SharedArrayBuffer, Atomics, WeakRef', async () => {
    const names = ['require', 'process', 'setTimeout', 'setInterval', 'setImmediate', 'queueMicrotask', 'fetch', 'WebAssembly', 'SharedArrayBuffer', 'Atomics', 'WeakRef', 'FinalizationRegistry', 'Buffer', '__moonpatch'];
    const seen = await observe(names.map((n) => `world.seen[${JSON.stringify(n)}] = typeof (globalThis as any)[${JSON.stringify(n)}];`).join('\n'));
    for (const n of names) expect(seen[n], n).toBe('undefined');
  });

  it('Math.random and Date are the engine clock and seeded RNG: same seed and tick, same values', async () => {
    const body = `world.seen.r = Math.random(); world.seen.now = Date.now(); world.seen.date = new Date().getTime();`;
    const a = await observe(body, 7, 99);
    const b = await observe(body, 7, 99);
    const c = await observe(body, 8, 99);
    expect(a).toEqual(b);
    expect(a.r).not.toBe(c.r);
    expect(a.now).toBe(1_700_000_000_000);
    expect(a.date).toBe(1_700_000_000_000);
  });

  it('built-ins cannot get new properties, and the engine-critical ones cannot be changed', async () => {
    const seen = await observe(`
      const tryIt = (f: () => void) => { try { f(); return 'allowed'; } catch { return 'refused'; } };
      world.seen.addToObjectProto = tryIt(() => Object.defineProperty(Object.prototype, 'hijack', { set() {} }));
      world.seen.addToArrayProto = tryIt(() => { (Array.prototype as any).evil = 1; });
      world.seen.replaceSetAdd = tryIt(() => { (Set.prototype as any).add = () => 0; });
      world.seen.replaceRandom = tryIt(() => { (Math as any).random = () => 0.5; });
      world.seen.replaceObjectKeys = tryIt(() => { (Object as any).keys = () => []; });
      world.seen.replaceIsArray = tryIt(() => { (Array as any).isArray = () => false; });
      world.seen.constructorEscape = tryIt(() => { const F = (() => {}).constructor as any; if (F('return typeof process')() !== 'undefined') throw 0; throw 1; });
    `);
    expect(seen).toEqual({
      addToObjectProto: 'refused',
      addToArrayProto: 'refused',
      replaceSetAdd: 'refused',
      replaceRandom: 'refused',
      replaceObjectKeys: 'refused',
      replaceIsArray: 'refused',
      constructorEscape: 'refused',
    });
  });
});

describe('build and start failures are clear', () => {
  it('importing a Node module fails the build with BUILD_FAILED naming the import', async () => {
    const e = await game({ 'main.ts': `import fs from 'fs'; export function init() { fs.readFileSync('/etc/passwd'); }` }).catch((x) => x);
    expect(e).toBeInstanceOf(BuildError);
    expect(e.code).toBe('BUILD_FAILED');
    expect(e.message).toMatch(/cannot import "fs"/);
  });

  it('a syntax error names the file and line', async () => {
    const e = await game({ 'main.ts': `import { x } from './util';\nexport function init() { return x; }`, 'util.ts': `\n\nexport const x = ;` }).catch((x) => x);
    expect(e).toBeInstanceOf(BuildError);
    expect(e.message).toMatch(/util\.ts:3:/);
  });

  it('a top-level throw is BUILD_FAILED with the stack mapped to the designer file', async () => {
    const bundle = await game({ 'main.ts': `import './boom';\nexport function init() {}`, 'boom.ts': `\n\nthrow new Error('top-level boom');` });
    const e = await GameSandbox.create(bundle, LIMITS).catch((x) => x);
    expect(e).toBeInstanceOf(SandboxStartError);
    expect(e.code).toBe('BUILD_FAILED');
    expect(e.scriptStack).toMatch(/boom\.ts:3:/);
  });
});

describe('the CPU budget', () => {
  it('is CPU time: a tick that finishes but used more CPU than its budget is undone as an overrun', async () => {
    // The tick spins `world.n` iterations and counts ticks; calibrate n until a tick costs at least 30 ms of CPU.
    const bundle = await game({
      'main.ts': `export function init(world: any) { world.meta = { ticks: 0, n: 0 }; }
        export function tick(world: any) { let x = 0; for (let i = 0; i < world.meta.n; i++) x = (x + i * 7) % 1000003; world.meta.ticks += 1; world.meta.x = x; }
        export function input(world: any, _p: unknown, msg: any) { world.meta.n = msg.n; }`,
    });
    const events = (list: unknown[]) => {
      const w = new MsgpackWriter();
      w.value(list);
      return w.bytes().slice();
    };
    const sb = await GameSandbox.create(bundle, { memoryLimitMb: 32, cpuBudgetMs: 20 });
    try {
      let tick = 0;
      const run = (ev: unknown[], budgetMs?: number) =>
        sb.tick({ events: events(ev), seed: 1, tick: ++tick, nowMs: 0, dtSeconds: 0.05, runInit: tick === 1, budgetMs });
      for (let i = 0; i < 4; i++) expect((await run([])).ok).toBe(true); // past the warm-up ticks
      let n = 100_000;
      let cpu = 0;
      for (; cpu < 30; n *= 2) {
        const out = await run([[3, 'p', 'p', tick, { n }]], 100_000);
        expect(out.ok).toBe(true);
        cpu = out.cpuMs;
      }
      // A budget well under the calibrated cost: the same tick run again may be up to 2x faster
      // (V8 optimizes it further) and still overruns it, and its wall-clock hard stop (3x the
      // budget) is above what the tick normally takes, so it finishes and the CPU check fails it.
      const budget = Math.max(1, Math.floor(cpu / 2.5));
      const before = await sb.exportRecords();
      const over = await run([], budget);
      expect(over).toMatchObject({ ok: false, code: 'CPU_BUDGET_EXCEEDED', isolateDead: false });
      expect(Buffer.from(await sb.exportRecords()).equals(Buffer.from(before))).toBe(true);
      // A grace period (an isolate just swapped in) lifts the budget for that many ticks only.
      sb.grantGrace(1, 100_000);
      expect((await run([], budget)).ok).toBe(true);
      expect(await run([], budget)).toMatchObject({ ok: false, code: 'CPU_BUDGET_EXCEEDED' });
    } finally {
      sb.dispose();
    }
  });
});

describe('a staged isolate catching up with committed records (applyRecords)', () => {
  /** msgpack [key, bin, key, bin, ...] of these records, as the host sends them. */
  function recordSets(records: [string, unknown][]): Uint8Array {
    const w = new MsgpackWriter();
    const inner = new MsgpackWriter();
    w.arrayHeader(records.length * 2);
    for (const [k, v] of records) {
      inner.reset();
      inner.value(v);
      const bytes = inner.bytes();
      w.str(k);
      w.binHeader(bytes.length);
      w.raw(bytes);
    }
    return w.bytes().slice();
  }
  const noDels = (() => {
    const w = new MsgpackWriter();
    w.value([]);
    return w.bytes().slice();
  })();

  async function exported(sb: GameSandbox): Promise<Map<string, unknown>> {
    const flat = unpackr.unpack(await sb.exportRecords()) as unknown[];
    const out = new Map<string, unknown>();
    for (let i = 0; i < flat.length; i += 2) out.set(flat[i] as string, unpackr.unpack(flat[i + 1] as Uint8Array));
    return out;
  }

  it('ends with exactly the committed values and key order, keeps unchanged-shape records in place, and never lets a __proto__ key set a prototype', async () => {
    const bundle = await game({
      'main.ts': `
        let prevA: unknown = null;
        export function init(world: any) {
          world.players = { a: { x: 1, pos: { x: 1, y: 2 }, tags: [1, 2] }, b: { x: 2, pos: { x: 0, y: 0 }, tags: [] }, d: { x: 4 } };
        }
        export function tick(world: any) {
          const a = world.players.a;
          const d = world.players.d;
          world.seen = {
            sameA: prevA !== null && a === prevA,
            dProtoIsObject: Object.getPrototypeOf(d) === Object.prototype,
            polluted: ({} as any).polluted === undefined ? 'no' : 'yes',
            tableProtoIsObject: Object.getPrototypeOf(world.players) === Object.prototype,
          };
          prevA = a;
          // Records that arrived by applyRecords are part of the world: writes to them are journaled.
          if (world.players.c) world.players.c.x = 99;
        }`,
    });
    const sb = await GameSandbox.create(bundle, LIMITS);
    try {
      const w = new MsgpackWriter();
      w.value([]);
      const noEvents = w.bytes().slice();
      const call = (tick: number) => ({ events: noEvents, seed: 1, tick, nowMs: 1_700_000_000_000 + tick * 50, dtSeconds: 0.05, runInit: tick === 1 });
      expect((await sb.tick(call(1))).ok).toBe(true);

      const hostile = JSON.parse('{"__proto__": {"polluted": 1}, "x": 5}') as unknown;
      const next: [string, unknown][] = [
        ['players/a', { x: 7, pos: { x: 9, y: 2 }, tags: [3] }], // same keys, same order: assigned in place
        ['players/b', { pos: { x: 1, y: 1 }, x: 3, tags: [] }], // same keys, another order: replaced
        ['players/c', { x: 8 }], // new
        ['players/d', hostile], // a field named __proto__
        ['players/__proto__', { x: 10 }], // an entry named __proto__
      ];
      await sb.applyRecords(recordSets(next), noDels);
      // And again over itself, its __proto__ field now of another shape: assigned, not merged.
      const hostile2 = JSON.parse('{"__proto__": {"polluted": 2, "more": 1}, "x": 6}') as unknown;
      await sb.applyRecords(recordSets([['players/d', hostile2]]), noDels);

      const world = await exported(sb);
      for (const [k, v] of next.slice(0, 3)) expect(world.get(k), k).toEqual(v);
      // (msgpackr renames a decoded "__proto__" key to "__proto_" on this side.)
      expect(world.get('players/d')).toEqual({ __proto_: { polluted: 2, more: 1 }, x: 6 });
      expect(Object.keys(world.get('players/b') as object)).toEqual(['pos', 'x', 'tags']);

      const second = await sb.tick(call(2));
      expect(second.ok).toBe(true);
      const seenOf = (field: string) => unpackr.unpack((second.ok ? second.sets : []).find(([k]) => k === `seen/${field}`)![1]);
      expect(seenOf('sameA')).toBe(true);
      expect(seenOf('dProtoIsObject')).toBe(true);
      expect(seenOf('polluted')).toBe('no');
      expect(seenOf('tableProtoIsObject')).toBe(true);
      expect(world.get('players/__proto__')).toEqual({ x: 10 });
      // (Sent as a field patch: the record existed before the tick and only its x changed.)
      const c = second.ok ? second.patches.find(([k]) => k === 'players/c') : undefined;
      expect(c && unpackr.unpack(c[1])).toEqual({ x: 99 });
    } finally {
      sb.dispose();
    }
  });
});
