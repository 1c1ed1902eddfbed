/**
 * Where a room's tick call runs: on the caller's (main) thread, or on the isolate's own thread.
 *
 * isolated-vm runs `Reference.apply` on a thread of its pool and resolves a promise on the main
 * thread after; `applySync` enters the isolate on the calling thread. The hand-off to the pool
 * and back costs 0.1-0.5 ms of wall time a call on these 2-core machines when they are quiet
 * (docs/performance.md), and far more when they are busy, since the isolate's thread then waits
 * for a core: in the capacity benchmark at 1,000 players in rooms of 50, on a busy machine,
 * the script call's p99 was 52 ms on the pool against 3-4 ms on the main thread, and the server
 * used 10% less CPU (docs/performance.md, "Tick calls on the main thread, under a watchdog").
 *
 * On the main thread a script holds the event loop while it runs, and scripts no longer run
 * beside it on the second core. So a sandbox runs its ticks there only while they are cheap:
 * their isolate CPU time, averaged, under `inlineMaxMs` (INLINE_TICK_MAX_MS, 2 ms by default);
 * the process's inline ticks together at most {@link INLINE_SHARE_MS_PER_S} ms in any second (a
 * quarter of the main thread), the rest going to the pool; never during a sandbox's first ticks
 * (they compile), never for a swap tick or a replay (they migrate or catch up, with budgets of
 * their own); and not for {@link INLINE_COOLDOWN_MS} after a tick that overran its budget
 * inline. An inline call is on a leash ({@link inlineLeashMs}), since it holds everything else
 * while it runs: one that takes longer is stopped, undone and run again on the isolate's thread.
 *
 * And only while the main-thread watchdog is up (main-thread-watchdog.ts): a script that makes
 * V8 fail catastrophically parks the thread it runs on, and when that is the main thread only
 * another thread can still end the process and record the crash.
 */

/** The process's inline ticks together, ms of CPU in any one-second window. */
export const INLINE_SHARE_MS_PER_S = 250;
/** After a tick that overran inline, the sandbox's ticks go to the pool for this long, ms. */
export const INLINE_COOLDOWN_MS = 30_000;
/** The shortest leash an inline call gets (see inlineLeashMs), ms. */
export const INLINE_LEASH_MIN_MS = 10;
/**
 * A tick whose events are more than BURST_FACTOR times the room's average size plus
 * BURST_SLACK_BYTES (about 50 small inputs) is handed over without trying it inline.
 */
export const BURST_FACTOR = 4;
export const BURST_SLACK_BYTES = 2048;
/** Weight of the newest tick in the running average. */
const AVERAGE_WEIGHT = 0.2;

let inlineMaxMs = 2;

/** Ticks whose isolate CPU averages under this run on the main thread; 0 turns it off (ServerConfig.inlineTickMaxMs). */
export function setInlineTickMaxMs(ms: number): void {
  inlineMaxMs = ms;
}

/** The main thread's time given to inline ticks, counted per one-second window (process-wide). */
export class InlineShare {
  private windowStart = -Infinity;
  private used = 0;

  constructor(private readonly perSecondMs = INLINE_SHARE_MS_PER_S) {}

  /** Whether a call expected to take `ms` still fits in this second's share. */
  fits(ms: number, now: number): boolean {
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.used = 0;
    }
    return this.used + ms <= this.perSecondMs;
  }

  spend(ms: number): void {
    this.used += ms;
  }
}

const processShare = new InlineShare();

/**
 * How long an inline call may hold the main thread before it is stopped, undone and run again
 * on the isolate's thread with its whole budget (sandbox.ts): five times what an inline tick
 * averages at most, and at least {@link INLINE_LEASH_MIN_MS}. A tick that suddenly costs far more
 * than its average (a burst of joins) then costs every other room at most this, and is not failed
 * for a wall-clock limit tighter than the isolate's thread would have given it.
 */
export function inlineLeashMs(): number {
  return Math.max(INLINE_LEASH_MIN_MS, Math.ceil(5 * inlineMaxMs));
}

/** Whether any tick may run inline (INLINE_TICK_MAX_MS above 0). */
export function inlineTicksEnabled(): boolean {
  return inlineMaxMs > 0;
}

/** One sandbox's placement: its average tick cost and its cool-down. */
export class CallPlacement {
  private averageCpuMs = Infinity;
  private averageEventBytes = 0;
  private pooledUntil = 0;

  constructor(private readonly share: InlineShare = processShare) {}

  /**
   * Whether the next tick should run on the main thread. `eventBytes`, the size of its events:
   * a tick carrying far more than the room's ticks do on average (a burst of joins, a flood of
   * inputs) will likely cost far more too, so it goes to the pool instead of spending its leash
   * here first (sandbox.ts).
   */
  inline(now: number, eventBytes = 0): boolean {
    return (
      inlineMaxMs > 0 &&
      this.averageCpuMs < inlineMaxMs &&
      eventBytes <= BURST_FACTOR * this.averageEventBytes + BURST_SLACK_BYTES &&
      now >= this.pooledUntil &&
      this.share.fits(this.averageCpuMs, now)
    );
  }

  /** A tick ran (either way) and took `cpuMs` of isolate CPU, with `eventBytes` of events. */
  ran(cpuMs: number, wasInline: boolean, eventBytes = 0): void {
    if (this.averageCpuMs === Infinity) {
      this.averageCpuMs = cpuMs;
      this.averageEventBytes = eventBytes;
    } else {
      this.averageCpuMs += AVERAGE_WEIGHT * (cpuMs - this.averageCpuMs);
      this.averageEventBytes += AVERAGE_WEIGHT * (eventBytes - this.averageEventBytes);
    }
    if (wasInline) this.share.spend(cpuMs);
  }

  /** A tick overran its budget on the main thread: the next ones go to the pool for a while. */
  overran(now: number): void {
    this.pooledUntil = now + INLINE_COOLDOWN_MS;
  }
}
