/** Script log lines, buffered in the isolate and handed to the host with the tick's result. */

const MAX_LINES = 50;
const MAX_LINE_CHARS = 500;
const lines: string[] = [];
let dropped = 0;

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
}

/** The lines logged since the last call, with a note when some were dropped. */
export function takeLogs(): string[] {
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) out[i] = lines[i]!;
  lines.length = 0;
  if (dropped > 0) out[out.length] = `(${dropped} more log lines dropped this tick)`;
  dropped = 0;
  return out;
}
