/**
 * Script log lines, buffered in the isolate and handed to the host with the tick's result, and
 * copied as they are logged into the host's log ring (server/sandbox/log-ring.mjs, which has
 * its layout), from which a crash report takes the lines of a call that never returned.
 */

const MAX_LINES = 50;
const MAX_LINE_CHARS = 500;
const lines: string[] = [];
let dropped = 0;

/** The log ring's count of units written, the event running, and its data; null until the host attaches one. */
let ringCount: Int32Array | null = null;
let ringEvent: Int32Array | null = null;
let ringData: Uint16Array | null = null;

/** Called once by the host, before any hook runs (GameSandbox.create). */
export function attachLogRing(ring: SharedArrayBuffer): void {
  // 8: LOG_RING_HEADER_BYTES (log-ring.mjs is host code, not bundled into the isolate; the
  // round trip through both is test/unit/log-ring.test.ts).
  ringCount = new Int32Array(ring, 0, 1);
  ringEvent = new Int32Array(ring, 4, 1);
  ringData = new Uint16Array(ring, 8, (ring.byteLength - 8) >> 1);
  ringCount[0] = 0;
  ringEvent[0] = 0;
}

/**
 * The tick's event `index` is running its hook now (-1: none is). Kept in the ring because a
 * call the host stops, or an isolate that dies, returns nothing: the host reads it there to
 * charge the failure to that event's player (log-ring.mjs).
 */
export function noteRunningEvent(index: number): void {
  if (ringEvent !== null) ringEvent[0] = index + 1;
}

/** Append a line and its 0 separator; the count last, so the host never reads half a line. */
function toRing(line: string): void {
  const count = ringCount;
  const data = ringData;
  if (count === null || data === null) return;
  const capacity = data.length;
  let at = count[0]!;
  for (let i = 0; i < line.length; i++) data[at++ % capacity] = line.charCodeAt(i);
  data[at++ % capacity] = 0;
  // Kept below 2^31 (an Int32): past that, restart at the same place in the ring.
  count[0] = at < 0x40000000 ? at : (at % capacity) + capacity;
}

function show(v: unknown): string {
  if (typeof v === 'string') return v;
  try {
    const s = JSON.stringify(v);
    return s === undefined ? String(v) : s;
  } catch {
    return String(v);
  }
}

// No Array.prototype methods (map, join, push, splice) below: a script can replace them, and
// they would get `lines` as `this`, letting it put non-strings into the tick result, whose
// encoder would then write bytes of the script's choosing. Index loops use no prototype.
export function log(...args: unknown[]): void {
  if (lines.length >= MAX_LINES) {
    dropped++;
    return;
  }
  let line = '';
  for (let i = 0; i < args.length; i++) line += (i > 0 ? ' ' : '') + show(args[i]);
  if (line.length > MAX_LINE_CHARS) line = line.slice(0, MAX_LINE_CHARS) + '…';
  lines[lines.length] = line;
  toRing(line);
}

/** The lines logged since the last call, with a note when some were dropped. */
export function takeLogs(): string[] {
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) out[i] = lines[i]!;
  lines.length = 0;
  if (ringCount !== null) ringCount[0] = 0; // the call is over: its lines go with its result
  if (dropped > 0) out[out.length] = `(${dropped} more log lines dropped this tick)`;
  dropped = 0;
  return out;
}
