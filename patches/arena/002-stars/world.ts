/**
 * The arena's world shape and tuning constants, shared by every module. This is state
 * schema 2 (players have `stars`); migrate.ts converts worlds of older schemas.
 *
 * All times are engine-clock milliseconds from `now()`: unlike tick numbers they are
 * available in every hook and keep their meaning if tickHz is changed by a patch.
 */

export interface PlayerState {
  name: string;
  color: string;
  x: number;
  y: number;
  /** Current velocity in units/s (eases toward dir * speed). */
  vx: number;
  vy: number;
  /** Requested direction from the last `move` input, length <= 1. */
  dirX: number;
  dirY: number;
  score: number;
  /** Boosting while now() < boostUntil. */
  boostUntil: number;
  /** A new boost is accepted once now() >= boostReadyAt. */
  boostReadyAt: number;
  /** Shield charges from stars (0..MAX_STARS): each one blocks one tag. Reset every round. */
  stars: number;
}

export type ItemKind = 'coin' | 'gem' | 'bolt' | 'star';

export interface Item {
  kind: ItemKind;
  x: number;
  y: number;
  /** Points added to the collector's score. */
  value: number;
}

export interface Round {
  number: number;
  /** now() at which the round ends. */
  endsAt: number;
  /** Id of the player who is "it", or null when the arena is empty. */
  it: string | null;
  /** The "it" player can tag once now() >= tagReadyAt (no instant tag-backs). */
  tagReadyAt: number;
  /** The "it" player loses a point whenever now() reaches drainAt. */
  drainAt: number;
  /** Winner of the previous round, for the scoreboard. */
  lastWinner: { name: string; score: number } | null;
}

export interface World {
  arena: { w: number; h: number };
  round: Round;
  players: Record<string, PlayerState>;
  items: Record<string, Item>;
  nextItemId: number;
}

export const ARENA_W = 1000;
export const ARENA_H = 700;

export const PLAYER_RADIUS = 12;
export const SPEED = 200; // units/s
export const BOOST_FACTOR = 2;
export const BOOST_MS = 1000;
export const BOOST_COOLDOWN_MS = 4000; // counted from the start of a boost
/** Fraction of the gap to the target velocity closed per second (times dt). */
export const ACCELERATION = 12;

export const ITEM_RADIUS = 8;
export const PICKUP_RADIUS = PLAYER_RADIUS + ITEM_RADIUS;
export const TAG_RADIUS = 2 * PLAYER_RADIUS + 4;
export const TAG_COOLDOWN_MS = 2000;
export const TAG_BONUS = 5;
/** Shield charges a player can hold: more would make them untaggable for most of a round. */
export const MAX_STARS = 3;

export const ROUND_MS = 60_000;

export const PALETTE = [
  '#e6194b', '#3cb44b', '#ffe119', '#4363d8', '#f58231', '#911eb4',
  '#42d4f4', '#f032e6', '#bfef45', '#fabed4', '#469990', '#dcbeff',
];

/** Round to 2 decimals: keeps the state small and identical across machines. */
export function round2(v: number): number {
  return Math.round(v * 100) / 100;
}

export function clamp(v: number, min: number, max: number): number {
  return v < min ? min : v > max ? max : v;
}
