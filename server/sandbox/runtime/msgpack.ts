/**
 * Minimal MessagePack encoder/decoder for the gameplay isolate.
 *
 * This file is bundled into isolated-vm isolates, which are bare V8 contexts: there is no
 * TextEncoder/TextDecoder/Buffer there, so it must not import anything and may only use
 * ECMAScript built-ins. UTF-8 is therefore encoded and decoded by hand.
 *
 * Supported values: null/undefined (nil), booleans, numbers, strings, arrays, plain objects
 * (maps with string keys) and Uint8Array (bin). Ext types are rejected on both sides.
 */

const INITIAL_CAPACITY = 4096;

/** Captured at load: inside an isolate, scripts may replace Object.prototype's methods later. */
const objectToString = Object.prototype.toString;

/**
 * The typed-array accessors and methods the codec needs, captured at load for the same reason,
 * and called on the codec's buffers only through these. Inside a game isolate, scripts can
 * replace them on %TypedArray%.prototype: a replaced `length` getter or `subarray` would be
 * called with the engine's result buffer as `this`, letting the script rewrite what the host
 * commits. Lockdown does not freeze that prototype (doing so made every tick of the arena
 * benchmark ~4 ms slower, all typed-array access in the isolate), so the codec does not look
 * anything up on it: lengths and views come from these, or from its own bookkeeping.
 */
const TypedArrayProto = Object.getPrototypeOf(Uint8Array.prototype) as object;
const getter = (name: string) => Object.getOwnPropertyDescriptor(TypedArrayProto, name)!.get!;
const taLength = getter('length') as (this: Uint8Array) => number;
const taBuffer = getter('buffer') as (this: Uint8Array) => ArrayBufferLike;
const taByteOffset = getter('byteOffset') as (this: Uint8Array) => number;
const taSet = (TypedArrayProto as Uint8Array).set;

function lengthOf(b: Uint8Array): number {
  return taLength.call(b);
}

/** A view of `n` bytes of `b` from `start` (no species lookup, no prototype method). */
function viewOf(b: Uint8Array, start: number, n: number): Uint8Array {
  return new Uint8Array(taBuffer.call(b), taByteOffset.call(b) + start, n);
}

/** Maximum container nesting, on both encode and decode, so hostile input cannot exhaust the stack. */
export const MAX_DEPTH = 512;

const TWO_POW_32 = 0x100000000;

// ---------------------------------------------------------------------------------------------
// UTF-8 helpers
// ---------------------------------------------------------------------------------------------

const REPLACEMENT_CHAR = 0xfffd;

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

/** Number of bytes `s` takes in UTF-8; lone surrogates count as U+FFFD (3 bytes). */
function utf8Length(s: string): number {
  const n = s.length;
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (isHighSurrogate(c) && i + 1 < n && isLowSurrogate(s.charCodeAt(i + 1))) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/**
 * Writes `s` as UTF-8 into `buf` at `pos` and returns the position after it. The caller must
 * have reserved `utf8Length(s)` bytes. Must stay in step with `utf8Length`.
 */
function utf8Write(s: string, buf: Uint8Array, pos: number): number {
  const n = s.length;
  let p = pos;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      buf[p++] = c;
      continue;
    }
    if (c < 0x800) {
      buf[p++] = 0xc0 | (c >> 6);
      buf[p++] = 0x80 | (c & 0x3f);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < n ? s.charCodeAt(i + 1) : 0;
      if (isHighSurrogate(c) && isLowSurrogate(next)) {
        const cp = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        buf[p++] = 0xf0 | (cp >> 18);
        buf[p++] = 0x80 | ((cp >> 12) & 0x3f);
        buf[p++] = 0x80 | ((cp >> 6) & 0x3f);
        buf[p++] = 0x80 | (cp & 0x3f);
        i++;
        continue;
      }
      c = REPLACEMENT_CHAR; // lone surrogate: not representable in UTF-8
    }
    buf[p++] = 0xe0 | (c >> 12);
    buf[p++] = 0x80 | ((c >> 6) & 0x3f);
    buf[p++] = 0x80 | (c & 0x3f);
  }
  return p;
}

