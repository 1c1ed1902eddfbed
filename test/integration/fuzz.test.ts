/**
 * Fuzzing the front door: 100,000+ random and mutated frames over many connections to a real
 * in-process server, while honest clients play in the same room. Then: the server still accepts
 * connections, every honest input was acknowledged exactly once and applied exactly once, the
 * fuzzers changed nothing they were not allowed to (their seats hold exactly what their join
 * made; no stray rooms or seats), the three copies of the state agree, and no session, seat or
 * per-address count leaked.
 *
 * Design of "no state change from rejected frames": seated fuzzers only ever send frames that
 * either are refused, or are valid inputs the probe game treats as no-ops (its `input` hook only
 * acts on the `op`s in its source; the fuzzer never lets through a valid input naming one, nor a
 * `leave`). So a fuzzer's seat must still be exactly `{ name, sum: 0, inputs: 0 }` at the end,
 * whatever the server accepted or refused; any other value is a frame that changed state it
 * should not have. Unjoined fuzzers never let through a join that would seat them or create a
 * room. Frames are classified before sending with the server's own parser (the same bytes give
 * the same result), only to decide which valid frames would legitimately change something.
 *
 * Each group of connections comes from its own loopback address, so one group can hold the
 * per-address limit and fuzz the connections refused past it. The game is the probe with a
 * roomy tick budget (test/helpers/roomy-probe.ts): its wall-clock budget must not fail honest
 * inputs on a loaded machine.
 *
 * Reproducible: every connection draws its frames from a PRNG seeded from one printed seed
 * (FUZZ_SEED=<n> to replay; FUZZ_FRAMES=<n> to change the volume). The interleaving of
 * connections is up to the scheduler, the content of each connection's stream is not.
 *
 * Also here: idle and half-open sockets (a TCP socket that never sends a byte, a WebSocket that
 * never answers pings, a seated player that goes silent).
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pack, unpack } from 'msgpackr';
import { WebSocket } from 'ws';
import type { MoonpatchClient } from '../../client/client.ts';
import { CloseCodes } from '../../server/errors/codes.ts';
import { ProtocolError } from '../../server/errors/errors.ts';
import { parseClientFrame } from '../../server/protocol/codec.ts';
import type { ClientMessage, ServerMessage, WelcomeMsg } from '../../server/protocol/messages.ts';
import type { Room } from '../../server/room/room.ts';
import { stateHash } from '../../server/state/committed-state.ts';
import { isValidRoomId } from '../../server/state/keys.ts';
import { reportFigure } from '../helpers/figures.ts';
import { roomyProbeGames } from '../helpers/roomy-probe.ts';
import { FIXTURE_GAMES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const TARGET_FRAMES = process.env.FUZZ_FRAMES ? Number(process.env.FUZZ_FRAMES) : 100_000;
const MAX_FRAME = 16 * 1024;
const SEATED_FUZZERS = 20;
const UNJOINED_FUZZERS = 30;
const PROTOCOL_FUZZERS = 4;
const HONEST = 4;
const PER_ADDRESS = 64;
/** The `op`s the probe game's `input` hook acts on (read from its source); any other input is a no-op. */
const PROBE_OPS = new Set([...readFileSync(path.join(FIXTURE_GAMES, 'probe', 'main.ts'), 'utf8').matchAll(/case '([^']+)'/g)].map((m) => m[1]!));
/** Honest players and seated fuzzers; unjoined fuzzers; framing fuzzers; over-limit connections. */
const ADDR = { seated: '127.0.0.1', unjoined: '127.0.0.3', protocol: '127.0.0.4', crowd: '127.0.0.2' };

// ---------------------------------------------------------------------------------------------
// PRNG (sfc32): fast, seedable, good enough for fuzzing.

class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.u32();
  }
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
  float(): number {
    return this.u32() / 2 ** 32;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.float() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.float() * xs.length)]!;
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
  /** A length that is usually small and sometimes not. */
  size(max: number): number {
    const r = this.float();
    if (r < 0.6) return this.int(0, 16);
    if (r < 0.9) return this.int(0, 256);
    return this.int(0, max);
  }
}

// ---------------------------------------------------------------------------------------------
// A raw msgpack writer: emits exactly the bytes asked for, including non-minimal encodings,
// lying lengths, ext types, non-string map keys and invalid UTF-8, which no encoder would make.

class Raw {
  private parts: number[] = [];
  byte(...b: number[]): this {
    for (const x of b) this.parts.push(x & 0xff);
    return this;
  }
  bytes(b: Uint8Array): this {
    for (const x of b) this.parts.push(x);
    return this;
  }
  u16(n: number): this {
    return this.byte(n >> 8, n);
  }
  u32(n: number): this {
    return this.byte(n >>> 24, n >>> 16, n >>> 8, n);
  }
  strHeader(n: number, form?: number): this {
    const f = form ?? (n < 32 ? 0 : n < 256 ? 1 : n < 65536 ? 2 : 3);
    if (f === 0 && n < 32) return this.byte(0xa0 | n);
    if (f <= 1 && n < 256) return this.byte(0xd9, n);
    if (f <= 2 && n < 65536) return this.byte(0xda).u16(n);
    return this.byte(0xdb).u32(n);
  }
  str(s: string, form?: number): this {
    const b = Buffer.from(s, 'utf8');
    return this.strHeader(b.length, form).bytes(b);
  }
  rawStr(b: Uint8Array): this {
    return this.strHeader(b.length).bytes(b);
  }
  arrayHeader(n: number): this {
    if (n < 16) return this.byte(0x90 | n);
    if (n < 65536) return this.byte(0xdc).u16(n);
    return this.byte(0xdd).u32(n);
  }
  mapHeader(n: number): this {
    if (n < 16) return this.byte(0x80 | n);
    if (n < 65536) return this.byte(0xde).u16(n);
    return this.byte(0xdf).u32(n);
  }
  ext(type: number, data: Uint8Array): this {
    const n = data.length;
    const fix: Record<number, number> = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 };
    if (fix[n] !== undefined) return this.byte(fix[n]!, type).bytes(data);
    if (n < 256) return this.byte(0xc7, n, type).bytes(data);
    if (n < 65536) return this.byte(0xc8).u16(n).byte(type).bytes(data);
    return this.byte(0xc9).u32(n).byte(type).bytes(data);
  }
  value(v: Uint8Array): this {
    return this.bytes(v);
  }
  done(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
  get length(): number {
    return this.parts.length;
  }
}

// ---------------------------------------------------------------------------------------------
// Generators

const NASTY_KEYS = ['t', 'seq', 'd', 'id', 'room', 'game', 'name', 'resume', 'token', 'op', '__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', 'toJSON', 'then', '', ' ', 'a/b', '\u0000', '\ud800', 'é', '💥'];
const TYPES = ['in', 'join', 'ping', 'leave', 'IN', 'in ', 'Join', 'pong', 'ack', 'welcome', '', 'x'.repeat(300)];
/** msgpackr's own extension types (structured clone, Set, Error, RegExp, typed arrays, bigint, bundled strings, timestamp) and a few unknown ones. */
const EXT_TYPES = [0x42, 0x65, 0x69, 0x70, 0x73, 0x74, 0x78, 0x62, 0x72, 0x52, 0x00, 0xff, 0x01, 0x7f, 0x80, 0xfe];
/** Byte sequences that are not valid UTF-8: lone surrogate, overlong, beyond U+10FFFF, stray continuation, truncated. */
const BAD_UTF8 = [[0xed, 0xa0, 0x80], [0xc0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80], [0xff], [0xe2, 0x82], [0xf0, 0x9f, 0x92]];

