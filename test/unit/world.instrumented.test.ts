/**
 * The journaled world on its own (it is plain TypeScript, so it runs in Node here as it does in
 * the isolate): every write is undoable, rollback costs what was written, dirty records are
 * exactly the ones touched, and nothing but plain data gets in.
 *
 * This file's assignments are rewritten into journaled calls exactly as a designer script's are
 * (vitest.config.ts applies server/sandbox/instrument-writes.ts to `*.instrumented.test.ts`),
 * and the built-ins that mutate (push, splice, Object.assign...) are guarded as in the isolate.
 */
import { describe, expect, it } from 'vitest';
import { Unpackr } from 'msgpackr';
import { WorldView } from '../../client/world-view.ts';
import { MsgpackWriter } from '../../server/sandbox/runtime/msgpack.ts';
import { installMutatorGuards } from '../../server/sandbox/runtime/guards.ts';
import { JournaledWorld } from '../../server/sandbox/runtime/world.ts';

installMutatorGuards();

type W = Record<string, any>;

/** A world open for writes, as it is while a hook runs. */
function openWorld(): JournaledWorld {
  const jw = new JournaledWorld();
  jw.open = true;
  return jw;
}

function fresh(): { jw: JournaledWorld; w: W } {
  const jw = openWorld();
  const w = jw.root as W;
  w.players = { a: { x: 1, inv: ['sword'] }, b: { x: 2, inv: [] } };
  w.round = 3;
  w.list = [1, 2, 3];
  jw.forget();
  jw.dirty.clear();
  return { jw, w };
}

const snapshot = (jw: JournaledWorld) => JSON.stringify(jw.root);

describe('rollback', () => {
  it('journals a field written over and over once, and still restores it at every savepoint', () => {
    const { jw, w } = fresh();
    const before = snapshot(jw);
    for (let i = 0; i < 100_000; i++) w.players.a.x += 1; // a runaway loop on one field
    expect(jw.journalLength).toBe(1);
    const mark = jw.mark();
    w.players.a.x = -1;
    w.players.a.x = -2;
    w.players.a.x = -3;
    jw.rollback(mark);
    expect(w.players.a.x).toBe(100_001);
    w.round = 4;
    w.players.a.x = 7; // not consecutive with its first entry: journaled again
    jw.rollback(0);
    expect(snapshot(jw)).toBe(before);
  });

  it('undoes nested writes, deletes, array growth and shrinkage, table replacement', () => {
    const { jw, w } = fresh();
    const before = snapshot(jw);
    w.players.a.x = 10;
    w.players.a.inv.push('shield', 'bow');
    w.players.b.inv.length = 0;
    delete w.players.b;
    w.players.c = { x: 3 };
    w.list.splice(0, 2);
    w.list[10] = 9;
    w.round = { nested: true };
    w.newTable = { k: 1 };
    w.players = { only: { x: 0 } };
    jw.rollback(0);
    expect(snapshot(jw)).toBe(before);
  });

  it('undoes deletes in place: key order restored, an entry named __proto__ restored as an entry', () => {
    const jw = openWorld();
    // JSON.parse makes "__proto__" an own key, as a record loaded from Redis can have it.
    jw.reset(JSON.parse('{"players": {"a": {"x": 1, "y": 2, "z": 3}, "__proto__": {"x": 4}, "b": {"x": 5}}}'));
    const w = jw.root as W;
    const before = snapshot(jw);
    delete w.players.a.x;
    delete w.players.__proto__;
    delete w.players.b;
    w.players.b = { x: 6 };
    jw.rollback(0);
    expect(snapshot(jw)).toBe(before);
    expect(Object.getPrototypeOf(w.players)).toBe(Object.prototype);
    expect(Object.keys(w.players)).toEqual(['a', '__proto__', 'b']);
  });

  it('rolls back to a savepoint and keeps the writes before it', () => {
    const { jw, w } = fresh();
    w.players.a.x = 5;
    const mark = jw.mark();
    w.players.a.x = 6;
    w.players.b.x = 7;
    jw.rollback(mark);
    expect(w.players.a.x).toBe(5);
    expect(w.players.b.x).toBe(2);
  });

  it('journals in proportion to the writes, not the size of the world', () => {
    const jw = openWorld();
    const w = jw.root as W;
    const big: W = {};
    for (let i = 0; i < 10_000; i++) big['e' + i] = { x: i, y: i };
    w.entities = big;
    jw.forget();
    w.entities.e5.x = -1;
    w.entities.e6.y = -1;
    expect(jw.journalLength).toBe(2);
  });

  it('skips writing a primitive equal to the current value', () => {
    const { jw, w } = fresh();
    w.players.a.x = 1;
    expect(jw.journalLength).toBe(0);
    expect(jw.dirty.size).toBe(0);
  });
});

describe('dirty records', () => {
  it('names exactly the records touched, at entry granularity for object tables', () => {
    const { jw, w } = fresh();
    w.players.a.inv.push('x');
    w.round = 4;
    w.list.pop();
    expect([...jw.dirty].sort()).toEqual(['list', 'players/a', 'round']);
  });

  it('replacing a table dirties the old and the new entries and the table marker', () => {
    const { jw, w } = fresh();
    w.players = { z: { x: 0 } };
    expect([...jw.dirty].sort()).toEqual(['players', 'players/a', 'players/b', 'players/z']);
  });
});

