/**
 * Live patching: bring a world written by an older schema up to this version's (schema 2).
 * The engine runs `migrate` then `validate` on the swap tick, in the same transaction as the
 * tick: if either throws, the room stays on its old version, untouched.
 *
 *   schema 1 -> 2   players gain `stars` (shield charges), starting at 0
 */
import type { World } from './world';

/** A player record as any schema up to this one may have stored it. */
interface OldPlayer {
  stars?: number;
}

/** The parts of an older world that the migrations touch. */
interface OldWorld {
  players: Record<string, OldPlayer>;
}

/**
 * Convert a world of any older schema, one step at a time: a room on version 1 can be patched
 * straight to the newest version, so every step must stay here.
 */
export function migrate(world: World, fromSchema: number): void {
  const old = world as unknown as OldWorld;
  if (fromSchema < 2) addStars(old);
}

/** 1 -> 2: nobody has collected a star yet. Players already holding the field keep it. */
function addStars(world: OldWorld): void {
  const players = world.players;
  for (const id of Object.keys(players)) {
    const p = players[id];
    if (p && p.stars === undefined) p.stars = 0;
  }
}

/** Refuse the patch if a player came out of the migration without a usable `stars`. */
export function validate(world: World): void {
  const players = world.players as Record<string, unknown>;
  for (const id of Object.keys(players)) {
    const stars = (players[id] as OldPlayer | undefined)?.stars;
    if (!isCount(stars)) throw new Error(`arena schema 2: player ${id} has stars = ${String(stars)}, expected a whole number >= 0`);
  }
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}
