/**
 * Server settings from the environment: the room lifecycle and isolate settings parse, and bad values stop
 * the start with a ConfigError naming the setting (instead of a server that half works).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromEnv, envNameOf, makeConfig } from '../../server/config/config.ts';
import { ConfigError } from '../../server/errors/errors.ts';

describe('room lifecycle and isolate settings', () => {
  it('defaults: joins create rooms, unloaded rooms are kept for good', () => {
    const c = configFromEnv({});
    expect(c.roomCreation).toBe('open');
    expect(c.roomExpireMs).toBe(0);
  });

  it('isolates get an 8 MB young generation unless ISOLATE_SEMI_SPACE_MB says otherwise (0: isolated-vm default)', () => {
    expect(configFromEnv({}).isolateSemiSpaceMb).toBe(8);
    expect(configFromEnv({ ISOLATE_SEMI_SPACE_MB: '0' }).isolateSemiSpaceMb).toBe(0);
    expect(configFromEnv({ ISOLATE_SEMI_SPACE_MB: '32' }).isolateSemiSpaceMb).toBe(32);
  });

  it('a stop exits anyway after 15 s unless SHUTDOWN_TIMEOUT_MS says otherwise', () => {
    expect(configFromEnv({}).shutdownTimeoutMs).toBe(15_000);
    expect(configFromEnv({ SHUTDOWN_TIMEOUT_MS: '60000' }).shutdownTimeoutMs).toBe(60_000);
  });

  it('the script journal is flushed every 250 ms unless JOURNAL_FLUSH_MS says otherwise (10-60000)', () => {
    expect(configFromEnv({}).journalFlushMs).toBe(250);
    expect(configFromEnv({ JOURNAL_FLUSH_MS: '1000' }).journalFlushMs).toBe(1000);
    for (const bad of ['0', '5', '60001', 'often']) expect(() => configFromEnv({ JOURNAL_FLUSH_MS: bad })).toThrow(ConfigError);
  });

  it('build limits: defaults, values from the environment, and out-of-range or non-numeric ones refused', () => {
    expect(configFromEnv({})).toMatchObject({ buildTimeoutMs: 120_000, buildMemoryMb: 1024 });
    expect(configFromEnv({ BUILD_TIMEOUT_MS: '5000', BUILD_MEMORY_MB: '256' })).toMatchObject({ buildTimeoutMs: 5000, buildMemoryMb: 256 });
    for (const bad of ['0', '99', '3600001', 'soon']) expect(() => configFromEnv({ BUILD_TIMEOUT_MS: bad })).toThrow(ConfigError);
    for (const bad of ['64', '127', '65537', 'lots']) expect(() => configFromEnv({ BUILD_MEMORY_MB: bad })).toThrow(ConfigError);
  });

  it('rooms\' tick phases are spread unless TICK_PHASES=free; anything else is refused', () => {
    expect(configFromEnv({}).tickPhases).toBe('spread');
    expect(configFromEnv({ TICK_PHASES: 'free' }).tickPhases).toBe('free');
    for (const bad of ['Spread', 'random', '1']) expect(() => configFromEnv({ TICK_PHASES: bad })).toThrow(ConfigError);
  });

  it('the README documents every environment variable the server reads', () => {
    const root = path.join(import.meta.dirname, '..', '..');
    const source = readFileSync(path.join(root, 'server', 'config', 'config.ts'), 'utf8');
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const names = [...new Set([...source.matchAll(/\benv\.([A-Z][A-Z0-9_]*)/g)].map((m) => m[1]!))];
    expect(names.length).toBeGreaterThan(30);
    expect(names.filter((n) => !readme.includes(`\`${n}\``))).toEqual([]);
  });

  it('reads ROOM_CREATION and ROOM_EXPIRE_MS', () => {
    const c = configFromEnv({ ROOM_CREATION: 'admin', ROOM_EXPIRE_MS: '86400000' });
    expect(c.roomCreation).toBe('admin');
    expect(c.roomExpireMs).toBe(86_400_000);
  });

  it.each([
    [{ ROOM_CREATION: 'closed' }, 'ROOM_CREATION'],
    [{ ROOM_CREATION: 'ADMIN' }, 'ROOM_CREATION'],
    [{ ROOM_EXPIRE_MS: '-1' }, 'ROOM_EXPIRE_MS'],
    [{ ROOM_EXPIRE_MS: '1.5' }, 'ROOM_EXPIRE_MS'],
    [{ ROOM_EXPIRE_MS: 'soon' }, 'ROOM_EXPIRE_MS'],
    [{ ROOM_EXPIRE_MS: String(400 * 86_400_000) }, 'ROOM_EXPIRE_MS'],
    [{ ISOLATE_SEMI_SPACE_MB: '-8' }, 'ISOLATE_SEMI_SPACE_MB'],
    [{ ISOLATE_SEMI_SPACE_MB: '1024' }, 'ISOLATE_SEMI_SPACE_MB'],
    [{ ISOLATE_SEMI_SPACE_MB: 'big' }, 'ISOLATE_SEMI_SPACE_MB'],
    [{ SHUTDOWN_TIMEOUT_MS: '0' }, 'SHUTDOWN_TIMEOUT_MS'],
    [{ SHUTDOWN_TIMEOUT_MS: 'forever' }, 'SHUTDOWN_TIMEOUT_MS'],
    [{ INPUT_RATE: 'fast' }, 'INPUT_RATE'],
    [{ TLS_KEY_FILE: '/a.key' }, 'TLS_CERT_FILE'],
  ])('refuses %j, naming the variable %s and the value it had', (env, name) => {
    const err = configErrorOf(env);
    expect(err.option).toBe(name);
    expect(err.message).toContain(name);
    const given = (env as Record<string, string>)[name];
    if (given !== undefined) expect(err.message).toContain(`(got ${JSON.stringify(given)})`);
  });

  it('never repeats a secret it refuses', () => {
    for (const [name, value] of [['ADMIN_TOKEN', 'short-admin'], ['PLAYER_TOKEN_SECRET', 'short-player']] as const) {
      const err = configErrorOf({ [name]: value });
      expect(err.option).toBe(name);
      expect(err.message).not.toContain(value);
    }
  });

  it('names each option by the variable it is read from (every `if (env.X) o.option` line of config.ts)', () => {
    const source = readFileSync(path.join(import.meta.dirname, '..', '..', 'server', 'config', 'config.ts'), 'utf8');
    const pairs = [...source.matchAll(/if \(env\.([A-Z][A-Z0-9_]*)\) o\.(\w+) =/g)].map((m) => [m[2]!, m[1]!] as const);
    expect(pairs.length).toBeGreaterThan(30);
    expect(pairs.filter(([option, name]) => envNameOf(option) !== name)).toEqual([]);
  });

  it('the defaults pass, and makeConfig (options set in code) names the option as written', () => {
    expect(() => configFromEnv({})).not.toThrow();
    expect(() => makeConfig({ broadcastHardLimitBytes: 1, broadcastSoftLimitBytes: 2 })).toThrow(/config: broadcastHardLimitBytes/);
  });
});

function configErrorOf(env: Record<string, string>): ConfigError {
  try {
    configFromEnv(env);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error(`configFromEnv(${JSON.stringify(env)}) did not throw`);
}
