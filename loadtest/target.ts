/**
 * The server a load test runs against: one given by URL, or one started for the run as a child
 * process (server/main.ts, as `npm start` runs it) with its own key prefix, admin token and
 * free port, on the given Redis or on a private `redis-server` started for the run.
 *
 * Why not leave Redis to the server: without REDIS_URL it takes whatever answers on
 * 127.0.0.1:6379 first, which on a shared machine is someone else's Redis; the run's keys
 * would stay there. A private Redis (append-only, fsync every second, like the server's own
 * private one) goes away with the run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findFreePort, startPrivateRedis, type PrivateRedis } from '../server/state/redis-launcher.ts';

export const REPO_ROOT = path.resolve(import.meta.dirname, '..');

export interface Target {
  /** WebSocket URL players connect to. */
  url: string;
  /** Origin of the HTTP routes (/admin, /metrics, /dashboard/data). */
  httpUrl: string;
  adminToken: string | null;
  /** What was started for the run (for the report). */
  started: { server: boolean; redis: 'private' | 'given' | 'server-managed' };
  serverPid: number | null;
  redisPid: number | null;
  /** The child server's output (warnings and errors only), for failure messages. */
  output(): string;
  /** Stop what was started for the run (nothing for a given URL). */
  stop(): Promise<void>;
}

export function httpOrigin(wsUrl: string): string {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
  return u.origin;
}

/** A target given by URL: nothing to start or stop. */
export function givenTarget(url: string, adminToken: string | null): Target {
  return {
    url,
    httpUrl: httpOrigin(url),
    adminToken,
    started: { server: false, redis: 'given' },
    serverPid: null,
    redisPid: null,
    output: () => '',
    stop: async () => {},
  };
}

export interface StartOptions {
  /** Redis for the server; when absent a private one is started. */
  redisUrl?: string;
  /** Players the run will connect from this one address (raises MAX_CONNECTIONS_PER_ADDRESS). */
  players: number;
  log(line: string): void;
}

/** Start a private Redis (unless given) and the server as a child process. */
export async function startTarget(o: StartOptions): Promise<Target> {
  let redis: PrivateRedis | null = null;
  let redisDir: string | null = null;
  let redisUrl = o.redisUrl;
  if (!redisUrl) {
    redisDir = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-loadtest-redis-'));
    redis = await startPrivateRedis({ dir: redisDir, appendOnly: true });
    redisUrl = redis.url;
    o.log(`private redis-server on ${redis.url} (pid ${redis.pid})`);
  }
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-loadtest-data-'));
  const port = await findFreePort();
  const adminToken = randomBytes(24).toString('base64url');
  const prefix = `lt:${randomBytes(4).toString('hex')}`;
  const proc: ChildProcess = spawn(process.execPath, ['--no-node-snapshot', '--import', 'tsx', path.join(REPO_ROOT, 'server', 'main.ts')], {
    cwd: REPO_ROOT,
    env: {
      ...serverEnv(),
      PORT: String(port),
      HOST: '127.0.0.1',
      REDIS_URL: redisUrl,
      REDIS_PREFIX: prefix,
      ADMIN_TOKEN: adminToken,
      DATA_DIR: dataDir,
      LOG_LEVEL: 'warn',
      MAX_CONNECTIONS_PER_ADDRESS: String(o.players + 64),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (d: Buffer) => {
    out += d.toString();
    if (out.length > 200_000) out = out.slice(-100_000);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const cleanupRedis = async () => {
    await redis?.stop();
    if (redisDir) rmSync(redisDir, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  };
  let url: string;
  try {
    url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start listening within 60 s:\n${out}`)), 60_000);
      const onData = () => {
        const m = /WebSocket (ws:\/\/[^\s)]+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      };
      proc.stdout!.on('data', onData);
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`server exited (${code}) before listening:\n${out}`));
      });
    });
  } catch (e) {
    proc.kill('SIGKILL');
    await cleanupRedis();
    throw e;
  }
  o.log(`server pid ${proc.pid} on ${url} (REDIS_PREFIX ${prefix})`);
  let stopped = false;
  return {
    url,
    httpUrl: httpOrigin(url),
    adminToken,
    started: { server: true, redis: redis ? 'private' : 'given' },
    serverPid: proc.pid ?? null,
    redisPid: redis?.pid ?? null,
    output: () => out,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(timer);
      }
      await cleanupRedis();
    },
  };
}

/**
 * This process's environment minus the server settings a developer's shell may carry that would
 * change what is measured (a player-token secret would refuse the bots' joins, another scripts
 * folder may have no arena, a public URL or node id belongs to another server).
 */
function serverEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of ['PLAYER_TOKEN_SECRET', 'PUBLIC_URL', 'NODE_ID', 'SCRIPTS_DIR', 'PATCHES_DIR', 'DEFAULT_GAME', 'RESUME_WINDOW_MS', 'MAX_FRAME_BYTES', 'INPUT_RATE', 'INPUT_BURST', 'ABUSE_LIMIT', 'IDLE_TIMEOUT_MS']) {
    delete env[k];
  }
  return env;
}

/** CPU seconds (user + system) a process has used so far, from /proc; null where unavailable. */
export function cpuSeconds(pid: number | null): number | null {
  if (pid === null) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of stat (utime, stime), counted from after the command name: 12 and 13.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}
