/**
 * Typed configuration with documented defaults. This is the only module that reads
 * process.env; everything else receives a ServerConfig. Bad values are rejected at startup with
 * a message that names the option.
 */
import path from 'node:path';
import { ConfigError } from '../errors/errors.ts';

export interface ServerConfig {
  /** HTTP + WebSocket port. Env PORT. @default 8080 */
  port: number;
  /** Interface to listen on. Env HOST. @default "0.0.0.0" */
  host: string;
  /**
   * PEM certificate (with its chain, leaf first) to serve TLS with: https and wss on PORT for
   * everything (play page, WebSocket, /healthz, /metrics, /dashboard, admin API). Needs
   * tlsKeyFile too. Env TLS_CERT_FILE. @default none: plain http and ws
   */
  tlsCertFile?: string;
  /** The certificate's unencrypted PEM private key. Env TLS_KEY_FILE. @default none */
  tlsKeyFile?: string;
  /** Redis URL. Env REDIS_URL. When unset: 127.0.0.1:6379 if it answers, else a private redis-server under dataDir. */
  redisUrl?: string;
  /** Prefix of every Redis key this server writes. Env REDIS_PREFIX. @default "mp" */
  redisPrefix: string;
  /** Where a private Redis keeps its data. Env DATA_DIR. @default ".data" */
  dataDir: string;
  /** Folder of games (one sub-folder per game). Env SCRIPTS_DIR. @default "scripts" */
  scriptsDir: string;
  /** Folder of patches (patches/<game>/<NNN-name>/). Env PATCHES_DIR. @default "patches" */
  patchesDir: string;
  /** Game a join may create a room with when it names none. Env DEFAULT_GAME. @default "arena" */
  defaultGame: string;
  /**
   * Bearer token for the admin API (/admin/...). Env ADMIN_TOKEN. When unset, main.ts makes one
   * and writes it to <dataDir>/admin-token for the local `moonpatch` command line.
   */
  adminToken?: string;
  /**
   * Public keys (base64 SPKI DER, from `moonpatch keygen`) whose signed patches this server
   * accepts through Redis. Env TRUSTED_PATCH_KEYS, comma-separated. @default none (uploads refused)
   */
  trustedPatchKeys: string[];
  /**
   * Secret for signed player tokens (HMAC-SHA256; see net/player-token.ts). When set, joins need
   * a valid token and each user gets one seat per room. Env PLAYER_TOKEN_SECRET. @default none:
   * dev mode, anonymous players accepted
   */
  playerTokenSecret?: string;
  /** Log level (pino). Env LOG_LEVEL. @default "info" */
  logLevel: string;
  /** Seat kept for a disconnected player, ms. Env RESUME_WINDOW_MS. @default 30000 */
  resumeWindowMs: number;
  /** Largest WebSocket frame accepted, bytes; larger ones close the socket (1009). Env MAX_FRAME_BYTES. @default 16384 */
  maxFrameBytes: number;
  /** Sustained input rate allowed per connection, messages/s. Env INPUT_RATE. @default 60 */
  inputRatePerSecond: number;
  /** Burst above the sustained rate. Env INPUT_BURST. @default 30 */
  inputBurst: number;
  /** Frames refused (bad or over rate) before the connection is closed (4001). Env ABUSE_LIMIT. @default 100 */
  abuseLimit: number;
  /** Open connections allowed from one address; more are closed (4006). Env MAX_CONNECTIONS_PER_ADDRESS. @default 256 (the bot runner and players behind one NAT share an address) */
  maxConnectionsPerAddress: number;
  /** A connection that sends nothing for this long is closed (4003), ms. Env IDLE_TIMEOUT_MS. @default 60000 */
  idleTimeoutMs: number;
  /** Client send buffer above which broadcasts to it are merged, bytes. @default 262144 */
  broadcastSoftLimitBytes: number;
  /** Client send buffer above which it is disconnected (4002), bytes. @default 4194304 */
  broadcastHardLimitBytes: number;
  /** A client lagging behind the broadcast this long is disconnected, ms. @default 10000 */
  broadcastMaxLagMs: number;
  /**
   * This server's id in room leases (no spaces). Env NODE_ID. @default "<host name>:<port>", so a
   * server restarted on the same host and port takes its rooms back without waiting.
   */
  nodeId?: string;
  /**
   * Where players reach this server, for other servers to redirect them here (ROOM_OWNED_ELSEWHERE).
   * Env PUBLIC_URL. @default "ws://<host>:<port>" (wss:// with TLS)
   */
  publicUrl?: string;
  /** How long a room's lease outlives its owner's last commit, ms. Env LEASE_MS. @default 5000 */
  leaseMs: number;
  /**
   * Take over rooms whose owner's lease lapsed (another server died), checking every leaseMs / 2.
   * Env TAKEOVER ("0" turns it off). @default true
   */
  takeover: boolean;
  /**
   * Spread rooms over the deployment's servers: every this many ms, a server carrying clearly
   * more than the least loaded live server moves a room there (server/room/rebalancer.ts).
   * Needs the same ADMIN_TOKEN on every server (the target opens the room through its admin API).
   * Env REBALANCE_INTERVAL_MS. @default 0 (off)
   */
  rebalanceIntervalMs: number;
  /**
   * What the rebalancer weighs a server's load by: "players" (each room counts its connected
   * players plus one, since an empty room still ticks), "rooms" (each room counts one) or
   * "cpu" (each room counts the CPU it used lately: room/load-meter.ts).
   * Env REBALANCE_BY. @default "players"
   */
  rebalanceBy: 'players' | 'rooms' | 'cpu';
  /**
   * Watch the scripts and patches folders and swap running rooms to the new build of their
   * version when a file changes (server/sandbox/dev-reload.ts): a designer's own machine only.
   * Env DEV_RELOAD ("1" turns it on, "0" off; `npm run dev`). @default false
   */
  devReload: boolean;
  /**
   * On a clean stop (SIGTERM, SIGINT), hand each running room to another live server before
   * stopping (server/room/drain.ts), so its players follow at once; no move starts after half of
   * shutdownTimeoutMs, and the rooms not moved stop as before. Needs ADMIN_TOKEN (the same on
   * every server). Env DRAIN_ON_SHUTDOWN ("0" turns it off). @default true
   */
  drainOnShutdown: boolean;
  /**
   * A room whose script aborted a server process this many times within 10 minutes is not
   * opened again until ops release it (POST /admin/rooms/<id>/release). Env QUARANTINE_AFTER_CRASHES.
   * @default 2
   */
  quarantineAfterCrashes: number;
  /**
   * Rooms this server runs at once (each is an isolate and a 20 Hz tick). A join that would
   * open one more is refused with ROOM_LIMIT; so is a takeover. Any player can name a new room,
   * so without a bound a client joining room after room could exhaust the server's memory.
   * Env MAX_ROOMS. @default 500
   */
  maxRooms: number;
  /**
   * A room with no seats (nobody seated, nobody within the resume window, no join pending) for
   * this long is unloaded: checkpointed, stopped and handed back, its state kept in Redis; the
   * next join opens it again at its last tick. 0 keeps idle rooms running. Env
   * ROOM_IDLE_UNLOAD_MS. @default 60000
   */
  roomIdleUnloadMs: number;
  /**
   * How often the rooms' script journal (what scripts log and throw, for `moonpatch logs`) is
   * appended to Redis, ms: all rooms in one round trip. Shorter shows lines sooner; a room
   * whose script aborts the process sends its unflushed lines with the crash, other rooms lose
   * at most this much. Env JOURNAL_FLUSH_MS. @default 250
   */
  journalFlushMs: number;
  /**
   * A build a running server does (an uploaded or announced patch, a dev reload; on its bundler
   * thread) that runs longer than this fails with BUILD_FAILED, ms. Env BUILD_TIMEOUT_MS.
   * @default 120000
   */
  buildTimeoutMs: number;
  /**
   * The bundler thread's heap limit, MB: a build that needs more fails with BUILD_FAILED
   * instead of taking the process's memory. Env BUILD_MEMORY_MB. @default 1024
   */
  buildMemoryMb: number;
  /**
   * Where in its period each room ticks. 'spread': each room opened on this server is given a
   * point of the period away from the other rooms' (the middle of the widest gap), so their
   * ticks take turns on the main thread instead of falling due together; 'free': a room's
   * ticks fall wherever its clock started (its open time). Env TICK_PHASES. @default 'spread'
   */
  tickPhases: 'spread' | 'free';
  /**
   * Who may create a room. 'open': a join naming a room that does not exist creates it (any
   * player can, so every room id anyone ever joined stays in Redis unless roomExpireMs is set).
   * 'admin': only the admin API creates rooms (POST /admin/rooms, `moonpatch rooms create`); a
   * join to a room that does not exist is refused with ROOM_NOT_FOUND and writes nothing.
   * Env ROOM_CREATION. @default 'open'
   */
  roomCreation: 'open' | 'admin';
  /**
   * An unloaded room's keys expire from Redis this long after its unload, unless it is opened
   * again before: its world, seats and history are gone, and a join creates a new room under
   * the same id. 0 keeps unloaded rooms forever (persistent worlds). Env ROOM_EXPIRE_MS.
   * @default 0
   */
  roomExpireMs: number;
  /**
   * Young generation (semi-space) of every game isolate, MB, capped at an eighth of the game's
   * memoryLimitMb; 0 leaves what isolated-vm derives from memoryLimitMb (about 1.4 MB at 64 MB,
   * which makes big ticks collect garbage several times). See setIsolateSemiSpace in
   * server/sandbox/sandbox.ts for the measurements.
   * Env ISOLATE_SEMI_SPACE_MB. @default DEFAULT_ISOLATE_SEMI_SPACE_MB (8)
   */
  isolateSemiSpaceMb: number;
  /**
   * A room whose ticks take under this many ms of isolate CPU on average runs them on the main
   * thread instead of handing each to the isolate's thread (server/sandbox/call-placement.ts),
   * each on a leash of 5x this (at least 10 ms), under the main-thread watchdog
   * (server/sandbox/main-thread-watchdog.ts); 0 always hands them over. Env INLINE_TICK_MAX_MS.
   * @default 2
   */
  inlineTickMaxMs: number;
  /**
   * A graceful stop (SIGTERM, SIGINT) that has not finished after this long exits anyway, with
   * code 1: a stop waits on Redis for its last commits and checkpoints, and with Redis gone it
   * would wait forever. Every committed tick is in Redis already; what a forced exit can skip is
   * the last checkpoint (replayed from the log at the next start) and the unlisting of idle
   * rooms. A second signal exits at once. Env SHUTDOWN_TIMEOUT_MS. @default 15000
   */
  shutdownTimeoutMs: number;
}

