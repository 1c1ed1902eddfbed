/**
 * Where in its period each room ticks, so that a server's rooms take turns on the main thread
 * instead of falling due together.
 *
 * Every room ticks on the server's one main thread (the script call inline or its hand-off, the
 * commit's bookkeeping, acks and broadcast). A room's clock used to start whenever the room
 * opened, so its ticks fell at a random point of the period: rooms due within a few ms of each
 * other queue behind each other, and the last one starts late, which players feel as jitter and
 * as input-to-state latency. Here each room gets a phase, a point in the period as a fraction
 * of it: the middle of the widest gap between the phases of the rooms already running at the
 * same rate. Eight rooms at 20 Hz tick 6.25 ms apart; a ninth halves one of those gaps.
 *
 * Phases are relative to the process's clock (performance.now()), which every TickClock of the
 * process shares.
 */
export class TickPhases {
  /**
   * Room -> its rate and phase. Keyed by the room object, not its id: a room reopened here
   * while its previous object is still being stopped must not lose its phase to that stop.
   */
  private readonly rooms = new Map<object, { hz: number; phase: number }>();

  /** A phase for a room ticking at `hz`, in [0, 1): the middle of the widest free gap. */
  assign(room: object, hz: number): number {
    this.rooms.delete(room);
    const taken = [...this.rooms.values()].filter((r) => r.hz === hz).map((r) => r.phase).sort((a, b) => a - b);
    const phase = widestGapMiddle(taken);
    this.rooms.set(room, { hz, phase });
    return phase;
  }

  /** The room no longer ticks here: its phase is free again. */
  release(room: object): void {
    this.rooms.delete(room);
  }

  get size(): number {
    return this.rooms.size;
  }
}

/** The middle of the widest gap between sorted points on a circle of circumference 1 (0 for none). */
export function widestGapMiddle(sorted: readonly number[]): number {
  if (sorted.length === 0) return 0;
  let best = 0;
  let bestWidth = -1;
  for (let i = 0; i < sorted.length; i++) {
    const from = sorted[i]!;
    // The last gap wraps around to the first point, one period later.
    const to = i + 1 < sorted.length ? sorted[i + 1]! : sorted[0]! + 1;
    if (to - from > bestWidth) {
      bestWidth = to - from;
      best = from + (to - from) / 2;
    }
  }
  return best % 1;
}
