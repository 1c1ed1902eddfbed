/**
 * Interest management's parts on data: the game.json settings (hostile ones refused with the
 * setting named), reading x and y from record bytes (hostile bytes change nothing), and the
 * grid's index of positioned entries.
 */
import { describe, expect, it } from 'vitest';
import { pack } from 'msgpackr';
import { parseGameManifest } from '../../server/config/config.ts';
import { ConfigError } from '../../server/errors/errors.ts';
import { ABSENT, InterestGrid, NOWHERE, UNPLACED } from '../../server/room/interest.ts';
import { readPosition } from '../../server/state/record-patch.ts';
import { MsgpackWriter } from '../../server/sandbox/runtime/msgpack.ts';

const enc = (v: unknown) => {
  const w = new MsgpackWriter();
  w.value(v);
  return w.copyBytes();
};

describe('game.json interest', () => {
  it('is off unless set; defaults the viewer to the first table and the radius to 1', () => {
    expect(parseGameManifest('g', {}).interest).toBeNull();
    expect(parseGameManifest('g', { interest: { tables: ['units', 'players'], cellSize: 64 } }).interest).toEqual({ tables: ['units', 'players'], viewer: 'units', cellSize: 64, radius: 1, position: null });
    expect(parseGameManifest('g', { interest: { tables: ['units'], cellSize: 64, position: 'pos' } }).interest!.position).toBe('pos');
    expect(parseGameManifest('g', { interest: { tables: ['players'], viewer: 'players', cellSize: 10, radius: 0 } }).interest!.radius).toBe(0);
  });

  it.each([
    [{ interest: 'yes' }, 'interest'],
    [{ interest: [] }, 'interest'],
    [{ interest: { tables: [], cellSize: 10 } }, 'interest.tables'],
    [{ interest: { tables: ['a/b'], cellSize: 10 } }, 'interest.tables'],
    [{ interest: { tables: [7], cellSize: 10 } }, 'interest.tables'],
    [{ interest: { tables: ['players'] } }, 'interest.cellSize'],
    [{ interest: { tables: ['players'], cellSize: 0 } }, 'interest.cellSize'],
    [{ interest: { tables: ['players'], cellSize: 1.5 } }, 'interest.cellSize'],
    [{ interest: { tables: ['players'], cellSize: 10, radius: -1 } }, 'interest.radius'],
    [{ interest: { tables: ['players'], cellSize: 10, radius: 99 } }, 'interest.radius'],
    [{ interest: { tables: ['players'], cellSize: 10, viewer: 'items' } }, 'interest.viewer'],
    [{ interest: { tables: ['players'], cellSize: 10, radios: 2 } }, 'interest.radios'],
    [{ interest: { tables: ['players'], cellSize: 10, position: 'pos.xy' } }, 'interest.position'],
    [{ interest: { tables: ['players'], cellSize: 10, position: '' } }, 'interest.position'],
    [{ interest: { tables: ['players'], cellSize: 10, position: ['pos'] } }, 'interest.position'],
  ])('%j is refused, naming %s', (raw, setting) => {
    let thrown: unknown;
    try {
      parseGameManifest('g', raw);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as Error).message).toContain(`game.json: ${setting}`);
  });
});

