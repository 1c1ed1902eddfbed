import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import {
  findFreePort,
  isRedisAnswering,
  RedisNotInstalledError,
  startPrivateRedis,
  type PrivateRedis,
} from '../../server/state/redis-launcher.ts';

// These tests start their own servers (not the shared one from globalSetup) because they stop,
// crash and restart them.
const started: PrivateRedis[] = [];
const dirs: string[] = [];

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moonpatch-launcher-test-'));
  dirs.push(dir);
  return dir;
}

async function start(opts: Parameters<typeof startPrivateRedis>[0]): Promise<PrivateRedis> {
  const r = await startPrivateRedis(opts);
  started.push(r);
  return r;
}

async function withClient<T>(url: string, fn: (c: Redis) => Promise<T>): Promise<T> {
  const client = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => null });
  try {
    return await fn(client);
  } finally {
    client.disconnect();
  }
}

afterEach(async () => {
  // Leave no redis-server behind, even when an assertion failed mid-test.
  await Promise.all(started.splice(0).map((r) => r.stop()));
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

describe('startPrivateRedis', () => {
  it('keeps data across a graceful stop and restart (AOF)', async () => {
    const dir = tempDir();
    const first = await start({ dir, appendOnly: true });
    expect(first.url).toBe(`redis://127.0.0.1:${first.port}`);
    expect(first.pid).toBeGreaterThan(0);
    await withClient(first.url, (c) => c.set('survivor', 'graceful'));
    await first.stop();
    expect(await isRedisAnswering(first.url)).toBe(false);

    const second = await start({ dir, port: first.port, appendOnly: true });
    expect(second.port).toBe(first.port);
    expect(await withClient(second.url, (c) => c.get('survivor'))).toBe('graceful');
    expect(fs.existsSync(path.join(dir, 'redis.log'))).toBe(true);
  });

  it('keeps data across SIGKILL once the AOF has been fsynced', async () => {
    const dir = tempDir();
    const first = await start({ dir, appendOnly: true });
    await withClient(first.url, (c) => c.set('survivor', 'crashed'));
    // appendfsync everysec: give the background fsync time to run.
    await new Promise((r) => setTimeout(r, 1500));
    first.kill();
    await first.exited;

    const second = await start({ dir, appendOnly: true }); // new port, same data
    expect(await withClient(second.url, (c) => c.get('survivor'))).toBe('crashed');
  });

  it('rejects with RedisNotInstalledError when redis-server is not on PATH', async () => {
    const emptyBin = tempDir();
    const savedPath = process.env.PATH;
    process.env.PATH = emptyBin;
    try {
      const attempt = startPrivateRedis({ dir: tempDir() });
      await expect(attempt).rejects.toBeInstanceOf(RedisNotInstalledError);
      await expect(attempt).rejects.toThrow(/apt-get install redis-server/);
    } finally {
      process.env.PATH = savedPath;
    }
  });

  it('rejects with the log tail when redis-server exits during startup', async () => {
    const dir = tempDir();
    const running = await start({ dir: tempDir() });
    // Its port is taken, and a fixed port is never swapped for another.
    await expect(startPrivateRedis({ dir, port: running.port })).rejects.toThrow(/exited during startup[\s\S]*in use/i);
  });
});

describe('isRedisAnswering', () => {
  it('is false for a closed port', async () => {
    const port = await findFreePort();
    expect(await isRedisAnswering(`redis://127.0.0.1:${port}`)).toBe(false);
  });

  it('is true for a running server', async () => {
    const r = await start({ dir: tempDir(), appendOnly: false });
    expect(await isRedisAnswering(r.url)).toBe(true);
  });
});
