/**
 * A game's versions: version 1 is its folder under scripts/; each patch folder under
 * patches/<game>/ (sorted by its number) makes the next one. A patch folder holds patch.json
 * and the modules it changes or adds (whole files, same relative paths as the game); its files
 * overlay the previous version's. See docs/patching.md.
 *
 *   patches/arena/002-stars/patch.json   { "version": 2, "schema": 2, "description": "..." }
 *   patches/arena/002-stars/items.ts     replaces items.ts of version 1
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../errors/errors.ts';
import { bundleGame, type Bundler, type GameBundle } from '../sandbox/bundler.ts';
import { readGameFiles } from '../sandbox/game-files.ts';
import { parsePatchManifest, type PatchManifest } from './manifest.ts';

export interface GameVersion {
  game: string;
  /** 1 for the base scripts, then each patch's number. */
  number: number;
  /** State schema this version's scripts read and write. */
  schema: number;
  description: string;
  entry: string;
  files: ReadonlyMap<string, string>;
  bundle: GameBundle;
}

/** The files of the next version: `base` with the patch's files laid over and deletions applied. */
export function overlay(base: ReadonlyMap<string, string>, patchFiles: ReadonlyMap<string, string>, deletions: readonly string[] = []): Map<string, string> {
  const files = new Map(base);
  for (const d of deletions) files.delete(d);
  for (const [p, text] of patchFiles) files.set(p, text);
  return files;
}

/**
 * Build every version of a game: the base, then each patch in order. Patch numbers must follow
 * each other (2, 3, 4...) and schemas may only go up; anything else is a ConfigError naming the
 * patch, and a patch that does not build is a BuildError. A bad patch ends the chain there
 * (it and the patches after it are not available) and is reported to `onBadPatch`; the server
 * keeps running the versions before it.
 */
export async function loadVersions(
  base: { name: string; entry: string; schema: number; files: ReadonlyMap<string, string>; bundle: GameBundle },
  patchesDir: string,
  onBadPatch: (folder: string, error: unknown) => void = (folder, e) => {
    throw Object.assign(e as Error, { folder });
  },
  bundle: Bundler = bundleGame,
): Promise<GameVersion[]> {
  const versions: GameVersion[] = [{ game: base.name, number: 1, schema: base.schema, description: 'base scripts', entry: base.entry, files: base.files, bundle: base.bundle }];
  const dir = path.join(patchesDir, base.name);
  const exists = await stat(dir).then((s) => s.isDirectory(), () => false);
  if (!exists) return versions;
  const folders = (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  for (const folder of folders) {
    try {
      versions.push(await loadPatch(path.join(dir, folder), `patches/${base.name}/${folder}/patch.json`, versions[versions.length - 1]!, bundle));
    } catch (e) {
      onBadPatch(folder, e);
      break;
    }
  }
  return versions;
}

async function loadPatch(folderPath: string, where: string, prev: GameVersion, bundle: Bundler): Promise<GameVersion> {
  const manifest = parsePatchManifest(JSON.parse(await readFile(path.join(folderPath, 'patch.json'), 'utf8')), where);
  return buildPatchVersion(prev, manifest, await readGameFiles(folderPath), where, bundle);
}

/**
 * The version a patch makes on top of `prev` (checked to follow it), bundled by `bundle`
 * (off the main thread while rooms tick: sandbox/off-thread-bundler.ts).
 */
export async function buildPatchVersion(prev: GameVersion, manifest: PatchManifest, patchFiles: ReadonlyMap<string, string>, where: string, bundle: Bundler = bundleGame): Promise<GameVersion> {
  if (manifest.version !== prev.number + 1) throw new ConfigError(where, `version must be ${prev.number + 1} (the previous version is ${prev.number})`);
  if (manifest.schema < prev.schema) throw new ConfigError(where, `schema cannot go down (from ${prev.schema} to ${manifest.schema})`);
  const files = overlay(prev.files, patchFiles, manifest.delete);
  const built = await bundle({ name: prev.game, entry: prev.entry, files });
  return { game: prev.game, number: manifest.version, schema: manifest.schema, description: manifest.description, entry: prev.entry, files, bundle: built };
}
