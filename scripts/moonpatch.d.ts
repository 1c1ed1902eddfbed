/**
 * The moonpatch script API: what a game script can import and the hooks it exports.
 *
 * A game is a folder `scripts/<game>/` with a `game.json` and an entry module that exports
 * Lua-style hook functions over one plain state table, `world`:
 *
 * ```ts
 * import { random, type Player } from 'moonpatch';
 * interface World { players: Record<string, { x: number; score: number }> }
 * export function init(world: World) { world.players = {}; }
 * export function join(world: World, p: Player) { world.players[p.id] = { x: random() * 100, score: 0 }; }
 * export function leave(world: World, p: Player) { delete world.players[p.id]; }
 * export function input(world: World, p: Player, msg: unknown) { ... }
 * export function tick(world: World, dt: number) { ... }
 * ```
 *
 * Everything in `world` must be plain data (see {@link Value}). It is the room's authoritative
 * state: committed to Redis after every successful tick and sent to players. Anything kept
 * elsewhere (module-level variables) is NOT saved and is lost when the room's isolate is rebuilt.
 * See docs/scripting.md.
 */
declare module 'moonpatch' {
  /** Plain data that may be stored in the world. `undefined` assigned to a key deletes it. */
  export type Value = null | boolean | number | string | Value[] | { [key: string]: Value };

  /** A seated player, as the hooks see it. */
  export interface Player {
    /** Stable id of the seat; survives reconnects and server restarts. */
    readonly id: string;
    /** Display name the player joined with (already length-limited and trimmed). */
    readonly name: string;
  }

  /**
   * Deterministic random number in [0, 1), seeded per room and tick.
   * `Math.random()` is the same generator.
   */
  export function random(): number;
  /** Deterministic random integer in [min, max] (both inclusive). */
  export function randomInt(min: number, max: number): number;
  /**
   * The engine clock in milliseconds: the room's logical time at the current tick
   * (`createdAt + tick * tickMs`). `Date.now()` returns the same value.
   */
  export function now(): number;
  /** The number of the tick being computed (the first tick, which runs `init`, is 1). */
  export function currentTick(): number;
  /**
   * Log a line for the designer and ops (it appears in the server log with room and tick).
   * At most 50 lines per tick are kept; arguments are stringified.
   */
  export function log(...args: unknown[]): void;

  /** The hooks a game's entry module may export; every hook is optional. */
  export interface Hooks<W> {
    /** Called once, in the room's first tick, on an empty world. */
    init?(world: W): void;
    /** A player took a seat. */
    join?(world: W, player: Player): void;
    /** A player left, or did not come back within the resume window. */
    leave?(world: W, player: Player): void;
    /** One input message from a player, in arrival order, before `tick`. */
    input?(world: W, player: Player, msg: unknown): void;
    /** Advance the simulation by `dt` seconds (fixed: 1 / tickHz). */
    tick?(world: W, dt: number): void;
    /**
     * Bring a world saved by an older schema version up to this one (live patching).
     * @param fromSchema the schema version the world was written by
     */
    migrate?(world: W, fromSchema: number): void;
    /**
     * Check the world after a migration (live patching); throw to refuse the patch. Runs in the
     * same transaction as the migration: a throw leaves the room on its old version, untouched.
     */
    validate?(world: W): void;
    /**
     * Turn this version's world back into an older schema, for rolling the patch back without
     * losing what players did since it was applied. Without it, a patch that changed the
     * schema cannot be rolled back (the engine says so).
     */
    downgrade?(world: W, toSchema: number): void;
    /**
     * Whether now is a good moment to swap in a patch that asked for a safe point (between
     * rounds, say). Read-only: it must not change the world. Without it, any tick is safe.
     * A patch waits for a safe tick until its deadline, then applies anyway.
     */
    safeToPatch?(world: W): boolean;
  }
}
