/**
 * Collectible items: spawning up to a cap that grows with the crowd, and pickups.
 */
import { random, randomInt } from 'moonpatch';
import { nearestPlayer, type Grid } from './physics';
import { BOOST_MS, ITEM_RADIUS, MAX_STARS, PICKUP_RADIUS, type ItemKind, type World } from './world';

/**
 * Spawn odds and effects. A bolt is worth no points but gives a free boost. A star is rare: a
 * few points plus a shield charge that blocks the next tag (see updateTag in tag.ts).
 */
const KINDS: { kind: ItemKind; weight: number; value: number }[] = [
  { kind: 'coin', weight: 78, value: 1 },
  { kind: 'gem', weight: 12, value: 5 },
  { kind: 'bolt', weight: 8, value: 0 },
  { kind: 'star', weight: 2, value: 3 },
];
const TOTAL_WEIGHT = KINDS.reduce((sum, k) => sum + k.weight, 0);

/** Respawns are spread over this long instead of refilling the arena in one burst. */
const REFILL_SECONDS = 1;

export function itemCap(playerCount: number): number {
  return Math.min(200, 10 + playerCount);
}

export function spawnItems(world: World, playerCount: number, dt: number): void {
  const cap = itemCap(playerCount);
  const perTick = Math.ceil((cap * dt) / REFILL_SECONDS);
  const missing = cap - Object.keys(world.items).length;
  for (let i = 0; i < Math.min(missing, perTick); i++) spawnItem(world);
}

function spawnItem(world: World): void {
  const kind = pickKind();
  const id = String(world.nextItemId);
  world.nextItemId = world.nextItemId + 1;
  world.items[id] = {
    kind: kind.kind,
    value: kind.value,
    // Whole units: items never move, so there is no need for decimals.
    x: randomInt(ITEM_RADIUS, world.arena.w - ITEM_RADIUS),
    y: randomInt(ITEM_RADIUS, world.arena.h - ITEM_RADIUS),
  };
}

function pickKind(): (typeof KINDS)[number] {
  let roll = random() * TOTAL_WEIGHT;
  for (const k of KINDS) {
    roll -= k.weight;
    if (roll < 0) return k;
  }
  return KINDS[0]!;
}

/** Each item goes to the nearest player touching it. Returns how many were collected. */
export function collectItems(world: World, grid: Grid, nowMs: number): number {
  const items = world.items;
  let collected = 0;
  for (const id of Object.keys(items)) {
    const item = items[id];
    if (!item) continue;
    const hit = nearestPlayer(grid, item.x, item.y, PICKUP_RADIUS);
    if (!hit) continue;
    const p = world.players[hit.id];
    if (p) {
      if (item.value !== 0) p.score = p.score + item.value;
      if (item.kind === 'bolt') p.boostUntil = nowMs + BOOST_MS;
      // At the cap the star still scores; only the extra charge is lost.
      if (item.kind === 'star' && p.stars < MAX_STARS) p.stars = p.stars + 1;
    }
    delete items[id];
    collected++;
  }
  return collected;
}
