/**
 * The arena's gameplay, tested the way a designer tests a game: TestRoom runs scripts/arena in
 * a real isolate, tick by tick, with no server (server/testing/test-room.ts; docs/scripting.md,
 * "Testing a game"). Run with `npm test`, or alone: `npx vitest run scripts/tests`.
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TestRoom } from '../../server/testing/test-room.ts';
import type { Item, PlayerState, World } from '../arena/world.ts';

const rooms: TestRoom[] = [];
async function arena(opts: { version?: number; seed?: number } = {}): Promise<TestRoom> {
  const room = await TestRoom.open({ game: path.join(import.meta.dirname, '..', 'arena'), ...opts });
  rooms.push(room);
  return room;
}
afterEach(() => {
  for (const r of rooms.splice(0)) r.close();
});

/** The world, typed as the arena's scripts see it. */
const worldOf = (room: TestRoom) => room.world as unknown as World;

describe('the arena', () => {
  it('seats a joining player inside the arena with no score, and makes the first one "it"', async () => {
    const room = await arena();
    const ada = room.join('ada');
    const bob = room.join('bob');
    await room.run();
    const w = worldOf(room);
    expect(Object.keys(w.players).sort()).toEqual([ada, bob].sort());
    for (const p of Object.values(w.players)) {
      expect(p.score).toBe(0);
      expect(p.x).toBeGreaterThan(0);
      expect(p.x).toBeLessThan(w.arena.w);
    }
    expect(w.players[ada]!.name).toBe('ada');
    expect(w.round.it).toBe(ada);
  });

  it('moves a player the way it is steered, and stops at the wall', async () => {
    const room = await arena();
    const ada = room.join('ada');
    await room.run();
    const start = worldOf(room).players[ada]!;
    room.input(ada, { move: [1, 0] });
    await room.run(10); // half a second
    const moved = worldOf(room).players[ada]!;
    expect(moved.x).toBeGreaterThan(start.x);
    expect(moved.y).toBe(start.y);
    await room.run(120); // six seconds at 200 units/s: across the whole arena
    expect(worldOf(room).players[ada]!.x).toBe(worldOf(room).arena.w - 12); // PLAYER_RADIUS from the wall
  });

  it('refuses an input that is not an object, with the hook\'s message, and plays on', async () => {
    const room = await arena();
    const ada = room.join('ada');
    await room.run();
    room.input(ada, 'left' as never);
    room.input(ada, { move: [0, 1] });
    await room.run(5);
    expect(room.refusals).toEqual([expect.objectContaining({ hook: 'input', playerId: ada, message: expect.stringContaining('input must be an object') })]);
    expect(room.refusals[0]!.stack).toMatch(/main\.ts:\d+:\d+/); // mapped to the game's own file
    expect(worldOf(room).players[ada]!.dirY).toBe(1); // the next input applied
  });

  it('a player who walks to the coins scores', async () => {
    const room = await arena({ seed: 7 });
    const ada = room.join('ada');
    await room.run();
    // Steer toward the nearest coin every tick, as a player would, for up to 20 s.
    for (let t = 0; t < 400 && worldOf(room).players[ada]!.score === 0; t++) {
      const w = worldOf(room);
      const me = w.players[ada]!;
      const coins = Object.values(w.items).filter((i: Item) => i.kind === 'coin');
      if (coins.length > 0) {
        const near = coins.reduce((a, b) => (Math.hypot(a.x - me.x, a.y - me.y) <= Math.hypot(b.x - me.x, b.y - me.y) ? a : b));
        const len = Math.hypot(near.x - me.x, near.y - me.y) || 1;
        room.input(ada, { move: [(near.x - me.x) / len, (near.y - me.y) / len] });
      }
      await room.run();
    }
    // ("it" loses a point a second, so the walk has to outpace that.)
    expect(worldOf(room).players[ada]!.score).toBeGreaterThan(0);
  });

  it('plays the same way every time: same seed and inputs, same world', async () => {
    const play = async () => {
      const room = await arena({ seed: 42 });
      const ids = ['ada', 'bob', 'cy'].map((n) => room.join(n));
      await room.run();
      for (let t = 0; t < 60; t++) {
        ids.forEach((id, i) => room.input(id, { move: [Math.cos(t / 9 + i), Math.sin(t / 7 + i)] }));
        await room.run();
      }
      return JSON.stringify(room.world);
    };
    expect(await play()).toBe(await play());
  });
});

describe('the arena\'s patches', () => {
  it('v4 moves each player\'s boost timers into boost: { until, readyAt }, keeping their values', async () => {
    const room = await arena();
    const ada = room.join('ada');
    await room.run();
    room.input(ada, { boost: true });
    await room.run();
    const before = worldOf(room).players[ada]!;
    expect(before.boostUntil).toBeGreaterThan(0);

    await room.patch(4); // schema 1 -> 3, through the migrations of 002 and 004
    await room.run();
    const after = worldOf(room).players[ada] as unknown as PlayerState & { boost: { until: number; readyAt: number } };
    expect(room.version).toBe(4);
    expect(after.boost).toEqual({ until: before.boostUntil, readyAt: before.boostReadyAt });
    expect(after).not.toHaveProperty('boostUntil');
    expect(after).not.toHaveProperty('boostReadyAt');
    expect(after.score).toBe(before.score);
  });
});
