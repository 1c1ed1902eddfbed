/**
 * Fixed-rate, drift-corrected scheduling of a room's ticks. Tick n is due at start + n * period;
 * a late tick does not push later ones back. A run never overlaps the previous one. When the
 * room falls more than one period behind (a long tick, a stalled event loop), the missed slots
 * are skipped and counted rather than run in a burst, which would only fall further behind.
 *
 * Each run is told how late it started against its slot: what players feel as a hitch in the
 * cadence, whether the tick before ran long or the main thread was blocked between ticks (a
 * tick's own duration shows neither).
 */
export class TickClock {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private current: Promise<void> | null = null;
  private slot = 0;
  private startedAt = 0;
  /** When the scheduled run is due (performance.now() time). */
  private dueAt = 0;
  /** Slots skipped because the room was too far behind. */
  missed = 0;

  constructor(
    readonly hz: number,
    private readonly run: (lateMs: number) => Promise<void>,
    private readonly onError: (e: unknown) => void,
  ) {}

  get periodMs(): number {
    return 1000 / this.hz;
  }

  /**
   * Start ticking. With a `phase` (a fraction of the period, tick-phases.ts), ticks fall at
   * that point of every period of the process's clock, the first one to two periods from now;
   * without one, the first a period from now. Never sooner than a period: a room that just
   * opened (or resumed) gets its whole first period, as it always had, before anything runs.
   */
  start(phase?: number): void {
    if (this.running) return;
    this.running = true;
    const now = performance.now();
    this.startedAt = phase === undefined ? now : alignedStart(now, this.periodMs, phase);
    this.slot = 0;
    this.schedule();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Resolves when the run in progress, if any, has finished. */
  async idle(): Promise<void> {
    await this.current;
  }

  /** When the next run is due (performance.now() time); undefined while stopped. */
  get nextDueAt(): number | undefined {
    return this.timer ? this.dueAt : undefined;
  }

  get isRunning(): boolean {
    return this.running;
  }

  private schedule(): void {
    if (!this.running) return;
    this.slot++;
    const now = performance.now();
    let due = this.startedAt + this.slot * this.periodMs;
    if (now - due > this.periodMs) {
      const behind = Math.floor((now - due) / this.periodMs);
      this.missed += behind;
      this.slot += behind;
      due += behind * this.periodMs;
    }
    this.dueAt = due;
    this.timer = setTimeout(() => void this.fire(), Math.max(0, due - now));
  }

  private async fire(): Promise<void> {
    this.timer = null;
    if (!this.running) return;
    this.current = this.run(Math.max(0, performance.now() - this.dueAt)).catch(this.onError);
    await this.current;
    this.current = null;
    this.schedule();
  }
}

/**
 * The earliest time at or after `now` that sits at `phase` (a fraction) of a period of the
 * process's clock: slot 0 of a clock whose ticks fall at that phase, its first tick due one to
 * two periods from `now`.
 */
export function alignedStart(now: number, periodMs: number, phase: number): number {
  const offset = (((phase % 1) + 1) % 1) * periodMs;
  const periods = Math.ceil((now - offset) / periodMs);
  return periods * periodMs + offset;
}
