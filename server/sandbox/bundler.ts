/**
 * Turns a game's script files into one script for an isolate: esbuild bundles the designer's
 * modules together with the in-isolate runtime (lockdown, journaled world, codec) behind a
 * generated entry that installs the hooks. The bundle is content-addressed: its sha256 is the
 * script version that rooms, deltas and logs carry.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { BuildError } from '../errors/errors.ts';
import { InstrumentError, instrumentWrites, WRITES_MODULE } from './instrument-writes.ts';

const RUNTIME_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'runtime');
const NAMESPACE = 'moonpatch-game';
const ENTRY = '<moonpatch-entry>';

export interface GameSources {
  /** Game name (folder name under scripts/). */
  name: string;
  /** Entry module, relative to the game folder (e.g. main.ts). */
  entry: string;
  /** Every script file of the game: path relative to the game folder -> source text. */
  files: ReadonlyMap<string, string>;
}

export interface GameBundle {
  name: string;
  /** sha256 of the bundled code, hex, first 12 characters: the script version. */
  version: string;
  code: string;
  /** The source map (JSON text) from `code` back to the designer's files. */
  sourceMap: string;
  /** Names under which stack frames refer to the bundle. */
  filename: string;
}

/** What builds a game: bundleGame here, or off-thread-bundler.ts's on a thread of its own. */
export type Bundler = (sources: GameSources) => Promise<GameBundle>;

const SCRIPT_EXTENSIONS = ['.ts', '.js', '.mts', '.mjs'];

/**
 * Bundle a game. Throws BuildError (code BUILD_FAILED) with the esbuild messages, mapped to the
 * designer's files, when a module is missing, has a syntax error, or imports something outside
 * the game (a Node built-in, a package, a file outside its folder).
 */
export async function bundleGame(sources: GameSources): Promise<GameBundle> {
  const entryPath = normalise(sources.entry);
  if (!sources.files.has(entryPath)) throw new BuildError(`entry module "${sources.entry}" is not among the game's files`, []);

  let result: esbuild.BuildResult & { outputFiles: esbuild.OutputFile[] };
  try {
    result = await esbuild.build({
      stdin: {
        // The runtime import comes first: its lockdown must run before any designer module.
        contents: `import { install } from ${JSON.stringify(path.join(RUNTIME_DIR, 'entry.ts'))};\n` +
          `import * as hooks from ${JSON.stringify('game:' + entryPath)};\ninstall(hooks);\n`,
        sourcefile: ENTRY,
        resolveDir: RUNTIME_DIR,
        loader: 'ts',
      },
      bundle: true,
      write: false,
      format: 'iife',
      // Strict mode everywhere: a write to a frozen built-in throws instead of failing silently.
      banner: { js: '"use strict";' },
      platform: 'neutral',
      target: 'es2022',
      sourcemap: 'external',
      sourcesContent: true,
      outfile: 'game.js',
      logLevel: 'silent',
      plugins: [gameFilesPlugin(sources.files)],
    });
  } catch (e) {
    const failure = e as esbuild.BuildFailure;
    if (!Array.isArray(failure.errors)) throw e;
    throw new BuildError(`game "${sources.name}" failed to build`, failure.errors.map(formatMessage));
  }
  const code = result.outputFiles.find((f) => f.path.endsWith('.js'))!.text;
  const sourceMap = result.outputFiles.find((f) => f.path.endsWith('.map'))!.text;
  const version = createHash('sha256').update(code).digest('hex').slice(0, 12);
  return { name: sources.name, version, code, sourceMap, filename: `${sources.name}@${version}.js` };
}

function normalise(p: string): string {
  return path.posix.normalize(p.replaceAll('\\', '/')).replace(/^\.\//, '');
}

/** Resolve designer imports inside the game's own file map; refuse everything else. */
function gameFilesPlugin(files: ReadonlyMap<string, string>): esbuild.Plugin {
  const find = (p: string): string | undefined => {
    if (files.has(p)) return p;
    for (const ext of SCRIPT_EXTENSIONS) if (files.has(p + ext)) return p + ext;
    for (const ext of SCRIPT_EXTENSIONS) if (files.has(p + '/index' + ext)) return p + '/index' + ext;
    return undefined;
  };
  return {
    name: 'moonpatch-game-files',
    setup(build) {
      build.onResolve({ filter: /^game:/ }, (args) => ({ path: args.path.slice(5), namespace: NAMESPACE }));
      build.onResolve({ filter: new RegExp(`^${WRITES_MODULE}$`) }, () => ({ path: path.join(RUNTIME_DIR, 'writes.ts') }));
      build.onResolve({ filter: /^moonpatch$/ }, () => ({ path: path.join(RUNTIME_DIR, 'api.ts') }));
      build.onResolve({ filter: /.*/, namespace: NAMESPACE }, (args) => {
        if (!args.path.startsWith('./') && !args.path.startsWith('../')) {
          return { errors: [{ text: `cannot import "${args.path}": game scripts may import only 'moonpatch' and their own modules (./file); the sandbox has no Node modules or packages` }] };
        }
        const joined = normalise(path.posix.join(path.posix.dirname(args.importer), args.path));
        if (joined.startsWith('../')) return { errors: [{ text: `cannot import "${args.path}": it is outside the game's folder` }] };
        const found = find(joined);
        if (!found) return { errors: [{ text: `cannot find module "${args.path}" (looked for ${joined} with .ts/.js)` }] };
        return { path: found, namespace: NAMESPACE };
      });
      // Every designer module has its writes rewritten into journaled calls (instrument-writes.ts).
      // A module that does not parse goes to esbuild as it is, for esbuild's syntax errors.
      build.onLoad({ filter: /.*/, namespace: NAMESPACE }, (args) => {
        const source = files.get(args.path)!;
        const loader = args.path.endsWith('.js') || args.path.endsWith('.mjs') ? 'js' : 'ts';
        try {
          const instrumented = instrumentWrites(args.path, source);
          if (instrumented === null) return { contents: source, loader, resolveDir: RUNTIME_DIR };
          return { contents: instrumented.code, loader: 'js', resolveDir: RUNTIME_DIR };
        } catch (e) {
          if (e instanceof InstrumentError) {
            // With the designer's file and line as the location (esbuild would otherwise name the
            // engine's entry module, which imported this one).
            return {
              errors: e.problems.map((p) => ({
                text: p.message,
                location: { file: p.file, namespace: NAMESPACE, line: p.line, column: p.column - 1, length: 0, lineText: p.lineText },
              })),
            };
          }
          throw e;
        }
      });
    },
  };
}

function formatMessage(m: esbuild.Message): string {
  const where = m.location ? `${m.location.file.replace(/^moonpatch-game:/, '')}:${m.location.line}:${m.location.column + 1}: ` : '';
  return `${where}${m.text}`;
}
