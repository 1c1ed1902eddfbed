/**
 * Live patching: bring a world written by an older schema up to this version's (schema 3).
 * The engine runs `migrate` then `validate` on the swap tick, in the same transaction as the
 * tick: if either throws, the room stays on its old version, untouched.
 *
 *   schema 1 -> 2   players gain `stars` (shield charges), starting at 0      (002-stars)
 *   schema 2 -> 3   players' boostUntil + boostReadyAt become boost: { until, readyAt }
 *                                                                             (004-boost-struct)
 */
import type { World } from './world';

/** A player record as any schema up to this one may have stored it. */
interface OldPlayer {
  stars?: number;
  boostUntil?: number;
  boostReadyAt?: number;
  boost?: { until: number; readyAt: number };
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
  if (fromSchema < 3) nestBoost(old);
}

/** 1 -> 2: nobody has collected a star yet. Players already holding the field keep it. */
function addStars(world: OldWorld): void {
  const players = world.players;
  for (const id of Object.keys(players)) {
    const p = players[id];
    if (p && p.stars === undefined) p.stars = 0;
  }
}

/**
 * 2 -> 3: move the two flat boost timers into one `boost` object. The values are kept as they
 * are (they are now() times, and the clock carries on across the patch), so a boost or a
 * cooldown running at the swap tick keeps running. A missing timer counts as 0: expired.
 */
function nestBoost(world: OldWorld): void {
  const players = world.players;
  for (const id of Object.keys(players)) {
    const p = players[id];
    if (!p || p.boost !== undefined) continue;
    p.boost = { until: p.boostUntil ?? 0, readyAt: p.boostReadyAt ?? 0 };
    delete p.boostUntil;
    delete p.boostReadyAt;
  }
}

/** Refuse the patch if a player came out of the migration without this schema's shape. */
export function validate(world: World): void {
  const players = world.players as Record<string, OldPlayer | undefined>;
  for (const id of Object.keys(players)) {
    const problem = playerProblem(players[id]);
    if (problem) throw new Error(`arena schema 3: player ${id} ${problem}`);
  }
}

/** What is wrong with a player record for schema 3, or null if nothing is. */
function playerProblem(p: OldPlayer | undefined): string | null {
  if (typeof p !== 'object' || p === null) return 'is not an object';
  if (!isCount(p.stars)) return `has stars = ${String(p.stars)}, expected a whole number >= 0`;
  const boost: unknown = p.boost;
  if (typeof boost !== 'object' || boost === null || Array.isArray(boost)) return 'has no boost object';
  const { until, readyAt } = boost as { until?: unknown; readyAt?: unknown };
  if (!isTime(until) || !isTime(readyAt)) return `has boost = ${JSON.stringify(boost)}, expected { until, readyAt } as times`;
  if (p.boostUntil !== undefined || p.boostReadyAt !== undefined) return 'still has the schema 2 fields boostUntil / boostReadyAt';
  return null;
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

function isTime(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0;
}
