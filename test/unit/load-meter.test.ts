/**
 * A room's recent CPU (server/room/load-meter.ts), on a clock the test moves: the figure the
 * rebalancer weighs rooms by under REBALANCE_BY=cpu.
 */
import { describe, expect, it } from 'vitest';
import { LoadMeter, TAU_MS } from '../../server/room/load-meter.ts';

function meterAt(): { meter: LoadMeter; advance: (ms: number) => void } {
  let now = 1_000;
  return { meter: new LoadMeter(() => now), advance: (ms) => (now += ms) };
}

/** Feed `cpuMs` every `periodMs` for `forMs`. */
function run(m: ReturnType<typeof meterAt>, cpuMs: number, periodMs: number, forMs: number): void {
  for (let t = 0; t < forMs; t += periodMs) {
    m.advance(periodMs);
    m.meter.add(cpuMs);
  }
}

describe('LoadMeter', () => {
  it('reads a steady 5 ms a tick at 20 Hz as a tenth of a core once it has run a while', () => {
    const m = meterAt();
    run(m, 5, 50, 10 * TAU_MS);
    expect(m.meter.cores()).toBeCloseTo(0.1, 2);
  });

  it('shows a room that got busy within seconds, and lets one that went quiet fade', () => {
    const m = meterAt();
    run(m, 1, 50, 10 * TAU_MS); // 0.02 cores
    run(m, 20, 50, TAU_MS); // 0.4 cores for one time constant: about 63% of the way there
    const busy = m.meter.cores();
    expect(busy).toBeGreaterThan(0.02 + 0.6 * 0.38);
    expect(busy).toBeLessThan(0.4);
    m.advance(3 * TAU_MS); // nothing for three time constants: under 5% left
    expect(m.meter.cores()).toBeLessThan(0.05 * busy);
  });

  it('moves little for one slow tick among many', () => {
    const m = meterAt();
    run(m, 2, 50, 10 * TAU_MS);
    const before = m.meter.cores();
    m.advance(50);
    m.meter.add(200); // one tick a hundred times the usual
    expect(m.meter.cores() - before).toBeLessThan(0.03);
  });

  it('ignores figures that are not CPU time (negative, NaN, infinite) and a clock that steps back', () => {
    const m = meterAt();
    run(m, 5, 50, 10 * TAU_MS);
    const before = m.meter.cores();
    for (const junk of [-5, Number.NaN, Number.POSITIVE_INFINITY, 0]) m.meter.add(junk);
    expect(m.meter.cores()).toBe(before);
    m.advance(-5_000);
    m.meter.add(5);
    expect(Number.isFinite(m.meter.cores())).toBe(true);
    expect(m.meter.cores()).toBeGreaterThan(before);
  });
});
