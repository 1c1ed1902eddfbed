/**
 * What happens in the engine, published on node:diagnostics_channel. The tick and room code
 * publish here and never import a metrics or dashboard library; ops subscribers (metrics, the
 * dashboard, tests) listen. Publishing to a channel nobody listens to costs almost nothing.
 */
import diagnostics_channel from 'node:diagnostics_channel';
import type { ThrownInfo } from '../errors/errors.ts';

export interface TickCommittedEvent {
  roomId: string;
  game: string;
  version: string;
  tick: number;
  /** Wall time of the script call, ms. */
  scriptMs: number;
  /** CPU time the isolate spent on the tick, ms. */
  cpuMs: number;
  /** Whether the script call ran on the main thread (sandbox/call-placement.ts) rather than the isolate's. */
  inline: boolean;
  /** Times the script call was run again because a busy machine starved it (sandbox.ts). */
  reruns: number;
  /** Wall time of the Redis commit, ms. */
  commitMs: number;
  /** Whole tick: drain, script, commit, publish, ms. */
  totalMs: number;
  /**
   * How late the tick started against its slot in the room's cadence, ms (0 for a tick run
   * outside the clock): the tick before running long, or the main thread blocked in between.
   */
  lateMs: number;
  records: number;
  dels: number;
  writes: number;
  events: number;
  rejections: number;
}

export interface TickFailedEvent {
  roomId: string;
  game: string;
  version: string;
  tick: number;
  code: string;
  thrown: ThrownInfo | null;
  scriptMs: number;
  /** Extra wall time the rollback (and isolate rebuild, if any) took, ms. */
  rollbackMs: number;
  isolateRebuilt: boolean;
  /** The event whose hook the tick stopped in (CPU budget, memory), when it was one: its player is charged (room/stopped-ticks.ts). */
  culprit?: { kind: 'join' | 'input' | 'leave'; playerId: string; seq?: number };
}

export interface BroadcastEvent {
  roomId: string;
  tick: number;
  bytes: number;
  recipients: number;
  records: number;
  /** Records sent as field patches (only the fields a tick set) rather than whole. */
  patched: number;
}

export interface RoomLifecycleEvent {
  roomId: string;
  game: string;
  version: string;
  what:
    | 'started'
    | 'stopped'
    | 'unloaded'
    | 'moved'
    | 'created'
    | 'deleted'
    | 'fenced'
    | 'commit-failed'
    | 'commit-recovered'
    | 'sandbox-rebuilt'
    | 'player-expelled'
    | 'restored'
    | 'patch-applied'
    | 'patch-refused'
    | 'patch-verified'
    | 'patch-rolled-back'
    | 'patch-rollback-refused';
  detail?: string;
}

/**
 * What a room's scripts said: lines they logged with `log()` in a tick that committed or
 * failed, or a hook (join, input, leave) that threw and had its event undone while the tick went
 * on. A whole tick's failure is a TickFailedEvent.
 */
export type ScriptOutputEvent =
  | { roomId: string; game: string; version: string; tick: number; kind: 'log'; lines: readonly string[] }
  | { roomId: string; game: string; version: string; tick: number; kind: 'hook-error'; hook: string; playerId: string; code: string; thrown: ThrownInfo };

export const channels = {
  script: diagnostics_channel.channel('moonpatch:script'),
  tickCommitted: diagnostics_channel.channel('moonpatch:tick:committed'),
  tickFailed: diagnostics_channel.channel('moonpatch:tick:failed'),
  broadcast: diagnostics_channel.channel('moonpatch:broadcast'),
  room: diagnostics_channel.channel('moonpatch:room'),
};

export function publish<T>(channel: diagnostics_channel.Channel, event: T): void {
  if (channel.hasSubscribers) channel.publish(event);
}

/** Listen to `channel`; returns the call that stops listening. */
export function subscribe<T>(channel: diagnostics_channel.Channel, fn: (event: T) => void): () => void {
  const handler = (m: unknown) => fn(m as T);
  channel.subscribe(handler);
  return () => channel.unsubscribe(handler);
}
