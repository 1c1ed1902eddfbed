/**
 * The games a server can run: each folder under the scripts directory with a game.json.
 * A game is read from disk and bundled once; rooms share the bundle.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseGameManifest, type GameManifest } from '../config/config.ts';
import { MoonpatchError } from '../errors/errors.ts';
import { loadVersions, type GameVersion } from '../patch/versions.ts';
import { bundleGame, type Bundler, type GameBundle } from './bundler.ts';
import { readGameFiles } from './game-files.ts';

export { readGameFiles };

export interface Game {
  manifest: GameManifest;
  /** The base scripts (version 1). */
  bundle: GameBundle;
  files: ReadonlyMap<string, string>;
  /** Version 1 and every patch after it, in order (see patch/versions.ts). */
  versions: GameVersion[];
}

/** Read and bundle one game folder (with `bundle`: off the main thread while rooms tick, sandbox/off-thread-bundler.ts). */
export async function loadGame(dir: string, patchesDir?: string, onBadPatch?: (game: string, folder: string, e: unknown) => void, bundle: Bundler = bundleGame): Promise<Game> {
  const name = path.basename(dir);
  const manifest = parseGameManifest(name, JSON.parse(await readFile(path.join(dir, 'game.json'), 'utf8')), dir);
  const files = await readGameFiles(dir);
  const game = makeGame(manifest, files, await bundle({ name, entry: manifest.entry, files }));
  if (patchesDir) {
    const report = onBadPatch ? (folder: string, e: unknown) => onBadPatch(name, folder, e) : undefined;
    game.versions = await loadVersions({ name, entry: manifest.entry, schema: manifest.schema, files, bundle: game.bundle }, patchesDir, report, bundle);
  }
  return game;
}

/** A game with only its base version (no patches). */
export function makeGame(manifest: GameManifest, files: ReadonlyMap<string, string>, bundle: GameBundle): Game {
  const base: GameVersion = { game: manifest.name, number: 1, schema: manifest.schema, description: 'base scripts', entry: manifest.entry, files, bundle };
  return { manifest, bundle, files, versions: [base] };
}

export class GameRegistry {
  private readonly games = new Map<string, Game>();
  /** Per game: builds a dev reload replaced, by bundle hash (see replaceVersions). */
  private readonly retired = new Map<string, Map<string, GameVersion>>();

  /** Load every game under `scriptsDir` (folders with a game.json), with its patches from `patchesDir`. */
  static async fromDirectory(scriptsDir: string, patchesDir?: string, onBadPatch?: (game: string, folder: string, e: unknown) => void): Promise<GameRegistry> {
    const reg = new GameRegistry();
    for (const entry of await readdir(scriptsDir, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const dir = path.join(scriptsDir, entry.name);
      const hasManifest = await stat(path.join(dir, 'game.json')).then(() => true, () => false);
      if (hasManifest) reg.add(await loadGame(dir, patchesDir, onBadPatch));
    }
    return reg;
  }

  add(game: Game): void {
    this.games.set(game.manifest.name, game);
  }

  get(name: string): Game {
    const g = this.games.get(name);
    if (!g) throw new MoonpatchError('GAME_NOT_FOUND', `no game named ${JSON.stringify(name)} on this server`);
    return g;
  }

  /** The version of a game whose bundle has this content hash (a room's pinned version). */
  findVersion(name: string, bundleVersion: string): GameVersion | undefined {
    return this.get(name).versions.find((v) => v.bundle.version === bundleVersion) ?? this.retired.get(name)?.get(bundleVersion);
  }

  /**
   * Dev reload (sandbox/dev-reload.ts): the game's versions as rebuilt from disk, with its
   * game.json. The builds they replace stay findable by hash, so a room unloaded on one still
   * resumes (isRetired tells it is behind); versions after the rebuilt ones (uploaded through
   * Redis) are kept. Returns the game's versions now.
   */
  replaceVersions(name: string, rebuilt: readonly GameVersion[], manifest: GameManifest): GameVersion[] {
    const game = this.get(name);
    const last = rebuilt[rebuilt.length - 1]!.number;
    const versions = [...rebuilt, ...game.versions.filter((v) => v.number > last)];
    let retired = this.retired.get(name);
    if (!retired) this.retired.set(name, (retired = new Map()));
    for (const old of game.versions) retired.set(old.bundle.version, old);
    for (const v of versions) retired.delete(v.bundle.version); // an edit undone: current again
    game.versions = versions;
    game.manifest = manifest;
    game.bundle = versions[0]!.bundle;
    game.files = versions[0]!.files;
    return versions;
  }

  /** Whether this build of the game was replaced by a dev reload (and is not current again). */
  isRetired(name: string, bundleVersion: string): boolean {
    return this.retired.get(name)?.has(bundleVersion) ?? false;
  }

  /** Add the next version of a game (a patch that arrived at run time). */
  addVersion(version: GameVersion): void {
    const game = this.get(version.game);
    const last = game.versions[game.versions.length - 1]!;
    if (version.number !== last.number + 1) throw new MoonpatchError('BAD_FIELD', `game ${version.game} is at version ${last.number}: the next patch must be ${last.number + 1}, not ${version.number}`);
    game.versions.push(version);
  }

  /** Version `n` of a game (1 = base scripts). */
  version(name: string, n: number): GameVersion {
    const v = this.get(name).versions.find((x) => x.number === n);
    if (!v) throw new MoonpatchError('GAME_NOT_FOUND', `game ${name} has no version ${n}`);
    return v;
  }

  has(name: string): boolean {
    return this.games.has(name);
  }

  /**
   * Every version's number by its bundle hash, across games (hashes are content hashes), for
   * showing people `v3` where the wire and the logs say `0a1907b415d1`; builds dev reload
   * replaced keep their number.
   */
  versionNumbers(): Record<string, number> {
    const numbers: Record<string, number> = {};
    for (const retired of this.retired.values()) for (const [hash, v] of retired) numbers[hash] = v.number;
    for (const game of this.games.values()) for (const v of game.versions) numbers[v.bundle.version] = v.number;
    return numbers;
  }

  names(): string[] {
    return [...this.games.keys()];
  }
}
