/**
 * Tag and rounds: who is "it", tagging, the it-player's score drain, and round ends.
 */
import { log, randomInt } from 'moonpatch';
import { nearestPlayer, type Grid } from './physics';
import { ROUND_MS, TAG_BONUS, TAG_COOLDOWN_MS, TAG_RADIUS, type World } from './world';

/** Make `id` (or nobody) "it", with a grace period before they can tag. */
export function setIt(world: World, id: string | null, nowMs: number): void {
  const round = world.round;
  round.it = id;
  round.tagReadyAt = nowMs + TAG_COOLDOWN_MS;
  round.drainAt = nowMs + 1000;
}

/**
 * A random player, or null if there are none. Keys are sorted so the choice does not
 * depend on the order the engine happened to restore the players in.
 */
export function randomPlayerId(world: World, excludeId: string | null = null): string | null {
  const ids = Object.keys(world.players).filter((id) => id !== excludeId).sort();
  return ids.length === 0 ? null : ids[randomInt(0, ids.length - 1)]!;
}

/**
 * If "it" touches someone (after the cooldown), they become "it" and the tagger scores, unless
 * they hold a star, which is spent instead.
 */
export function updateTag(world: World, grid: Grid, nowMs: number): void {
  const round = world.round;
  const itId = round.it;
  if (itId === null || nowMs < round.tagReadyAt) return;
  const tagger = world.players[itId];
  if (!tagger) return;
  const victim = nearestPlayer(grid, tagger.x, tagger.y, TAG_RADIUS, itId);
  if (!victim) return;
  const target = world.players[victim.id];
  if (target && target.stars > 0) {
    // A star absorbs the tag. The tagger stays "it" and waits out a fresh cooldown, so a
    // shielded player still in reach is not tagged again on the very next tick.
    target.stars = target.stars - 1;
    round.tagReadyAt = nowMs + TAG_COOLDOWN_MS;
    return;
  }
  tagger.score = tagger.score + TAG_BONUS;
  setIt(world, victim.id, nowMs);
}

/** Being "it" costs one point per second, never going below zero. */
export function drainIt(world: World, nowMs: number): void {
  const round = world.round;
  if (round.it === null || nowMs < round.drainAt) return;
  round.drainAt = round.drainAt + 1000;
  const p = world.players[round.it];
  if (p && p.score > 0) p.score = p.score - 1;
}

/** Keep `round.it` pointing at a seated player (e.g. after a state restore or a patch). */
export function ensureIt(world: World, nowMs: number): void {
  const it = world.round.it;
  if (it !== null && world.players[it]) return;
  const next = randomPlayerId(world);
  if (next !== it) setIt(world, next, nowMs);
}

/** At the end of a round: announce the winner, reset scores and stars, pick a new "it". */
export function updateRound(world: World, nowMs: number): void {
  const round = world.round;
  if (nowMs < round.endsAt) return;

  const winner = topPlayer(world);
  if (winner) {
    log(`round ${round.number} over: ${winner.name} (${winner.id}) wins with ${winner.score} points`);
    round.lastWinner = { name: winner.name, score: winner.score };
  } else {
    log(`round ${round.number} over: no players`);
    if (round.lastWinner !== null) round.lastWinner = null;
  }

  const players = world.players;
  for (const id of Object.keys(players)) {
    const p = players[id];
    if (!p) continue;
    if (p.score !== 0) p.score = 0;
    // Shields are for one round, like scores: every round starts even.
    if (p.stars !== 0) p.stars = 0;
  }
  round.number = round.number + 1;
  // From now, not from the old endsAt: a stalled room does not run a burst of empty rounds.
  round.endsAt = nowMs + ROUND_MS;
  setIt(world, randomPlayerId(world), nowMs);
}

/** Highest score; ties go to the smallest id so the result is deterministic. */
function topPlayer(world: World): { id: string; name: string; score: number } | null {
  let best: { id: string; name: string; score: number } | null = null;
  const players = world.players;
  for (const id of Object.keys(players)) {
    const p = players[id];
    if (!p) continue;
    if (best === null || p.score > best.score || (p.score === best.score && id < best.id)) {
      best = { id, name: p.name, score: p.score };
    }
  }
  return best;
}
