/**
 * Composition root: read config, find or start Redis, start the server, and stop cleanly on
 * SIGINT/SIGTERM (rooms stop, players are told to reconnect, a private Redis is shut down).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startServer } from './app.ts';
import { configFromEnv, type ServerConfig } from './config/config.ts';
import { ConfigError, MoonpatchError } from './errors/errors.ts';
import { createLogger } from './ops/logger.ts';
import { localSigningKey } from './patch/local-signing-key.ts';
import { RedisNotInstalledError, resolveRedis } from './state/redis-launcher.ts';

const config = configOrExit();
const log = createLogger(config.logLevel);

/** A bad setting stops the start with one line naming the variable, not a stack (exit code 2). */
function configOrExit(): ServerConfig {
  try {
    return configFromEnv();
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(`moonpatch: bad configuration: ${e.option} ${e.problem}`);
    process.exit(2);
  }
}

async function main(): Promise<void> {
  let redis;
  try {
    redis = await resolveRedis({ redisUrl: config.redisUrl, dataDir: path.resolve(config.dataDir), log: (msg) => log.info(msg) });
  } catch (e) {
    if (e instanceof RedisNotInstalledError) {
      log.fatal(e.message);
      process.exit(2);
    }
    throw e;
  }
  const dataDir = path.resolve(config.dataDir);
  const trustedPatchKeys = await patchKeysToTrust(dataDir);
  const adminToken = config.adminToken ?? (await localAdminToken(dataDir));
  if (!config.playerTokenSecret) log.warn('dev mode: no PLAYER_TOKEN_SECRET, anonymous players may join');
  const server = await startServer({ ...config, adminToken, trustedPatchKeys, redisUrl: redis.url }, log);
  const scheme = config.tlsCertFile ? 'https' : 'http';
  console.log(`moonpatch: play at ${scheme}://localhost:${server.port}/  (WebSocket ${server.url})`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal during shutdown: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    // Past the deadline, exit anyway (see shutdownTimeoutMs): committed ticks are in Redis.
    const deadline = setTimeout(() => {
      log.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown did not finish in time (Redis unreachable?): exiting; committed ticks are in Redis, the last checkpoint is replayed from the log at the next start');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    deadline.unref();
    await server.close();
    await redis.owned?.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

/**
 * Without ADMIN_TOKEN, the admin API uses a random token kept in <dataDir>/admin-token (only
 * this user can read it), which the local `moonpatch` command line picks up.
 */
async function localAdminToken(dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'admin-token');
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    await mkdir(dataDir, { recursive: true });
    const token = randomBytes(24).toString('base64url');
    await writeFile(file, token + '\n', { mode: 0o600 });
    log.info({ file }, 'admin token created');
    return token;
  }
}

/**
 * TRUSTED_PATCH_KEYS; or, on a designer's own machine (neither it nor ADMIN_TOKEN set), the
 * local signing key that `moonpatch push <folder>` signs with, made when missing. See
 * server/patch/local-signing-key.ts for why only there.
 */
async function patchKeysToTrust(dataDir: string): Promise<string[]> {
  if (config.trustedPatchKeys.length > 0 || config.adminToken) return config.trustedPatchKeys;
  const key = await localSigningKey(dataDir);
  log.info(
    { file: key.file, publicKey: key.publicKey, created: key.created },
    'no TRUSTED_PATCH_KEYS or ADMIN_TOKEN: trusting the local patch-signing key, which `moonpatch push <folder>` on this machine signs with',
  );
  return [key.publicKey];
}

main().catch((e) => {
  // A MoonpatchError (such as TLS_FILE_INVALID) says what is wrong: lead with its code and text.
  if (e instanceof MoonpatchError) log.fatal({ code: e.code, err: e }, `server failed to start: ${e.code}: ${e.message}`);
  else log.fatal({ err: e }, 'server failed to start');
  process.exit(1);
});
