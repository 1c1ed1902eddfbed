/**
 * The events waiting for a room's next tick, in arrival order across all players. Inputs are
 * bounded per player (a flooding player fills only their own share); joins and leaves are never
 * dropped, because losing one would leak or lose a seat.
 */
import type { Value } from '../protocol/messages.ts';

export interface JoinEvent {
  kind: 'join';
  playerId: string;
  name: string;
}
export interface LeaveEvent {
  kind: 'leave';
  playerId: string;
  name: string;
}
export interface InputEvent {
  kind: 'input';
  playerId: string;
  name: string;
  seq: number;
  data: Value;
}
export type RoomEvent = JoinEvent | LeaveEvent | InputEvent;

export class InputQueue {
  private events: RoomEvent[] = [];
  private readonly inputsPerPlayer = new Map<string, number>();

  constructor(
    /** Most inputs one player may have waiting for the next tick. */
    readonly perPlayerLimit: number,
  ) {}

  get size(): number {
    return this.events.length;
  }

  /** Queue an input; false when the player's share is full (the input is not queued). */
  pushInput(e: InputEvent): boolean {
    const n = this.inputsPerPlayer.get(e.playerId) ?? 0;
    if (n >= this.perPlayerLimit) return false;
    this.inputsPerPlayer.set(e.playerId, n + 1);
    this.events.push(e);
    return true;
  }

  pushSystem(e: JoinEvent | LeaveEvent): void {
    this.events.push(e);
  }

  /** A copy of what is queued, without taking it (warming up a staged version). */
  peek(): RoomEvent[] {
    return this.events.slice();
  }

  /** Take everything queued, in arrival order. */
  drain(): RoomEvent[] {
    const out = this.events;
    this.events = [];
    this.inputsPerPlayer.clear();
    return out;
  }

  /** Drop every input queued for `playerId` (the player was expelled); joins and leaves stay. */
  dropInputsOf(playerId: string): void {
    this.events = this.events.filter((e) => e.kind !== 'input' || e.playerId !== playerId);
    this.inputsPerPlayer.delete(playerId);
  }

  /** Put events back in front (their tick did not commit); they keep their order. */
  requeueFront(events: readonly RoomEvent[]): void {
    if (events.length === 0) return;
    for (const e of events) {
      if (e.kind === 'input') this.inputsPerPlayer.set(e.playerId, (this.inputsPerPlayer.get(e.playerId) ?? 0) + 1);
    }
    this.events = [...events, ...this.events];
  }
}
