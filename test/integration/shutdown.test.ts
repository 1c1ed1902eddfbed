/**
 * Stopping the server: SIGTERM stops it cleanly, and when that cannot finish (its Redis is
 * gone, so its last commits and checkpoints wait forever) it exits anyway at the deadline
 * (SHUTDOWN_TIMEOUT_MS), saying why. The real entry point in a child process, a real private
 * Redis that the test kills.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findFreePort, startPrivateRedis, type PrivateRedis } from '../../server/state/redis-launcher.ts';
import { startChildServer, type ChildServer } from '../helpers/child-server.ts';
import { FIXTURE_GAMES, testClient, waitFor } from '../helpers/server.ts';

describe('stopping the server', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-shutdown-'));
  let redis: PrivateRedis | null = null;
  let child: ChildServer | null = null;
  afterAll(async () => {
    await child?.kill9();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function serverWithAPlayer(extraEnv: Record<string, string> = {}) {
    redis = await startPrivateRedis({ dir: path.join(dir, 'redis-' + Date.now()), appendOnly: false });
    const env = {
      REDIS_URL: redis.url, PORT: String(await findFreePort()), HOST: '127.0.0.1', SCRIPTS_DIR: FIXTURE_GAMES,
      DEFAULT_GAME: 'probe', DATA_DIR: path.join(dir, 'data'), LOG_LEVEL: 'info', ...extraEnv,
    };
    child = await startChildServer(env);
    const player = testClient(child.url, { room: 'r-' + Date.now().toString(36), game: 'probe', name: 'ada', autoReconnect: false });
    await player.connect();
    const seq = player.send({ op: 'add', n: 1 });
    await waitFor(() => player.lastAckedSeq >= seq, 'an input committed');
    return player;
  }

  const exitOf = (c: ChildServer) => new Promise<number | null>((resolve) => (c.proc.exitCode !== null ? resolve(c.proc.exitCode) : c.proc.once('exit', (code) => resolve(code))));

  it('exits 0 after a clean stop', async () => {
    const player = await serverWithAPlayer();
    const exited = exitOf(child!);
    child!.proc.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(child!.output()).toMatch(/"msg":"shutting down"/);
    expect(child!.output()).not.toMatch(/shutdown did not finish/);
    player.close();
    await redis!.stop();
  });

  /** A server with a player whose Redis is then killed, SIGTERMed: its stop cannot finish. */
  async function stuckStop(shutdownTimeoutMs: number) {
    const player = await serverWithAPlayer({ SHUTDOWN_TIMEOUT_MS: String(shutdownTimeoutMs) });
    redis!.kill();
    await redis!.exited;
    const exited = exitOf(child!);
    child!.proc.kill('SIGTERM');
    return { player, exited };
  }

  it('with its Redis gone, exits 1 at the shutdown deadline and says why', async () => {
    const { player, exited } = await stuckStop(1500);
    expect(await exited).toBe(1);
    expect(child!.output()).toMatch(/shutdown did not finish in time/);
    player.close();
  });

  it('a second signal during a stuck stop exits at once', async () => {
    const { player, exited } = await stuckStop(3_600_000);
    await waitFor(() => /"msg":"shutting down"/.test(child!.output()), 'the stop began');
    child!.proc.kill('SIGTERM');
    expect(await exited).toBe(1);
    expect(child!.output()).toMatch(/second signal during shutdown/);
    player.close();
  });
});
