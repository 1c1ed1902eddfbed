/**
 * A designer's own server (server/main.ts with neither ADMIN_TOKEN nor TRUSTED_PATCH_KEYS)
 * trusts the local signing key it keeps in DATA_DIR, so `moonpatch push <folder>` works on that
 * machine with no keygen and no configuration. A server with ADMIN_TOKEN (a deployment) does
 * not; a key file that is not a key stops the local server from starting, with its code.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { findFreePort } from '../../server/state/redis-launcher.ts';
import { LOCAL_SIGNING_KEY_FILE } from '../../server/patch/local-signing-key.ts';
import { startChildServer, type ChildServer } from '../helpers/child-server.ts';
import { runCliWithEnv } from '../helpers/cli.ts';
import { testRedisUrl, uniquePrefix } from '../helpers/redis.ts';
import { FIXTURE_GAMES, FIXTURE_PATCHES, testClient, waitFor } from '../helpers/server.ts';

const root = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-localkey-it-'));
const noPatches = path.join(root, 'no-patches');
mkdirSync(noPatches);
let child: ChildServer | undefined;
afterEach(async () => {
  await child?.stop();
  child = undefined;
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function serverEnv(dataDir: string, extra: Record<string, string> = {}): Promise<Record<string, string>> {
  mkdirSync(dataDir, { recursive: true });
  return {
    REDIS_URL: testRedisUrl(),
    REDIS_PREFIX: uniquePrefix('localkey'),
    PORT: String(await findFreePort()),
    HOST: '127.0.0.1',
    SCRIPTS_DIR: FIXTURE_GAMES,
    PATCHES_DIR: noPatches,
    DEFAULT_GAME: 'probe',
    DATA_DIR: dataDir,
    LOG_LEVEL: 'info',
    ...extra,
  };
}

describe('the local signing key', () => {
  it('a server with no ADMIN_TOKEN or TRUSTED_PATCH_KEYS makes it and trusts it: push <folder> works with nothing configured', async () => {
    const dataDir = path.join(root, 'local');
    const env = await serverEnv(dataDir);
    child = await startChildServer(env);
    const keyFile = path.join(dataDir, LOCAL_SIGNING_KEY_FILE);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(child.output()).toMatch(/trusting the local patch-signing key/);

    const roomId = 'localkey-' + Date.now();
    const c = testClient(child.url, { room: roomId, game: 'probe', name: 'p' });
    await c.connect();
    const seq = c.send({ op: 'add', n: 4 });
    await waitFor(() => c.lastAckedSeq >= seq, 'the input committed');

    // As on the designer's machine: the port and the data folder, nothing else.
    const cli = { PORT: env.PORT!, DATA_DIR: dataDir };
    const pushed = await runCliWithEnv(cli, 'push', path.join(FIXTURE_PATCHES, 'probe', '002-score'), '--room', roomId);
    expect(pushed.err).toBe('');
    expect(pushed.code).toBe(0);
    expect(pushed.out).toMatch(/all 1 rooms on v2/);
    const status = JSON.parse((await runCliWithEnv(cli, 'status', '--json')).out) as { room: string; versionNumber: number }[];
    expect(status.find((r) => r.room === roomId)?.versionNumber).toBe(2);
    expect(c.disconnects).toBe(0);
    c.close();

    // The next start reads the same key (it is not replaced): what was signed stays trusted.
    const before = readFileSync(keyFile, 'utf8');
    await child.stop();
    child = await startChildServer(await serverEnv(dataDir));
    expect(readFileSync(keyFile, 'utf8')).toBe(before);
  });

  it('a server with ADMIN_TOKEN trusts only TRUSTED_PATCH_KEYS: no key is made, and a key file is not even read', async () => {
    const dataDir = path.join(root, 'deployed');
    mkdirSync(dataDir, { recursive: true });
    const junk = path.join(dataDir, LOCAL_SIGNING_KEY_FILE);
    writeFileSync(junk, 'junk');
    child = await startChildServer(await serverEnv(dataDir, { ADMIN_TOKEN: 'deployed-admin-token-0123456789' }));
    expect(readFileSync(junk, 'utf8')).toBe('junk');
    expect(child.output()).not.toMatch(/trusting the local patch-signing key/);

    const other = path.join(root, 'deployed-2');
    await child.stop();
    child = await startChildServer(await serverEnv(other, { ADMIN_TOKEN: 'deployed-admin-token-0123456789' }));
    expect(existsSync(path.join(other, LOCAL_SIGNING_KEY_FILE))).toBe(false);
  });

  it('a local server whose key file is not a key does not start: SIGNING_KEY_INVALID, and the file is kept', async () => {
    const dataDir = path.join(root, 'broken');
    mkdirSync(dataDir, { recursive: true });
    const file = path.join(dataDir, LOCAL_SIGNING_KEY_FILE);
    writeFileSync(file, '-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n');
    const started = await startChildServer(await serverEnv(dataDir)).then(
      (c) => {
        child = c;
        return '';
      },
      (e: Error) => e.message,
    );
    expect(started).toMatch(/server exited \(1\) before listening/);
    expect(started).toMatch(/SIGNING_KEY_INVALID/);
    expect(started).toContain(file);
    expect(started).not.toContain('not base64 at all');
    expect(readFileSync(file, 'utf8')).toContain('not base64 at all');
  });
});
