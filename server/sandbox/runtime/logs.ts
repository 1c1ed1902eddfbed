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

export function log(...args: unknown[]): void {
  if (lines.length >= MAX_LINES) {
    dropped++;
    return;
  }
  let line = args.map(show).join(' ');
  if (line.length > MAX_LINE_CHARS) line = line.slice(0, MAX_LINE_CHARS) + '…';
  lines.push(line);
}

/** The lines logged since the last call, with a note when some were dropped. */
export function takeLogs(): string[] {
  const out = lines.splice(0, lines.length);
  if (dropped > 0) out.push(`(${dropped} more log lines dropped this tick)`);
  dropped = 0;
  return out;
}