// Decoded code units are staged here and flushed with String.fromCharCode.apply, which is far
// faster than concatenating one character at a time for long strings. The chunk stays well
// below engine argument-count limits. Shared across calls: decoding never re-enters itself.
// A plain array (own `length`), not a typed array: `apply` reads the length of what it is
// given, and a typed array's length getter is one a script could replace (see taLength).
const UNIT_CHUNK = 4096;
const units: number[] = [];

function flushUnits(count: number): string {
  units.length = count;
  return String.fromCharCode.apply(null, units);
}

/**
 * Short strings are staged as code units and built in one call too. Concatenating them a
 * character at a time was no faster (measured: 84-95 ns against 67-73 ns for a 13-character
 * id) and allocated every intermediate string: decoding a 1,000-player tick's events made
 * about 1 MB of garbage a tick that way, 40% of everything the tick allocated.
 */
const SHORT_STRING = 32;

/**
 * Decodes UTF-8 bytes [start, end). Invalid sequences become U+FFFD following the WHATWG
 * decoder's rules (one replacement per maximal invalid subpart), so output is always a
 * well-formed string and every byte is consumed exactly once.
 */
function utf8Read(b: Uint8Array, start: number, end: number): string {
  const n = end - start;
  if (n <= SHORT_STRING) {
    for (let i = 0; i < n; i++) {
      const c = b[start + i]!;
      if (c >= 0x80) return utf8ReadGeneral(b, start, end);
      units[i] = c;
    }
    return flushUnits(n);
  }
  return utf8ReadGeneral(b, start, end);
}

function utf8ReadGeneral(b: Uint8Array, start: number, end: number): string {
  let out = '';
  let k = 0; // code units staged in `units`
  let i = start;
  while (i < end) {
    // Leave room for a surrogate pair before staging the next code point.
    if (k >= UNIT_CHUNK - 1) {
      out += flushUnits(k);
      k = 0;
    }
    const b0 = b[i++]!;
    if (b0 < 0x80) {
      units[k++] = b0;
      continue;
    }

    // Lead byte decides how many continuation bytes follow and the valid range of the first
    // one (which rules out overlong forms, surrogates and code points past U+10FFFF).
    let needed: number;
    let cp: number;
    let lower = 0x80;
    let upper = 0xbf;
    if (b0 >= 0xc2 && b0 <= 0xdf) {
      needed = 1;
      cp = b0 & 0x1f;
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
      needed = 2;
      cp = b0 & 0x0f;
      if (b0 === 0xe0) lower = 0xa0;
      else if (b0 === 0xed) upper = 0x9f;
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
      needed = 3;
      cp = b0 & 0x07;
      if (b0 === 0xf0) lower = 0x90;
      else if (b0 === 0xf4) upper = 0x8f;
    } else {
      units[k++] = REPLACEMENT_CHAR;
      continue;
    }

    let ok = true;
    for (let j = 0; j < needed; j++) {
      const c = i < end ? b[i]! : -1;
      if (c < lower || c > upper) {
        // Do not consume the offending byte: it may start the next sequence.
        ok = false;
        break;
      }
      cp = (cp << 6) | (c & 0x3f);
      i++;
      lower = 0x80;
      upper = 0xbf;
    }
    if (!ok) {
      units[k++] = REPLACEMENT_CHAR;
    } else if (cp >= 0x10000) {
      cp -= 0x10000;
      units[k++] = 0xd800 | (cp >> 10);
      units[k++] = 0xdc00 | (cp & 0x3ff);
    } else {
      units[k++] = cp;
    }
  }
  return k > 0 ? out + flushUnits(k) : out;
}

