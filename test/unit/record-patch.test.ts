/**
 * Field patches folded into whole records on the host (server/state/record-patch.ts), the
 * mirror that folds them lazily (committed-state.ts), the tick log that keeps them
 * (tick-delta.ts), and the isolate's side: a patched record is not encoded whole, and one
 * that grows past the record limit by patches is still refused. Real isolates for the last.
 */
import { describe, expect, it } from 'vitest';
import { Unpackr } from 'msgpackr';
import { bundleGame } from '../../server/sandbox/bundler.ts';
import { decode, MsgpackWriter } from '../../server/sandbox/runtime/msgpack.ts';
import { GameSandbox, type TickOutcome } from '../../server/sandbox/sandbox.ts';
import { CommittedState, stateHash } from '../../server/state/committed-state.ts';
import { applyChanges, foldPatch, foldPatches, isFoldablePatch, type RecordChanges } from '../../server/state/record-patch.ts';
import { applyTickDelta, encodeTickDelta } from '../../server/state/tick-delta.ts';
import { mulberry32 } from '../helpers/prng.ts';

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

function enc(v: unknown): Uint8Array {
  const w = new MsgpackWriter();
  w.value(v);
  return w.copyBytes();
}

/** What JavaScript makes of assigning the patch's fields to (a copy of) the record. */
function assigned(record: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out = structuredClone(record);
  for (const k of Object.keys(patch)) Object.defineProperty(out, k, { value: patch[k], enumerable: true, writable: true, configurable: true });
  return out;
}


function randomValue(r: () => number, depth = 0): unknown {
  const pick = Math.floor(r() * (depth > 2 ? 7 : 9));
  switch (pick) {
    case 0: return Math.floor(r() * 200) - 100;
    case 1: return r() * 1e6 - 5e5;
    case 2: return [-0, NaN, Infinity, 2 ** 53 + 2, -(2 ** 40), 0x1_0000_0000][Math.floor(r() * 6)];
    case 3: return 'é€😀 x'.repeat(Math.floor(r() * 3)) + String(Math.floor(r() * 1000));
    case 4: return 'long:' + 'y'.repeat(Math.floor(r() * 300));
    case 5: return r() < 0.5;
    case 6: return null;
    case 7: return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(r() * 4); i > 0; i--) o['k' + Math.floor(r() * 6)] = randomValue(r, depth + 1);
      return o;
    }
  }
}

function randomRecord(r: () => number, fields: number): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (let i = 0; i < fields; i++) o['f' + i + (r() < 0.2 ? 'é' : '')] = randomValue(r);
  return o;
}

