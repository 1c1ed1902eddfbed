/**
 * Finds or starts the Redis that holds each room's authoritative state.
 *
 * moonpatch needs a Redis, but a developer (or a test run, or CI) should not have to set one
 * up by hand. `resolveRedis` uses an explicit URL when given, else a Redis already answering on
 * the default port, else starts a private `redis-server` child whose data lives under the
 * server's data directory. The private server runs with append-only persistence so room state
 * survives restarts of moonpatch and of Redis itself.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';

export interface PrivateRedis {
  /** `redis://127.0.0.1:PORT` */
  url: string;
  port: number;
  pid: number;
  /**
   * Graceful stop: SIGTERM makes Redis fsync the AOF and exit (no SHUTDOWN command, so this
   * works even if a client is wedged). Resolves once the process has exited. Idempotent.
   */
  stop(): Promise<void>;
  /** SIGKILL, no cleanup: simulates a crash in fault tests. Await `exited` before reusing the dir. */
  kill(): void;
  /** Resolves with the exit code (or null if killed by a signal) when the process has exited. */
  exited: Promise<number | null>;
}

export interface StartPrivateRedisOptions {
  /** Working directory for Redis: AOF files go here. Created if missing. */
  dir: string;
  /** Fixed port; by default a free port is picked. */
  port?: number;
  /** Append-only persistence (default true). With it off the server keeps nothing on disk. */
  appendOnly?: boolean;
  /** Default `<dir>/redis.log`. */
  logFile?: string;
}

export class RedisNotInstalledError extends Error {
  constructor() {
    super(
      'moonpatch needs Redis, but there is no `redis-server` on PATH. Install one:\n' +
        '  Debian/Ubuntu: sudo apt-get install redis-server\n' +
        '  macOS:         brew install redis\n' +
        'or set REDIS_URL to an existing server (e.g. REDIS_URL=redis://127.0.0.1:6379).',
    );
    this.name = 'RedisNotInstalledError';
  }
}

const HOST = '127.0.0.1';
/** How long a freshly spawned server may take to answer PING (it may be replaying a big AOF). */
const READY_TIMEOUT_MS = 10_000;
/** If SIGTERM has not stopped Redis by then, something is badly wrong; SIGKILL rather than hang. */
const STOP_GRACE_MS = 30_000;
/** Attempts when we picked the port ourselves and someone else grabbed it before Redis bound it. */
const PORT_RACE_ATTEMPTS = 3;

/**
 * Looks `redis-server` up on PATH ourselves instead of letting spawn fail with ENOENT: the
 * spawn error only arrives asynchronously as an 'error' event, and we want a clear, typed error
 * that tells the user what to install. PATH is read at call time so tests can override it.
 */
function findRedisServer(): string {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  const names = process.platform === 'win32' ? ['redis-server.exe', 'redis-server'] : ['redis-server'];
  for (const dir of dirs) {
    for (const name of names) {
      const candidate = path.join(dir, name);
      try {
        fs.accessSync(candidate, fs.constants.X_OK);
        if (fs.statSync(candidate).isFile()) return candidate;
      } catch {
        // not here; keep looking
      }
    }
  }
  throw new RedisNotInstalledError();
}

/**
 * A free TCP port on 127.0.0.1: binding to port 0 lets the kernel choose one that nobody is
 * listening on. There is a small window between closing our probe and Redis binding it, which
 * startPrivateRedis covers by retrying with a new port.
 */
export function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('could not pick a free port'))));
    });
  });
}

/**
 * Whether *our* child is up: one raw RESP exchange over TCP, PING plus INFO server, pipelined.
 * Raw TCP because it needs no client-library state and never reconnects behind our back. PING
 * must say +PONG (not -LOADING, which means the AOF is still being replayed), and INFO's
 * process_id must be the child's: if the port was already taken, another server would answer
 * PING while our child is failing to bind, and we must not mistake it for ours.
 */
function pingOwnRedis(port: number, pid: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let reply = '';
    let settled = false;
    const socket = net.connect({ host: HOST, port });
    const done = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.setNoDelay(true);
    socket.once('connect', () => socket.write('PING\r\nINFO server\r\n'));
    socket.on('data', (chunk) => {
      // latin1 keeps one char per byte, so RESP bulk lengths can be checked on the string.
      reply += chunk.toString('latin1');
      const firstEnd = reply.indexOf('\r\n');
      if (firstEnd < 0) return;
      if (!reply.startsWith('+PONG')) return done(false);
      const rest = reply.slice(firstEnd + 2);
      const headerEnd = rest.indexOf('\r\n');
      if (headerEnd < 0) return;
      if (!rest.startsWith('$')) return done(false);
      const len = Number(rest.slice(1, headerEnd));
      const body = rest.slice(headerEnd + 2);
      if (body.length < len) return;
      done(new RegExp(`^process_id:${pid}\r?$`, 'm').test(body.slice(0, len)));
    });
    socket.once('error', () => done(false));
    socket.once('close', () => done(false));
  });
}