describe('only plain data gets in', () => {
  it.each([
    ['a Map', () => new Map()],
    ['a Date', () => new Date()],
    ['a function', () => () => 1],
    ['NaN', () => NaN],
    ['Infinity', () => Infinity],
    ['a bigint', () => 10n],
    ['a class instance', () => new (class Ship {})()],
  ])('refuses %s with STATE_INVALID_VALUE', (_n, make) => {
    const { jw, w } = fresh();
    const before = snapshot(jw);
    expect(() => (w.players.a.bad = make())).toThrow(expect.objectContaining({ code: 'STATE_INVALID_VALUE' }));
    expect(snapshot(jw)).toBe(before);
  });

  it('refuses a cycle and a __proto__ key', () => {
    const { w } = fresh();
    const cyclic: W = {};
    cyclic.self = cyclic;
    expect(() => (w.players.a.c = cyclic)).toThrow(/nested deeper/);
    expect(() => (w.players.a = JSON.parse('{"__proto__": {"polluted": 1}}'))).toThrow(/__proto__/);
    expect(({} as W).polluted).toBeUndefined();
  });

  it('refuses defineProperty, freezing and prototype changes on world tables', () => {
    const { w } = fresh();
    expect(() => Object.defineProperty(w.players, 'q', { value: 1 })).toThrow(/defineProperty/);
    expect(() => Object.freeze(w.players)).toThrow(/freezing/);
    expect(() => Object.setPrototypeOf(w.players, null)).toThrow(/prototype/);
  });

  it('assigning copies: the original object is detached from the world', () => {
    const { jw, w } = fresh();
    const p = { x: 1 };
    w.players.d = p;
    p.x = 99;
    expect(w.players.d.x).toBe(1);
    expect(jw.journalLength).toBe(1);
  });

  it('refuses writes when no hook is running (a promise callback after the tick)', () => {
    const { jw, w } = fresh();
    jw.open = false;
    expect(() => (w.players.a.x = 5)).toThrow(/only be changed inside a hook/);
    expect(() => delete w.players.a).toThrow(/only be changed inside a hook/);
    expect(w.players.a.x).toBe(1);
  });

  it('undefined deletes, like nil in Lua', () => {
    const { w } = fresh();
    w.players.a = undefined;
    expect('a' in w.players).toBe(false);
  });

  it("spread and Object.entries hand out the world's own objects, and writes to them are journaled", () => {
    const { jw, w } = fresh();
    const copy = { ...w.players };
    copy.a.x = 42;
    const first = (Object.entries(w.players) as [string, W][])[0]![1];
    first.x = 43;
    expect(jw.dirty.has('players/a')).toBe(true);
    jw.rollback(0);
    expect(w.players.a.x).toBe(1);
  });
});