describe('readPosition', () => {
  const read = (bytes: Uint8Array, start = { x: NaN, y: NaN }) => {
    const p = { ...start };
    readPosition(bytes, p);
    return p;
  };

  it('reads x and y of every number encoding, among other fields, in any order', () => {
    expect(read(enc({ name: 'a', y: 7.25, nested: { x: 1, y: 2 }, x: -3 }))).toEqual({ x: -3, y: 7.25 });
    for (const v of [0, 127, -32, 200, -200, 70_000, -70_000, 2 ** 33, -(2 ** 33), 1.5, -1e300]) {
      expect(read(enc({ x: v, y: v }))).toEqual({ x: v, y: v });
    }
    expect(read(new Uint8Array(pack({ x: 1.5, y: 2 })))).toEqual({ x: 1.5, y: 2 });
    // A float32, as other encoders write them.
    expect(read(new Uint8Array([0x82, 0xa1, 0x78, 0xca, 0x3f, 0xc0, 0, 0, 0xa1, 0x79, 0x01]))).toEqual({ x: 1.5, y: 1 });
  });

  it('a patch naming one coordinate keeps the other', () => {
    expect(read(enc({ y: 9 }), { x: 4, y: 5 })).toEqual({ x: 4, y: 9 });
    expect(read(enc({ hp: 3 }), { x: 4, y: 5 })).toEqual({ x: 4, y: 5 });
  });

  it('a coordinate that is not a number reads as NaN (the entry is unplaced)', () => {
    expect(read(enc({ x: null, y: 1 }))).toEqual({ x: NaN, y: 1 });
    expect(read(enc({ x: '12', y: [1] }))).toEqual({ x: NaN, y: NaN });
  });

  it('hostile bytes change nothing and do not throw', () => {
    const start = { x: 1, y: 2 };
    const cases = [
      new Uint8Array([]),
      enc([1, 2]),
      enc('x'),
      new Uint8Array([0x82, 0xa1, 0x78]), // truncated before x's value
      new Uint8Array([0x82, 0xa1, 0x78, 0xcb, 0x40]), // truncated float64
      new Uint8Array([0xdf, 0xff, 0xff, 0xff, 0xff]), // a map claiming 4 billion entries
      new Uint8Array([0x81, 0xc1, 0x01]), // a reserved type as a key
      new Uint8Array([0x82, 0xa1, 0x78, 0x05, 0xa1, 0x79]), // x readable, y's value missing
    ];
    for (const bytes of cases) expect(read(bytes, start), String(bytes)).toEqual(start);
    let deep = enc({ y: 3 });
    for (let i = 0; i < 10_000; i++) deep = new Uint8Array([0x81, 0xa1, 0x7a, ...deep.subarray(0, 64)]);
    expect(() => read(deep, start)).not.toThrow();
  });
});

describe('readPosition inside a field (interest.position)', () => {
  const key = (name: string) => enc(name); // the key as the record encoder writes it
  const read = (bytes: Uint8Array, field: string, start = { x: NaN, y: NaN }) => {
    const p = { ...start };
    readPosition(bytes, p, key(field));
    return p;
  };

  it('reads x and y inside the field, whatever else the entry and the field hold', () => {
    expect(read(enc({ name: 'a', x: 99, pos: { z: 1, y: 7.5, x: -3 } }), 'pos')).toEqual({ x: -3, y: 7.5 });
    const long = 'p'.repeat(40); // a str8 key, not a fixstr
    expect(read(enc({ [long]: { x: 1, y: 2 }, [long.slice(1)]: { x: 5, y: 5 } }), long)).toEqual({ x: 1, y: 2 });
  });

  it('a patch without the field keeps the position; one with it replaces both coordinates', () => {
    expect(read(enc({ hp: 3 }), 'pos', { x: 4, y: 5 })).toEqual({ x: 4, y: 5 });
    expect(read(enc({ pos: { x: 8 } }), 'pos', { x: 4, y: 5 })).toEqual({ x: 8, y: NaN }); // the field comes whole
    expect(read(enc({ pos: 'here' }), 'pos', { x: 4, y: 5 })).toEqual({ x: NaN, y: NaN });
    expect(read(enc({ pos: null }), 'pos', { x: 4, y: 5 })).toEqual({ x: NaN, y: NaN });
  });

  it('hostile bytes change nothing and do not throw', () => {
    const start = { x: 1, y: 2 };
    for (const bytes of [new Uint8Array([]), enc([1]), new Uint8Array([0x81, 0xa3, 0x70, 0x6f, 0x73]), new Uint8Array([0x81, 0xa3, 0x70, 0x6f, 0x73, 0x82, 0xa1, 0x78])]) {
      expect(read(bytes, 'pos', start), String(bytes)).toEqual(start);
    }
  });
});

