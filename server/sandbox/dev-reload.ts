/**
 * Dev reload (DEV_RELOAD=1, `npm run dev`): on a designer's own machine, saving a script file
 * swaps the running rooms of its game to the new build, players connected, state kept.
 *
 * It is a live patch without the ceremony, through the same path (VersionSwitch.stage): the new
 * build is compiled and warmed in a fresh isolate off the tick path, swapped in between two
 * ticks, and watched for its verification window, which rolls it back to the build before if
 * it fails ticks. A version keeps its number: the files of version N (the game folder for 1,
 * its patch folders laid over it for the next ones) are rebuilt, and each running room on
 * version N moves to N's new build. When the edit changes N's schema (game.json or patch.json),
 * the swap tick runs the new build's `migrate` like any patch. A build that fails (a syntax or
 * type error, a bad patch.json) changes nothing: the error is printed and the rooms play on.
 *
 * Builds replaced by a reload stay known to the registry (GameRegistry.retire), so a room that
 * was unloaded on one resumes on it and is then brought to the current build as it starts.
 * game.json's settings (tick rate, budgets) apply to rooms opened after the change. Versions
 * that arrived through Redis (`moonpatch push`) after those on disk are kept as they were.
 *
 * Not for production: versions there are immutable, signed and pushed on purpose (docs/patching.md).
 */
