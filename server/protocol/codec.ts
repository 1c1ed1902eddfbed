/**
 * Encoding and validation of wire frames. Client frames are untrusted: `parseClientFrame`
 * either returns a well-formed message or throws a ProtocolError with a stable code, and never
 * lets a malformed value through to a room.
 */
import { Packr, Unpackr } from 'msgpackr';
import { ProtocolError } from '../errors/errors.ts';
import { MsgpackWriter } from '../sandbox/runtime/msgpack.ts';
import type { ClientMessage, ServerMessage, Value } from './messages.ts';

/** Plain msgpack both ways: no records extension, so any msgpack library can be a client. */
const packr = new Packr({ useRecords: false, encodeUndefinedAsNil: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export const LIMITS = {
  /** Deepest nesting accepted inside an input. */
  inputDepth: 16,
  /** Most array items + map entries accepted inside one input. */
  inputItems: 1024,
  nameChars: 32,
  resumeChars: 128,
};

export function encodeServerMessage(msg: ServerMessage): Uint8Array {
  return packr.pack(msg);
}

export function decodeServerMessage(frame: Uint8Array): ServerMessage {
  return unpackr.unpack(frame) as ServerMessage;
}

export function encodeClientMessage(msg: ClientMessage): Uint8Array {
  return packr.pack(msg);
}

/**
 * A snapshot or delta frame built from records that are already msgpack-encoded: their bytes are
 * spliced in, not decoded and re-encoded, so a broadcast costs a memcpy per record.
 */
export function encodeRecordsFrame(
  type: 'snap' | 'delta',
  tick: number,
  version: string,
  sets: Iterable<readonly [string, Uint8Array]>,
  setCount: number,
  dels: readonly string[],
  w: MsgpackWriter = new MsgpackWriter(),
  patches: readonly (readonly [string, Uint8Array])[] = [],
): Uint8Array {
  w.reset();
  // `patch` only when there are patches: a delta without one is what clients always got.
  w.mapHeader(type === 'snap' ? 4 : patches.length > 0 ? 6 : 5);
  w.str('t');
  w.str(type);
  w.str('tick');
  w.uint(tick);
  w.str('v');
  w.str(version);
  w.str('set');
  w.mapHeader(setCount);
  for (const [k, v] of sets) {
    w.str(k);
    w.raw(v);
  }
  if (type === 'delta') {
    w.str('del');
    w.arrayHeader(dels.length);
    for (const k of dels) w.str(k);
    if (patches.length > 0) {
      w.str('patch');
      w.mapHeader(patches.length);
      for (const [k, v] of patches) {
        w.str(k);
        w.raw(v);
      }
    }
  }
  return w.bytes().slice();
}

/**
 * A delta frame from changes already encoded in parts (interest management builds each view's
 * frame from per-cell parts, room/view-frames.ts): `sets` and `patches` as msgpack map pairs,
 * `dels` as strings, each with its count. The same layout as encodeRecordsFrame's delta.
 */
export function encodeDeltaFromParts(
  w: MsgpackWriter,
  tick: number,
  version: string,
  parts: { sets: Uint8Array; nSets: number; dels: Uint8Array; nDels: number; patches: Uint8Array; nPatches: number },
): Uint8Array {
  w.reset();
  w.mapHeader(parts.nPatches > 0 ? 6 : 5);
  w.str('t');
  w.str('delta');
  w.str('tick');
  w.uint(tick);
  w.str('v');
  w.str(version);
  w.str('set');
  w.mapHeader(parts.nSets);
  w.raw(parts.sets);
  w.str('del');
  w.arrayHeader(parts.nDels);
  w.raw(parts.dels);
  if (parts.nPatches > 0) {
    w.str('patch');
    w.mapHeader(parts.nPatches);
    w.raw(parts.patches);
  }
  return w.bytes().slice();
}

function fail(code: 'BAD_FRAME' | 'UNKNOWN_TYPE' | 'BAD_FIELD', message: string): never {
  throw new ProtocolError(code, message);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** Checks that an input payload is plain data within the size limits; returns it typed. */
export function checkInputValue(v: unknown): Value {
  walkInput(v, 0, { items: 0 });
  return v as Value;
}

/**
 * checkInputValue's walk, at module level: every input goes through it, and a closure made per
 * call costs its creation (and, under tsx, a name-keeping call) on the hot path.
 */
function walkInput(x: unknown, depth: number, count: { items: number }): void {
  if (x === null || typeof x === 'boolean' || typeof x === 'string') return;
  if (typeof x === 'number') {
    if (!Number.isFinite(x)) fail('BAD_FIELD', 'd: numbers must be finite');
    return;
  }
  if (depth >= LIMITS.inputDepth) fail('BAD_FIELD', `d: nested deeper than ${LIMITS.inputDepth}`);
  if (Array.isArray(x)) {
    count.items += x.length;
    if (count.items > LIMITS.inputItems) fail('BAD_FIELD', `d: more than ${LIMITS.inputItems} items`);
    for (const e of x) walkInput(e, depth + 1, count);
    return;
  }
  if (isRecord(x) && Object.getPrototypeOf(x) === Object.prototype) {
    const keys = Object.keys(x);
    count.items += keys.length;
    if (count.items > LIMITS.inputItems) fail('BAD_FIELD', `d: more than ${LIMITS.inputItems} items`);
    for (const k of keys) {
      if (k === '__proto__') fail('BAD_FIELD', 'd: "__proto__" is not allowed as a key');
      walkInput(x[k], depth + 1, count);
    }
    return;
  }
  fail('BAD_FIELD', `d: ${x instanceof Uint8Array ? 'binary data' : typeof x} is not allowed in an input (plain data only)`);
}

/** Decode and validate one client frame. */
export function parseClientFrame(frame: Uint8Array): ClientMessage {
  let msg: unknown;
  try {
    msg = unpackr.unpack(frame);
  } catch {
    fail('BAD_FRAME', 'frame is not valid msgpack');
  }
  if (!isRecord(msg)) fail('BAD_FRAME', 'a frame must be a msgpack map with a "t" field');
  switch (msg.t) {
    case 'in': {
      const { seq } = msg;
      if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) fail('BAD_FIELD', 'seq: must be a positive integer');
      if (!('d' in msg)) fail('BAD_FIELD', 'd: missing');
      return { t: 'in', seq, d: checkInputValue(msg.d) };
    }
    case 'ping': {
      const { id } = msg;
      if (typeof id !== 'number' || !Number.isFinite(id)) fail('BAD_FIELD', 'id: must be a number');
      return { t: 'ping', id };
    }
    case 'join': {
      const { room, game, name, resume, token } = msg;
      if (token !== undefined && token !== null && (typeof token !== 'string' || token.length > 1024)) fail('BAD_FIELD', 'token: must be a token string');
      if (typeof room !== 'string') fail('BAD_FIELD', 'room: must be a string');
      if (game !== undefined && game !== null && typeof game !== 'string') fail('BAD_FIELD', 'game: must be a string');
      if (name !== undefined && name !== null && (typeof name !== 'string' || name.length > LIMITS.nameChars)) {
        fail('BAD_FIELD', `name: must be a string of at most ${LIMITS.nameChars} characters`);
      }
      if (resume !== undefined && resume !== null && (typeof resume !== 'string' || resume.length > LIMITS.resumeChars)) {
        fail('BAD_FIELD', 'resume: must be a token string');
      }
      const out: ClientMessage = { t: 'join', room };
      if (typeof game === 'string') out.game = game;
      if (typeof name === 'string') out.name = name;
      if (typeof resume === 'string') out.resume = resume;
      if (typeof token === 'string') out.token = token;
      return out;
    }
    case 'leave':
      return { t: 'leave' };
    default: {
      // Not String(msg.t) on a map or array: one like { toString: 1 } makes String() throw a
      // TypeError instead of this ProtocolError (found by test/integration/fuzz.test.ts).
      const shown = typeof msg.t === 'object' && msg.t !== null ? `(${Array.isArray(msg.t) ? 'an array' : 'a map'})` : String(msg.t);
      fail('UNKNOWN_TYPE', `unknown message type ${JSON.stringify(shown).slice(0, 40)}`);
    }
  }
}