/** Per-game settings from scripts/<game>/game.json. */
export interface GameManifest {
  name: string;
  /** Entry module, relative to the game folder. @default "main.ts" */
  entry: string;
  /** State schema version the scripts write (live patching migrates between these). @default 1 */
  schema: number;
  /** Ticks per second, 1-60. @default 20 */
  tickHz: number;
  /** Broadcasts per second, 1-tickHz. @default tickHz */
  broadcastHz: number;
  /** CPU budget of one tick, ms. @default 20 */
  cpuBudgetMs: number;
  /**
   * Extra CPU time the swap tick of a live patch may take for the migration, on top of
   * cpuBudgetMs, ms. @default 250
   */
  migrationBudgetMs: number;
  /** Ticks a new version is watched after a live patch. @default 200 (10 s at 20 Hz) */
  verifyWindowTicks: number;
  /** Failed ticks within that window that roll the patch back automatically. @default 3 */
  verifyMaxFailures: number;
  /**
   * Percentage points by which the share of events (joins, inputs, leaves) the new version's
   * hooks refuse (throw for) may exceed the old version's share, within the window, before the
   * patch is rolled back automatically: a patch whose input hook throws for everyone fails no
   * tick. 100 turns the check off. @default 25
   */
  verifyRefusalMarginPercent: number;
  /** Isolate heap limit, MB (isolated-vm needs at least 8). @default 64 */
  memoryLimitMb: number;
  /** Seats per room. @default 500 */
  maxPlayers: number;
  /** Inputs one player may have queued for the next tick. @default 16 */
  inputQueueLimit: number;
  /**
   * Interest management: players receive the positioned records near them only (docs/scripting.md,
   * "Interest management"). null: every player receives every record. @default null
   */
  interest: InterestSettings | null;
}

