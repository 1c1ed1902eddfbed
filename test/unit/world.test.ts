/**
 * The journaled world on its own (it is plain TypeScript, so it runs in Node here exactly as it
 * does in the isolate): every write is undoable, rollback costs what was written, dirty records
 * are exactly the ones touched, and nothing but plain data gets in.
 */
import { describe, expect, it } from 'vitest';
import { JournaledWorld } from '../../server/sandbox/runtime/world.ts';

type W = Record<string, any>;

/** A world open for writes, as it is while a hook runs. */
function openWorld(): JournaledWorld {
  const jw = new JournaledWorld();
  jw.open = true;
  return jw;
}

function fresh(): { jw: JournaledWorld; w: W } {
  const jw = openWorld();
  const w = jw.proxy as W;
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
    const w = jw.proxy as W;
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

  it('spread and Object.entries hand out journaled proxies, never raw children', () => {
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
