/**
 * How much of a core a room has used lately: what the rebalancer weighs rooms by under
 * REBALANCE_BY=cpu (rebalancer.ts), shown in its status as `cpuCores`.
 *
 * A room's cost is its script's CPU (the isolate's clock, on whichever thread ran the tick)
 * plus the main thread's work after its commit (acks, welcomes, building and sending its
 * broadcast: the part that grows with its players and its world). Not counted: reading its
 * players' frames off their sockets, and the commit's wait on Redis, which is not this
 * process's CPU.
 *
 * The rate decays exponentially with a time constant of {@link TAU_MS}: a room that got busy
 * shows it within seconds, one that went quiet fades over about half a minute, and a single
 * slow tick on a busy machine moves it little. Reading it costs an exponential, not a scan.
 */

/** The time constant of the decay, ms: the rate is an average over roughly this long. */
export const TAU_MS = 10_000;

export class LoadMeter {
  /** CPU ms used, each weighted by how long ago (exp(-age / TAU_MS)), as of `at`. */
  private weighted = 0;
  private at = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** `cpuMs` of CPU used just now. */
  add(cpuMs: number): void {
    if (!(cpuMs > 0) || !Number.isFinite(cpuMs)) return;
    this.decayTo(this.now());
    this.weighted += cpuMs;
  }

  /** Cores used lately (0.25: a quarter of one core). */
  cores(): number {
    this.decayTo(this.now());
    // A steady r ms per ms accumulates r * TAU_MS: dividing by TAU_MS gives the rate back.
    return this.weighted / TAU_MS;
  }

  private decayTo(now: number): void {
    if (now > this.at) {
      this.weighted *= Math.exp(-(now - this.at) / TAU_MS);
      this.at = now;
    }
  }
}
