/**
 * The games a server can run: each folder under the scripts directory with a game.json.
 * A game is read from disk and bundled once; rooms share the bundle.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseGameManifest, type GameManifest } from '../config/config.ts';
import { MoonpatchError } from '../errors/errors.ts';
import { bundleGame, type GameBundle } from './bundler.ts';

export interface Game {
  manifest: GameManifest;
  bundle: GameBundle;
}

const SOURCE_FILE = /\.(ts|js|mts|mjs)$/;

/** Every script file of a game folder, relative path -> text (recursively, no node_modules). */
export async function readGameFiles(dir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(path.join(dir, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules' && !entry.name.startsWith('.')) await walk(p);
      } else if (SOURCE_FILE.test(entry.name) && !entry.name.endsWith('.d.ts')) {
        files.set(p, await readFile(path.join(dir, p), 'utf8'));
      }
    }
  };
  await walk('');
  return files;
}

/** Read and bundle one game folder. */
export async function loadGame(dir: string): Promise<Game> {
  const name = path.basename(dir);
  const manifest = parseGameManifest(name, JSON.parse(await readFile(path.join(dir, 'game.json'), 'utf8')), dir);
  const bundle = await bundleGame({ name, entry: manifest.entry, files: await readGameFiles(dir) });
  return { manifest, bundle };
}

export class GameRegistry {
  private readonly games = new Map<string, Game>();

  /** Load every game under `scriptsDir` (folders with a game.json). */
  static async fromDirectory(scriptsDir: string): Promise<GameRegistry> {
    const reg = new GameRegistry();
    for (const entry of await readdir(scriptsDir, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const dir = path.join(scriptsDir, entry.name);
      const hasManifest = await stat(path.join(dir, 'game.json')).then(() => true, () => false);
      if (hasManifest) reg.add(await loadGame(dir));
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

  has(name: string): boolean {
    return this.games.has(name);
  }

  names(): string[] {
    return [...this.games.keys()];
  }
}