/** Which records are positioned, and how far a player sees (game.json `interest`). */
export interface InterestSettings {
  /** Object tables whose entries are positioned by their numeric `x` and `y` fields. */
  tables: string[];
  /** The table (one of `tables`) holding each player's own entry, keyed by player id: the view's centre. @default tables[0] */
  viewer: string;
  /** Side of a grid cell, in the world's units. */
  cellSize: number;
  /** Cells a player sees around their own, in each direction (1: a 3x3 block). @default 1 */
  radius: number;
  /** The top-level field of an entry that holds its `x` and `y` (`{ pos: { x, y } }`); null: x and y are top-level fields. @default null */
  position: string | null;
}

/** Young generation of a game isolate, MB (see ServerConfig.isolateSemiSpaceMb). */
export const DEFAULT_ISOLATE_SEMI_SPACE_MB = 8;

/** Limits of a running server's builds (see ServerConfig.buildTimeoutMs, buildMemoryMb). */
export const DEFAULT_BUILD_TIMEOUT_MS = 120_000;
export const DEFAULT_BUILD_MEMORY_MB = 1024;

export const DEFAULTS: ServerConfig = {
  port: 8080,
  host: '0.0.0.0',
  redisPrefix: 'mp',
  dataDir: '.data',
  scriptsDir: 'scripts',
  patchesDir: 'patches',
  defaultGame: 'arena',
  logLevel: 'info',
  trustedPatchKeys: [],
  resumeWindowMs: 30_000,
  maxFrameBytes: 16 * 1024,
  inputRatePerSecond: 60,
  inputBurst: 30,
  abuseLimit: 100,
  idleTimeoutMs: 60_000,
  maxConnectionsPerAddress: 256,
  broadcastSoftLimitBytes: 256 * 1024,
  broadcastHardLimitBytes: 4 * 1024 * 1024,
  broadcastMaxLagMs: 10_000,
  leaseMs: 5000,
  takeover: true,
  rebalanceIntervalMs: 0,
  rebalanceBy: 'players',
  devReload: false,
  drainOnShutdown: true,
  quarantineAfterCrashes: 2,
  maxRooms: 500,
  roomIdleUnloadMs: 60_000,
  journalFlushMs: 250,
  buildTimeoutMs: DEFAULT_BUILD_TIMEOUT_MS,
  buildMemoryMb: DEFAULT_BUILD_MEMORY_MB,
  tickPhases: 'spread',
  roomCreation: 'open',
  roomExpireMs: 0,
  isolateSemiSpaceMb: DEFAULT_ISOLATE_SEMI_SPACE_MB,
  inlineTickMaxMs: 2,
  shutdownTimeoutMs: 15_000,
};

