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
import { DEFAULT_BUILD_MEMORY_MB, DEFAULT_BUILD_TIMEOUT_MS } from '../../server/config/config.ts';
import { bundleGameOffThread, offThreadStats, setBundlerThreadLimits, stopBundlerThread } from '../../server/sandbox/off-thread-bundler.ts';
import { REPO_ROOT } from '../helpers/server.ts';

afterAll(() => {
  setBundlerThreadLimits({ timeoutMs: DEFAULT_BUILD_TIMEOUT_MS, memoryMb: DEFAULT_BUILD_MEMORY_MB });
  return stopBundlerThread();
});

/**
 * A 1 MB module of assignments: the write rewrite takes ~5 s and ~220 MB of heap for it on
 * these machines (measured with a scratch script), far past the limits the tests below set.
 */
function hugeModule() {
  let src = 'export function tick(world: any) {\n';
  for (let i = 0; i < 20_000; i++) src += `  world.a${i % 50} = (world.b${i % 37} + ${i}) * 2; // filler ${i}\n`;
  return { name: 'huge', entry: 'main.ts', files: new Map([['main.ts', src + '}\n']]) };
}

const arena = async () => ({ name: 'arena', entry: 'main.ts', files: await readGameFiles(path.join(REPO_ROOT, 'scripts', 'arena')) });

describe('bundling off the main thread', () => {
  it('builds the same bundle as the calling thread does, on the worker', async () => {
    const sources = await arena();
    const before = { ...offThreadStats };
    const [here, there] = await Promise.all([bundleGame(sources), bundleGameOffThread(sources)]);
    expect(there).toEqual(here);
    expect(offThreadStats).toEqual({ ...before, offThread: before.offThread + 1 });
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

  it('stops a build past its time limit: BUILD_FAILED saying so, not tried again on the calling thread; the build queued behind it gets a new worker', async () => {
    const sources = await arena();
    const expected = await bundleGameOffThread(sources); // the worker is up: the limit is the build's alone
    setBundlerThreadLimits({ timeoutMs: 300, memoryMb: DEFAULT_BUILD_MEMORY_MB });
    const before = { ...offThreadStats };
    const huge = bundleGameOffThread(hugeModule());
    const next = bundleGameOffThread(sources);
    const e = await huge.then(() => null, (x) => x);
    // Before the new worker can take the queued build (it loads for a second or so): its own
    // limit is the default again, which a cold arena build needs.
    setBundlerThreadLimits({ timeoutMs: DEFAULT_BUILD_TIMEOUT_MS, memoryMb: DEFAULT_BUILD_MEMORY_MB });
    expect(e).toBeInstanceOf(BuildError);
    expect(e).toMatchObject({ code: 'BUILD_FAILED', summary: 'game "huge" failed to build' });
    expect(e.details).toEqual(['the build was stopped: it ran longer than 0.3 s (BUILD_TIMEOUT_MS)']);
    expect(await next).toEqual(expected);
    expect(offThreadStats).toEqual({ offThread: before.offThread + 1, fallback: before.fallback, overLimit: before.overLimit + 1 });
  });

  it('a build that needs more heap than the thread may have fails as BUILD_FAILED, and the process and the next build are fine', async () => {
    const sources = await arena();
    const expected = await bundleGame(sources);
    setBundlerThreadLimits({ timeoutMs: DEFAULT_BUILD_TIMEOUT_MS, memoryMb: 96 });
    const before = { ...offThreadStats };
    const e = await bundleGameOffThread(hugeModule()).then(() => null, (x: unknown) => x);
    expect(e).toBeInstanceOf(BuildError);
    expect((e as BuildError).details).toEqual(['the build was stopped: it needed more than 96 MB of heap (BUILD_MEMORY_MB)']);
    // The arena fits in 96 MB: the limit is the huge module's problem, not the thread's.
    expect(await bundleGameOffThread(sources)).toEqual(expected);
    setBundlerThreadLimits({ timeoutMs: DEFAULT_BUILD_TIMEOUT_MS, memoryMb: DEFAULT_BUILD_MEMORY_MB });
    expect(offThreadStats).toEqual({ offThread: before.offThread + 1, fallback: before.fallback, overLimit: before.overLimit + 1 });
  });
});