/**
 * Whether a Redis at `url` answers PING with PONG within `timeoutMs`. Uses ioredis so that URLs
 * with a password, a database number or TLS (rediss://) work the same way the server's own
 * connections will. Never retries and never throws.
 */
export async function isRedisAnswering(url: string, timeoutMs = 500): Promise<boolean> {
  let client: Redis;
  try {
    client = new Redis(url, {
      lazyConnect: true,
      connectTimeout: timeoutMs,
      commandTimeout: timeoutMs,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      // One attempt: a probe that reconnects forever would keep the process alive.
      retryStrategy: () => null,
      reconnectOnError: () => false,
    });
  } catch {
    return false; // unparsable URL
  }
  // Without a listener ioredis prints "Unhandled error event" for a refused connection.
  client.on('error', () => {});
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  const probe = (async () => {
    try {
      await client.connect();
      return (await client.ping()) === 'PONG';
    } catch {
      return false;
    }
  })();
  try {
    return await Promise.race([probe, deadline]);
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

function readFrom(file: string, offset: number): string {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const start = Math.max(offset, size - 64 * 1024);
      const buf = Buffer.alloc(Math.max(0, size - start));
      fs.readSync(fd, buf, 0, buf.length, start);
      return buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}

function lastLines(text: string, n: number): string {
  return text.split('\n').filter((l) => l.trim() !== '').slice(-n).join('\n');
}

function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

class EarlyExitError extends Error {
  constructor(
    message: string,
    readonly portInUse: boolean,
  ) {
    super(message);
    this.name = 'RedisStartError';
  }
}

/** Starts a private `redis-server` child bound to 127.0.0.1 and resolves once it answers PING. */
export async function startPrivateRedis(opts: StartPrivateRedisOptions): Promise<PrivateRedis> {
  const bin = findRedisServer();
  const dir = path.resolve(opts.dir);
  fs.mkdirSync(dir, { recursive: true });
  const logFile = path.resolve(opts.logFile ?? path.join(dir, 'redis.log'));
  fs.mkdirSync(path.dirname(logFile), { recursive: true });

  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await findFreePort());
    try {
      return await launch(bin, { dir, port, appendOnly: opts.appendOnly ?? true, logFile });
    } catch (err) {
      // Only retry the race we introduced by picking the port; a caller's fixed port is theirs.
      if (err instanceof EarlyExitError && err.portInUse && opts.port === undefined && attempt < PORT_RACE_ATTEMPTS) {
        continue;
      }
      throw err;
    }
  }
}

