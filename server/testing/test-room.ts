/**
 * A room for designers' own tests: a game from its folder, run tick by tick in a real isolate
 * (the production GameSandbox: same bundler, runtime, budget and seeded clock), with no server,
 * Redis or sockets. Players join, send inputs and leave; each `run()` is a tick; `world` is the
 * world as the scripts left it, as plain objects (what a client's view holds). Patches apply
 * the way live patching applies them: the new version in a fresh isolate, the world loaded
 * into it and migrated in the next tick. See docs/scripting.md, "Testing a game", and
 * scripts/tests/arena.test.ts.
 *
 *   const room = await TestRoom.open({ game: 'scripts/arena' });
 *   const ada = room.join('ada');
 *   await room.run();
 *   room.input(ada, { move: [1, 0] });
 *   await room.run(20);
 *   expect(room.world.players[ada].x).toBeGreaterThan(...);
 *
 * A tick is a function of the world, its events, the seed and the tick number, so a test that
 * joins, sends and runs the same things sees the same world every time.
 */
import path from 'node:path';
import { Unpackr } from 'msgpackr';
import { WorldView, type WorldTree } from '../../client/world-view.ts';
import type { Value } from '../protocol/messages.ts';
import type { GameVersion } from '../patch/versions.ts';
import { loadGame } from '../sandbox/games.ts';
import { EVENT_INPUT, EVENT_JOIN, EVENT_LEAVE, GameSandbox, type TickOutcome } from '../sandbox/sandbox.ts';
import { MsgpackWriter } from '../sandbox/runtime/msgpack.ts';

export interface TestRoomOptions {
  /** The game's folder: `scripts/<game>`, with its game.json. */
  game: string;
  /** Where its patches are: `<dir>/<game>/NNN-name/` (default: `patches/` beside the scripts folder). */
  patchesDir?: string;
  /** The version to start on (default 1, the game folder as it is). */
  version?: number;
  /** The room's seed for `random()` (default 1). */
  seed?: number;
  /** The engine clock (`now()`) at tick 0, ms; each tick adds a tick period (default 1_700_000_000_000). */
  startMs?: number;
}

/** A hook that threw for one player's event: the event was refused, the tick went on. */
export interface HookRefusal {
  tick: number;
  hook: 'join' | 'input' | 'leave';
  playerId: string;
  message: string;
  /** The script's stack, mapped to the game's files. */
  stack: string;
}

/** A whole tick failed (its `tick` hook threw, a migration threw, the CPU budget or the memory ran out): nothing it did was kept. */
export class TestTickFailed extends Error {
  constructor(
    readonly tick: number,
    readonly code: string,
    readonly scriptStack: string,
  ) {
    super(`tick ${tick} failed: ${code}${scriptStack ? `\n${scriptStack}` : ''}`);
    this.name = 'TestTickFailed';
  }
}

type QueuedEvent = [kind: number, playerId: string, name: string, seq: number, data: unknown];

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });
const HOOK_OF: Record<number, HookRefusal['hook']> = { [EVENT_JOIN]: 'join', [EVENT_INPUT]: 'input', [EVENT_LEAVE]: 'leave' };

export class TestRoom {
  /** Hooks that threw, oldest first (each refused its event; the tick went on). */
  readonly refusals: HookRefusal[] = [];
  /** What the scripts logged with `log()`, oldest first. */
  readonly logs: string[] = [];
  private queued: QueuedEvent[] = [];
  private readonly names = new Map<string, string>();
  private seq = 0;
  private nextPlayer = 0;
  private tickNo = 0;
  private view: WorldTree | null = null;
  private readonly writer = new MsgpackWriter();
  /** A patch waiting for its swap tick: the version before, kept until that tick succeeds, and the schema to migrate from. */
  private swap: { previous: { sandbox: GameSandbox; version: GameVersion }; migrateFrom: number | undefined } | null = null;
  /** The isolate's records after the last run (exportRecords' encoding), decoded by `world`. */
  private records: Uint8Array | null = null;
  /** The tick that killed the isolate (its memory limit): the room cannot go on. */
  private dead: TestTickFailed | null = null;

  private constructor(
    private sandbox: GameSandbox,
    private current: GameVersion,
    private readonly versions: readonly GameVersion[],
    /** Patch folders that did not load (each ends the chain of versions there). */
    private readonly badPatches: readonly string[],
    private readonly settings: { seed: number; startMs: number; tickHz: number; migrationBudgetMs: number; limits: { memoryLimitMb: number; cpuBudgetMs: number } },
  ) {}

  static async open(opts: TestRoomOptions): Promise<TestRoom> {
    const dir = path.resolve(opts.game);
    const patchesDir = path.resolve(opts.patchesDir ?? path.join(dir, '..', '..', 'patches'));
    // As on a server, a patch that does not load ends the chain there, and the versions before
    // it are still there to test (the one being written does not break the others' tests).
    const badPatches: string[] = [];
    const game = await loadGame(dir, patchesDir, (name, folder, e) => badPatches.push(`${path.basename(patchesDir)}/${name}/${folder} did not load: ${(e as Error).message}`));
    const version = game.versions.find((v) => v.number === (opts.version ?? 1));
    if (!version) throw new Error(`${game.manifest.name} has no version ${opts.version} (it has ${game.versions.map((v) => v.number).join(', ')}${badPatches.map((b) => `; ${b}`).join('')})`);
    const m = game.manifest;
    const limits = { memoryLimitMb: m.memoryLimitMb, cpuBudgetMs: m.cpuBudgetMs };
    const settings = { seed: opts.seed ?? 1, startMs: opts.startMs ?? 1_700_000_000_000, tickHz: m.tickHz, migrationBudgetMs: m.migrationBudgetMs, limits };
    return new TestRoom(await GameSandbox.create(version.bundle, limits), version, game.versions, badPatches, settings);
  }

