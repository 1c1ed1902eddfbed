/**
 * Start a real moonpatch server in-process for a test: real Redis (the run's private one, under
 * a unique key prefix), real isolates, real WebSocket port (0 = any free one).
 */
import path from 'node:path';
import { WebSocket } from 'ws';
import { startServer, type RunningServer } from '../../server/app.ts';
import { makeConfig, type ServerConfig } from '../../server/config/config.ts';
import { createLogger, silentLogger } from '../../server/ops/logger.ts';
import { MoonpatchClient, type ClientOptions, type SocketFactory } from '../../client/client.ts';
import { testRedisUrl, uniquePrefix } from './redis.ts';

export const REPO_ROOT = path.resolve(import.meta.dirname, '..', '..');
export const FIXTURE_GAMES = path.join(REPO_ROOT, 'test', 'fixtures', 'games');
export const FIXTURE_PATCHES = path.join(REPO_ROOT, 'test', 'fixtures', 'patches');

export interface TestServerOptions extends Partial<ServerConfig> {
  /** Key prefix; defaults to a fresh unique one. Reuse one to restart "the same" server. */
  redisPrefix?: string;
  /** Collect the server's structured log lines here (parsed JSON) instead of discarding them. */
  logLines?: Record<string, unknown>[];
  /** Dev reload's lines for the designer (config.devReload). */
  say?: (line: string) => void;
}

export async function startTestServer(o: TestServerOptions = {}): Promise<RunningServer & { prefix: string }> {
  const prefix = o.redisPrefix ?? uniquePrefix('srv');
  const { logLines: _lines, say, ...overrides } = o;
  const config = makeConfig({ port: 0, host: '127.0.0.1', scriptsDir: path.join(REPO_ROOT, 'scripts'), patchesDir: path.join(REPO_ROOT, 'patches'), ...overrides, redisPrefix: prefix });
  const lines = o.logLines;
  const log = lines ? createLogger('info', { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) }) : silentLogger();
  const server = await startServer({ ...config, redisUrl: o.redisUrl ?? testRedisUrl() }, log, { say });
  return Object.assign(server, { prefix });
}

/** A client for the test server, using the `ws` package. */
export function testClient(url: string, o: Partial<ClientOptions> & { room: string }): MoonpatchClient {
  return new MoonpatchClient({ url, WebSocket: WebSocket as unknown as SocketFactory, reconnectDelayMs: 50, ...o });
}

/** Resolve when `check` returns true, polling; fails the test after `timeoutMs` with `what`. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
