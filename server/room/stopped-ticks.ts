/**
 * What happens after a tick stopped inside one player's hook: its CPU budget ran out or its
 * isolate's memory did while a join, input or leave was running (the sandbox says which:
 * TickOutcome.culprit). The room undid the whole tick; this decides, for each of its events,
 * whether it runs again in the next tick or is refused, and whether the player who stopped it
 * has done so often enough to be expelled. The room carries the verdict out (room.ts,
 * tickFailed); this holds no room state but what it remembers of earlier stops.
 *
 * The rules, each so that one player cannot stop a room for good:
 *   - the culprit's join or input is refused (only that player is told);
 *   - every other join and input runs again, once: one that is in a second stopped tick is
 *     refused with that tick's error;
 *   - leaves always run again (a seat must be given up); a leave that is itself the culprit of
 *     two stopped ticks runs without its hook from then on;
 *   - a player whose inputs stopped {@link EXPEL_AFTER_STOPS} ticks within
 *     {@link EXPEL_WINDOW_MS} is expelled (close 4008), and their inputs do not run again;
 *   - a signed-in user whose joins stopped as many ticks in that window is barred from the
 *     room like an expelled player: each join is a new player, so without the user's id
 *     nothing would connect the attempts, and a client retrying a join whose hook loops
 *     would stop a tick every few seconds for good. Anonymous joins (a server without
 *     PLAYER_TOKEN_SECRET, for development) cannot be charged: an address may be many players.
 */
import type { InputEvent, JoinEvent, RoomEvent } from './input-queue.ts';

/** Ticks a player's inputs may stop within {@link EXPEL_WINDOW_MS} before the player is expelled (close 4008). */
export const EXPEL_AFTER_STOPS = 3;
export const EXPEL_WINDOW_MS = 60_000;
/** Players remembered with stops in the window before the stale ones are forgotten. */
const REMEMBERED_PLAYERS = 1000;

export interface StoppedTickVerdict {
  /** Events to put back in front of the queue, in their order. */
  again: RoomEvent[];
  /** The culprit's join or input, refused, or held for a rollback while a patch is on watch (null when the culprit was a leave). */
  culprit: JoinEvent | InputEvent | null;
  /** Other joins and inputs refused (or held, on watch): their second stopped tick. */
  refused: (JoinEvent | InputEvent)[];
  /** The culprit was a leave that stopped its second tick: from now on it runs without its hook. */
  leaveWithoutHook: boolean;
  /** The culprit's player, to expel (their inputs stopped too many ticks), or null. */
  expel: { playerId: string; stops: number } | null;
  /** The culprit join's signed-in user, to bar (their joins stopped too many ticks), or null. */
  bar: { userId: string; stops: number } | null;
}

export class StoppedTicks {
  /** Events already put back once after a stopped tick. */
  private readonly ranAgain = new WeakSet<RoomEvent>();
  /** Leaves whose hook stopped two ticks: they run without it. */
  private readonly hookless = new WeakSet<RoomEvent>();
  /** When each player's inputs (`player:<id>`) or user's joins (`user:<id>`) stopped a tick, within the expel window. */
  private readonly stopsBy = new Map<string, number[]>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Whether a leave is to run without its hook (the event's kind on the wire: EVENT_LEAVE_WITHOUT_HOOK). */
  runsWithoutHook(e: RoomEvent): boolean {
    return this.hookless.has(e);
  }

  /**
   * A tick of `events` stopped in `culprit`'s hook (one of them): what becomes of each.
   * `charge`: count the stop against the culprit's player (not while a patch is on watch, when
   * the new version may be what stops on an ordinary input). `joinerUserId`: the signed-in
   * user asking for a seat when the culprit is a join (null for an anonymous one).
   */
  judge(events: readonly RoomEvent[], culprit: RoomEvent, charge = true, joinerUserId: string | null = null): StoppedTickVerdict {
    const verdict: StoppedTickVerdict = { again: [], culprit: null, refused: [], leaveWithoutHook: false, expel: null, bar: null };
    if (culprit.kind === 'input' && charge) {
      const stops = this.charge(`player:${culprit.playerId}`);
      if (stops) verdict.expel = { playerId: culprit.playerId, stops };
    }
    if (culprit.kind === 'join' && charge && joinerUserId !== null) {
      const stops = this.charge(`user:${joinerUserId}`);
      if (stops) verdict.bar = { userId: joinerUserId, stops };
    }
    for (const e of events) {
      if (e === culprit && e.kind !== 'leave') verdict.culprit = e;
      else if (e.kind === 'leave') {
        if (e === culprit) {
          if (this.ranAgain.has(e)) {
            this.hookless.add(e);
            verdict.leaveWithoutHook = true;
          }
          this.ranAgain.add(e);
        }
        verdict.again.push(e);
      } else if (verdict.expel && e.kind === 'input' && e.playerId === verdict.expel.playerId) {
        // The expelled player's other inputs go with them.
      } else if (this.ranAgain.has(e)) verdict.refused.push(e);
      else {
        this.ranAgain.add(e);
        verdict.again.push(e);
      }
    }
    return verdict;
  }

  /** Count a stopped tick against `key`; how many it stopped in the window when that makes too many, else null. */
  private charge(key: string): number | null {
    const now = this.now();
    const recent = (this.stopsBy.get(key) ?? []).filter((at) => now - at < EXPEL_WINDOW_MS);
    recent.push(now);
    if (recent.length >= EXPEL_AFTER_STOPS) {
      this.stopsBy.delete(key);
      return recent.length;
    }
    this.stopsBy.set(key, recent);
    if (this.stopsBy.size > REMEMBERED_PLAYERS) {
      for (const [id, at] of this.stopsBy) if (now - at[at.length - 1]! >= EXPEL_WINDOW_MS) this.stopsBy.delete(id);
    }
    return null;
  }
}
