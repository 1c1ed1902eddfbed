/**
 * The tick context scripts can observe: engine clock, tick number and the seeded RNG.
 * A tick is a pure function of (state, inputs, seed, tick number), so nothing here reads a real
 * clock or an unseeded source: replaying a tick gives the same result.
 */

/** sfc32: small, fast, good-quality 32-bit generator; state lives in four uint32s. */
let a = 0;
let b = 0;
let c = 0;
let d = 0;

let tickNumber = 0;
let tickNowMs = 0;

function sfc32(): number {
  a >>>= 0;
  b >>>= 0;
  c >>>= 0;
  d >>>= 0;
  let t = (a + b) | 0;
  a = b ^ (b >>> 9);
  b = (c + (c << 3)) | 0;
  c = (c << 21) | (c >>> 11);
  d = (d + 1) | 0;
  t = (t + d) | 0;
  c = (c + t) | 0;
  return (t >>> 0) / 4294967296;
}

/** Mix two 32-bit words into one (murmur3 finaliser), so nearby seeds give unrelated streams. */
function mix(x: number, y: number): number {
  let h = (x ^ Math.imul(y, 0x9e3779b1)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Start a tick: the RNG stream depends only on the room seed and the tick number. */
export function beginTick(seed: number, tick: number, nowMs: number): void {
  tickNumber = tick;
  tickNowMs = nowMs;
  a = mix(seed, tick);
  b = mix(a, 0x1b873593);
  c = mix(b, tick ^ 0xcc9e2d51);
  d = 1;
  for (let i = 0; i < 12; i++) sfc32(); // warm up: the first outputs of a fresh state are weak
}

export function random(): number {
  return sfc32();
}

export function randomInt(min: number, max: number): number {
  const lo = Math.ceil(min);
  const hi = Math.floor(max);
  if (!(hi >= lo)) throw new RangeError(`randomInt: max (${max}) must be >= min (${min})`);
  return lo + Math.floor(sfc32() * (hi - lo + 1));
}

export function now(): number {
  return tickNowMs;
}

export function currentTick(): number {
  return tickNumber;
}