function int(option: string, raw: unknown, min: number, max: number): number {
  const n = typeof raw === 'string' ? Number(raw) : raw;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(option, `must be an integer from ${min} to ${max} (got ${JSON.stringify(raw)})`);
  }
  return n;
}

/** Merge overrides onto the defaults and check every value. */
export function makeConfig(overrides: Partial<ServerConfig> = {}): ServerConfig {
  const c: ServerConfig = { ...DEFAULTS, ...overrides };
  int('port', c.port, 0, 65535);
  int('resumeWindowMs', c.resumeWindowMs, 0, 86_400_000);
  int('maxFrameBytes', c.maxFrameBytes, 256, 16 * 1024 * 1024);
  int('inputRatePerSecond', c.inputRatePerSecond, 1, 10_000);
  int('inputBurst', c.inputBurst, 1, 10_000);
  int('abuseLimit', c.abuseLimit, 1, 1_000_000);
  int('idleTimeoutMs', c.idleTimeoutMs, 1000, 86_400_000);
  int('maxConnectionsPerAddress', c.maxConnectionsPerAddress, 1, 1_000_000);
  int('leaseMs', c.leaseMs, 500, 600_000);
  int('quarantineAfterCrashes', c.quarantineAfterCrashes, 1, 1000);
  int('maxRooms', c.maxRooms, 1, 1_000_000);
  int('roomIdleUnloadMs', c.roomIdleUnloadMs, 0, 86_400_000);
  int('journalFlushMs', c.journalFlushMs, 10, 60_000);
  int('buildTimeoutMs', c.buildTimeoutMs, 100, 3_600_000);
  int('buildMemoryMb', c.buildMemoryMb, 128, 65_536);
  // Redis keeps a TTL in ms as a 64-bit integer; a year is plenty for "forget abandoned rooms".
  int('roomExpireMs', c.roomExpireMs, 0, 366 * 86_400_000);
  int('rebalanceIntervalMs', c.rebalanceIntervalMs, 0, 86_400_000);
  int('isolateSemiSpaceMb', c.isolateSemiSpaceMb, 0, 256);
  if (typeof c.inlineTickMaxMs !== 'number' || !Number.isFinite(c.inlineTickMaxMs) || c.inlineTickMaxMs < 0 || c.inlineTickMaxMs > 1000) throw new ConfigError('inlineTickMaxMs', `must be a number of ms from 0 to 1000 (got ${JSON.stringify(c.inlineTickMaxMs)})`);
  int('shutdownTimeoutMs', c.shutdownTimeoutMs, 100, 3_600_000);
  if (!['players', 'rooms', 'cpu'].includes(c.rebalanceBy)) throw new ConfigError('rebalanceBy', `must be "players", "rooms" or "cpu" (got ${JSON.stringify(c.rebalanceBy)})`);
  if (c.tickPhases !== 'spread' && c.tickPhases !== 'free') throw new ConfigError('tickPhases', `must be "spread" or "free" (got ${JSON.stringify(c.tickPhases)})`);
  if (c.roomCreation !== 'open' && c.roomCreation !== 'admin') throw new ConfigError('roomCreation', `must be "open" or "admin" (got ${JSON.stringify(c.roomCreation)})`);
  if (c.nodeId !== undefined && !/^[^\s]{1,200}$/.test(c.nodeId)) throw new ConfigError('nodeId', 'must be 1-200 characters without spaces');
  if (c.publicUrl !== undefined && !/^wss?:\/\/[^\s]+$/.test(c.publicUrl)) throw new ConfigError('publicUrl', 'must be a ws:// or wss:// URL');
  if (c.broadcastHardLimitBytes <= c.broadcastSoftLimitBytes) {
    throw new ConfigError('broadcastHardLimitBytes', 'must be larger than broadcastSoftLimitBytes');
  }
  if (c.playerTokenSecret !== undefined && c.playerTokenSecret.length < 16) throw new ConfigError('playerTokenSecret', 'must be at least 16 characters');
  if (c.adminToken !== undefined && c.adminToken.length < 16) throw new ConfigError('adminToken', 'must be at least 16 characters');
  if ((c.tlsCertFile === undefined) !== (c.tlsKeyFile === undefined)) {
    throw new ConfigError(c.tlsCertFile === undefined ? 'tlsCertFile' : 'tlsKeyFile', 'must be set too: TLS needs both TLS_CERT_FILE and TLS_KEY_FILE');
  }
  if (!/^[A-Za-z0-9_.:-]{1,32}$/.test(c.redisPrefix)) throw new ConfigError('redisPrefix', 'must be 1-32 of A-Z a-z 0-9 _ . : -');
  return c;
}