describe('field patches', () => {
  /**
   * The patches of the current tick as a client gets them: encoded as the runtime encodes them
   * (entry.ts writePatches), decoded as the client decodes frames.
   */
  function patchesOf(jw: JournaledWorld): Record<string, Record<string, unknown>> {
    const out: Record<string, Record<string, unknown>> = {};
    for (const { record, target, fields, fieldCount } of jw.patchRecords()) {
      const writer = new MsgpackWriter();
      writer.mapHeader(fieldCount);
      for (const f of fields.slice(0, fieldCount)) {
        writer.str(f);
        writer.value(target[f]);
      }
      out[record] = wire.unpack(writer.copyBytes());
    }
    return out;
  }

  it('a tick that sets a few fields of existing records patches just those fields', () => {
    const { jw, w } = fresh();
    jw.beginChanges();
    w.players.a.x = 5;
    w.players.a.x = 6;
    w.players.b.x = 7;
    w.players.b.inv.push('gem'); // nested: the top-level field goes whole
    expect(patchesOf(jw)).toEqual({ 'players/a': { x: 6 }, 'players/b': { x: 7, inv: ['gem'] } });
  });

  it('records created, replaced, deleted, stripped of a field or stored as arrays get no patch', () => {
    const { jw, w } = fresh();
    jw.beginChanges();
    w.players.c = { x: 1 };
    w.players.c.x = 2; // created this tick: whole, even though a field was then set
    delete w.players.a.inv;
    w.players.b = { x: 9 };
    w.players.b.x = 10;
    w.list.push(4);
    expect(patchesOf(jw)).toEqual({});
    expect([...jw.dirty].sort()).toEqual(['list', 'players/a', 'players/b', 'players/c']);
  });

  it('a record with more than 16 fields set in one tick goes whole, and the list stops growing', () => {
    const { jw, w } = fresh();
    jw.beginChanges();
    for (let i = 0; i < 40; i++) w.players.a['f' + i] = i;
    expect(patchesOf(jw)).toEqual({});
  });

  it('a full rollback forgets the field lists; a savepoint rollback keeps a correct superset', () => {
    const { jw, w } = fresh();
    jw.beginChanges();
    w.players.a.x = 50;
    jw.rollback(0);
    expect(patchesOf(jw)).toEqual({});
    w.players.a.x = 60;
    const mark = jw.mark();
    w.players.b.x = 70;
    jw.rollback(mark);
    expect(patchesOf(jw)).toEqual({ 'players/a': { x: 60 }, 'players/b': { x: 2 } });
  });

  it('random ticks: a client view kept by sets, deletions and patches always equals the world (seeded model test)', () => {
    // The client applies what the runtime would send (whole records for dirty keys without a
    // patch, deletions, field patches) with the real client code; after every tick its world
    // must equal the isolate's. Any patch that is not exact against the previous tick's state
    // shows up as a difference.
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const jw = openWorld();
    const w = jw.root as W;
    w.players = {};
    for (let i = 0; i < 8; i++) w.players['p' + i] = { x: i, y: 0, pos: { x: 0, y: 0 }, inv: [], tag: 'n' };
    w.items = { i1: { v: 1 } };
    w.round = 1;
    w.log = [];
    jw.forget();
    const view = new WorldView();
    view.applySnapshot(0, 'v', recordsOf(jw, allKeys(jw)) as never);
    jw.beginChanges();

    const ids = () => Object.keys(w.players);
    const pick = () => {
      const list = ids();
      return list.length > 0 ? w.players[list[rnd(list.length)]!] : undefined;
    };
    // A record object a script kept, written in later ticks, perhaps after the record was
    // deleted or replaced: the client must get what the world holds, never the kept object.
    let kept: W | undefined;
    const ops: (() => void)[] = [
      () => { kept = pick(); },
      () => { if (kept) kept.x = rnd(100); },
      () => { if (kept) kept.pos.y = rnd(100); },
      () => { const p = pick(); if (p) p.x = rnd(100); },
      () => { const p = pick(); if (p) p.y += 1; },
      () => { const p = pick(); if (p) p.pos.x = rnd(10); },
      () => { const p = pick(); if (p) p.inv.push(rnd(5)); },
      () => { const p = pick(); if (p) p.inv.length = 0; },
      () => { const p = pick(); if (p) p.extra = rnd(3); },
      () => { const p = pick(); if (p) delete p.extra; },
      () => { const p = pick(); if (p) p.tag = undefined; },
      () => { w.players['p' + rnd(12)] = { x: rnd(9), y: 1, pos: { x: 1, y: 1 }, inv: [1], tag: 't' }; },
      () => { const list = ids(); if (list.length > 2) delete w.players[list[rnd(list.length)]!]; },
      () => { w.items = { ['i' + rnd(4)]: { v: rnd(9) } }; },
      () => { w.round += 1; },
      () => { w.log.push(rnd(9)); },
      () => { const p = pick(); if (p) p.pos = { x: rnd(5), y: rnd(5) }; },
    ];
    for (let tick = 1; tick <= 3000; tick++) {
      const n = 1 + rnd(12);
      for (let i = 0; i < n; i++) {
        if (rnd(8) === 0) {
          // An event that fails: its writes are undone to its savepoint.
          const mark = jw.mark();
          ops[rnd(ops.length)]!();
          ops[rnd(ops.length)]!();
          jw.rollback(mark);
        } else {
          ops[rnd(ops.length)]!();
        }
      }
      if (rnd(20) === 0) jw.rollback(0); // the whole tick fails
      const patch = patchesOf(jw);
      const dirty = [...jw.dirty];
      const live = new Set(allKeys(jw));
      const sets = recordsOf(jw, dirty.filter((k) => live.has(k) && !(k in patch)));
      const dels = dirty.filter((k) => !live.has(k));
      view.applyDelta(tick, 'v', sets as never, dels, patch as never);
      expect(view.world, `tick ${tick}`).toStrictEqual(viaWire(jw.root));
      jw.forget();
      jw.beginChanges();
    }
  });
});

/** Every record key of the world: tables, and entries of object tables. */
function allKeys(jw: JournaledWorld): string[] {
  const keys: string[] = [];
  for (const [name, t] of Object.entries(jw.root)) {
    keys.push(name);
    if (t && typeof t === 'object' && !Array.isArray(t)) for (const e of Object.keys(t)) keys.push(name + '/' + e);
  }
  return keys;
}

const wire = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** A value as a client receives it: encoded by the runtime's writer, decoded by msgpackr. */
function viaWire(v: unknown): unknown {
  const writer = new MsgpackWriter();
  writer.value(v);
  return wire.unpack(writer.copyBytes());
}

/** Records by key, as the runtime stores them: an object table's own record is the marker {}. */
function recordsOf(jw: JournaledWorld, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const slash = key.indexOf('/');
    if (slash < 0) {
      const v = jw.root[key];
      out[key] = v && typeof v === 'object' && !Array.isArray(v) ? {} : viaWire(v);
    } else {
      out[key] = viaWire((jw.root[key.slice(0, slash)] as W)[key.slice(slash + 1)]);
    }
  }
  return out;
}
