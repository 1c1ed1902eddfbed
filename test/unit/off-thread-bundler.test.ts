/**
 * Bundling on a thread of its own (server/sandbox/off-thread-bundler.ts), as a running server
 * builds uploaded patches and dev reloads: the same bundle and the same errors as bundling on
 * the calling thread, and a build the worker cannot finish (stopped mid-build, for real) is
 * done on the calling thread instead of being lost.
 */
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BuildError } from '../../server/errors/errors.ts';
import { bundleGame } from '../../server/sandbox/bundler.ts';
import { readGameFiles } from '../../server/sandbox/game-files.ts';
import { bundleGameOffThread, offThreadStats, stopBundlerThread } from '../../server/sandbox/off-thread-bundler.ts';
import { REPO_ROOT } from '../helpers/server.ts';

afterAll(() => stopBundlerThread());

const arena = async () => ({ name: 'arena', entry: 'main.ts', files: await readGameFiles(path.join(REPO_ROOT, 'scripts', 'arena')) });

describe('bundling off the main thread', () => {
  it('builds the same bundle as the calling thread does, on the worker', async () => {
    const sources = await arena();
    const before = { ...offThreadStats };
    const [here, there] = await Promise.all([bundleGame(sources), bundleGameOffThread(sources)]);
    expect(there).toEqual(here);
    expect(offThreadStats).toEqual({ offThread: before.offThread + 1, fallback: before.fallback });
  });

  it('reports a designer\'s mistake as the same BuildError, with the file and line', async () => {
    const sources = { name: 'broken', entry: 'main.ts', files: new Map([['main.ts', 'export function tick(world: any) {\n  world.x = ;\n}\n']]) };
    const here = await bundleGame(sources).then(() => null, (e: unknown) => e);
    const there = await bundleGameOffThread(sources).then(() => null, (e: unknown) => e);
    expect(here).toBeInstanceOf(BuildError);
    expect(there).toBeInstanceOf(BuildError);
    expect(there).toMatchObject({ code: 'BUILD_FAILED', message: (here as BuildError).message, details: (here as BuildError).details });
    expect((there as BuildError).details.join('\n')).toMatch(/main\.ts:2:\d+/);
  });

  it('finishes a build on the calling thread when the worker stops under it, and starts a new worker for the next', async () => {
    const sources = await arena();
    const expected = await bundleGame(sources);
    await bundleGameOffThread(sources); // the worker is up
    const before = { ...offThreadStats };
    const inFlight = bundleGameOffThread(sources);
    await stopBundlerThread();
    expect(await inFlight).toEqual(expected);
    expect(offThreadStats.fallback).toBe(before.fallback + 1);
    expect(await bundleGameOffThread(sources)).toEqual(expected);
    expect(offThreadStats.offThread).toBe(before.offThread + 1);
  });
});