function randomString(rng: Rng, max = 64): string {
  const n = rng.size(max);
  let s = '';
  for (let i = 0; i < n; i++) {
    const r = rng.float();
    if (r < 0.5) s += String.fromCharCode(rng.int(0x20, 0x7e));
    else if (r < 0.6) s += String.fromCharCode(rng.int(0, 0x1f));
    else if (r < 0.7) s += String.fromCharCode(rng.int(0xd800, 0xdfff)); // lone surrogates
    else if (r < 0.85) s += String.fromCodePoint(rng.int(0x80, 0x10ffff));
    else s += rng.pick(NASTY_KEYS);
  }
  return s;
}

/** Random msgpack bytes for one value, well-formed (counts match contents). */
function randomValue(rng: Rng, depth = 0, out = new Raw()): Raw {
  const r = rng.int(0, depth > 4 ? 11 : 15);
  switch (r) {
    case 0:
      return out.byte(0xc0);
    case 1:
      return out.byte(rng.chance(0.5) ? 0xc2 : 0xc3);
    case 2: // ints, every encoding
      switch (rng.int(0, 8)) {
        case 0: return out.byte(rng.int(0, 0x7f));
        case 1: return out.byte(rng.int(0xe0, 0xff));
        case 2: return out.byte(0xcc, rng.u32());
        case 3: return out.byte(0xcd).u16(rng.u32());
        case 4: return out.byte(0xce).u32(rng.u32());
        case 5: return out.byte(0xcf).bytes(rng.bytes(8)); // uint64, maybe > 2^53
        case 6: return out.byte(0xd3).bytes(rng.bytes(8)); // int64
        case 7: return out.byte(0xd0, rng.u32());
        default: return rng.chance(0.5) ? out.byte(0xd1).u16(rng.u32()) : out.byte(0xd2).u32(rng.u32());
      }
    case 3: { // floats, including NaN, Infinity, -0 and denormals
      const specials = [NaN, Infinity, -Infinity, -0, 5e-324, 1.7976931348623157e308, 2 ** 53 + 1];
      const b = Buffer.alloc(9);
      b[0] = 0xcb;
      b.writeDoubleBE(rng.chance(0.5) ? rng.pick(specials) : (rng.float() - 0.5) * 10 ** rng.int(-10, 30), 1);
      if (rng.chance(0.2)) return out.byte(0xca).bytes(rng.bytes(4));
      return out.bytes(b);
    }
    case 4:
      return out.str(randomString(rng), rng.int(0, 3));
    case 5: { // invalid UTF-8 inside a str
      const parts: number[] = [];
      for (let i = rng.int(1, 4); i > 0; i--) parts.push(...(rng.chance(0.5) ? rng.pick(BAD_UTF8) : [rng.int(0x61, 0x7a)]));
      return out.rawStr(Uint8Array.from(parts));
    }
    case 6: { // bin
      const b = rng.bytes(rng.size(64));
      return out.byte(0xc4, b.length).bytes(b);
    }
    case 7: { // ext, including msgpackr's own
      const type = rng.pick(EXT_TYPES);
      if (type === 0xff && rng.chance(0.5)) return out.ext(0xff, rng.pick([rng.bytes(4), rng.bytes(8), rng.bytes(12)])); // timestamp
      const inner = rng.chance(0.5) ? randomValue(rng, depth + 1).done() : rng.bytes(rng.size(32));
      return out.ext(type, inner);
    }
    case 8:
      return out.str(rng.pick(NASTY_KEYS));
    case 9:
      return out.str('x'.repeat(rng.int(100, 4000)));
    case 10: case 11:
      return out.byte(rng.int(0, 0x7f));
    case 12: case 13: { // array
      const n = rng.int(0, 6);
      out.arrayHeader(n);
      for (let i = 0; i < n; i++) randomValue(rng, depth + 1, out);
      return out;
    }
    default: { // map, keys of any type
      const n = rng.int(0, 6);
      out.mapHeader(n);
      for (let i = 0; i < n; i++) {
        if (rng.chance(0.7)) out.str(rng.pick(NASTY_KEYS));
        else randomValue(rng, depth + 2, out);
        randomValue(rng, depth + 1, out);
      }
      return out;
    }
  }
}

/** Deep nesting of arrays or maps (thousands deep), as a whole frame or inside a field. */
function deepValue(rng: Rng, depth: number): Uint8Array {
  const out = new Raw();
  const kind = rng.int(0, 2);
  for (let i = 0; i < depth; i++) {
    if (kind === 0) out.byte(0x91);
    else if (kind === 1) out.byte(0x81, 0xa1, 0x61);
    else if (i % 2) out.byte(0x91);
    else out.byte(0x81, 0xa1, 0x64);
  }
  out.byte(0xc0);
  return out.done();
}

const VALID_TEMPLATES: (() => ClientMessage)[] = [
  () => ({ t: 'ping', id: 12345 }),
  () => ({ t: 'leave' }),
  () => ({ t: 'in', seq: 7, d: { op: 'noop', v: [1, 2, { x: 'y' }] } }),
  () => ({ t: 'in', seq: 1, d: { op: 'add', n: 1 } }),
  () => ({ t: 'in', seq: 42, d: null }),
  () => ({ t: 'join', room: 'fuzz-room', game: 'probe', name: 'mallory' }),
  () => ({ t: 'join', room: 'fuzz-room', resume: 'pAAAAAAAA.secret' }),
];

const FIELDS: Record<string, string[]> = { in: ['seq', 'd'], join: ['room', 'game', 'name', 'resume', 'token'], ping: ['id'], leave: [] };

/** A client message where fields (or `t`) have random values of any type, or are missing. */
function wrongTypes(rng: Rng): Uint8Array {
  const t = rng.pick(['in', 'join', 'ping', 'leave'] as const);
  const base = VALID_TEMPLATES.map((f) => f()).find((m) => m.t === t)! as unknown as Record<string, unknown>;
  const keys = Object.keys(base);
  const out = new Raw();
  const extra = rng.chance(0.3) ? 1 : 0;
  const drop = rng.chance(0.2) ? rng.pick(keys) : null;
  const fields = keys.filter((k) => k !== drop);
  out.mapHeader(fields.length + extra);
  for (const k of fields) {
    out.str(k);
    const replace = k === 't' ? rng.chance(0.15) : rng.chance(0.6) || FIELDS[t]!.length === 0;
    if (k === 't' && replace) out.str(rng.pick(TYPES));
    else if (replace) randomValue(rng, 0, out);
    else out.value(pack(base[k]));
  }
  if (extra) {
    out.str(rng.pick(NASTY_KEYS));
    randomValue(rng, 0, out);
  }
  return out.done();
}

