/**
 * A room's recent tick times (server/room/tick-window.ts): nearest-rank median and 99th
 * percentile of the last TICK_WINDOW ticks, older ticks dropped, emptied by a version swap.
 */
import { describe, expect, it } from 'vitest';
import { TICK_WINDOW, TickWindow } from '../../server/room/tick-window.ts';

describe('a room\'s tick window', () => {
  it('is empty until a tick is added, and after a reset', () => {
    const w = new TickWindow();
    expect(w.summary()).toEqual({ p50: 0, p99: 0, n: 0 });
    w.add(3);
    expect(w.summary()).toEqual({ p50: 3, p99: 3, n: 1 });
    w.reset();
    expect(w.summary()).toEqual({ p50: 0, p99: 0, n: 0 });
  });

  it('gives the nearest-rank median and 99th percentile of what it holds, in any order', () => {
    const w = new TickWindow();
    const times = Array.from({ length: 100 }, (_, i) => i + 1); // 1..100 ms
    for (const t of [...times].reverse()) w.add(t);
    expect(w.summary()).toEqual({ p50: 50, p99: 99, n: 100 });
  });

  it('agrees with sorting, for any count and with repeated values', () => {
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (const n of [1, 2, 3, 7, 99, 100, 101, 199, 200, 250, 777]) {
      const w = new TickWindow();
      const added: number[] = [];
      for (let i = 0; i < n; i++) {
        // Few distinct values: ties around both ranks.
        const ms = Math.round(random() * 8) / 2;
        added.push(ms);
        w.add(ms);
      }
      const kept = added.slice(-TICK_WINDOW).sort((a, b) => a - b);
      const rank = (p: number) => kept[Math.ceil(p * kept.length) - 1];
      expect(w.summary(), `n=${n}`).toEqual({ p50: rank(0.5), p99: rank(0.99), n: kept.length });
    }
  });

  it('keeps only the newest TICK_WINDOW ticks', () => {
    const w = new TickWindow();
    for (let i = 0; i < TICK_WINDOW; i++) w.add(1000); // old and slow
    for (let i = 0; i < TICK_WINDOW; i++) w.add(i % 2 === 0 ? 1 : 2); // newer: half 1 ms, half 2 ms
    expect(w.summary()).toEqual({ p50: 1, p99: 2, n: TICK_WINDOW });
  });
});