import { existsSync, readdirSync, watch, type Dirent, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { channels, subscribe, type RoomLifecycleEvent } from '../ops/events.ts';
import type { GameVersion } from '../patch/versions.ts';
import type { Room } from '../room/room.ts';
import { loadGame, type GameRegistry } from './games.ts';
import { bundleGameOffThread } from './off-thread-bundler.ts';

/** Changes closer together than this make one reload (an editor writes a file in steps). */
const SETTLE_MS = 150;

export interface DevReloadOutcome {
  game: string;
  /** The build failed: nothing changed. */
  error?: string;
  /** Per running room of the game: the swap's outcome, or why it was left alone. */
  rooms: { room: string; from: string; to?: string; ok: boolean; detail: string }[];
}

export interface DevReloaderOptions {
  scriptsDir: string;
  patchesDir: string;
  games: GameRegistry;
  /** The running rooms (RoomManager.list). */
  rooms: () => readonly Room[];
  log: Logger;
  /** A line for the designer's terminal. */
  say?: (line: string) => void;
}

export class DevReloader {
  /** Per watched root: folder -> its watch. */
  private readonly trees: Map<string, FSWatcher>[] = [];
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Per game: the reload running, and whether another change came in meanwhile. */
  private readonly running = new Map<string, { again: boolean; done: Promise<DevReloadOutcome> }>();
  private readonly unsubscribe: () => void;
  private readonly say: (line: string) => void;
  /** Games whose last reload did not build (the next one that does says so). */
  private readonly failing = new Set<string>();

  constructor(private readonly o: DevReloaderOptions) {
    this.say = o.say ?? ((line) => console.log(line));
    // A room that starts on a build a reload replaced (it was unloaded then): bring it up to date.
    this.unsubscribe = subscribe<RoomLifecycleEvent>(channels.room, (e) => {
      if (e.what !== 'started' || !o.games.has(e.game) || !o.games.isRetired(e.game, e.version)) return;
      const room = o.rooms().find((r) => r.id === e.roomId);
      if (room) setImmediate(() => void this.swapRoom(room, o.games.get(e.game).versions).then((r) => r && this.report(e.game, [r])));
    });
  }

  /** Watch the scripts and patches folders, and every folder under them. */
  start(): void {
    this.watchTree(this.o.scriptsDir, true);
    this.watchTree(this.o.patchesDir, false);
    this.say(`moonpatch: dev reload on: saving a file under ${this.o.scriptsDir} or ${this.o.patchesDir} swaps its game's running rooms to the new build`);
  }

  /**
   * One watch per folder, not fs.watch's `recursive`: on Linux, Node 20 implements that with a
   * watch per file, which loses a file that an editor saves by writing a new one and renaming it
   * over the old (the next saves are never seen). A folder's watch sees its files however they
   * are written. Folders created later are watched as they appear.
   */
  private watchTree(root: string, required: boolean): void {
    const watched = new Map<string, FSWatcher>();
    const walk = (dir: string) => {
      if (!watched.has(dir)) {
        try {
          const w = watch(dir, (event, file) => {
            // <root>/<game>/...: the first part names the game.
            const game = path.relative(root, path.join(dir, String(file ?? ''))).split(path.sep)[0];
            if (game && this.o.games.has(game)) this.schedule(game);
            if (event === 'rename') rescan(); // something created or removed: maybe a folder
          });
          w.on('error', () => {
            w.close();
            watched.delete(dir); // the folder went away
          });
          watched.set(dir, w);
        } catch (err) {
          if (dir === root && required) throw err;
          return; // gone, or no patches folder at all
        }
      }
      let entries: Dirent[] = [];
      try {
        entries = readdirSync(dir, { withFileTypes: true });
      } catch {
        /* removed meanwhile */
      }
      for (const e of entries) if (e.isDirectory() && e.name !== 'node_modules' && !e.name.startsWith('.')) walk(path.join(dir, e.name));
    };
    const rescan = () => {
      for (const [dir, w] of watched) {
        if (!existsSync(dir)) {
          w.close();
          watched.delete(dir);
        }
      }
      walk(root);
    };
    walk(root);
    this.trees.push(watched);
  }

  private schedule(game: string): void {
    clearTimeout(this.timers.get(game));
    this.timers.set(
      game,
      setTimeout(() => {
        this.timers.delete(game);
        void this.reload(game);
      }, SETTLE_MS),
    );
  }

  /** Rebuild the game from disk and swap its running rooms. One at a time per game; a change during one runs another after it. */
  reload(game: string): Promise<DevReloadOutcome> {
    const current = this.running.get(game);
    if (current) {
      current.again = true;
      return current.done;
    }
    const entry = { again: false } as { again: boolean; done: Promise<DevReloadOutcome> };
    entry.done = (async () => {
      let outcome: DevReloadOutcome;
      do {
        entry.again = false;
        outcome = await this.reloadOnce(game);
      } while (entry.again);
      return outcome;
    })().finally(() => this.running.delete(game));
    this.running.set(game, entry);
    return entry.done;
  }

  private async reloadOnce(game: string): Promise<DevReloadOutcome> {
    const patchErrors: string[] = [];
    let versions: GameVersion[];
    try {
      // Off the main thread: the rooms tick on while it builds (off-thread-bundler.ts).
      const fresh = await loadGame(path.join(this.o.scriptsDir, game), this.o.patchesDir, (_g, folder, e) => patchErrors.push(`patches/${game}/${folder}: ${errorText(e)}`), bundleGameOffThread);
      versions = this.o.games.replaceVersions(game, fresh.versions, fresh.manifest);
    } catch (e) {
      const outcome: DevReloadOutcome = { game, error: errorText(e), rooms: [] };
      this.o.log.error({ game, err: e }, 'dev reload: the game does not build; its rooms keep running the build before');
      this.say(`moonpatch: ${game} does not build; rooms keep running the last build:\n${indent(outcome.error!)}`);
      this.failing.add(game);
      return outcome;
    }
    if (this.failing.delete(game)) this.say(`moonpatch: ${game} builds again`);
    for (const err of patchErrors) {
      this.o.log.error({ game, err }, 'dev reload: a patch does not build; it and the ones after it keep their build before');
      this.say(`moonpatch: ${err}\n  (it and the patches after it keep their build before)`);
    }
    const results: DevReloadOutcome['rooms'] = [];
    await Promise.all(
      this.o
        .rooms()
        .filter((r) => r.game === game && !r.isStopped)
        .map(async (room) => {
          const r = await this.swapRoom(room, versions);
          if (r) results.push(r);
        }),
    );
    this.report(game, results);
    return { game, rooms: results };
  }

  /** Swap one room to the build of its version number in `versions`; null when it already runs it. */
  private async swapRoom(room: Room, versions: readonly GameVersion[]): Promise<DevReloadOutcome['rooms'][number] | null> {
    const from = room.version;
    const number = room.current?.number;
    const next = versions.find((v) => v.number === number);
    if (!next || next.bundle.version === from) return null;
    if (room.pinned) return { room: room.id, from, ok: false, detail: 'pinned: left on its build' };
    try {
      const result = await room.stageVersion(next, 'patch');
      if (result.ok) return { room: room.id, from, to: result.to, ok: true, detail: `swapped at tick ${result.tick}${result.fromSchema !== result.toSchema ? ` (migrated schema ${result.fromSchema} -> ${result.toSchema})` : ''}` };
      return { room: room.id, from, to: next.bundle.version, ok: false, detail: `${result.stage}: ${result.code}: ${result.message}${result.stack ? `\n${result.stack}` : ''}` };
    } catch (e) {
      return { room: room.id, from, to: next.bundle.version, ok: false, detail: errorText(e) };
    }
  }

  private report(game: string, results: DevReloadOutcome['rooms']): void {
    for (const r of results) {
      this.o.log[r.ok ? 'info' : 'warn']({ game, roomId: r.room, fromVersion: r.from, toVersion: r.to, detail: r.detail }, r.ok ? 'dev reload: room swapped to the new build' : 'dev reload: room not swapped');
      this.say(`moonpatch: ${game} room ${r.room}: ${r.ok ? `${r.from} -> ${r.to}, ${r.detail}` : `not swapped (${r.detail})`}`);
    }
  }

  close(): void {
    this.unsubscribe();
    for (const tree of this.trees) for (const w of tree.values()) w.close();
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

const indent = (s: string) => s.replace(/^/gm, '  ');
