/**
 * Reading a server frame's type and tick without decoding it. Used by the k6 scenario and the
 * Node runner alike, so pure ECMAScript: no imports, no Node or k6 APIs.
 *
 * Snapshots and deltas are most of what a player receives, and a load generator that decoded
 * every one would measure its own msgpack decoder. The server builds them with fixed leading
 * keys (server/protocol/codec.ts encodeRecordsFrame: `t`, `tick`, `v`, `set`, ...), so both are
 * at known places: a map header, "t", the type string, "tick", an unsigned integer. Any other
 * frame (ack, err, welcome, ...) is small: decode it whole.
 */

export interface FrameHead {
  /** The frame's `t`. */
  t: string;
  /** The `tick` when it is the frame's second key (snapshots and deltas), else -1. */
  tick: number;
}

/** The frame's type and (for snap/delta) tick, or null when it does not start like a server frame. */
export function peekFrame(b: Uint8Array): FrameHead | null {
  let p = 0;
  const m = b[p++];
  if (m === undefined) return null;
  if (m >= 0x80 && m <= 0x8f) {
    /* fixmap */
  } else if (m === 0xde) p += 2;
  else if (m === 0xdf) p += 4;
  else return null;
  // "t" (fixstr of length 1)
  if (b[p] !== 0xa1 || b[p + 1] !== 0x74) return null;
  p += 2;
  const s = b[p++];
  if (s === undefined || s < 0xa0 || s > 0xbf) return null;
  const len = s & 0x1f;
  if (p + len > b.length) return null;
  let t = '';
  for (let i = 0; i < len; i++) t += String.fromCharCode(b[p + i]!);
  p += len;
  // "tick" (fixstr of length 4) and an unsigned integer
  if (b[p] === 0xa4 && b[p + 1] === 0x74 && b[p + 2] === 0x69 && b[p + 3] === 0x63 && b[p + 4] === 0x6b) {
    p += 5;
    const tick = readUint(b, p);
    return { t, tick };
  }
  return { t, tick: -1 };
}

function readUint(b: Uint8Array, p: number): number {
  const c = b[p];
  if (c === undefined) return -1;
  if (c < 0x80) return c;
  const at = (i: number) => b[p + i] ?? 0;
  if (c === 0xcc) return at(1);
  if (c === 0xcd) return at(1) * 0x100 + at(2);
  if (c === 0xce) return ((at(1) * 0x100 + at(2)) * 0x100 + at(3)) * 0x100 + at(4);
  if (c === 0xcf) {
    const hi = ((at(1) * 0x100 + at(2)) * 0x100 + at(3)) * 0x100 + at(4);
    const lo = ((at(5) * 0x100 + at(6)) * 0x100 + at(7)) * 0x100 + at(8);
    return hi * 0x100000000 + lo;
  }
  return -1;
}