function mutate(rng: Rng, frame: Uint8Array): Uint8Array {
  const b = Array.from(frame);
  const interesting = [0x00, 0x7f, 0x80, 0xc0, 0xc1, 0xc4, 0xc7, 0xc9, 0xcb, 0xcf, 0xd4, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xff, 0x90, 0x9f, 0x8f];
  for (let m = rng.int(1, 4); m > 0; m--) {
    const i = rng.int(0, Math.max(0, b.length - 1));
    switch (rng.int(0, 6)) {
      case 0: b[i] = (b[i] ?? 0) ^ (1 << rng.int(0, 7)); break;
      case 1: b[i] = rng.u32() & 0xff; break;
      case 2: b.splice(i, 0, rng.pick(interesting)); break;
      case 3: b.splice(i, 1); break;
      case 4: b[i] = rng.pick(interesting); break;
      case 5: b.push(...b.slice(i, i + rng.int(1, 8))); break;
      default: { const j = rng.int(0, Math.max(0, b.length - 1)); [b[i], b[j]] = [b[j]!, b[i]!]; }
    }
  }
  return Uint8Array.from(b);
}

interface Frame { data: Uint8Array | string | Buffer; binary: boolean; kind: string }

function frameFor(rng: Rng, room: string): Frame {
  const r = rng.float();
  const valid = () => pack(rng.pick(VALID_TEMPLATES)());
  if (r < 0.12) return { kind: 'random-bytes', binary: true, data: rng.bytes(rng.size(2000)) };
  if (r < 0.22) return { kind: 'random-value', binary: true, data: randomValue(rng).done() };
  if (r < 0.42) return { kind: 'wrong-types', binary: true, data: wrongTypes(rng) };
  if (r < 0.6) return { kind: 'mutated', binary: true, data: mutate(rng, valid()) };
  if (r < 0.68) {
    const f = valid();
    return { kind: 'truncated', binary: true, data: f.subarray(0, rng.int(0, f.length - 1)) };
  }
  if (r < 0.72) {
    const depth = rng.chance(0.5) ? rng.int(17, 200) : rng.int(1000, 5000);
    const inner = deepValue(rng, depth);
    const where = rng.int(0, 2);
    if (where === 0) return { kind: 'deep', binary: true, data: inner };
    const out = new Raw().mapHeader(3).str('t').str(where === 1 ? 'in' : 'join').str(where === 1 ? 'seq' : 'room');
    if (where === 1) out.byte(0x05).str('d');
    else out.str(room).str('name');
    return { kind: 'deep', binary: true, data: out.value(inner).done() };
  }
  if (r < 0.76) { // huge strings, within the frame limit, in any field
    const field = rng.pick(['t', 'd', 'name', 'room', 'resume', 'token', 'id', 'game']);
    const s = rng.chance(0.5) ? 'A'.repeat(rng.int(1000, MAX_FRAME - 200)) : randomString(rng, 4000);
    const t = field === 'd' ? 'in' : field === 'id' ? 'ping' : 'join';
    const msg: Record<string, unknown> = { t, room };
    if (t === 'in') msg.seq = 3;
    msg[field] = s;
    return { kind: 'huge-string', binary: true, data: pack(msg) };
  }
  if (r < 0.79) { // lying lengths: a header that claims far more than the frame holds
    const out = new Raw().mapHeader(2).str('t').str('in').str('d');
    out.byte(rng.pick([0xdb, 0xdd, 0xdf, 0xc6, 0xc9])).u32(rng.u32());
    return { kind: 'lying-length', binary: true, data: out.bytes(rng.bytes(rng.size(16))).done() };
  }
  if (r < 0.84) { // ext types where values go
    const out = new Raw().mapHeader(3).str('t').str(rng.pick(['in', 'ping', 'join'])).str(rng.pick(['d', 'id', 'room', 'seq']));
    out.ext(rng.pick(EXT_TYPES), rng.chance(0.5) ? randomValue(rng).done() : rng.bytes(rng.size(64)));
    out.str('seq').byte(0x09);
    return { kind: 'ext', binary: true, data: out.done() };
  }
  if (r < 0.9) { // valid msgpack of random JS values through a real encoder
    const v = jsValue(rng, 0);
    try {
      return { kind: 'packed-value', binary: true, data: pack(v) };
    } catch {
      return { kind: 'random-bytes', binary: true, data: rng.bytes(8) };
    }
  }
  if (r < 0.93) {
    const text = rng.pick([
      () => randomString(rng, 200),
      () => JSON.stringify({ t: 'ping', id: 1 }),
      () => JSON.stringify({ t: 'in', seq: 1, d: { op: 'add', n: 1 } }),
      () => '',
    ])();
    return { kind: 'text', binary: false, data: text };
  }
  if (r < 0.935) // a text frame that is not UTF-8 (ws closes with 1007)
    return { kind: 'text-bad-utf8', binary: false, data: Buffer.from(rng.pick(BAD_UTF8)) };
  if (r < 0.937) // larger than MAX_FRAME_BYTES (ws closes with 1009)
    return { kind: 'oversized', binary: true, data: rng.chance(0.5) ? rng.bytes(MAX_FRAME + rng.int(1, 20_000)) : pack({ t: 'ping', id: 1, pad: 'x'.repeat(MAX_FRAME) }) };
  if (r < 0.95) return { kind: 'empty', binary: true, data: new Uint8Array(0) };
  if (r < 0.97) { // valid frame with trailing garbage, or two frames in one
    const f = valid();
    return { kind: 'trailing', binary: true, data: Buffer.concat([f, rng.chance(0.5) ? valid() : rng.bytes(rng.int(1, 8))]) };
  }
  // the rest: valid frames as they are (pings, no-op inputs, joins), which keeps the
  // accepted paths busy as well
  return { kind: 'valid', binary: true, data: valid() };
}

function jsValue(rng: Rng, depth: number): unknown {
  switch (rng.int(0, depth > 3 ? 7 : 10)) {
    case 0: return null;
    case 1: return rng.chance(0.5);
    case 2: return rng.pick([0, -1, 1.5, 2 ** 31, -(2 ** 31) - 1, 2 ** 53, Number.MAX_SAFE_INTEGER, NaN, Infinity, -0, 1e300]);
    case 3: return randomString(rng);
    case 4: return new Uint8Array(rng.bytes(rng.size(20)));
    case 5: return rng.pick([undefined, new Date(rng.u32() * 1000), BigInt(rng.u32()) * 2n ** 40n, new Set([1, 'a'])]);
    case 6: return rng.int(-1000, 1000);
    case 7: return rng.pick(NASTY_KEYS);
    case 8: {
      const a: unknown[] = [];
      for (let i = rng.int(0, 5); i > 0; i--) a.push(jsValue(rng, depth + 1));
      return a;
    }
    case 9: {
      const m = new Map<unknown, unknown>();
      for (let i = rng.int(0, 4); i > 0; i--) m.set(jsValue(rng, depth + 2), jsValue(rng, depth + 1));
      return m;
    }
    default: {
      const o: Record<string, unknown> = {};
      // defineProperty: an own "__proto__" key, not a prototype change.
      for (let i = rng.int(0, 5); i > 0; i--) Object.defineProperty(o, rng.pick(NASTY_KEYS), { value: jsValue(rng, depth + 1), enumerable: true, writable: true, configurable: true });
      if (rng.chance(0.5)) o.t = rng.pick(TYPES);
      return o;
    }
  }
}

