/**
 * vitest globalSetup: one private Redis for the whole test run.
 *
 * Tests must never touch a developer's Redis on 6379 (and must never flush one), so every run
 * gets its own throwaway redis-server in a temp dir. Starting one per test file would cost a
 * process each; instead test files share this one and keep apart by key prefix (see
 * `uniquePrefix` in ./redis.ts). Tests read the URL with `inject('redisUrl')`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startPrivateRedis, type PrivateRedis } from '../../server/state/redis-launcher.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moonpatch-test-redis-'));
  let redis: PrivateRedis;
  try {
    // AOF on, like production, so persistence paths are exercised for real.
    redis = await startPrivateRedis({ dir, appendOnly: true });
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  project.provide('redisUrl', redis.url);

  return async () => {
    await redis.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  };
}