/** Options whose environment variable is not their name in SCREAMING_SNAKE_CASE. */
const ENV_NAME_EXCEPTIONS: Partial<Record<keyof ServerConfig, string>> = { inputRatePerSecond: 'INPUT_RATE' };

/** Values never repeated in an error message. */
const SECRET_ENV = new Set(['ADMIN_TOKEN', 'PLAYER_TOKEN_SECRET']);

/** The environment variable an option is read from (`adminToken` -> `ADMIN_TOKEN`). */
export function envNameOf(option: string): string {
  return ENV_NAME_EXCEPTIONS[option as keyof ServerConfig] ?? option.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

/**
 * The server configuration from environment variables (see ServerConfig for names). A bad
 * value throws a ConfigError naming the variable, as the operator wrote it, and the value it
 * had (`ROOM_EXPIRE_MS must be an integer from 0 to ... (got "soon")`), secrets excepted.
 */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): ServerConfig {
  try {
    return makeConfig(optionsFromEnv(env));
  } catch (e) {
    // Only options set from variables can be wrong here: the defaults pass makeConfig's checks
    // (config.test maps every variable line to its option's name).
    if (!(e instanceof ConfigError)) throw e;
    const name = envNameOf(e.option);
    const raw = env[name];
    const problem =
      raw === undefined || SECRET_ENV.has(name) ? e.problem : `${e.problem.replace(/ \(got .*\)$/, '')} (got ${JSON.stringify(raw)})`;
    throw new ConfigError(name, problem);
  }
}