/** Plain data an input accepts (within the depth and item limits), unkind to every layer. */
function plainValue(rng: Rng, depth: number, items: { n: number }): unknown {
  const r = rng.int(0, depth >= 15 || items.n > 900 ? 5 : 8);
  switch (r) {
    case 0: return null;
    case 1: return rng.chance(0.5);
    case 2: return rng.pick([0, -0, 1, -1, 0.1, 2 ** 31, 2 ** 32, -(2 ** 53) + 1, Number.MAX_SAFE_INTEGER, Number.MAX_VALUE, Number.MIN_VALUE, 1e21, rng.float()]);
    case 3: case 4: return randomString(rng, rng.chance(0.05) ? 2000 : 40);
    case 5: return rng.int(-1e6, 1e6);
    case 6: {
      const a: unknown[] = [];
      for (let i = rng.int(0, rng.chance(0.05) ? 200 : 6); i > 0 && items.n < 1000; i--, items.n++) a.push(plainValue(rng, depth + 1, items));
      return a;
    }
    default: {
      const o: Record<string, unknown> = {};
      for (let i = rng.int(0, 6); i > 0 && items.n < 1000; i--, items.n++) {
        const k = rng.chance(0.5) ? rng.pick(NASTY_KEYS) : randomString(rng, 20);
        if (k === '__proto__') continue; // refused (BAD_FIELD); other frames cover it
        Object.defineProperty(o, k, { value: plainValue(rng, depth + 1, items), enumerable: true, writable: true, configurable: true });
      }
      return o;
    }
  }
}

/** A name a join accepts (at most 32 UTF-16 units) but that is unkind to every layer. */
function nastyName(rng: Rng, i: number): string {
  const names = [
    () => `fuzz-${i}`,
    () => '   ',
    () => '\ud800lone',
    () => 'a\u0000b',
    () => '💥'.repeat(16),
    () => '__proto__',
    () => 'constructor',
    () => '\u202eevil',
    () => ' spaced name ',
    () => randomString(rng, 32).slice(0, 32),
  ];
  return names[i % names.length]!();
}

// ---------------------------------------------------------------------------------------------
// Connections

interface Budget {
  /** WebSocket frames sent (the figure); HTTP requests and handshakes are counted in `http`. */
  sent: number;
  target: number;
  deadline: number;
  http: number;
  kinds: Map<string, number>;
  /** Close codes the fuzzers saw. */
  closes: Map<string, number>;
  /** What the server answered: error codes, and `ack`/`pong`/`welcome`/`snap`/`delta`; `seated:ack` for acks to seated fuzzers. */
  answers: Map<string, number>;
  filtered: number;
  reconnects: number;
  undecodable: number;
  /** The parser threw something other than a ProtocolError: its contract says it never does. */
  contract: string[];
}

/**
 * The fuzzing is over: enough frames, or past the deadline (a server that stopped serving makes
 * the fuzzers spin; the test then fails on the frame count instead of timing out).
 */
function done(b: Budget): boolean {
  return b.sent >= b.target || Date.now() > b.deadline;
}

function bump(m: Map<string, number>, k: string, by = 1): void {
  m.set(k, (m.get(k) ?? 0) + by);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Opens a ws connection; resolves once open (or null when it failed or closed first). */
function openWs(url: string, localAddress: string): Promise<WebSocket | null> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { maxPayload: 64 * 1024 * 1024, localAddress, handshakeTimeout: 10_000 });
    ws.binaryType = 'nodebuffer';
    ws.on('error', () => resolve(null));
    ws.once('close', () => resolve(null));
    ws.once('open', () => resolve(ws));
  });
}

/**
 * One fuzzing connection. Seated ones join the room first (then resume their seat after every
 * kick); unjoined ones never hold a seat.
 */
class Fuzzer {
  welcome: WelcomeMsg | null = null;
  errors: string[] = [];
  private ws: WebSocket | null = null;

  constructor(
    private readonly index: number,
    private readonly seated: boolean,
    private readonly rng: Rng,
    private readonly url: string,
    private readonly room: string,
    private readonly budget: Budget,
    private readonly localAddress: string,
  ) {}

  /** Whether the server would let this frame change state; such frames are not sent. */
  private wouldChangeState(f: Frame): boolean {
    if (!f.binary || typeof f.data === 'string') return false;
    let m: ClientMessage;
    try {
      m = parseClientFrame(f.data);
    } catch (e) {
      if (!(e instanceof ProtocolError) && this.budget.contract.length < 10) {
        this.budget.contract.push(`${e instanceof Error ? `${e.name}: ${e.message}` : String(e)} for ${Buffer.from(f.data).toString('hex').slice(0, 200)}`);
      }
      return false; // refused by the parser: exactly what we want to send
    }
    switch (m.t) {
      case 'ping':
        return false;
      case 'leave':
        return this.seated; // gives up the seat (it is ignored without one)
      case 'in': {
        if (!this.seated) return false; // NOT_JOINED
        const d = m.d;
        if (m.seq > this.seq && m.seq < 1e12) this.seq = m.seq; // keep the valid inputs' seqs ahead of it
        return typeof d === 'object' && d !== null && !Array.isArray(d) && typeof d.op === 'string' && PROBE_OPS.has(d.op);
      }
      case 'join': {
        if (this.seated) return false; // ALREADY_JOINED
        if (!isValidRoomId(m.room)) return false; // BAD_ROOM_ID
        const exists = m.room === this.room;
        if (m.resume) return !exists && m.game === 'probe'; // RESUME_REJECTED / ROOM_NOT_FOUND / GAME_NOT_FOUND; 'probe' would create the room first
        return exists || m.game === undefined || m.game === 'probe'; // these seat it (or create a room); a bogus game is GAME_NOT_FOUND
      }
    }
  }

  private seq = 0;

  private next(): Frame {
    for (;;) {
      // Seated fuzzers also send valid inputs of odd plain data, mostly with fresh seqs, so the
      // room path (queue, event encoding, the isolate's decoder, the hook) gets them.
      let f: Frame;
      if (this.seated && this.rng.chance(0.1)) {
        const seq = this.rng.chance(0.9) ? (this.seq += this.rng.int(1, 3)) : this.rng.int(1, this.seq + 1);
        try {
          f = { kind: 'valid-input', binary: true, data: pack({ t: 'in', seq, d: plainValue(this.rng, 0, { n: 0 }) }) };
        } catch {
          continue; // msgpackr's encoder refuses some plain objects (an own "constructor" with a "toJSON")
        }
      } else {
        f = frameFor(this.rng, this.room);
      }
      if (!this.wouldChangeState(f)) return f;
      this.budget.filtered++;
    }
  }

