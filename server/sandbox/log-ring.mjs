// The lines a room's script logged in the tick call now running, kept where a crash cannot take
// them: a SharedArrayBuffer the isolate writes (runtime/logs.ts, as each line is logged) and the
// host reads only when that call never came back (V8 aborted the process out of memory). The
// same lines normally reach the host with the call's result; this copy is for the crash report:
// GameSandbox.onCatastrophicError on the main thread, and the main-thread watchdog's own thread
// (watchdog-thread.mjs), which is why it is plain JavaScript.
//
// The ring also says which event's hook the call is running, so that a tick the host stopped
// (its CPU budget) or lost (its isolate's memory) can be charged to the player whose join or
// input was running, when it was one (GameSandbox.failedCall, Room.tickFailed).
//
// Layout: an Int32 count of UTF-16 units written since the call began (it runs past the
// capacity: the data wraps and keeps the newest), an Int32 naming the event whose hook is
// running (its index in the tick's events plus one; 0 when no event's is), then the units, each
// line followed by a 0.

/** Bytes before the data: the count and the running event, an Int32 each. */
export const LOG_RING_HEADER_BYTES = 8;
/** The ring's size: 4,092 UTF-16 units of lines, as much as the crash report sends of a room's unflushed lines (CRASH_LINES_BYTES). */
export const LOG_RING_BYTES = 8 * 1024;

/**
 * The lines in the ring, oldest first; when older lines were overwritten, a note says so first.
 * Never throws: the ring's count is the script's isolate's to write, so it is clamped, not
 * trusted.
 * @param {SharedArrayBuffer} ring
 * @returns {string[]}
 */
export function readLogRing(ring) {
  try {
    const capacity = (ring.byteLength - LOG_RING_HEADER_BYTES) >> 1;
    if (capacity <= 0) return [];
    const written = new Int32Array(ring, 0, 1)[0];
    if (!(written > 0)) return [];
    const data = new Uint16Array(ring, LOG_RING_HEADER_BYTES, capacity);
    const count = Math.min(written, capacity);
    let text = '';
    for (let i = written - count; i < written; i++) text += String.fromCharCode(data[i % capacity]);
    const lines = text.split('\u0000');
    lines.pop(); // after the last separator: a line cut short by the crash, or nothing
    if (written > capacity) {
      lines.shift(); // its beginning was overwritten
      lines.unshift('(earlier lines of this tick were not kept)');
    }
    return lines;
  } catch {
    return [];
  }
}

/**
 * The index of the event whose hook the last tick call was running when it stopped, or -1 when
 * it was in no event's hook (init, a migration, the tick hook, or after them). Not trusted: the
 * caller looks it up among the tick's events, and an index that is none of them names nobody.
 * @param {SharedArrayBuffer} ring
 * @returns {number}
 */
export function readRunningEvent(ring) {
  const running = new Int32Array(ring, 4, 1)[0];
  return running > 0 ? running - 1 : -1;
}
