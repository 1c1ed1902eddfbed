/**
 * Arena: a multiplayer tag game. Move around a 1000 x 700 arena collecting coins; one
 * player is "it" and bleeds a point per second until they tag someone (+5). Rounds last
 * 60 s; the top score wins. See world.ts for the state shape.
 *
 * Input messages (anything else that is an object is ignored):
 *   { move: [dx, dy] }   direction, each in [-1, 1]; [0, 0] stops
 *   { boost: true }      double speed for 1 s, then a 4 s cooldown
 * A message may carry both keys.
 */
import { now, randomInt, type Player } from 'moonpatch';
import { collectItems, spawnItems } from './items';
import { buildGrid, movePlayers } from './physics';
import { drainIt, ensureIt, randomPlayerId, setIt, updateRound, updateTag } from './tag';
import {
  ARENA_H, ARENA_W, BOOST_COOLDOWN_MS, BOOST_MS, PALETTE, PLAYER_RADIUS, ROUND_MS,
  round2, type PlayerState, type World,
} from './world';

export function init(world: World): void {
  world.arena = { w: ARENA_W, h: ARENA_H };
  world.round = {
    number: 1,
    endsAt: now() + ROUND_MS,
    it: null,
    tagReadyAt: 0,
    drainAt: 0,
    lastWinner: null,
  };
  world.players = {};
  world.items = {};
  world.nextItemId = 1;
}

export function join(world: World, player: Player): void {
  const { w, h } = world.arena;
  world.players[player.id] = {
    name: player.name,
    color: PALETTE[randomInt(0, PALETTE.length - 1)]!,
    x: randomInt(PLAYER_RADIUS, w - PLAYER_RADIUS),
    y: randomInt(PLAYER_RADIUS, h - PLAYER_RADIUS),
    vx: 0,
    vy: 0,
    dirX: 0,
    dirY: 0,
    score: 0,
    boostUntil: 0,
    boostReadyAt: 0,
  };
  if (world.round.it === null) setIt(world, player.id, now());
}

export function leave(world: World, player: Player): void {
  delete world.players[player.id];
  if (world.round.it === player.id) setIt(world, randomPlayerId(world), now());
}

export function input(world: World, player: Player, msg: unknown): void {
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
    const got = msg === null ? 'null' : Array.isArray(msg) ? 'an array' : typeof msg;
    throw new Error(`arena: input must be an object like { move: [dx, dy] } or { boost: true }, got ${got}`);
  }
  const p = world.players[player.id];
  if (!p) return; // not seated (e.g. a message racing a leave)
  const m = msg as { move?: unknown; boost?: unknown };
  if (m.move !== undefined) applyMove(p, m.move);
  if (m.boost === true) applyBoost(p);
}

/** Set the move direction from an untrusted [dx, dy]; anything malformed is ignored. */
function applyMove(p: PlayerState, move: unknown): void {
  if (!Array.isArray(move) || move.length !== 2) return;
  const [dx, dy] = move as unknown[];
  if (!isUnit(dx) || !isUnit(dy)) return;
  // Cap the length at 1 so diagonals are not faster; shorter vectors (analog sticks) keep
  // their partial speed.
  const len = Math.hypot(dx, dy);
  const scale = len > 1 ? 1 / len : 1;
  const dirX = round2(dx * scale);
  const dirY = round2(dy * scale);
  if (p.dirX !== dirX) p.dirX = dirX;
  if (p.dirY !== dirY) p.dirY = dirY;
}

function isUnit(v: unknown): v is number {
  return typeof v === 'number' && v >= -1 && v <= 1; // NaN fails both comparisons
}

function applyBoost(p: PlayerState): void {
  const t = now();
  if (t < p.boostReadyAt) return; // still cooling down: ignore, the client shows the timer
  p.boostUntil = t + BOOST_MS;
  p.boostReadyAt = t + BOOST_COOLDOWN_MS;
}

export function tick(world: World, dt: number): void {
  const t = now();
  movePlayers(world, dt, t);
  // One grid per tick, built after movement, serves both pickups and tagging.
  const grid = buildGrid(world);
  collectItems(world, grid, t);
  ensureIt(world, t);
  updateTag(world, grid, t);
  drainIt(world, t);
  spawnItems(world, grid.count, dt);
  updateRound(world, t);
}

/**
 * Live patches that ask for a safe point land in the first 3 seconds of a round, when scores
 * have just been reset: nobody loses a lead to a rule change mid-round.
 */
export function safeToPatch(world: World): boolean {
  return now() - (world.round.endsAt - ROUND_MS) < 3000;
}