function optionsFromEnv(env: NodeJS.ProcessEnv): Partial<ServerConfig> {
  const o: Partial<ServerConfig> = {};
  const num = (k: string) => (env[k] !== undefined ? Number(env[k]) : undefined);
  if (env.PORT) o.port = num('PORT')!;
  if (env.HOST) o.host = env.HOST;
  if (env.TLS_CERT_FILE) o.tlsCertFile = env.TLS_CERT_FILE;
  if (env.TLS_KEY_FILE) o.tlsKeyFile = env.TLS_KEY_FILE;
  if (env.REDIS_URL) o.redisUrl = env.REDIS_URL;
  if (env.REDIS_PREFIX) o.redisPrefix = env.REDIS_PREFIX;
  if (env.DATA_DIR) o.dataDir = env.DATA_DIR;
  if (env.SCRIPTS_DIR) o.scriptsDir = env.SCRIPTS_DIR;
  if (env.PATCHES_DIR) o.patchesDir = env.PATCHES_DIR;
  if (env.DEFAULT_GAME) o.defaultGame = env.DEFAULT_GAME;
  if (env.LOG_LEVEL) o.logLevel = env.LOG_LEVEL;
  if (env.ADMIN_TOKEN) o.adminToken = env.ADMIN_TOKEN;
  if (env.PLAYER_TOKEN_SECRET) o.playerTokenSecret = env.PLAYER_TOKEN_SECRET;
  if (env.TRUSTED_PATCH_KEYS) o.trustedPatchKeys = env.TRUSTED_PATCH_KEYS.split(',').map((k) => k.trim()).filter(Boolean);
  if (env.RESUME_WINDOW_MS) o.resumeWindowMs = num('RESUME_WINDOW_MS')!;
  if (env.MAX_FRAME_BYTES) o.maxFrameBytes = num('MAX_FRAME_BYTES')!;
  if (env.INPUT_RATE) o.inputRatePerSecond = num('INPUT_RATE')!;
  if (env.INPUT_BURST) o.inputBurst = num('INPUT_BURST')!;
  if (env.ABUSE_LIMIT) o.abuseLimit = num('ABUSE_LIMIT')!;
  if (env.IDLE_TIMEOUT_MS) o.idleTimeoutMs = num('IDLE_TIMEOUT_MS')!;
  if (env.MAX_CONNECTIONS_PER_ADDRESS) o.maxConnectionsPerAddress = num('MAX_CONNECTIONS_PER_ADDRESS')!;
  if (env.NODE_ID) o.nodeId = env.NODE_ID;
  if (env.PUBLIC_URL) o.publicUrl = env.PUBLIC_URL;
  if (env.LEASE_MS) o.leaseMs = num('LEASE_MS')!;
  if (env.QUARANTINE_AFTER_CRASHES) o.quarantineAfterCrashes = num('QUARANTINE_AFTER_CRASHES')!;
  if (env.MAX_ROOMS) o.maxRooms = num('MAX_ROOMS')!;
  if (env.ROOM_IDLE_UNLOAD_MS) o.roomIdleUnloadMs = num('ROOM_IDLE_UNLOAD_MS')!;
  if (env.JOURNAL_FLUSH_MS) o.journalFlushMs = num('JOURNAL_FLUSH_MS')!;
  if (env.BUILD_TIMEOUT_MS) o.buildTimeoutMs = num('BUILD_TIMEOUT_MS')!;
  if (env.BUILD_MEMORY_MB) o.buildMemoryMb = num('BUILD_MEMORY_MB')!;
  if (env.TICK_PHASES) o.tickPhases = env.TICK_PHASES as ServerConfig['tickPhases'];
  if (env.ROOM_CREATION) o.roomCreation = env.ROOM_CREATION as ServerConfig['roomCreation'];
  if (env.ROOM_EXPIRE_MS) o.roomExpireMs = num('ROOM_EXPIRE_MS')!;
  if (env.ISOLATE_SEMI_SPACE_MB) o.isolateSemiSpaceMb = num('ISOLATE_SEMI_SPACE_MB')!;
  if (env.INLINE_TICK_MAX_MS) o.inlineTickMaxMs = num('INLINE_TICK_MAX_MS')!;
  if (env.SHUTDOWN_TIMEOUT_MS) o.shutdownTimeoutMs = num('SHUTDOWN_TIMEOUT_MS')!;
  if (env.TAKEOVER) o.takeover = env.TAKEOVER !== '0' && env.TAKEOVER !== 'false';
  if (env.REBALANCE_INTERVAL_MS) o.rebalanceIntervalMs = num('REBALANCE_INTERVAL_MS')!;
  if (env.REBALANCE_BY) o.rebalanceBy = env.REBALANCE_BY as ServerConfig['rebalanceBy'];
  if (env.DEV_RELOAD) o.devReload = env.DEV_RELOAD !== '0' && env.DEV_RELOAD !== 'false';
  if (env.DRAIN_ON_SHUTDOWN) o.drainOnShutdown = env.DRAIN_ON_SHUTDOWN !== '0' && env.DRAIN_ON_SHUTDOWN !== 'false';
  return o;
}

