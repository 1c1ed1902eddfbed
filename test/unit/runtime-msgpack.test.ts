import { describe, it, expect } from 'vitest';
import { Packr, unpack } from 'msgpackr';
import { MsgpackWriter, decode, MAX_DEPTH } from '../../server/sandbox/runtime/msgpack.ts';
import { mulberry32 } from '../helpers/prng.ts';

// --- helpers -------------------------------------------------------------------------------

// msgpackr's default `pack` refuses objects with more than 65535 keys unless variableMapSize
// is on (it reserves a map16 header up front); otherwise these are its defaults.
const packr = new Packr({ useRecords: false, variableMapSize: true });
const pack = (v: unknown): Uint8Array => packr.pack(v);

/** Encodes with our writer and returns a copy (bytes() is a view into the writer's buffer). */
function encode(v: unknown): Uint8Array {
  const w = new MsgpackWriter();
  w.value(v);
  return w.bytes().slice();
}

/**
 * Brings msgpackr output into our value model so toEqual can compare it: Buffers become plain
 * Uint8Arrays (toEqual checks constructors) and 64-bit ints, which msgpackr's default unpack
 * returns as BigInt, become numbers.
 */
function normalize(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (Array.isArray(v)) return v.map(normalize);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v)) out[k] = normalize((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}


function makeGenerator(seed: number) {
  const rand = mulberry32(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[int(0, xs.length - 1)]!;

  // Code points from every UTF-8 length class, including astral (emoji), but never lone
  // surrogates: those are tested separately because encoders legitimately differ on them.
  const codePoint = (): number => {
    switch (int(0, 4)) {
      case 0:
      case 1:
        return int(0x20, 0x7e);
      case 2:
        return int(0x80, 0x7ff);
      case 3: {
        const cp = int(0x800, 0xfffd);
        return cp >= 0xd800 && cp <= 0xdfff ? 0x4e2d : cp;
      }
      default:
        return int(0x10000, 0x10ffff);
    }
  };
  const string = (): string => {
    const len = pick([0, 1, 3, 8, 31, 32, 40, 255, 256, 300]);
    let s = '';
    const ascii = rand() < 0.5;
    for (let i = 0; i < len; i++) s += ascii ? String.fromCharCode(int(0x20, 0x7e)) : String.fromCodePoint(codePoint());
    return s;
  };
  const number = (): number => {
    switch (int(0, 5)) {
      case 0:
        return int(-40, 140);
      case 1: {
        // Integer of random magnitude up to 2^53, either sign.
        const n = Math.floor(rand() * 2 ** int(0, 53));
        return rand() < 0.5 ? -n : n;
      }
      case 2:
        return pick([0, -1, -32, -33, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, -(2 ** 31), -(2 ** 31) - 1, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]);
      case 3:
        return (rand() - 0.5) * 10 ** int(-10, 300);
      case 4:
        return pick([0.5, -0.25, 1e300, -1e-300, Number.MAX_VALUE, Number.MIN_VALUE, Infinity, -Infinity]);
      default:
        return rand() * 1000;
    }
  };
  const value = (depth: number): unknown => {
    // Containers get rarer with depth so values stay small (the test compares thousands).
    const kind = depth >= 3 || rand() < depth * 0.3 ? int(0, 4) : int(0, 6);
    switch (kind) {
      case 0:
        return number();
      case 1:
        return string();
      case 2:
        return pick([null, true, false]);
      case 3: {
        const bytes = new Uint8Array(pick([0, 1, 16, 255, 256]));
        for (let i = 0; i < bytes.length; i++) bytes[i] = int(0, 255);
        return bytes;
      }
      case 4:
        return number();
      case 5: {
        const n = pick([0, 1, 2, 5, 15, 16]);
        return Array.from({ length: n }, () => value(depth + 1));
      }
      default: {
        const n = pick([0, 1, 2, 5, 15, 16]);
        const o: Record<string, unknown> = {};
        for (let i = 0; i < n; i++) o[rand() < 0.7 ? `k${int(0, 50)}` : string()] = value(depth + 1);
        return o;
      }
    }
  };
  return value;
}

function arrayOf(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i % 200);
}

function mapOf(n: number): Record<string, number> {
  const o: Record<string, number> = {};
  for (let i = 0; i < n; i++) o[`k${i}`] = i % 300;
  return o;
}

// Each case: value and the first byte our encoder must choose (smallest format).
const EDGE_CASES: Array<[string, unknown, number]> = [
  ['0', 0, 0x00],
  ['-1', -1, 0xff],
  ['-32', -32, 0xe0],
  ['-33', -33, 0xd0],
  ['-128', -128, 0xd0],
  ['-129', -129, 0xd1],
  ['-32768', -32768, 0xd1],
  ['-32769', -32769, 0xd2],
  ['127', 127, 0x7f],
  ['128', 128, 0xcc],
  ['255', 255, 0xcc],
  ['256', 256, 0xcd],
  ['65535', 65535, 0xcd],
  ['65536', 65536, 0xce],
  ['2^32-1', 2 ** 32 - 1, 0xce],
  ['2^32', 2 ** 32, 0xcf],
  ['-2^31', -(2 ** 31), 0xd2],
  ['-2^31-1', -(2 ** 31) - 1, 0xd3],
  ['2^53-1', Number.MAX_SAFE_INTEGER, 0xcf],
  ['-(2^53-1)', Number.MIN_SAFE_INTEGER, 0xd3],
  ['1.5', 1.5, 0xcb],
  ['-0.25', -0.25, 0xcb],
  ['1e300', 1e300, 0xcb],
  ['2^53 (unsafe int -> float)', 2 ** 53, 0xcb],
  ['NaN', NaN, 0xcb],
  ['null', null, 0xc0],
  ['true', true, 0xc3],
  ['false', false, 0xc2],
  ['empty string', '', 0xa0],
  ['string 31', 'a'.repeat(31), 0xbf],
  ['string 32', 'a'.repeat(32), 0xd9],
  ['string 255', 'b'.repeat(255), 0xd9],
  ['string 256', 'c'.repeat(256), 0xda],
  ['string 65535', 'd'.repeat(65535), 0xda],
  ['string 65536', 'e'.repeat(65536), 0xdb],
  // 16 chars but 32 UTF-8 bytes: the header must follow the byte length.
  ['2-byte chars crossing fixstr', 'é'.repeat(16), 0xd9],
  ['multi-byte unicode', 'héllo wörld ✓ 中文 日本語', 0xd9],
  ['emoji', '👾🚀 moon 🌕 patch 👍🏽', 0xd9],
  ['emoji only (short)', '🌕', 0xa4],
  ['long unicode', 'ℳ🌕'.repeat(30000), 0xdb],
  ['bin empty', new Uint8Array(0), 0xc4],
  ['bin 256', new Uint8Array(256).fill(7), 0xc5],
  ['bin 65536', new Uint8Array(65536).fill(9), 0xc6],
  ['array 0', [], 0x90],
  ['array 15', arrayOf(15), 0x9f],
  ['array 16', arrayOf(16), 0xdc],
  ['array 65535', arrayOf(65535), 0xdc],
  ['array 65536', arrayOf(65536), 0xdd],
  ['map 0', {}, 0x80],
  ['map 15', mapOf(15), 0x8f],
  ['map 16', mapOf(16), 0xde],
  ['map 65535', mapOf(65535), 0xde],
  ['map 65536', mapOf(65536), 0xdf],
  [
    'nested record',
    { id: 42, name: 'ship', pos: [1.5, -2.25, 0], tags: ['a', 'b'], meta: { hp: 100, alive: true, owner: null } },
    0x85,
  ],
  ['nested arrays', [[[[]]], [1, [2, [3]]], { a: [{ b: [] }] }], 0x93],
];

// --- tests ---------------------------------------------------------------------------------

describe('runtime msgpack: edge cases', () => {
  for (const [name, value, firstByte] of EDGE_CASES) {
    it(`${name}: smallest format, round-trips, interoperates with msgpackr`, () => {
      const ours = encode(value);
      expect(ours[0]).toBe(firstByte);
      expect(decode(ours)).toEqual(value);
      expect(normalize(unpack(ours))).toEqual(value);
      expect(decode(pack(value))).toEqual(value);
    });
  }

  it('preserves -0 as a float', () => {
    const ours = encode(-0);
    expect(ours[0]).toBe(0xcb);
    expect(Object.is(decode(ours), -0)).toBe(true);
  });

  it('encodes undefined as nil (also inside containers)', () => {
    expect(encode(undefined)).toEqual(new Uint8Array([0xc0]));
    expect(decode(encode([undefined, { a: undefined }]))).toEqual([null, { a: null }]);
  });

  it('encodes lone surrogates as U+FFFD', () => {
    const s = 'a\ud800b\udc00c\ud83d';
    const bytes = encode(s);
    expect(decode(bytes)).toBe('a\ufffdb\ufffdc\ufffd');
    expect(unpack(bytes)).toBe('a\ufffdb\ufffdc\ufffd');
  });

  it('decodes invalid UTF-8 to U+FFFD without over-consuming', () => {
    // fixstr(6): overlong "/" (c0 af), truncated 3-byte lead (e2 82), then "A", then lone continuation.
    const bytes = new Uint8Array([0xa6, 0xc0, 0xaf, 0xe2, 0x82, 0x41, 0x80]);
    expect(decode(bytes)).toBe('\ufffd\ufffd\ufffdA\ufffd');
    // Encoded surrogate (ed a0 80) is invalid UTF-8.
    expect(decode(new Uint8Array([0xa3, 0xed, 0xa0, 0x80]))).toBe('\ufffd\ufffd\ufffd');
  });

  it('decodes formats our encoder never produces: float32, bin8/16, uint/int of any width', () => {
    expect(decode(new Uint8Array([0xca, 0x3f, 0xc0, 0x00, 0x00]))).toBe(1.5);
    expect(decode(new Uint8Array([0xcc, 0x01]))).toBe(1);
    expect(decode(new Uint8Array([0xcd, 0x00, 0x01]))).toBe(1);
    expect(decode(new Uint8Array([0xcf, 0, 0, 0, 0, 0, 0, 0, 5]))).toBe(5);
    expect(decode(new Uint8Array([0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]))).toBe(-2);
    expect(decode(new Uint8Array([0xd1, 0x00, 0x05]))).toBe(5);
    expect(decode(new Uint8Array([0xda, 0x00, 0x02, 0x68, 0x69]))).toBe('hi');
    expect(decode(new Uint8Array([0xc5, 0x00, 0x02, 1, 2]))).toEqual(new Uint8Array([1, 2]));
    // Integer map keys are stringified, as JS would.
    expect(decode(new Uint8Array([0x81, 0x07, 0xc3]))).toEqual({ '7': true });
  });

  it('keeps a __proto__ key as an own property instead of setting the prototype', () => {
    const input = JSON.parse('{"__proto__": {"polluted": true}, "x": 1}') as Record<string, unknown>;
    for (const bytes of [encode(input), pack(input)]) {
      const out = decode(bytes) as Record<string, unknown>;
      expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
      expect(Object.keys(out)).toEqual(['__proto__', 'x']);
      expect(Object.getOwnPropertyDescriptor(out, '__proto__')?.value).toEqual({ polluted: true });
      expect((out as { polluted?: unknown }).polluted).toBeUndefined();
      expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
      expect(decode(encode(out))).toEqual(out);
    }
    // msgpackr itself renames the key on decode rather than keeping it.
    expect(unpack(encode(input))).toEqual({ __proto_: { polluted: true }, x: 1 });
  });

  it('map keys stay correct when the caller reuses its input buffer', () => {
    // Short keys are cached by their bytes; the cache must copy them, not alias the input.
    // These two keys differ only in a byte the cache's hash ignores, so they share a slot.
    const buf = Buffer.from(encode({ abzd: 1 }));
    expect(decode(buf)).toEqual({ abzd: 1 });
    buf.set(encode({ aczd: 2 }));
    expect(decode(buf)).toEqual({ aczd: 2 });
  });

  it('bin decodes to a copy, not a view of the input', () => {
    const bytes = encode(new Uint8Array([1, 2, 3]));
    const out = decode(bytes) as Uint8Array;
    expect(out.constructor).toBe(Uint8Array);
    bytes[2] = 99;
    expect(Array.from(out)).toEqual([1, 2, 3]);
    const fromBuffer = decode(pack(new Uint8Array([4, 5]))) as Uint8Array;
    expect(fromBuffer.constructor).toBe(Uint8Array);
  });
});

describe('runtime msgpack: seeded random values', () => {
  it('interoperates with msgpackr in both directions over 3000 values', () => {
    const gen = makeGenerator(0x5eed);
    const w = new MsgpackWriter();
    for (let i = 0; i < 3000; i++) {
      const v = gen(0);
      w.reset();
      w.value(v); // one reused writer, as in the engine's tick loop
      const ours = w.bytes().slice();
      expect(decode(ours)).toEqual(v);
      expect(normalize(unpack(ours))).toEqual(v);
      // msgpackr canonicalises some values (it packs -0 as int 0), so compare our reading of
      // its bytes with its own reading of them.
      const theirs = pack(v);
      expect(decode(theirs)).toEqual(normalize(unpack(theirs)));
    }
  });
});

describe('runtime msgpack: writer', () => {
  it('grows past its initial 4 KB and bytes() reflects length', () => {
    const w = new MsgpackWriter();
    const big = 'x'.repeat(10_000);
    w.value([big, big]);
    expect(w.length).toBe(w.bytes().length);
    expect(w.length).toBeGreaterThan(20_000);
    expect(decode(w.bytes())).toEqual([big, big]);
    w.reset();
    expect(w.length).toBe(0);
    w.value(1);
    expect(Array.from(w.bytes())).toEqual([1]);
  });

  it('low-level writers compose into a valid message', () => {
    const w = new MsgpackWriter();
    w.mapHeader(4);
    w.str('n');
    w.uint(300);
    w.str('nil');
    w.nil();
    w.str('bin');
    w.binHeader(3);
    w.raw(new Uint8Array([7, 8, 9]));
    w.str('list');
    w.arrayHeader(2);
    w.str('a');
    w.uint(2 ** 40);
    const expected = { n: 300, nil: null, bin: new Uint8Array([7, 8, 9]), list: ['a', 2 ** 40] };
    expect(decode(w.bytes())).toEqual(expected);
    expect(normalize(unpack(w.bytes()))).toEqual(expected);
  });

  it('uint() rejects negatives and non-integers', () => {
    const w = new MsgpackWriter();
    expect(() => w.uint(-1)).toThrow(RangeError);
    expect(() => w.uint(1.5)).toThrow(RangeError);
    expect(() => w.uint(2 ** 53)).toThrow(RangeError);
  });

  it('beginBin/endBin wraps an encoded record as bin, nesting correctly', () => {
    const inner = { id: 7, name: 'röver 🚀', pos: [1.5, 2], deep: { x: [1, 2, 3] } };
    const w = new MsgpackWriter(16); // tiny buffer: growth must not break the patched header
    w.mapHeader(3);
    w.str('type');
    w.str('snapshot');
    w.str('record');
    const mark = w.beginBin();
    w.value(inner);
    w.endBin(mark);
    w.str('nested');
    const outerMark = w.beginBin();
    w.arrayHeader(2);
    w.uint(1);
    const innerMark = w.beginBin();
    w.value(inner);
    w.endBin(innerMark);
    w.endBin(outerMark);

    const viaMsgpackr = unpack(w.bytes()) as { type: string; record: Uint8Array; nested: Uint8Array };
    expect(viaMsgpackr.type).toBe('snapshot');
    expect(viaMsgpackr.record).toBeInstanceOf(Uint8Array);
    expect(unpack(viaMsgpackr.record)).toEqual(inner);
    const [one, innerBin] = unpack(viaMsgpackr.nested) as [number, Uint8Array];
    expect(one).toBe(1);
    expect(unpack(innerBin)).toEqual(inner);

    const viaOurs = decode(w.bytes()) as { record: Uint8Array; nested: Uint8Array };
    expect(decode(viaOurs.record)).toEqual(inner);
    expect(decode((decode(viaOurs.nested) as [number, Uint8Array])[1])).toEqual(inner);
  });

  it('endBin rejects a bogus mark', () => {
    const w = new MsgpackWriter();
    w.value('hello');
    expect(() => w.endBin(2)).toThrow(RangeError);
    expect(() => w.endBin(999)).toThrow(RangeError);
  });

  it('throws TypeError naming the type for non-plain values', () => {
    class Ship {
      hp = 1;
    }
    const cases: Array<[unknown, RegExp]> = [
      [() => 1, /function/],
      [Symbol('s'), /symbol/],
      [10n, /bigint/],
      [new Map(), /Map/],
      [new Set(), /Set/],
      [new Date(0), /Date/],
      [new Ship(), /Ship/],
      [new Uint16Array(2), /Uint16Array/],
      [{ ok: 1, nested: [new Map()] }, /Map/],
    ];
    for (const [value, name] of cases) {
      expect(() => new MsgpackWriter().value(value)).toThrow(TypeError);
      expect(() => new MsgpackWriter().value(value)).toThrow(name);
    }
    // Null-prototype objects are plain data.
    const bare = Object.create(null) as Record<string, unknown>;
    bare.a = 1;
    expect(decode(encode(bare))).toEqual({ a: 1 });
  });

  it('refuses cycles and over-deep values instead of overflowing the stack', () => {
    const cyclic: unknown[] = [];
    cyclic.push(cyclic);
    expect(() => encode(cyclic)).toThrow(/deeper than 512/);

    let ok: unknown = 0;
    for (let i = 0; i < MAX_DEPTH; i++) ok = [ok];
    expect(decode(encode(ok))).toEqual(ok);
    expect(() => encode([ok])).toThrow(/deeper than 512/);
  });
});

describe('runtime msgpack: hostile input', () => {
  const sample = encode({
    id: 123456,
    neg: -70000,
    big: 2 ** 40,
    f: 1.25,
    s: 'ascii',
    u: 'ünïcødé 🌕',
    long: 'y'.repeat(300),
    bin: new Uint8Array([1, 2, 3]),
    arr: [null, true, false, [1, [2]], { k: 'v' }],
  });

  it('throws on every truncated prefix', () => {
    for (let len = 0; len < sample.length; len++) {
      expect(() => decode(sample.subarray(0, len)), `prefix ${len}`).toThrow(/truncated/);
    }
    expect(decode(sample)).toBeTruthy();
  });

  it('throws on trailing bytes', () => {
    const withTrailing = new Uint8Array(sample.length + 1);
    withTrailing.set(sample);
    expect(() => decode(withTrailing)).toThrow(/trailing/);
    expect(() => decode(new Uint8Array([0x01, 0x02]))).toThrow(/trailing/);
  });

  it('throws on the reserved byte 0xc1 anywhere', () => {
    expect(() => decode(new Uint8Array([0xc1]))).toThrow(/invalid byte 0xc1/);
    expect(() => decode(new Uint8Array([0x92, 0x01, 0xc1]))).toThrow(/invalid byte 0xc1/);
  });

  it('throws on ext types', () => {
    expect(() => decode(new Uint8Array([0xd4, 0x01, 0x00]))).toThrow(/ext/);
    expect(() => decode(pack(new Date(0)))).toThrow(/ext/);
  });

  it('throws on lengths past the end without allocating them', () => {
    expect(() => decode(new Uint8Array([0xdb, 0xff, 0xff, 0xff, 0xff, 0x61]))).toThrow(/truncated/);
    expect(() => decode(new Uint8Array([0xc6, 0xff, 0xff, 0xff, 0xff]))).toThrow(/truncated/);
    expect(() => decode(new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff, 0x00]))).toThrow(/truncated/);
    expect(() => decode(new Uint8Array([0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 0x61]))).toThrow(/truncated/);
  });

  it('rejects container and non-string map keys', () => {
    expect(() => decode(new Uint8Array([0x81, 0x90, 0x01]))).toThrow(/map key/);
    expect(() => decode(new Uint8Array([0x81, 0xc0, 0x01]))).toThrow(/map key/);
  });

  it('rejects a depth bomb instead of overflowing the stack', () => {
    const arrays = new Uint8Array(100_000).fill(0x91); // fixarray(1) nested 100000 deep
    expect(() => decode(arrays)).toThrow(/nesting deeper than 512/);
    const maps = new Uint8Array(200_000);
    for (let i = 0; i < maps.length; i += 2) {
      maps[i] = 0x81; // fixmap(1) with key "" -> next map
      maps[i + 1] = 0xa0;
    }
    expect(() => decode(maps)).toThrow(/nesting deeper than 512/);
  });
});
