/**
 * The log ring (server/sandbox/log-ring.mjs): what the isolate's log() writes as each line is
 * logged (runtime/logs.ts, run here in-process) is what a crash report reads back, the newest
 * kept when a call logs more than it holds, nothing once the call has returned its lines, and
 * a ring whose count a script could have scribbled on reads as nothing rather than throwing.
 */
import { describe, expect, it } from 'vitest';
import { attachLogRing, log, takeLogs } from '../../server/sandbox/runtime/logs.ts';
import { LOG_RING_BYTES, LOG_RING_HEADER_BYTES, readLogRing } from '../../server/sandbox/log-ring.mjs';

describe('the log ring', () => {
  it('holds the lines of the call in progress, in order, and none once the call returned them', () => {
    const ring = new SharedArrayBuffer(LOG_RING_BYTES);
    attachLogRing(ring);
    log('spawning wave', 3);
    log({ boss: 'ogre' }, 'at', [1, 2]);
    log('line\nwith a newline stays one line');
    expect(readLogRing(ring)).toEqual(['spawning wave 3', '{"boss":"ogre"} at [1,2]', 'line\nwith a newline stays one line']);
    expect(takeLogs()).toHaveLength(3);
    expect(readLogRing(ring)).toEqual([]);
    log('next call');
    expect(readLogRing(ring)).toEqual(['next call']);
    takeLogs();
  });

  it('keeps the newest lines when a call logs more than it holds, and says that earlier ones went', () => {
    const ring = new SharedArrayBuffer(LOG_RING_HEADER_BYTES + 2 * 100); // 100 units
    attachLogRing(ring);
    for (let i = 0; i < 30; i++) log(`line ${i}`); // 7 or 8 units each with the separator
    const read = readLogRing(ring);
    expect(read[0]).toBe('(earlier lines of this tick were not kept)');
    expect(read.at(-1)).toBe('line 29');
    const kept = read.slice(1);
    // Consecutive newest lines, none cut: as many as fit in 100 units.
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => `line ${30 - kept.length + i}`));
    expect(kept.reduce((n, l) => n + l.length + 1, 0)).toBeLessThanOrEqual(100);
    expect(kept.length).toBeGreaterThan(8);
    takeLogs();
  });

  it('reads a scribbled or foreign ring as nothing, without throwing', () => {
    const ring = new SharedArrayBuffer(LOG_RING_BYTES);
    const count = new Int32Array(ring, 0, 1);
    count[0] = -5;
    expect(readLogRing(ring)).toEqual([]);
    count[0] = 0x7fffffff; // "written" far past the data: the newest capacity's worth, all zeros
    const read = readLogRing(ring);
    expect(read[0]).toBe('(earlier lines of this tick were not kept)');
    expect(read.length).toBeLessThanOrEqual((LOG_RING_BYTES - LOG_RING_HEADER_BYTES) / 2); // at most one line per unit
    expect(readLogRing(new SharedArrayBuffer(4))).toEqual([]);
  });
});