// Map keys repeat constantly (every record has "id", "x", ...). Caching decoded short keys by
// their bytes skips re-building the string and lets V8 see the same (internalised) key each time.
const KEY_CACHE_SIZE = 1024; // power of two; bounds the memory the cache can pin
const KEY_CACHE_MAX_LEN = 16;
const keyCacheBytes: Array<Uint8Array | undefined> = new Array(KEY_CACHE_SIZE);
const keyCacheLengths: number[] = new Array(KEY_CACHE_SIZE).fill(-1);
const keyCacheStrings: string[] = new Array(KEY_CACHE_SIZE);

function cachedKey(b: Uint8Array, start: number, n: number): string {
  // Cheap hash of length, first, middle and last bytes; collisions just overwrite the slot.
  let h = n;
  if (n > 0) h = (h * 31 + b[start]!) * 31 + b[start + n - 1]!;
  if (n > 2) h = h * 31 + b[start + (n >> 1)]!;
  const slot = h & (KEY_CACHE_SIZE - 1);
  const entry = keyCacheBytes[slot];
  if (entry !== undefined && keyCacheLengths[slot] === n) {
    let i = 0;
    while (i < n && entry[i] === b[start + i]) i++;
    if (i === n) return keyCacheStrings[slot]!;
  }
  const s = utf8Read(b, start, start + n);
  // A real copy: the caller may reuse its buffer.
  keyCacheBytes[slot] = new Uint8Array(viewOf(b, start, n));
  keyCacheLengths[slot] = n;
  keyCacheStrings[slot] = s;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------

/** Names the type of a value we refuse to encode, for the TypeError message. */
function describeType(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v !== 'object') return typeof v;
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto === null) return 'Object';
  const ctor = (proto as { constructor?: unknown }).constructor;
  if (typeof ctor === 'function' && ctor.name) return ctor.name;
  return objectToString.call(v).slice(8, -1);
}

/**
 * A plain object is one whose prototype is null or some realm's Object.prototype (i.e. a
 * prototype whose own prototype is null). This rejects Map, Date, class instances, etc.
 */
function isPlainObject(v: object): boolean {
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === null || Object.getPrototypeOf(proto) === null;
}

/**
 * Appends MessagePack into a growable buffer. Reuse one writer across ticks (call `reset()`)
 * so the buffer is allocated once and only grows.
 */
export class MsgpackWriter {
  private buf: Uint8Array;
  private view: DataView;
  private pos = 0;
  /** `buf`'s length, kept here rather than read from the buffer (see taLength). */
  private capacity: number;

  constructor(initialCapacity = INITIAL_CAPACITY) {
    this.capacity = Math.max(16, initialCapacity);
    this.buf = new Uint8Array(this.capacity);
    this.view = new DataView(taBuffer.call(this.buf));
  }

  /** Number of bytes written since the last reset. */
  get length(): number {
    return this.pos;
  }

  /** Discards what was written; keeps the (possibly grown) buffer for reuse. */
  reset(): void {
    this.pos = 0;
  }

  /**
   * The bytes written so far, as a SUBARRAY VIEW of the internal buffer (no copy). It is only
   * valid until the next write or `reset()`: later writes may overwrite it (after a reset) or
   * move to a new buffer (on growth). Call `.slice()` on it, or use {@link copyBytes}, to keep a copy.
   */
  bytes(): Uint8Array {
    return viewOf(this.buf, 0, this.pos);
  }

  /** A copy of the bytes written so far, in an ArrayBuffer of exactly that size. */
  copyBytes(): Uint8Array {
    const out = new Uint8Array(this.pos);
    taSet.call(out, this.bytes());
    return out;
  }

  // --- low-level writers -------------------------------------------------------------------

  nil(): void {
    this.ensure(1);
    this.buf[this.pos++] = 0xc0;
  }

  bool(b: boolean): void {
    this.ensure(1);
    this.buf[this.pos++] = b ? 0xc3 : 0xc2;
  }

