/**
 * Player movement and the per-tick spatial grid used for pickups and tagging.
 */
import {
  ACCELERATION, BOOST_FACTOR, PLAYER_RADIUS, SPEED, TAG_RADIUS, PICKUP_RADIUS,
  clamp, round2, type World,
} from './world';

/** Move every player by one tick. Writes only the fields whose value changed. */
export function movePlayers(world: World, dt: number, nowMs: number): void {
  const players = world.players;
  const maxX = world.arena.w - PLAYER_RADIUS;
  const maxY = world.arena.h - PLAYER_RADIUS;
  const ease = Math.min(1, ACCELERATION * dt);

  for (const id of Object.keys(players)) {
    const p = players[id];
    if (!p) continue;
    const vx = p.vx, vy = p.vy, dirX = p.dirX, dirY = p.dirY;
    // Idle players cost two reads and no writes.
    if (vx === 0 && vy === 0 && dirX === 0 && dirY === 0) continue;

    const speed = nowMs < p.boost.until ? SPEED * BOOST_FACTOR : SPEED;
    const nvx = approach(vx, dirX * speed, ease);
    const nvy = approach(vy, dirY * speed, ease);
    if (nvx !== vx) p.vx = nvx;
    if (nvy !== vy) p.vy = nvy;

    const x = p.x, y = p.y;
    const nx = round2(clamp(x + nvx * dt, PLAYER_RADIUS, maxX));
    const ny = round2(clamp(y + nvy * dt, PLAYER_RADIUS, maxY));
    if (nx !== x) p.x = nx;
    if (ny !== y) p.y = ny;
  }
}

/** Ease a velocity toward its target; snap when close so it settles and stops changing. */
function approach(v: number, target: number, ease: number): number {
  const next = v + (target - v) * ease;
  return Math.abs(target - next) < 1 ? round2(target) : round2(next);
}

/**
 * A uniform grid of player positions, rebuilt every tick as a local value (never stored in
 * the world). Cells are at least as large as any query radius, so a query only has to look
 * at the 3x3 cells around a point: pickups and tags cost O(players), not O(players^2).
 */
export interface Grid {
  cellSize: number;
  cols: number;
  rows: number;
  cells: (GridEntry[] | undefined)[];
  /** How many players were placed. */
  count: number;
}

export interface GridEntry {
  id: string;
  x: number;
  y: number;
}

export const GRID_CELL = Math.max(TAG_RADIUS, PICKUP_RADIUS);

export function buildGrid(world: World): Grid {
  const cols = Math.max(1, Math.ceil(world.arena.w / GRID_CELL));
  const rows = Math.max(1, Math.ceil(world.arena.h / GRID_CELL));
  const grid: Grid = { cellSize: GRID_CELL, cols, rows, cells: new Array(cols * rows), count: 0 };
  const players = world.players;
  for (const id of Object.keys(players)) {
    const p = players[id];
    if (!p) continue;
    const entry: GridEntry = { id, x: p.x, y: p.y };
    const c = cellOf(grid, entry.x, entry.y);
    const cell = grid.cells[c];
    if (cell) cell.push(entry);
    else grid.cells[c] = [entry];
    grid.count++;
  }
  return grid;
}

function cellOf(grid: Grid, x: number, y: number): number {
  const cx = clamp(Math.floor(x / grid.cellSize), 0, grid.cols - 1);
  const cy = clamp(Math.floor(y / grid.cellSize), 0, grid.rows - 1);
  return cy * grid.cols + cx;
}

/**
 * The player nearest to (x, y) within `radius` (<= cell size), skipping `excludeId`.
 */
export function nearestPlayer(
  grid: Grid, x: number, y: number, radius: number, excludeId: string | null = null,
): GridEntry | null {
  const cx = clamp(Math.floor(x / grid.cellSize), 0, grid.cols - 1);
  const cy = clamp(Math.floor(y / grid.cellSize), 0, grid.rows - 1);
  let best: GridEntry | null = null;
  let bestD2 = radius * radius;
  for (let gy = Math.max(0, cy - 1); gy <= Math.min(grid.rows - 1, cy + 1); gy++) {
    for (let gx = Math.max(0, cx - 1); gx <= Math.min(grid.cols - 1, cx + 1); gx++) {
      const cell = grid.cells[gy * grid.cols + gx];
      if (!cell) continue;
      for (const e of cell) {
        if (e.id === excludeId) continue;
        const dx = e.x - x, dy = e.y - y;
        const d2 = dx * dx + dy * dy;
        if (d2 > bestD2) continue;
        // Equal distances go to the smaller id, so the result never depends on key order
        // (which may differ after the engine restores the world from storage).
        if (best === null || d2 < bestD2 || e.id < best.id) {
          best = e;
          bestD2 = d2;
        }
      }
    }
  }
  return best;
}