  private async connect(): Promise<boolean> {
    const ws = await openWs(this.url, this.localAddress);
    if (!ws) return false;
    this.ws = ws;
    let welcomed = false;
    ws.on('message', (data, isBinary) => {
      let m: ServerMessage;
      try {
        if (!isBinary) throw new Error('text frame from the server');
        m = unpack(data as Buffer) as ServerMessage;
      } catch {
        this.budget.undecodable++;
        return;
      }
      bump(this.budget.answers, m.t === 'err' ? m.code : m.t === 'ack' && this.seated ? 'seated:ack' : m.t);
      if (m.t === 'welcome') {
        welcomed = true;
        if (this.welcome && m.player !== this.welcome.player) this.errors.push(`resumed into another seat: ${m.player}`);
        this.welcome ??= m;
      } else if (m.t === 'err' && (m.code === 'ENGINE_ERROR' || (this.seated && (m.code === 'RESUME_REJECTED' || m.code === 'ROOM_FULL')))) {
        // A seated fuzzer's own joins are the only ones that get past ALREADY_JOINED.
        this.errors.push(`${m.code}: ${m.msg}`);
      }
    });
    ws.on('close', (code) => bump(this.budget.closes, String(code)));
    if (!this.seated) return true;
    const join = this.welcome
      ? { t: 'join', room: this.room, resume: this.welcome.resume }
      : { t: 'join', room: this.room, game: 'probe', name: nastyName(this.rng, this.index) };
    ws.send(pack(join));
    try {
      await waitFor(() => welcomed || ws.readyState !== ws.OPEN || this.errors.length > 0, 'fuzzer welcome');
    } catch {
      this.errors.push('no welcome');
    }
    return welcomed && ws.readyState === ws.OPEN;
  }

  async run(): Promise<void> {
    let failedConnects = 0;
    while (!done(this.budget) && this.errors.length === 0) {
      if (!(await this.connect())) {
        if (++failedConnects >= 100) this.errors.push('100 connection attempts in a row failed');
        await sleep(20);
        continue;
      }
      failedConnects = 0;
      const ws = this.ws!;
      while (ws.readyState === ws.OPEN && !done(this.budget)) {
        // Mostly near the rate limit; now and then a flood well above it.
        const batch = this.rng.chance(0.05) ? 150 : 20;
        for (let i = 0; i < batch && ws.readyState === ws.OPEN; i++) {
          const f = this.next();
          ws.send(f.data, { binary: f.binary });
          this.budget.sent++;
          bump(this.budget.kinds, f.kind);
        }
        await sleep(100);
      }
      if (ws.readyState === ws.OPEN) {
        ws.close();
      } else {
        this.budget.reconnects++;
      }
      await Promise.race([new Promise<void>((r) => (ws.readyState === ws.CLOSED ? r() : ws.once('close', () => r()))), sleep(5000)]);
      ws.terminate();
    }
  }
}

/** A WebSocket frame as raw bytes, with every bit up to the caller. */
function wsFrame(o: { fin?: boolean; rsv?: number; opcode: number; mask?: boolean; payload: Uint8Array; len?: bigint }): Buffer {
  const fin = o.fin ?? true;
  const mask = o.mask ?? true;
  const n = o.len ?? BigInt(o.payload.length);
  const head: number[] = [(fin ? 0x80 : 0) | ((o.rsv ?? 0) << 4) | (o.opcode & 0x0f)];
  const m = mask ? 0x80 : 0;
  if (n < 126n) head.push(m | Number(n));
  else if (n < 65536n) head.push(m | 126, Number(n >> 8n) & 0xff, Number(n) & 0xff);
  else {
    head.push(m | 127);
    for (let i = 7; i >= 0; i--) head.push(Number((n >> BigInt(8 * i)) & 0xffn));
  }
  const key = [0x12, 0x34, 0x56, 0x78];
  const body = Buffer.from(o.payload);
  if (mask) for (let i = 0; i < body.length; i++) body[i]! ^= key[i % 4]!;
  return Buffer.concat([Buffer.from(head), mask ? Buffer.from(key) : Buffer.alloc(0), body]);
}