describe('folding a field patch into a record', () => {
  it('gives the bytes the isolate would encode for the assigned record, over many random records and patches', () => {
    const r = mulberry32(7);
    for (let n = 0; n < 2000; n++) {
      // Field counts around the map header sizes: 15 -> 16 is fixmap -> map16.
      const record = randomRecord(r, [1, 5, 14, 15, 16, 40][n % 6]!);
      const keys = Object.keys(record);
      const patch: Record<string, unknown> = {};
      for (let i = Math.floor(r() * 5); i > 0; i--) patch[keys[Math.floor(r() * keys.length)]!] = randomValue(r);
      for (let i = Math.floor(r() * 3); i > 0; i--) patch['new' + Math.floor(r() * 4)] = randomValue(r);
      const folded = foldPatch(enc(record), enc(patch));
      expect(Buffer.from(folded).equals(Buffer.from(enc(assigned(record, patch)))), `case ${n}`).toBe(true);
    }
  });

  it('folds several patches at once into the same bytes as one after another (random records, fields added and reset)', () => {
    const r = mulberry32(99);
    for (let n = 0; n < 1500; n++) {
      const record = randomRecord(r, [1, 3, 15, 30][n % 4]!);
      const keys = Object.keys(record);
      const patches: Uint8Array[] = [];
      let expected = record;
      for (let k = 1 + Math.floor(r() * 25); k > 0; k--) {
        const patch: Record<string, unknown> = {};
        for (let i = Math.floor(r() * 4); i > 0; i--) patch[keys[Math.floor(r() * keys.length)]!] = randomValue(r);
        // New fields, some named again by later patches (their first appearance decides the order).
        for (let i = Math.floor(r() * 3); i > 0; i--) patch['new' + Math.floor(r() * 5)] = randomValue(r);
        if (r() < 0.05) patch[String(Math.floor(r() * 3))] = 'index-like'; // the slow path, mid-sequence
        patches.push(enc(patch));
        expected = assigned(expected, patch);
      }
      const folded = foldPatches(enc(record), patches);
      expect(Buffer.from(folded).equals(Buffer.from(enc(expected))), `case ${n}`).toBe(true);
    }
  });

  it('puts a new field named like an array index where JavaScript does (first), not at the end', () => {
    const folded = foldPatch(enc({ a: 1, b: 2 }), enc({ b: 3, 7: 'seven', c: 4 }));
    expect(Object.keys(decode(folded) as object)).toEqual(['7', 'a', 'b', 'c']);
    expect(Buffer.from(folded).equals(Buffer.from(enc(assigned({ a: 1, b: 2 }, { b: 3, 7: 'seven', c: 4 }))))).toBe(true);
    // Not index-like: "07", "-1", "4294967295" (2^32 - 1) stay in insertion order.
    for (const key of ['07', '-1', '4294967295', '1.5']) {
      expect(Object.keys(decode(foldPatch(enc({ a: 1 }), enc({ [key]: 1 }))) as object), key).toEqual(['a', key]);
    }
  });

  it('sets a "__proto__" field as an own field, never a prototype', () => {
    const patch = enc(JSON.parse('{"__proto__": {"polluted": 1}, "x": 2}'));
    const folded = decode(foldPatch(enc({ x: 1 }), patch)) as Record<string, unknown>;
    expect(Object.keys(folded)).toEqual(['x', '__proto__']);
    expect(Object.getPrototypeOf(folded)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('takes a patch only as one well-formed map with string keys (hostile bytes from an isolate)', () => {
    const nested = (depth: number) => new Uint8Array([0x81, 0xa1, 0x61, ...new Array(depth).fill(0x91), 0x01]);
    const good = enc({ x: 1, y: [1, { z: 'a' }] });
    expect(isFoldablePatch(good)).toBe(true);
    expect(isFoldablePatch(nested(100))).toBe(true);
    const bad: [string, Uint8Array][] = [
      ['empty', new Uint8Array(0)],
      ['not a map', enc([1, 2])],
      ['a number', enc(5)],
      ['truncated', good.subarray(0, good.length - 1)],
      ['trailing bytes', new Uint8Array([...good, 0xc0])],
      ['count larger than the bytes', new Uint8Array([0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 0x61, 0x01])],
      ['integer key', new Uint8Array([0x81, 0x05, 0x01])],
      ['ext value', new Uint8Array([0x81, 0xa1, 0x61, 0xd4, 0x01, 0x02])],
      ['reserved byte', new Uint8Array([0x81, 0xa1, 0x61, 0xc1])],
      // Deeper than any writer nests: refused without recursing 100,000 frames deep.
      ['nested 100,000 deep', nested(100_000)],
    ];
    for (const [what, bytes] of bad) expect(isFoldablePatch(bytes), what).toBe(false);
  });

  it('a patch of a record that is not a map, or of bytes that do not decode, changes nothing and never throws', () => {
    for (const record of [enc([1, 2, 3]), enc(7), enc('text'), new Uint8Array([0x81, 0xa1]), new Uint8Array(0)]) {
      expect(Buffer.from(foldPatch(record, enc({ x: 1 }))).equals(Buffer.from(record))).toBe(true);
    }
    expect(Buffer.from(foldPatch(enc({ x: 1 }), enc([9]))).equals(Buffer.from(enc({ x: 1 })))).toBe(true);
  });

  it('applies changes in order, and skips a patch of a record that is not there', () => {
    const records = new Map<string, Uint8Array>([['p/a', enc({ x: 1, y: 1 })], ['p/b', enc({ x: 2 })]]);
    applyChanges(records, { sets: [['p/c', enc({ x: 3 })]], dels: ['p/b'], patches: [['p/a', enc({ y: 5 })], ['p/gone', enc({ x: 9 })]] });
    expect([...records.keys()]).toEqual(['p/a', 'p/c']);
    expect(decode(records.get('p/a')!)).toEqual({ x: 1, y: 5 });
  });
});

/** A random history of changes over a few records: whole writes, patches and deletions. */
function randomHistory(seed: number, ticks: number): { changes: RecordChanges[]; states: Map<string, Uint8Array>[] } {
  const r = mulberry32(seed);
  const live = new Map<string, Record<string, unknown>>();
  const states: Map<string, Uint8Array>[] = [new Map()];
  const changes: RecordChanges[] = [];
  for (let t = 1; t <= ticks; t++) {
    const sets: [string, Uint8Array][] = [];
    const dels: string[] = [];
    const patches: [string, Uint8Array][] = [];
    for (const key of ['t/a', 't/b', 't/c', 't/d']) {
      const roll = r();
      const current = live.get(key);
      if (roll < 0.15 || (!current && roll < 0.5)) {
        const v = randomRecord(r, 1 + Math.floor(r() * 5));
        live.set(key, v);
        sets.push([key, enc(v)]);
      } else if (current && roll < 0.25) {
        live.delete(key);
        dels.push(key);
      } else if (current && roll < 0.8) {
        const patch: Record<string, unknown> = {};
        const keys = Object.keys(current);
        patch[keys[Math.floor(r() * keys.length)] ?? 'n'] = randomValue(r);
        if (r() < 0.3) patch['n' + Math.floor(r() * 3)] = randomValue(r);
        live.set(key, assigned(current, patch));
        patches.push([key, enc(patch)]);
      }
    }
    changes.push({ sets, dels, patches });
    states.push(new Map([...live].map(([k, v]) => [k, enc(v)])));
  }
  return { changes, states };
}

describe('the tick log with patches', () => {
  it('round-trips a delta, and still reads the four-element deltas written before patches', () => {
    const changes: RecordChanges = { sets: [['p/a', enc({ x: 1 })]], dels: ['p/z'], patches: [['p/b', enc({ y: 2 })]] };
    const records = new Map<string, Uint8Array>([['p/b', enc({ y: 1, w: 0 })], ['p/z', enc({})]]);
    const seqs = new Map<string, number>();
    const touched = { keys: new Set<string>(), players: new Set<string>() };
    expect(applyTickDelta(encodeTickDelta(9, changes, new Map([['p1', 4]])), records, seqs, touched)).toBe(9);
    expect(new Map([...records].map(([k, v]) => [k, decode(v)]))).toEqual(new Map<string, unknown>([['p/b', { y: 2, w: 0 }], ['p/a', { x: 1 }]]));
    expect(seqs.get('p1')).toBe(4);
    expect([...touched.keys].sort()).toEqual(['p/a', 'p/b', 'p/z']);

    const w = new MsgpackWriter();
    w.value([3, ['p/c', enc({ x: 3 })], [], ['p2', 7]]);
    expect(applyTickDelta(w.copyBytes(), records, seqs)).toBe(3);
    expect(decode(records.get('p/c')!)).toEqual({ x: 3 });
    expect(seqs.get('p2')).toBe(7);
  });

  it('refuses a delta with more elements than storage format 2 has, changing nothing', () => {
    const records = new Map<string, Uint8Array>([['p/a', enc({ x: 1 })]]);
    const seqs = new Map<string, number>();
    const w = new MsgpackWriter();
    w.value([4, ['p/a', enc({ x: 2 })], [], ['p1', 1], [], ['something', 'newer']]);
    expect(() => applyTickDelta(w.copyBytes(), records, seqs)).toThrow(/6 elements: not storage format 1 or 2/);
    const notADelta = new MsgpackWriter();
    notADelta.value('not a delta');
    expect(() => applyTickDelta(notADelta.copyBytes(), records, seqs)).toThrow(/not storage format/);
    expect(decode(records.get('p/a')!)).toEqual({ x: 1 });
    expect(seqs.size).toBe(0);
  });

  it('replayed over a checkpoint at least as new as its first tick, lands on the committed state (every checkpoint and age)', () => {
    // A checkpoint at tick c writes the records as they are when it runs (tick x >= c) and
    // keeps the log from c + 1: replaying c + 1 .. N over them must give the state at N.
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const N = 30;
      const { changes, states } = randomHistory(seed, N);
      const expected = stateHash(states[N]!);
      const log = changes.map((c, i) => encodeTickDelta(i + 1, c, new Map()));
      for (let c = 0; c <= N; c++) {
        for (let x = c; x <= N; x++) {
          const records = new Map(states[x]!);
          for (let t = c + 1; t <= N; t++) applyTickDelta(log[t - 1]!, records, new Map());
          expect(stateHash(records), `seed ${seed}, checkpoint ${c}, values of tick ${x}`).toBe(expected);
        }
      }
    }
  });
});

describe('the committed mirror folds patches lazily', () => {
  it('serves every record whole and equal to folding each tick at once, whichever way it is read', () => {
    const { changes, states } = randomHistory(11, 60);
    const lazy = new CommittedState(0);
    for (let t = 1; t <= 60; t++) {
      lazy.apply(t, changes[t - 1]!);
      expect(lazy.size).toBe(states[t]!.size);
      // Read one record whole now and then, the rest only at the end or every tenth tick.
      if (t % 7 === 0 && states[t]!.has('t/a')) expect(Buffer.from(lazy.get('t/a')!).equals(Buffer.from(states[t]!.get('t/a')!))).toBe(true);
      if (t % 10 === 0) expect(lazy.hash(), `tick ${t}`).toBe(stateHash(states[t]!));
    }
    expect(lazy.tick).toBe(60);
    expect(lazy.hash()).toBe(stateHash(states[60]!));
  });

  it('folds a record on its own once it has 64 patches waiting, so a stalled checkpoint cannot let them pile up', () => {
    const state = new CommittedState(0, [['p/a', enc({ n: 0 })]]);
    for (let t = 1; t <= 200; t++) state.apply(t, { sets: [], dels: [], patches: [['p/a', enc({ n: t })]] });
    // Reaching into the private list: what is pending is the point of this test.
    const pending = (state as unknown as { unfolded: Map<string, Uint8Array[]> }).unfolded.get('p/a')?.length ?? 0;
    expect(pending).toBeLessThan(64);
    expect(decode(state.get('p/a')!)).toEqual({ n: 200 });
  });
});

describe('the isolate sends a patched record as its patch only, and still bounds its size', () => {
  const LIMITS = { memoryLimitMb: 64, cpuBudgetMs: 2000 };

  async function ticks(src: string, n: number): Promise<TickOutcome[]> {
    const bundle = await bundleGame({ name: 'patched', entry: 'main.ts', files: new Map([['main.ts', src]]) });
    const sb = await GameSandbox.create(bundle, LIMITS);
    const none = enc([]);
    try {
      const out: TickOutcome[] = [];
      for (let tick = 1; tick <= n; tick++) out.push(await sb.tick({ events: none, seed: 1, tick, nowMs: 0, dtSeconds: 0.05, runInit: tick === 1 }));
      return out;
    } finally {
      sb.dispose();
    }
  }

  it('a record whose fields changed goes as a patch, not also whole; a new or replaced record goes whole', async () => {
    const [first, second] = await ticks(
      `export function init(world: any) { world.p = { a: { x: 1, y: 1, name: 'a' }, b: { x: 2 } }; }
       export function tick(world: any) {
         if (world.p.b.x === 2) world.p.b.x = 2.5; // tick 1 (init's tick): created records go whole
         else if (world.p.a.x === 1) { world.p.a.x = 5; world.p.b = { x: 3 }; world.p.c = { x: 4 }; }
       }`,
      2,
    );
    expect(first!.ok && first!.sets.map(([k]) => k).sort()).toEqual(['p', 'p/a', 'p/b']);
    expect(first!.ok && first!.patches).toEqual([]);
    if (!second?.ok) throw new Error(second?.code);
    expect(second.sets.map(([k]) => k).sort()).toEqual(['p/b', 'p/c']);
    expect(second.patches.map(([k, v]) => [k, unpackr.unpack(v)])).toEqual([['p/a', { x: 5 }]]);
  });

  it('a record grown past 1 MiB one patch at a time fails its tick naming the record, and is undone', async () => {
    // Each tick adds a 300,000-character field to the record (the first tick creates it, whole;
    // later ones patch it). The fourth field makes it 1.2 MB: that tick must fail like a record
    // written whole would.
    const outcomes = await ticks(
      `export function init(world: any) { world.big = { r: { n: 0 } }; }
       export function tick(world: any) { const r = world.big.r; r.n += 1; r['s' + r.n] = 'x'.repeat(300_000); }`,
      5,
    );
    const [t1, t2, t3, t4, t5] = outcomes;
    expect(t1!.ok && t1!.sets.map(([k]) => k)).toContain('big/r');
    for (const t of [t2, t3]) expect(t!.ok && t!.patches.map(([k]) => k)).toEqual(['big/r']);
    expect(t4!.ok).toBe(false);
    expect(!t4!.ok && t4!.thrown?.message).toMatch(/record "big\/r" is \d+ bytes encoded, more than a record can be/);
    // Undone: the next tick meets the same record (three fields) and fails the same way.
    expect(!t5!.ok && t5!.thrown?.message).toMatch(/record "big\/r" is \d+ bytes encoded/);
  });
});