async function launch(
  bin: string,
  o: { dir: string; port: number; appendOnly: boolean; logFile: string },
): Promise<PrivateRedis> {
  const args = [
    '--port', String(o.port),
    // Never reachable from other machines: this server has no password.
    '--bind', HOST,
    '--dir', o.dir,
    '--appendonly', o.appendOnly ? 'yes' : 'no',
    // At most ~1 s of writes lost on a machine crash; a process crash loses nothing because
    // Redis has already write()n the AOF to the kernel before replying.
    '--appendfsync', 'everysec',
    // No RDB snapshots: the AOF is the persistence, and fork-for-snapshot would double memory.
    '--save', '',
    // Stay our child so we can signal it, see it exit, and not leak a daemon.
    '--daemonize', 'no',
    // Bound to loopback only, so protected mode's no-password refusal would only get in the way.
    '--protected-mode', 'no',
    '--logfile', o.logFile,
  ];

  // Redis appends to its log across runs; remember where this run starts so an error shows
  // this run's lines rather than an old run's.
  const logOffset = fileSize(o.logFile);
  const child = spawn(bin, args, { cwd: o.dir, stdio: ['ignore', 'pipe', 'pipe'] });

  // Anything Redis prints before it opens its log file (bad arguments, say) goes to
  // stdout/stderr; keep the tail for error messages. Reading also keeps the pipes from filling.
  let output = '';
  const capture = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-16 * 1024);
  };
  child.stdout?.on('data', capture);
  child.stderr?.on('data', capture);

  // Mutable run state lives in one object: TypeScript does not see the assignments made in the
  // event callbacks, and would otherwise narrow plain `let` flags to their initial values.
  const state: { exited: boolean; code: number | null; signal: NodeJS.Signals | null; spawnError?: Error } = {
    exited: false,
    code: null,
    signal: null,
  };
  const exited = new Promise<number | null>((resolve) => {
    // 'exit', not 'close': 'close' also waits for the stdio pipes, which a forked AOF-rewrite
    // child of Redis may still hold open after Redis itself is gone.
    child.once('exit', (code, signal) => {
      state.exited = true;
      state.code = code;
      state.signal = signal;
      process.removeListener('exit', onParentExit);
      resolve(code);
    });
    child.once('error', (err) => {
      // Spawn failure (e.g. EACCES): no 'close' may follow, so settle here too.
      state.spawnError = err;
      state.exited = true;
      process.removeListener('exit', onParentExit);
      resolve(null);
    });
  });

  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));

  // If our process exits without calling stop() (process.exit, an uncaught error), don't leave
  // an orphaned Redis holding the port and the data dir: SIGTERM is sent synchronously, which is
  // all an 'exit' handler may do, and Redis still flushes its AOF on it.
  function onParentExit() {
    if (!state.exited) child.kill('SIGTERM');
  }
  process.on('exit', onParentExit);

  const describe = () => {
    const log = lastLines(readFrom(o.logFile, logOffset), 20);
    const out = lastLines(output, 20);
    return [log && `--- ${o.logFile} (last lines) ---\n${log}`, out && `--- redis-server output ---\n${out}`]
      .filter(Boolean)
      .join('\n');
  };

  // Make sure the child is gone (so the port and dir are free) before reporting the failure,
  // and give its pipes a moment to deliver the last of its output.
  const fail = async (why: string): Promise<never> => {
    if (!state.exited) child.kill('SIGKILL');
    await exited;
    await Promise.race([closed, new Promise((r) => setTimeout(r, 500))]);
    const details = describe();
    const portInUse = /address already in use/i.test(details);
    throw new EarlyExitError(
      `redis-server (${bin}, port ${o.port}, dir ${o.dir}) ${why}${details ? `\n${details}` : ''}`,
      portInUse,
    );
  };

  // Wait until it answers PING, dies, or runs out of time. Polling beats parsing the log for
  // "Ready to accept connections": the wording changes between Redis versions.
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (state.exited) {
      if (state.spawnError) await fail(`could not be started: ${state.spawnError.message}`);
      await fail(`exited during startup (${state.signal ? `signal ${state.signal}` : `code ${state.code}`})`);
    }
    if (child.pid !== undefined && (await pingOwnRedis(o.port, child.pid, 250))) break;
    if (Date.now() > deadline) await fail(`did not answer PING within ${READY_TIMEOUT_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }

  // child.pid is set whenever spawn succeeded, which the check above proves.
  const pid = child.pid as number;
  let stopping: Promise<void> | undefined;

  return {
    url: `redis://${HOST}:${o.port}`,
    port: o.port,
    pid,
    exited,
    stop() {
      stopping ??= (async () => {
        if (state.exited) return;
        child.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const grace = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            if (!state.exited) child.kill('SIGKILL');
            resolve();
          }, STOP_GRACE_MS);
        });
        await Promise.race([exited, grace]);
        clearTimeout(timer);
        await exited;
      })();
      return stopping;
    },
    kill() {
      if (!state.exited) child.kill('SIGKILL');
    },
  };
}

/**
 * Decides which Redis the server uses:
 *  1. `redisUrl` (from REDIS_URL or config) when given, as is;
 *  2. else a Redis already answering at redis://127.0.0.1:6379 (a developer's local one);
 *  3. else a private child Redis with AOF persistence under `<dataDir>/redis`, returned as
 *     `owned` so the caller stops it on shutdown.
 */
export async function resolveRedis(opts: {
  redisUrl?: string;
  dataDir: string;
  log?: (msg: string) => void;
}): Promise<{ url: string; owned?: PrivateRedis }> {
  const log = opts.log ?? (() => {});
  if (opts.redisUrl) {
    log(`using Redis at ${redactUrl(opts.redisUrl)}`);
    return { url: opts.redisUrl };
  }
  const local = `redis://${HOST}:6379`;
  if (await isRedisAnswering(local)) {
    log(`using the Redis already running at ${local}`);
    return { url: local };
  }
  const dir = path.join(opts.dataDir, 'redis');
  log(`no Redis at ${local} and REDIS_URL not set; starting a private redis-server with data in ${dir}`);
  const owned = await startPrivateRedis({ dir, appendOnly: true });
  log(`private Redis ready at ${owned.url} (pid ${owned.pid})`);
  return { url: owned.url, owned };
}

/** Keeps passwords out of logs. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
