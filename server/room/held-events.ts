/**
 * The inputs and joins of ticks that failed while a patch was on watch or being rolled back.
 *
 * A tick that fails undoes everything, and its events are normally refused with the failure's
 * code (the client may send them again). But when the new version of a patch is what fails its
 * ticks, its rollback is coming, and the players' inputs meanwhile should not be lost with it:
 * they are held here and run on the version rolled back to, in the tick after the rollback's
 * swap tick, ahead of everything queued since (the swap tick runs no events, so nothing queued
 * overtakes them; nor do they go in the swap tick, where an input that fails every version's
 * tick would make the rollback fail too: in the tick after it, such an input fails that tick
 * alone, refused like any). If a tick commits before a rollback (the failure was a one-off, or
 * the patch survived its watch), they are refused after all, before that tick's acks go out,
 * so a client never sees a later input acknowledged ahead of an earlier one still waiting.
 *
 * When the tick stopped inside one player's hook, only that event (and any event in its second
 * stopped tick) is held; the others run again in the next tick (stopped-ticks.ts).
 *
 * Leaves are not held here: a failed tick always puts them back in the queue (a seat must never
 * leak).
 */
import type { ErrorCode } from '../errors/codes.ts';
import type { InputEvent, JoinEvent } from './input-queue.ts';

/** An event a failed tick could not run, and why (what its player is told if it is refused). */
export interface HeldEvent {
  event: JoinEvent | InputEvent;
  code: ErrorCode;
  message: string;
}

/**
 * At most this many events wait for a rollback; past it, a failed tick's events are refused at
 * once. Inputs are rate-limited per player and a patch's watch ends after a few failed ticks,
 * so this is a bound against a rollback that takes unusually long, not a working limit.
 */
export const MAX_HELD_EVENTS = 4096;

export class HeldEvents {
  private held: HeldEvent[] = [];

  get size(): number {
    return this.held.length;
  }

  /** Hold `events` in order, as far as the bound allows; returns those that did not fit. */
  hold(events: readonly (JoinEvent | InputEvent)[], code: ErrorCode, message: string): (JoinEvent | InputEvent)[] {
    const room = Math.max(0, MAX_HELD_EVENTS - this.held.length);
    for (const event of events.slice(0, room)) this.held.push({ event, code, message });
    return events.slice(room);
  }

  /** Everything held, oldest first; nothing is held afterwards. */
  take(): HeldEvent[] {
    const out = this.held;
    this.held = [];
    return out;
  }
}
