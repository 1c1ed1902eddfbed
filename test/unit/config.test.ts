/**
 * Server settings from the environment: the room lifecycle and isolate settings parse, and bad values stop
 * the start with a ConfigError naming the setting (instead of a server that half works).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromEnv } from '../../server/config/config.ts';
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
    [{ ROOM_CREATION: 'closed' }, 'roomCreation'],
    [{ ROOM_CREATION: 'ADMIN' }, 'roomCreation'],
    [{ ROOM_EXPIRE_MS: '-1' }, 'roomExpireMs'],
    [{ ROOM_EXPIRE_MS: '1.5' }, 'roomExpireMs'],
    [{ ROOM_EXPIRE_MS: 'soon' }, 'roomExpireMs'],
    [{ ROOM_EXPIRE_MS: String(400 * 86_400_000) }, 'roomExpireMs'],
    [{ ISOLATE_SEMI_SPACE_MB: '-8' }, 'isolateSemiSpaceMb'],
    [{ ISOLATE_SEMI_SPACE_MB: '1024' }, 'isolateSemiSpaceMb'],
    [{ ISOLATE_SEMI_SPACE_MB: 'big' }, 'isolateSemiSpaceMb'],
    [{ SHUTDOWN_TIMEOUT_MS: '0' }, 'shutdownTimeoutMs'],
    [{ SHUTDOWN_TIMEOUT_MS: 'forever' }, 'shutdownTimeoutMs'],
  ])('refuses %j, naming %s', (env, option) => {
    let err: unknown;
    try {
      configFromEnv(env);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(option);
  });
});