  /** Non-negative safe integer, in the smallest uint format. */
  uint(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new RangeError(`msgpack: uint() needs a non-negative safe integer, got ${n}`);
    }
    this.writeUint(n);
  }

  /** Any number: safe integers use the smallest int format, everything else float64. */
  number(n: number): void {
    // -0 is an integer to Number.isSafeInteger but would lose its sign as an int.
    if (Number.isSafeInteger(n) && !Object.is(n, -0)) {
      if (n >= 0) this.writeUint(n);
      else this.writeNegativeInt(n);
    } else {
      this.ensure(9);
      this.buf[this.pos] = 0xcb;
      this.view.setFloat64(this.pos + 1, n);
      this.pos += 9;
    }
  }

  str(s: string): void {
    const n = s.length;
    // Fast path for short strings, which are almost always ASCII (keys, names, ids): write the
    // characters straight after a fixstr/str8 header. At the first non-ASCII code unit fall
    // through to the general path, which simply overwrites what was written here.
    if (n < 256) {
      const headerSize = n < 32 ? 1 : 2;
      this.ensure(headerSize + n);
      const buf = this.buf;
      let p = this.pos + headerSize;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[p++] = c;
      }
      if (i === n) {
        if (headerSize === 1) {
          buf[this.pos] = 0xa0 | n;
        } else {
          buf[this.pos] = 0xd9;
          buf[this.pos + 1] = n;
        }
        this.pos = p;
        return;
      }
    }
    // General path: the header needs the UTF-8 byte length, so measure first.
    const byteLength = utf8Length(s);
    this.header(byteLength, 0xa0, 32, 0xd9, 0xda, 0xdb);
    this.ensure(byteLength);
    this.pos = utf8Write(s, this.buf, this.pos);
  }

  arrayHeader(n: number): void {
    this.header(n, 0x90, 16, -1, 0xdc, 0xdd);
  }

  mapHeader(n: number): void {
    this.header(n, 0x80, 16, -1, 0xde, 0xdf);
  }

  /** Header for a bin of `n` bytes; follow with exactly `n` bytes via `raw()`. */
  binHeader(n: number): void {
    this.header(n, -1, 0, 0xc4, 0xc5, 0xc6);
  }

  /** Appends already-encoded bytes verbatim. */
  raw(bytes: Uint8Array): void {
    const n = lengthOf(bytes);
    this.ensure(n);
    taSet.call(this.buf, bytes, this.pos);
    this.pos += n;
  }

  /**
   * Starts a bin whose contents are whatever is written until `endBin(mark)`. Writes a bin32
   * header with a placeholder length (bin32 because the final size is unknown) and returns
   * the payload start. Used to embed an encoded record inside a larger message so receivers
   * can forward it without re-encoding. Calls may nest.
   */
  beginBin(): number {
    this.ensure(5);
    this.buf[this.pos] = 0xc6;
    this.view.setUint32(this.pos + 1, 0);
    this.pos += 5;
    return this.pos;
  }

  /** Patches the length of the bin started by `beginBin()` that returned `mark`. */
  endBin(mark: number): void {
    if (!Number.isInteger(mark) || mark < 5 || mark > this.pos || this.buf[mark - 5] !== 0xc6) {
      throw new RangeError(`msgpack: endBin() got a mark (${mark}) that beginBin() did not return`);
    }
    this.view.setUint32(mark - 4, this.pos - mark);
  }

  // --- value encoding ----------------------------------------------------------------------

  /** Encodes a plain value; throws TypeError on anything that is not plain data. */
  value(v: unknown): void {
    this.encode(v, 0);
  }

  private encode(v: unknown, depth: number): void {
    switch (typeof v) {
      case 'string':
        this.str(v);
        return;
      case 'number':
        this.number(v);
        return;
      case 'boolean':
        this.bool(v);
        return;
      case 'undefined':
        this.nil();
        return;
      case 'object':
        if (v === null) this.nil();
        else this.encodeObject(v, depth);
        return;
      default:
        throw new TypeError(`msgpack: cannot encode a value of type ${describeType(v)}`);
    }
  }

  private encodeObject(v: object, depth: number): void {
    if (v instanceof Uint8Array) {
      this.binHeader(lengthOf(v));
      this.raw(v);
      return;
    }
    // Only containers recurse, so this bounds the stack and turns cycles into a clear error.
    if (depth >= MAX_DEPTH) {
      throw new RangeError(`msgpack: value nested deeper than ${MAX_DEPTH} levels (cyclic?)`);
    }
    if (Array.isArray(v)) {
      const n = v.length;
      this.arrayHeader(n);
      for (let i = 0; i < n; i++) this.encode(v[i], depth + 1);
      return;
    }
    if (!isPlainObject(v)) {
      throw new TypeError(`msgpack: cannot encode a value of type ${describeType(v)}`);
    }
    const record = v as Record<string, unknown>;
    const keys = Object.keys(record);
    const n = keys.length;
    this.mapHeader(n);
    for (let i = 0; i < n; i++) {
      const key = keys[i]!;
      this.str(key);
      this.encode(record[key], depth + 1);
    }
  }

  // --- internals ---------------------------------------------------------------------------

  /** Makes room for `n` more bytes, doubling the buffer as needed. */
  private ensure(n: number): void {
    if (this.pos + n > this.capacity) this.grow(this.pos + n);
  }

  private grow(required: number): void {
    let capacity = this.capacity * 2;
    while (capacity < required) capacity *= 2;
    const next = new Uint8Array(capacity);
    taSet.call(next, this.bytes());
    this.buf = next;
    this.capacity = capacity;
    this.view = new DataView(taBuffer.call(next));
  }

  /**
   * Writes a length header in the smallest format: a fix form (`fixBase | n` when
   * n < fixLimit; fixBase < 0 means none), then 8/16/32-bit forms (code8 < 0 means none).
   */
  private header(
    n: number,
    fixBase: number,
    fixLimit: number,
    code8: number,
    code16: number,
    code32: number,
  ): void {
    this.ensure(5);
    const buf = this.buf;
    const p = this.pos;
    if (fixBase >= 0 && n < fixLimit) {
      buf[p] = fixBase | n;
      this.pos = p + 1;
    } else if (code8 >= 0 && n < 0x100) {
      buf[p] = code8;
      buf[p + 1] = n;
      this.pos = p + 2;
    } else if (n < 0x10000) {
      buf[p] = code16;
      this.view.setUint16(p + 1, n);
      this.pos = p + 3;
    } else if (n < TWO_POW_32) {
      buf[p] = code32;
      this.view.setUint32(p + 1, n);
      this.pos = p + 5;
    } else {
      throw new RangeError(`msgpack: length ${n} does not fit in 32 bits`);
    }
  }

  /** `n` is a non-negative safe integer. */
  private writeUint(n: number): void {
    this.ensure(9);
    const buf = this.buf;
    const p = this.pos;
    if (n < 0x80) {
      buf[p] = n;
      this.pos = p + 1;
    } else if (n < 0x100) {
      buf[p] = 0xcc;
      buf[p + 1] = n;
      this.pos = p + 2;
    } else if (n < 0x10000) {
      buf[p] = 0xcd;
      this.view.setUint16(p + 1, n);
      this.pos = p + 3;
    } else if (n < TWO_POW_32) {
      buf[p] = 0xce;
      this.view.setUint32(p + 1, n);
      this.pos = p + 5;
    } else {
      // No BigInt needed: split into 32-bit halves (exact for safe integers).
      buf[p] = 0xcf;
      this.view.setUint32(p + 1, Math.floor(n / TWO_POW_32));
      this.view.setUint32(p + 5, n >>> 0);
      this.pos = p + 9;
    }
  }

  /** `n` is a negative safe integer. */
  private writeNegativeInt(n: number): void {
    this.ensure(9);
    const buf = this.buf;
    const p = this.pos;
    if (n >= -32) {
      buf[p] = n & 0xff; // negative fixint 0xe0..0xff
      this.pos = p + 1;
    } else if (n >= -0x80) {
      buf[p] = 0xd0;
      buf[p + 1] = n & 0xff;
      this.pos = p + 2;
    } else if (n >= -0x8000) {
      buf[p] = 0xd1;
      this.view.setInt16(p + 1, n);
      this.pos = p + 3;
    } else if (n >= -0x80000000) {
      buf[p] = 0xd2;
      this.view.setInt32(p + 1, n);
      this.pos = p + 5;
    } else {
      // Two's complement as (signed high word, unsigned low word); exact for safe integers.
      const hi = Math.floor(n / TWO_POW_32);
      buf[p] = 0xd3;
      this.view.setInt32(p + 1, hi);
      this.view.setUint32(p + 5, n - hi * TWO_POW_32);
      this.pos = p + 9;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

/** Cursor over one input buffer. Every read is bounds-checked, so bad input throws. */
class Reader {
  pos = 0;
  private readonly view: DataView;
  /** The input's length, read once through taLength. */
  private readonly end: number;

  constructor(private readonly bytes: Uint8Array) {
    this.end = lengthOf(bytes);
    this.view = new DataView(taBuffer.call(bytes), taByteOffset.call(bytes), this.end);
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  /** Throws unless `n` more bytes are available; returns the current position. */
  private take(n: number): number {
    const p = this.pos;
    if (n > this.end - p) {
      throw new Error(
        `msgpack: truncated input: need ${n} byte(s) at offset ${p}, only ${this.end - p} left`,
      );
    }
    this.pos = p + n;
    return p;
  }

  private u8(): number {
    return this.bytes[this.take(1)]!;
  }

  private u16(): number {
    return this.view.getUint16(this.take(2));
  }

  private u32(): number {
    return this.view.getUint32(this.take(4));
  }

  readValue(depth: number): unknown {
    const t = this.u8();
    if (t < 0x80) return t; // positive fixint
    if (t < 0x90) return this.readMap(t & 0x0f, depth);
    if (t < 0xa0) return this.readArray(t & 0x0f, depth);
    if (t < 0xc0) return this.readStr(t & 0x1f);
    if (t >= 0xe0) return t - 0x100; // negative fixint
    const v = this.view;
    switch (t) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.readBin(this.u8());
      case 0xc5:
        return this.readBin(this.u16());
      case 0xc6:
        return this.readBin(this.u32());
      case 0xca:
        return v.getFloat32(this.take(4));
      case 0xcb:
        return v.getFloat64(this.take(8));
      case 0xcc:
        return this.u8();
      case 0xcd:
        return this.u16();
      case 0xce:
        return this.u32();
      case 0xcf: {
        // Beyond 2^53 this loses precision; accepted (see module contract).
        const p = this.take(8);
        return v.getUint32(p) * TWO_POW_32 + v.getUint32(p + 4);
      }
      case 0xd0:
        return v.getInt8(this.take(1));
      case 0xd1:
        return v.getInt16(this.take(2));
      case 0xd2:
        return v.getInt32(this.take(4));
      case 0xd3: {
        const p = this.take(8);
        return v.getInt32(p) * TWO_POW_32 + v.getUint32(p + 4);
      }
      case 0xd9:
        return this.readStr(this.u8());
      case 0xda:
        return this.readStr(this.u16());
      case 0xdb:
        return this.readStr(this.u32());
      case 0xdc:
        return this.readArray(this.u16(), depth);
      case 0xdd:
        return this.readArray(this.u32(), depth);
      case 0xde:
        return this.readMap(this.u16(), depth);
      case 0xdf:
        return this.readMap(this.u32(), depth);
      case 0xc7:
      case 0xc8:
      case 0xc9:
      case 0xd4:
      case 0xd5:
      case 0xd6:
      case 0xd7:
      case 0xd8:
        throw new Error(`msgpack: ext types are not supported (byte 0x${hex(t)} at offset ${this.pos - 1})`);
      default: // only 0xc1, which the spec reserves as "never used"
        throw new Error(`msgpack: invalid byte 0x${hex(t)} at offset ${this.pos - 1}`);
    }
  }

  private readStr(n: number): string {
    const start = this.take(n);
    return utf8Read(this.bytes, start, start + n);
  }

  private readBin(n: number): Uint8Array {
    const start = this.take(n);
    // Copy, so the result neither pins nor aliases the input buffer. Explicitly a plain
    // Uint8Array: slice() on a Node Buffer input would return a view, not a copy.
    const out = new Uint8Array(n);
    taSet.call(out, viewOf(this.bytes, start, n));
    return out;
  }

  private readArray(n: number, depth: number): unknown[] {
    this.enter(depth);
    // Each element takes at least one byte: reject absurd counts before allocating anything.
    this.checkCount(n, 1);
    // Small arrays (a tick's events, a 2-vector) as literals: an array grown from empty by
    // index gets room for 17 elements at the first store, three times what a 5-element one
    // needs, and a literal stays packed (elements are evaluated left to right).
    const d = depth + 1;
    switch (n) {
      case 0:
        return [];
      case 1:
        return [this.readValue(d)];
      case 2:
        return [this.readValue(d), this.readValue(d)];
      case 3:
        return [this.readValue(d), this.readValue(d), this.readValue(d)];
      case 4:
        return [this.readValue(d), this.readValue(d), this.readValue(d), this.readValue(d)];
      case 5:
        return [this.readValue(d), this.readValue(d), this.readValue(d), this.readValue(d), this.readValue(d)];
    }
    const out: unknown[] = [];
    for (let i = 0; i < n; i++) out[i] = this.readValue(d);
    return out;
  }

  private readMap(n: number, depth: number): Record<string, unknown> {
    this.enter(depth);
    this.checkCount(n, 2);
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const key = this.readKey();
      const value = this.readValue(depth + 1);
      if (key === '__proto__') {
        // Plain assignment would invoke the Object.prototype.__proto__ setter and replace the
        // prototype; define it as an ordinary own property instead.
        Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
      } else {
        out[key] = value;
      }
    }
    return out;
  }

  /** Map keys must be strings; integer keys are tolerated and stringified like JS would. */
  private readKey(): string {
    const at = this.pos;
    const t = at < this.end ? this.bytes[at]! : -1;
    if (t >= 0xa0 && t < 0xa0 + KEY_CACHE_MAX_LEN + 1) {
      // Short fixstr: the common case, served from the key cache.
      const n = t & 0x1f;
      const start = this.take(1 + n) + 1;
      return cachedKey(this.bytes, start, n);
    }
    if ((t >= 0x80 && t < 0xa0) || (t >= 0xdc && t <= 0xdf)) {
      throw new Error(`msgpack: map key at offset ${at} is a container; only string keys are supported`);
    }
    const key = this.readValue(0); // cannot recurse: containers were rejected above
    if (typeof key === 'string') return key;
    if (typeof key === 'number') return String(key);
    throw new Error(`msgpack: unsupported map key of type ${describeType(key)} at offset ${at}`);
  }

  private enter(depth: number): void {
    if (depth >= MAX_DEPTH) {
      throw new Error(`msgpack: nesting deeper than ${MAX_DEPTH} levels at offset ${this.pos - 1}`);
    }
  }

  private checkCount(n: number, minBytesEach: number): void {
    if (n * minBytesEach > this.remaining) {
      throw new Error(
        `msgpack: truncated input: ${n} entries declared at offset ${this.pos} but only ${this.remaining} byte(s) left`,
      );
    }
  }
}

function hex(b: number): string {
  return (b < 0x10 ? '0' : '') + b.toString(16);
}

/**
 * Decodes exactly one MessagePack value. Throws on malformed or truncated input, on ext
 * types, on nesting deeper than MAX_DEPTH, and on trailing bytes after the value.
 * Maps become plain objects, bin becomes a fresh Uint8Array, 64-bit ints become numbers.
 */
export function decode(bytes: Uint8Array): unknown {
  const reader = new Reader(bytes);
  const value = reader.readValue(0);
  if (reader.remaining !== 0) {
    throw new Error(`msgpack: ${reader.remaining} trailing byte(s) after the value at offset ${reader.pos}`);
  }
  return value;
}