/** Check a game.json and fill in defaults. `dir` is only used in messages. */
export function parseGameManifest(name: string, raw: unknown, dir = name): GameManifest {
  if (typeof raw !== 'object' || raw === null) throw new ConfigError(`${dir}/game.json`, 'must be a JSON object');
  const r = raw as Record<string, unknown>;
  const at = (f: string) => `${dir}/game.json: ${f}`;
  const tickHz = int(at('tickHz'), r.tickHz ?? 20, 1, 60);
  const m: GameManifest = {
    name,
    entry: typeof r.entry === 'string' ? path.posix.normalize(r.entry) : 'main.ts',
    schema: int(at('schema'), r.schema ?? 1, 1, 1_000_000),
    tickHz,
    broadcastHz: int(at('broadcastHz'), r.broadcastHz ?? tickHz, 1, tickHz),
    cpuBudgetMs: int(at('cpuBudgetMs'), r.cpuBudgetMs ?? 20, 1, 1000),
    migrationBudgetMs: int(at('migrationBudgetMs'), r.migrationBudgetMs ?? 250, 0, 60_000),
    verifyWindowTicks: int(at('verifyWindowTicks'), r.verifyWindowTicks ?? 200, 0, 1_000_000),
    verifyMaxFailures: int(at('verifyMaxFailures'), r.verifyMaxFailures ?? 3, 1, 1_000_000),
    verifyRefusalMarginPercent: int(at('verifyRefusalMarginPercent'), r.verifyRefusalMarginPercent ?? 25, 0, 100),
    memoryLimitMb: int(at('memoryLimitMb'), r.memoryLimitMb ?? 64, 8, 4096),
    maxPlayers: int(at('maxPlayers'), r.maxPlayers ?? 500, 1, 100_000),
    inputQueueLimit: int(at('inputQueueLimit'), r.inputQueueLimit ?? 16, 1, 1000),
    interest: parseInterest(r.interest, at),
  };
  return m;
}

const TABLE_NAME = /^[A-Za-z_$][\w$]{0,63}$/;

function parseInterest(raw: unknown, at: (f: string) => string): InterestSettings | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(at('interest'), 'must be an object: { "tables": [...], "cellSize": n, "radius": n, "viewer": "table" }');
  const r = raw as Record<string, unknown>;
  for (const k of Object.keys(r)) if (!['tables', 'viewer', 'cellSize', 'radius', 'position'].includes(k)) throw new ConfigError(at(`interest.${k}`), 'is not an interest setting (tables, viewer, cellSize, radius, position)');
  const tables = r.tables;
  if (!Array.isArray(tables) || tables.length === 0 || !tables.every((t) => typeof t === 'string' && TABLE_NAME.test(t))) {
    throw new ConfigError(at('interest.tables'), `must be a non-empty list of table names (got ${JSON.stringify(tables)})`);
  }
  const viewer = r.viewer ?? tables[0];
  if (typeof viewer !== 'string' || !tables.includes(viewer)) throw new ConfigError(at('interest.viewer'), `must be one of interest.tables (got ${JSON.stringify(r.viewer)})`);
  return {
    tables: [...new Set(tables as string[])],
    viewer,
    cellSize: int(at('interest.cellSize'), r.cellSize, 1, 1_000_000_000),
    radius: int(at('interest.radius'), r.radius ?? 1, 0, 16),
    position: parsePositionField(r.position, at),
  };
}

function parsePositionField(raw: unknown, at: (f: string) => string): string | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'string' || !TABLE_NAME.test(raw)) throw new ConfigError(at('interest.position'), `must be a field name such as "pos" (got ${JSON.stringify(raw)})`);
  return raw;
}