  /** The last tick run (0 before the first). */
  get tick(): number {
    return this.tickNo;
  }

  /** The version the room runs (1: the game folder; then each patch's number). */
  get version(): number {
    return this.current.number;
  }

  /** The world after the last tick, as plain objects (`world.players[id]`...). */
  get world(): WorldTree {
    this.checkAlive();
    return (this.view ??= this.decodeWorld());
  }

  /** Queue a join for the next tick; returns the id the player will have. */
  join(name: string): string {
    const id = `p${++this.nextPlayer}`;
    this.names.set(id, name);
    this.queued.push([EVENT_JOIN, id, name, 0, null]);
    return id;
  }

  /** Queue an input from a player for the next tick (in order, after the events queued before it). */
  input(playerId: string, msg: Value): void {
    this.queued.push([EVENT_INPUT, playerId, this.nameOf(playerId), ++this.seq, msg]);
  }

  /** Queue a player's leave for the next tick. */
  leave(playerId: string): void {
    this.queued.push([EVENT_LEAVE, playerId, this.nameOf(playerId), 0, null]);
  }

  /**
   * Run `ticks` ticks, the queued events in the first. A hook that throws refuses its event
   * (see `refusals`); a tick that fails as a whole throws TestTickFailed, its changes undone and
   * its events dropped (a server would tell their players).
   */
  async run(ticks = 1): Promise<void> {
    this.checkAlive();
    for (let i = 0; i < ticks; i++) {
      const events = this.queued;
      this.queued = [];
      const tick = this.tickNo + 1;
      this.writer.reset();
      this.writer.value(events);
      const out = await this.sandbox.tick({
        events: this.writer.bytes().slice(),
        seed: this.settings.seed,
        tick,
        nowMs: Math.round(this.settings.startMs + (tick * 1000) / this.settings.tickHz),
        dtSeconds: 1 / this.settings.tickHz,
        runInit: tick === 1,
        // The swap tick gets the migration's budget on top, as on a server.
        ...(this.swap ? { migrateFrom: this.swap.migrateFrom, budgetMs: this.settings.limits.cpuBudgetMs + this.settings.migrationBudgetMs } : {}),
      });
      this.collect(tick, events, out);
      if (!out.ok) {
        const failed = new TestTickFailed(tick, out.code, out.thrown ? `${out.thrown.name}: ${out.thrown.message}\n${out.thrown.stack}` : '');
        if (this.swap) this.undoSwap(); // as on a server: the room stays on the version before
        else if (out.isolateDead) this.dead = failed;
        if (!this.dead) await this.readRecords();
        throw failed;
      }
      this.tickNo = tick;
      if (this.swap) {
        this.swap.previous.sandbox.dispose();
        this.swap = null;
      }
    }
    await this.readRecords();
  }

  /**
   * Move to another version as live patching does: the world is loaded into the new version's
   * isolate, and the next tick (the swap tick) migrates it when the schema changes, then runs.
   * If that tick fails (a migration that throws, say) it throws TestTickFailed and the room
   * stays on the version before, its world as it was, as a server's room would.
   */
  async patch(version: number): Promise<void> {
    this.checkAlive();
    if (this.swap) throw new Error(`a patch to v${this.current.number} is waiting for its swap tick: run() first`);
    const to = this.versions.find((v) => v.number === version);
    if (!to) throw new Error(`no version ${version} (there are ${this.versions.map((v) => v.number).join(', ')}${this.badPatches.map((b) => `; ${b}`).join('')})`);
    const fresh = await GameSandbox.create(to.bundle, this.settings.limits);
    await fresh.load(await this.sandbox.exportRecords());
    this.swap = { previous: { sandbox: this.sandbox, version: this.current }, migrateFrom: to.schema !== this.current.schema ? this.current.schema : undefined };
    this.sandbox = fresh;
    this.current = to;
  }

  private undoSwap(): void {
    const swap = this.swap!;
    this.sandbox.dispose();
    this.sandbox = swap.previous.sandbox;
    this.current = swap.previous.version;
    this.swap = null;
  }

  close(): void {
    this.swap?.previous.sandbox.dispose();
    this.sandbox.dispose();
  }

  private nameOf(playerId: string): string {
    const name = this.names.get(playerId);
    if (name === undefined) throw new Error(`no player ${playerId} joined this room`);
    return name;
  }

  private collect(tick: number, events: QueuedEvent[], out: TickOutcome): void {
    this.logs.push(...out.logs);
    for (const r of out.rejections) {
      const e = events[r.index]!;
      this.refusals.push({ tick, hook: HOOK_OF[e[0]]!, playerId: e[1], message: `${r.thrown.name}: ${r.thrown.message}`, stack: r.thrown.stack });
    }
  }

  /** Take the isolate's records (after a run: `world` decodes them when asked). */
  private async readRecords(): Promise<void> {
    this.records = await this.sandbox.exportRecords();
    this.view = null;
  }

  private decodeWorld(): WorldTree {
    if (!this.records) return {};
    const flat = unpackr.unpack(Buffer.from(this.records)) as (string | Uint8Array)[];
    const set: Record<string, Value> = {};
    for (let i = 0; i < flat.length; i += 2) set[flat[i] as string] = unpackr.unpack(flat[i + 1] as Uint8Array) as Value;
    const view = new WorldView();
    view.applySnapshot(this.tickNo, String(this.current.number), set);
    return view.world;
  }

  private checkAlive(): void {
    if (this.dead) throw new Error(`the room's isolate died in tick ${this.dead.tick} (${this.dead.code}): open a new TestRoom`);
  }
}