const UPGRADE = (extra = '') =>
  `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

/** Fuzzes below the message layer: broken handshakes and broken WebSocket framing. */
async function protocolFuzzer(rng: Rng, port: number, budget: Budget, localAddress: string): Promise<void> {
  while (!done(budget)) {
    const sock = net.connect({ port, host: '127.0.0.1', localAddress });
    sock.on('error', () => {});
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    await Promise.race([new Promise<void>((r) => sock.once('connect', () => r()).once('close', () => r())), sleep(10_000)]);
    if (sock.destroyed || sock.connecting) {
      sock.destroy();
      continue;
    }
    const count = (kind: string) => {
      budget.sent++;
      bump(budget.kinds, kind);
    };
    if (rng.chance(0.1)) {
      const bad = rng.pick([
        () => UPGRADE().replace('Version: 13', 'Version: 99'),
        () => UPGRADE().replace(/Sec-WebSocket-Key: .*\r\n/, ''),
        () => UPGRADE(`X-Big: ${'a'.repeat(20_000)}\r\n`),
        () => UPGRADE('Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99\r\n'),
        () => Buffer.from(rng.bytes(rng.size(500))).toString('latin1'),
        () => 'GET / HTTP/1.1\r\nContent-Length: -1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
      ])();
      sock.write(Buffer.from(bad, 'latin1'));
      budget.http++;
      sock.end();
      await Promise.race([closed, sleep(300)]);
      sock.destroy();
      continue;
    }
    if (!(await rawUpgrade(sock))) {
      sock.destroy();
      continue;
    }
    for (let i = rng.int(1, 6); i > 0 && !sock.destroyed; i--) {
      const valid = pack({ t: 'ping', id: i });
      const f = rng.pick([
        () => Buffer.from(rng.bytes(rng.size(300))),
        () => wsFrame({ opcode: rng.pick([3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]), payload: valid }),
        () => wsFrame({ opcode: 2, mask: false, payload: valid }),
        () => wsFrame({ opcode: 2, rsv: rng.int(1, 7), payload: valid }),
        () => wsFrame({ opcode: 9, payload: rng.bytes(126) }),
        () => wsFrame({ opcode: 9, fin: false, payload: rng.bytes(4) }),
        () => wsFrame({ opcode: 0, payload: valid }),
        () => wsFrame({ opcode: 1, payload: Uint8Array.from(rng.pick(BAD_UTF8)) }),
        () => wsFrame({ opcode: 8, payload: Uint8Array.from([rng.u32() & 0xff]) }),
        () => wsFrame({ opcode: 8, payload: Uint8Array.from([0x03, 0xe7]) }),
        () => wsFrame({ opcode: 2, payload: valid, len: 2n ** 63n + 5n }),
        () => wsFrame({ opcode: 2, payload: new Uint8Array(0), len: BigInt(MAX_FRAME + 1) }),
        () => Buffer.concat([wsFrame({ opcode: 2, fin: false, payload: new Uint8Array(MAX_FRAME - 10) }), wsFrame({ opcode: 0, payload: new Uint8Array(100) })]),
        // Legitimate but unusual: a fragmented message with a ping in between.
        () => Buffer.concat([wsFrame({ opcode: 2, fin: false, payload: valid.subarray(0, 3) }), wsFrame({ opcode: 9, payload: rng.bytes(8) }), wsFrame({ opcode: 0, payload: valid.subarray(3) })]),
        // A frame cut short, then silence (the server waits for the rest; we hang up).
        () => wsFrame({ opcode: 2, payload: valid }).subarray(0, rng.int(1, 6)),
      ])();
      sock.write(f);
      count('ws-framing');
      await sleep(rng.int(0, 20));
    }
    await Promise.race([closed, sleep(rng.int(20, 150))]);
    sock.destroy();
  }
}

/** Hostile HTTP requests on the same port: odd request targets, methods, bodies, headers. */
async function httpFuzzer(rng: Rng, port: number, budget: Budget, localAddress: string, max: number): Promise<void> {
  const targets = ['//[', 'http://[', '//:99999', '//a b', '/%zz', '*', '/healthz', '/metrics', '/dashboard/data', '/admin/rooms', '/admin/rooms/%ff/patch', '/admin/x', '/nope', '/' + 'a'.repeat(9000)];
  for (let n = 0; n < max && !done(budget); n++) {
    const target = rng.chance(0.8) ? rng.pick(targets) : '/' + Buffer.from(rng.bytes(rng.size(40))).toString('latin1');
    const request = rng.pick([
      () => `GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`,
      () => `${rng.pick(['POST', 'PUT', 'DELETE', 'OPTIONS', 'BREW'])} ${target} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{"a":`,
      () => `GET ${target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${'x'.repeat(rng.int(0, 40))}\r\n\r\n`,
      () => `GET ${target} HTTP/1.0\r\n\r\n`,
    ])();
    const sock = net.connect({ port, host: '127.0.0.1', localAddress });
    sock.on('error', () => {});
    sock.on('data', () => {});
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.write(Buffer.from(request, 'latin1'));
    budget.http++;
    await Promise.race([closed, sleep(rng.int(5, 30))]);
    sock.destroy();
  }
}

/** Does the WebSocket handshake on a raw socket; resolves with whether it got a 101. */
function rawUpgrade(sock: net.Socket, onRest?: (rest: Buffer) => void): Promise<boolean> {
  sock.write(UPGRADE());
  return new Promise<boolean>((resolve) => {
    let head = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.off('data', onData);
      onRest?.(head.subarray(end + 4));
      resolve(head.toString('latin1').startsWith('HTTP/1.1 101'));
    };
    sock.on('data', onData);
    sock.once('close', () => resolve(false));
    setTimeout(() => resolve(false), 10_000).unref();
  });
}

/**
 * Connections past the per-address limit: the server closes them with 4006 right after the
 * handshake, but they send frames (invalid ones too) before that close arrives. Holds the
 * address's quota with `holders` quiet connections first.
 */
async function openHolders(url: string, localAddress: string, limit: number): Promise<WebSocket[]> {
  const holders = (await Promise.all(Array.from({ length: limit }, () => openWs(url, localAddress)))).filter((w) => w !== null);
  expect(holders.length).toBe(limit);
  return holders;
}

async function overLimitFuzzer(rng: Rng, port: number, budget: Budget, localAddress: string): Promise<void> {
  while (!done(budget)) {
    const sock = net.connect({ port, host: '127.0.0.1', localAddress });
    sock.on('error', () => {});
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    let got: Buffer = Buffer.alloc(0);
    const upgraded = await rawUpgrade(sock, (rest) => {
      got = rest;
      sock.on('data', (d) => (got = Buffer.concat([got, d])));
    });
    if (upgraded) {
      const valid = pack({ t: 'join', room: 'over-limit', game: 'probe' });
      for (let i = rng.int(1, 3); i > 0; i--) {
        sock.write(
          rng.pick([
            () => wsFrame({ opcode: rng.pick([3, 0xb]), payload: valid }),
            () => wsFrame({ opcode: 1, payload: Uint8Array.from([0xff, 0xfe]) }),
            () => wsFrame({ opcode: 2, payload: valid, len: BigInt(MAX_FRAME * 4) }),
            () => wsFrame({ opcode: 2, payload: valid }),
            () => Buffer.from(rng.bytes(rng.int(1, 64))),
          ])(),
        );
        budget.sent++;
        bump(budget.kinds, 'over-limit');
      }
    }
    await Promise.race([closed, sleep(rng.int(20, 80))]);
    sock.destroy();
    // The server's close frame: FIN+close opcode, length, then the code (4006) big-endian.
    const code = got[0] === 0x88 && got.length >= 4 ? got.readUInt16BE(2) : null;
    if (code !== null) bump(budget.closes, String(code));
  }
}

// ---------------------------------------------------------------------------------------------

describe('fuzzing the front door', () => {
  let server: Server;
  const roomId = 'fuzz-' + Date.now().toString(36);
  const logLines: Record<string, unknown>[] = [];
  const escaped: unknown[] = [];
  const onEscape = (e: unknown) => escaped.push(e);
  // The probe with a roomy tick budget: its 50 ms wall-clock budget can fail a tick on this
  // loaded machine, which would fail honest inputs for reasons that have nothing to do with
  // the fuzz (see test/helpers/roomy-probe.ts).
  let games: ReturnType<typeof roomyProbeGames> | undefined;

  beforeAll(async () => {
    games = roomyProbeGames();
    process.on('uncaughtException', onEscape);
    process.on('unhandledRejection', onEscape);
    server = await startTestServer({
      scriptsDir: games!.dir,
      defaultGame: 'probe',
      logLines,
      maxFrameBytes: MAX_FRAME,
      // Each group of connections comes from its own loopback address (Linux routes all of
      // 127/8 to lo), so the per-address limit (64) can be fuzzed on one of them.
      maxConnectionsPerAddress: PER_ADDRESS,
      resumeWindowMs: 600_000,
      inputRatePerSecond: 200,
      inputBurst: 100,
      abuseLimit: 200,
    });
  });

  afterAll(async () => {
    await server?.close();
    process.off('uncaughtException', onEscape);
    process.off('unhandledRejection', onEscape);
    games?.remove();
  });

  it(`survives ${TARGET_FRAMES} hostile frames while honest players play (seed ${SEED})`, async () => {
    console.log(`[fuzz] seed=${SEED} (replay with FUZZ_SEED=${SEED}), frames=${TARGET_FRAMES}`);
    const master = new Rng(SEED);
    const ctx = `seed ${SEED}`;

    // Honest players: closed loop (at most two inputs in flight, so never QUEUE_FULL), each
    // input an `add` of a known amount.
    const honest: MoonpatchClient[] = [];
    const expected = new Map<MoonpatchClient, { sum: number; count: number }>();
    const settledCount = new Map<MoonpatchClient, Map<number, number>>();
    const rejected: string[] = [];
    const disconnects: string[] = [];
    for (let i = 0; i < HONEST; i++) {
      const c = testClient(server.url, { room: roomId, game: 'probe', name: `honest-${i}` });
      await c.connect();
      honest.push(c);
      expected.set(c, { sum: 0, count: 0 });
      const seen = new Map<number, number>();
      settledCount.set(c, seen);
      c.on('settled', (s) => {
        seen.set(s.seq, (seen.get(s.seq) ?? 0) + 1);
        if (s.rejected) rejected.push(`honest-${i} seq ${s.seq}: ${s.rejected.code} ${s.rejected.msg}`);
      });
      c.on('disconnect', (d) => disconnects.push(`honest-${i}: ${d.code} ${d.reason}`));
    }
    const room: Room = server.rooms.get(roomId)!;
    let fuzzing = true;
    const honestRng = new Rng(master.u32());
    const honestLoops = honest.map(async (c) => {
      const e = expected.get(c)!;
      while (fuzzing) {
        const n = honestRng.int(-1000, 1000);
        c.send({ op: 'add', n });
        e.sum += n;
        e.count++;
        await waitFor(() => c.unsettled <= 1 || !fuzzing, 'honest input settling', 30_000);
        await sleep(honestRng.int(5, 40));
      }
    });

    const budget: Budget = {
      sent: 0,
      target: TARGET_FRAMES,
      deadline: Date.now() + 180_000,
      http: 0,
      kinds: new Map(),
      closes: new Map(),
      answers: new Map(),
      filtered: 0,
      reconnects: 0,
      undecodable: 0,
      contract: [],
    };
    const fuzzers: Fuzzer[] = [];
    for (let i = 0; i < SEATED_FUZZERS + UNJOINED_FUZZERS; i++) {
      const seated = i < SEATED_FUZZERS;
      fuzzers.push(new Fuzzer(i, seated, new Rng(master.u32()), server.url, roomId, budget, seated ? ADDR.seated : ADDR.unjoined));
    }
    const protocolRngs = Array.from({ length: PROTOCOL_FUZZERS }, () => new Rng(master.u32()));
    const crowdRng = new Rng(master.u32());
    const holders = await openHolders(server.url, ADDR.crowd, PER_ADDRESS);
    const started = Date.now();
    await Promise.all([
      overLimitFuzzer(crowdRng, server.port, budget, ADDR.crowd),
      ...fuzzers.map((f) => f.run()),
      ...protocolRngs.map((r) => protocolFuzzer(r, server.port, budget, ADDR.protocol)),
      httpFuzzer(new Rng(master.u32()), server.port, budget, ADDR.protocol, 1000),
    ]);
    for (const h of holders) h.close();
    const fuzzMs = Date.now() - started;
    reportFigure('fuzz', 'frames_fuzzed', budget.sent);
    fuzzing = false;
    await Promise.all(honestLoops);
    const show = (m: Map<string, number>) => JSON.stringify(Object.fromEntries([...m].sort((a, b) => b[1] - a[1])));
    console.log(
      `[fuzz] ${budget.sent} frames and ${budget.http} HTTP requests in ${fuzzMs} ms; ${budget.reconnects} kicks/reconnects;` +
        ` ${budget.filtered} state-changing frames not sent\n  kinds ${show(budget.kinds)}\n  answers ${show(budget.answers)}\n  closes ${show(budget.closes)}`,
    );

    // Nothing escaped (an uncaught exception here is one the server process would have died
    // of); the parser kept its contract; the fuzzers saw no seat trouble and only decodable frames.
    expect(escaped, ctx).toEqual([]);
    expect(budget.contract, ctx).toEqual([]);
    expect(fuzzers.flatMap((f) => f.errors), ctx).toEqual([]);
    expect(budget.undecodable, ctx).toBe(0);
    expect(budget.sent).toBeGreaterThanOrEqual(TARGET_FRAMES);
    if (TARGET_FRAMES >= 50_000) {
      // The fuzz reached every refusal of the session and the room path (valid no-op inputs of
      // seated fuzzers, acknowledged after their tick).
      for (const code of ['BAD_FRAME', 'UNKNOWN_TYPE', 'BAD_FIELD', 'NOT_JOINED', 'ALREADY_JOINED', 'RATE_LIMITED', 'BAD_ROOM_ID', 'seated:ack', 'pong']) {
        expect(budget.answers.get(code) ?? 0, `${ctx}: answers ${code}`).toBeGreaterThan(0);
      }
      for (const code of ['4001', '1009', '1007', String(CloseCodes.TOO_MANY_CONNECTIONS)]) {
        expect(budget.closes.get(code) ?? 0, `${ctx}: closes ${code}`).toBeGreaterThan(0);
      }
    }

    // Honest players: never disconnected, every input settled exactly once, none rejected.
    await waitFor(() => honest.every((c) => c.unsettled === 0), 'every honest input settled', 30_000);
    let sent = 0;
    let settled = 0;
    for (const c of honest) {
      sent += expected.get(c)!.count;
      settled += settledCount.get(c)!.size;
    }
    const acknowledged = settled - rejected.length; // settled without an err frame: applied
    reportFigure('fuzz', 'inputs_acknowledged', acknowledged);
    reportFigure('fuzz', 'inputs_lost', sent - acknowledged);
    expect(disconnects, ctx).toEqual([]);
    expect(rejected, ctx).toEqual([]);
    for (const c of honest) {
      const seen = settledCount.get(c)!;
      const count = expected.get(c)!.count;
      expect([...seen.values()].every((n) => n === 1), ctx).toBe(true);
      expect(seen.size, ctx).toBe(count);
      expect(c.lastAckedSeq, ctx).toBe(count);
      expect(c.disconnects, ctx).toBe(0);
    }

    // The state: freeze the room and read what it committed.
    await room.pauseClock();
    const record = (key: string) => (room.committed.records.has(key) ? unpack(room.committed.records.get(key)!) : undefined);
    for (const c of honest) {
      const p = record(`players/${c.playerId}`) as { sum: number; inputs: number };
      expect({ sum: p.sum, inputs: p.inputs }, ctx).toEqual({ sum: expected.get(c)!.sum, inputs: expected.get(c)!.count });
    }
    const seatedFuzzers = fuzzers.filter((f) => f.welcome);
    expect(seatedFuzzers.length).toBe(SEATED_FUZZERS);
    for (const f of seatedFuzzers) {
      expect(record(`players/${f.welcome!.player}`), `${ctx}: fuzzer seat ${f.welcome!.player}`).toEqual({ name: f.welcome!.name, sum: 0, inputs: 0 });
    }
    // Exactly the seats the honest players and the seated fuzzers took: no seat from a fuzz frame.
    const playerKeys = [...room.committed.records.keys()].filter((k) => k.startsWith('players/')).sort();
    const wanted = [...honest.map((c) => `players/${c.playerId}`), ...seatedFuzzers.map((f) => `players/${f.welcome!.player}`)].sort();
    expect(playerKeys, ctx).toEqual(wanted);
    expect(room.seats.size, ctx).toBe(wanted.length);
    // Only the two tables the game made, and no failed tick (the probe counts its ticks).
    expect([...room.committed.records.keys()].filter((k) => !k.includes('/')).sort(), ctx).toEqual(['meta', 'players']);
    expect(record('meta/ticks'), ctx).toBe(room.committed.tick);
    // The isolate, the committed mirror and Redis agree.
    const flat = unpack(await room.isolateRecords()) as (string | Uint8Array)[];
    const isolate = new Map<string, Uint8Array>();
    for (let i = 0; i < flat.length; i += 2) isolate.set(flat[i] as string, flat[i + 1] as Uint8Array);
    expect(stateHash(isolate), ctx).toBe(room.committed.hash());
    expect(stateHash(await server.store.readRecords(roomId)), ctx).toBe(room.committed.hash());
    // No room was created by a fuzz frame, here or in Redis.
    expect(server.rooms.list().map((r) => r.id), ctx).toEqual([roomId]);
    expect(await server.store.listRooms(), ctx).toEqual([roomId]);
    room.resumeClock();

    // No leaks: once the fuzzers are gone, only the honest sessions remain, and the
    // per-address count agrees.
    await waitFor(() => server.net.sessions.size === HONEST, 'fuzzer sessions gone');
    const perAddress = (server.net as unknown as { perAddress: Map<string, number> }).perAddress;
    expect([...perAddress.values()].reduce((a, b) => a + b, 0), ctx).toBe(HONEST);
    expect(room.connectedCount, ctx).toBe(HONEST);

    // Still serving: a new player joins and gets an input acknowledged.
    const late = testClient(server.url, { room: roomId, game: 'probe', name: 'late' });
    await late.connect();
    const seq = late.send({ op: 'add', n: 5 });
    await waitFor(() => late.lastAckedSeq >= seq, 'late input acknowledged');
    late.close();
    for (const c of honest) c.close();

    // No error-level log line (a handler throwing, a tick failing, an engine error).
    const bad = logLines.filter((l) => Number(l.level) >= 50);
    expect(bad.map((l) => `${String(l.msg)} ${JSON.stringify(l.err ?? '')}`), ctx).toEqual([]);

  }, 240_000);
});

// ---------------------------------------------------------------------------------------------

/** The frames a server sent (unmasked, control-sized), as opcodes and, for a close, its code. */
function serverFrames(b: Buffer): { opcode: number; closeCode?: number }[] {
  const out: { opcode: number; closeCode?: number }[] = [];
  let i = 0;
  while (i + 2 <= b.length) {
    const opcode = b[i]! & 0x0f;
    let len = b[i + 1]! & 0x7f;
    let at = i + 2;
    if (len === 126) {
      len = b.readUInt16BE(at);
      at += 2;
    } else if (len === 127) break; // not expected here
    if (at + len > b.length) break;
    out.push(opcode === 8 && len >= 2 ? { opcode, closeCode: b.readUInt16BE(at) } : { opcode });
    i = at + len;
  }
  return out;
}

describe('idle and half-open sockets (IDLE_TIMEOUT_MS)', () => {
  let server: Server;
  let games: ReturnType<typeof roomyProbeGames> | undefined;
  const roomId = 'idle-' + Date.now().toString(36);

  beforeAll(async () => {
    games = roomyProbeGames();
    server = await startTestServer({ scriptsDir: games!.dir, defaultGame: 'probe', idleTimeoutMs: 1000 });
  });

  afterAll(async () => {
    await server?.close();
    games?.remove();
  });

  it('a TCP connection that never sends a byte (no request, no upgrade) is dropped', async () => {
    const sock = net.connect(server.port, '127.0.0.1');
    sock.on('error', () => {});
    let closed = false;
    sock.on('close', () => (closed = true));
    await waitFor(() => closed, 'the server to drop a connection that never sent a byte');
  });

  it('a WebSocket that never sends a frame and never answers pings is closed with 4003, and dropped although it never answers the close', async () => {
    const base = server.net.sessions.size;
    const sock = net.connect(server.port, '127.0.0.1');
    sock.on('error', () => {});
    let closed = false;
    sock.on('close', () => (closed = true));
    let got: Buffer = Buffer.alloc(0);
    const upgraded = await rawUpgrade(sock, (rest) => {
      got = rest;
      sock.on('data', (d) => (got = Buffer.concat([got, d])));
    });
    expect(upgraded).toBe(true);
    expect(server.net.sessions.size).toBe(base + 1);
    // From here on this peer is dead: it reads, but writes nothing (no pong, no close reply).
    await waitFor(() => closed, 'the server to drop the dead peer');
    const frames = serverFrames(got);
    expect(frames.some((f) => f.opcode === 9), 'the server pinged it').toBe(true);
    expect(frames.find((f) => f.opcode === 8)?.closeCode).toBe(CloseCodes.IDLE);
    await waitFor(() => server.net.sessions.size === base, 'its session gone');
  });

  it('a seated player that stops answering pings is closed with 4003; its seat is kept and resumes', async () => {
    const ws = new WebSocket(server.url, { autoPong: false });
    const messages: ServerMessage[] = [];
    let closeCode: number | null = null;
    ws.on('message', (d) => messages.push(unpack(d as Buffer) as ServerMessage));
    ws.on('close', (code) => (closeCode = code));
    ws.on('error', () => {});
    await new Promise((r) => ws.once('open', r));
    ws.send(pack({ t: 'join', room: roomId, game: 'probe', name: 'sleepy' }));
    await waitFor(() => messages.some((m) => m.t === 'welcome'), 'welcome');
    const welcome = messages.find((m): m is WelcomeMsg => m.t === 'welcome')!;
    const room = server.rooms.get(roomId)!;
    expect(room.connectedCount).toBe(1);
    // Silent from now on: no frames, and (autoPong off) no answers to the server's pings.
    await waitFor(() => closeCode !== null, 'the idle close');
    expect(closeCode).toBe(CloseCodes.IDLE);
    expect(room.connectedCount).toBe(0);
    expect(room.seats.has(welcome.player)).toBe(true);
    // The seat was kept for the resume window: the player comes back into it.
    const again = new WebSocket(server.url);
    const back: ServerMessage[] = [];
    again.on('message', (d) => back.push(unpack(d as Buffer) as ServerMessage));
    await new Promise((r) => again.once('open', r));
    again.send(pack({ t: 'join', room: roomId, resume: welcome.resume }));
    await waitFor(() => back.some((m) => m.t === 'welcome'), 'welcome on resume');
    expect(back.find((m): m is WelcomeMsg => m.t === 'welcome')!.player).toBe(welcome.player);
    again.close();
  });

  it('a client that sends nothing but answers pings is kept (pongs count as activity)', async () => {
    const ws = new WebSocket(server.url); // ws answers pings by itself
    let closeCode: number | null = null;
    ws.on('close', (code) => (closeCode = code));
    await new Promise((r) => ws.once('open', r));
    let pings = 0;
    ws.on('ping', () => pings++);
    await waitFor(() => pings >= 6, 'six sweeps (two idle timeouts) to ping it');
    expect(closeCode).toBeNull();
    expect(ws.readyState).toBe(ws.OPEN);
    ws.close();
  });
});