describe('InterestGrid', () => {
  const settings = { tables: ['players', 'items'], viewer: 'players', cellSize: 100, radius: 1, position: null };

  it('places entries by x and y, follows patches and deletes, and leaves other records alone', () => {
    const g = new InterestGrid(settings);
    g.load([
      ['players/a', enc({ x: 50, y: 50 })],
      ['players/b', enc({ x: 250, y: 50 })],
      ['items/banner', enc({ text: 'hi' })],
      ['meta', enc({ ticks: 1 })],
      ['players', enc({})],
    ]);
    expect(g.tracks('meta')).toBe(false);
    expect(g.tracks('players')).toBe(false);
    expect(g.tracks('items/banner')).toBe(true);
    expect(g.cellOf('items/banner')).toBe(UNPLACED);
    expect(g.cellOf('items/none')).toBe(ABSENT);
    const a = g.viewAt(g.viewerKey('a'));
    expect(g.sees(a, g.cellOf('players/b'))).toBe(false); // two cells away
    expect(g.sees(a, UNPLACED)).toBe(true);
    expect(g.sees(a, ABSENT)).toBe(false);
    expect(g.viewAt(g.viewerKey('nobody'))).toBe(NOWHERE);
    expect(g.sees(NOWHERE, g.cellOf('players/a'))).toBe(false);
    expect(g.sees(NOWHERE, UNPLACED)).toBe(true);
    expect(g.cellsSeenFrom(NOWHERE)).toEqual([]);

    g.apply({ sets: [], dels: [], patches: [['players/b', enc({ x: 150 })]] });
    expect(g.sees(a, g.cellOf('players/b'))).toBe(true);
    expect(g.cellsSeenFrom(a).flatMap((c) => [...g.membersOf(c)]).sort()).toEqual(['players/a', 'players/b']);

    g.apply({ sets: [['players/b', enc({ name: 'b' })]], dels: [], patches: [] }); // replaced whole, no position
    expect(g.cellOf('players/b')).toBe(UNPLACED);
    expect(g.viewAt(g.viewerKey('b'))).toBe(NOWHERE);
    g.apply({ sets: [], dels: ['players/a'], patches: [] });
    expect(g.cellOf('players/a')).toBe(ABSENT);
    expect(g.cellsSeenFrom(a)).toEqual([]); // a gone, b unplaced: no cell holds anyone
  });

  it('negative and enormous coordinates land in cells at the edge, not in no cell', () => {
    const g = new InterestGrid(settings);
    g.load([
      ['players/a', enc({ x: -1, y: -1 })],
      ['players/b', enc({ x: 1e300, y: -1e300 })],
      ['players/c', enc({ x: -150, y: -50 })],
    ]);
    expect(g.sees(g.viewAt(g.viewerKey('a')), g.cellOf('players/c'))).toBe(true);
    expect(g.cellOf('players/b')).toBeGreaterThanOrEqual(0);
    expect(g.sees(g.viewAt(g.viewerKey('a')), g.cellOf('players/b'))).toBe(false);
    expect(g.sees(g.viewAt(g.viewerKey('b')), g.cellOf('players/b'))).toBe(true);
  });

  it('with interest.position, places entries by the x and y inside that field', () => {
    const g = new InterestGrid({ ...settings, position: 'pos' });
    g.load([
      ['players/a', enc({ pos: { x: 50, y: 50 }, x: 950, y: 950 })],
      ['players/b', enc({ pos: { x: 250, y: 50 } })],
      ['players/c', enc({ x: 50, y: 50 })], // top-level x and y do not count here
    ]);
    const a = g.viewAt(g.viewerKey('a'));
    expect(g.sees(a, g.cellOf('players/b'))).toBe(false);
    expect(g.cellOf('players/c')).toBe(UNPLACED);
    g.apply({ sets: [], dels: [], patches: [['players/b', enc({ pos: { x: 150, y: 50 } })]] });
    expect(g.sees(a, g.cellOf('players/b'))).toBe(true);
    g.apply({ sets: [], dels: [], patches: [['players/b', enc({ hp: 1 })]] });
    expect(g.sees(a, g.cellOf('players/b'))).toBe(true);
  });
});
