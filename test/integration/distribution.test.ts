/**
 * Signed patches through Redis: a patch signed with a trusted ed25519 key, uploaded to one
 * server, reaches every server on the same Redis (announced, and loaded at startup); an
 * unsigned, tampered or unknown-key patch is refused with its reason and changes nothing.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { unpack } from 'msgpackr';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_BUILD_MEMORY_MB, DEFAULT_BUILD_TIMEOUT_MS } from '../../server/config/config.ts';
import { generateSigningKey, signPatch, type SignedPatch } from '../../server/patch/package.ts';
import { setBundlerThreadLimits } from '../../server/sandbox/off-thread-bundler.ts';
import { readGameFiles } from '../../server/sandbox/game-files.ts';
import { uniquePrefix } from '../helpers/redis.ts';
import { runCli } from '../helpers/cli.ts';
import { FIXTURE_GAMES, FIXTURE_PATCHES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

const TOKEN = 'dist-admin-token-0123456789';
const trusted = generateSigningKey();
const stranger = generateSigningKey();
const noPatches = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-nopatches-'));
const prefix = uniquePrefix('dist');
type Server = Awaited<ReturnType<typeof startTestServer>>;
let a: Server;
let b: Server;

const start = () => startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: noPatches, defaultGame: 'probe', adminToken: TOKEN, trustedPatchKeys: [trusted.publicKey], redisPrefix: prefix });
const versionsOf = (s: Server) => s.rooms.games().find((g) => g.game === 'probe')!.versions.map((v) => v.number);

async function upload(s: Server, signed: unknown): Promise<{ status: number; body: { code?: string; version?: number } }> {
  const res = await fetch(`http://127.0.0.1:${s.port}/admin/patches`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify(signed) });
  return { status: res.status, body: (await res.json()) as { code?: string; version?: number } };
}

async function scorePatch(privatePem: string): Promise<SignedPatch> {
  const files = Object.fromEntries(await readGameFiles(path.join(FIXTURE_PATCHES, 'probe', '002-score')));
  return signPatch({ game: 'probe', manifest: { version: 2, schema: 2, description: 'rename sum to score' }, files }, privatePem);
}

beforeAll(async () => {
  a = await start();
  b = await start();
});
afterAll(async () => {
  await a?.close();
  await b?.close();
  rmSync(noPatches, { recursive: true, force: true });
});

describe('refused patches change nothing', () => {
  it('unsigned, tampered and unknown-key patches are refused with their reason', async () => {
    const good = await scorePatch(trusted.privatePem);
    const unsigned = await upload(a, { package: good.package });
    expect(unsigned).toMatchObject({ status: 400, body: { code: 'PATCH_BAD_SIGNATURE' } });
    const tampered = await upload(a, { ...good, package: good.package.replace('p.score = p.sum', 'p.score = 1000000') });
    expect(tampered).toMatchObject({ status: 400, body: { code: 'PATCH_BAD_SIGNATURE' } });
    const unknown = await upload(a, await scorePatch(stranger.privatePem));
    expect(unknown).toMatchObject({ status: 403, body: { code: 'PATCH_UNTRUSTED' } });
    expect(versionsOf(a)).toEqual([1]);
    expect(await a.redis.llen(`${prefix}:patches:probe`)).toBe(0);
  });
});

describe('a patch that breaks the build limits', () => {
  it('is refused with BUILD_FAILED saying which limit (BUILD_TIMEOUT_MS), is not stored or announced, and the next patch builds', async () => {
    // A real build that takes seconds: a 1 MB module the probe's main imports (the write
    // rewrite takes ~5 s for it here), against a limit of 0.3 s set through the server's config.
    const slow = await startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: noPatches, defaultGame: 'probe', adminToken: TOKEN, trustedPatchKeys: [trusted.publicKey], redisPrefix: uniquePrefix('dist-slow'), buildTimeoutMs: 300 });
    try {
      const base = Object.fromEntries(await readGameFiles(path.join(FIXTURE_GAMES, 'probe')));
      let filler = 'export function filler(world: any) {\n';
      for (let i = 0; i < 20_000; i++) filler += `  world.a${i % 50} = (world.b${i % 37} + ${i}) * 2;\n`;
      const files = { 'main.ts': `import './filler';\n${base['main.ts']}`, 'filler.ts': filler + '}\n' };
      const huge = signPatch({ game: 'probe', manifest: { version: 2, schema: 1, description: 'huge' }, files }, trusted.privatePem);
      const res = await upload(slow, huge);
      expect(res).toMatchObject({ status: 409, body: { code: 'BUILD_FAILED' } });
      expect((res.body as { msg: string }).msg).toMatch(/the build was stopped: it ran longer than 0\.3 s \(BUILD_TIMEOUT_MS\)/);
      expect(versionsOf(slow)).toEqual([1]);
      expect(await slow.redis.llen(`${slow.prefix}:patches:probe`)).toBe(0);
      setBundlerThreadLimits({ timeoutMs: DEFAULT_BUILD_TIMEOUT_MS, memoryMb: DEFAULT_BUILD_MEMORY_MB });
      expect(await upload(slow, await scorePatch(trusted.privatePem))).toMatchObject({ status: 200, body: { version: 2 } });
    } finally {
      setBundlerThreadLimits({ timeoutMs: DEFAULT_BUILD_TIMEOUT_MS, memoryMb: DEFAULT_BUILD_MEMORY_MB });
      await slow.close();
    }
  });
});

describe('a trusted patch reaches every server', () => {
  it('uploaded to one server, announced to the other, loaded by a server that starts later, and pushable', async () => {
    const res = await upload(a, await scorePatch(trusted.privatePem));
    expect(res).toMatchObject({ status: 200, body: { version: 2 } });
    expect(versionsOf(a)).toEqual([1, 2]);
    await waitFor(() => versionsOf(b).includes(2), 'the other server adopted the patch');
    const room = await b.rooms.open('dist-room', 'probe');
    const swapped = await b.rooms.applyVersion(room.id, 2);
    expect(swapped).toMatchObject({ ok: true, toSchema: 2 });
    const c = await start();
    try {
      expect(versionsOf(c)).toEqual([1, 2]);
    } finally {
      await c.close();
    }
  });
});

describe('a patch whose version number the game already has', () => {
  it('is that version when it builds the same (the folder is also on the server\'s disk), and PATCH_VERSION_TAKEN when it does not; a restart adopts the stored one quietly', async () => {
    const dupPrefix = uniquePrefix('dist-dup');
    const lines: Record<string, unknown>[] = [];
    const onDisk = () => startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', adminToken: TOKEN, trustedPatchKeys: [trusted.publicKey], redisPrefix: dupPrefix, logLines: lines });
    let s = await onDisk();
    try {
      const before = s.rooms.games().find((g) => g.game === 'probe')!.versions.map((v) => `${v.number}:${v.version}`);
      expect(before.length).toBeGreaterThan(2);
      const listed = () => s.redis.llen(`${dupPrefix}:patches:probe`);

      // The same files as patches/probe/002-score on the server's disk: v2, nothing added.
      const same = await upload(s, await scorePatch(trusted.privatePem));
      expect(same).toMatchObject({ status: 200, body: { version: 2 } });
      const after = () => s.rooms.games().find((g) => g.game === 'probe')!.versions.map((v) => `${v.number}:${v.version}`);
      expect(after()).toEqual(before);
      expect(await listed()).toBe(1); // stored, for servers without that folder

      // Another v2: refused, saying which number is free; nothing stored, v2 unchanged.
      const files = Object.fromEntries(await readGameFiles(path.join(FIXTURE_PATCHES, 'probe', '002-score')));
      files['migration.ts'] = files['migration.ts']!.replace('p.score = p.sum', 'p.score = p.sum + 1');
      const other = signPatch({ game: 'probe', manifest: { version: 2, schema: 2, description: 'another score' }, files }, trusted.privatePem);
      const refused = await upload(s, other);
      expect(refused).toMatchObject({ status: 409, body: { code: 'PATCH_VERSION_TAKEN' } });
      expect((refused.body as { msg: string }).msg).toContain(`give it version ${before.length + 1}`);
      expect(after()).toEqual(before);
      expect(await listed()).toBe(1);

      // A restart finds the stored package and its own folder: the same version, no error.
      await s.close();
      lines.length = 0;
      s = await onDisk();
      expect(after()).toEqual(before);
      expect(lines.filter((l) => l.msg === 'stored patch refused; it is not available on this server')).toEqual([]);
      expect(lines.some((l) => l.msg === 'stored patch is a version this server already has (the same build)')).toBe(true);
    } finally {
      await s.close();
    }
  });
});

describe('two different patches given the same number at the same moment', () => {
  it('one is taken and the other refused as PATCH_VERSION_TAKEN, on two servers and on one; every server ends with the same version of that number', async () => {
    const racePrefix = uniquePrefix('dist-race');
    const startRacer = () => startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: noPatches, defaultGame: 'probe', adminToken: TOKEN, trustedPatchKeys: [trusted.publicKey], redisPrefix: racePrefix });
    const s1 = await startRacer();
    const s2 = await startRacer();
    try {
      const files = Object.fromEntries(await readGameFiles(path.join(FIXTURE_PATCHES, 'probe', '002-score')));
      const variant = (n: number, version: number) => {
        const changed = { ...files, 'migration.ts': files['migration.ts']!.replace('p.score = p.sum', `p.score = p.sum + ${n}`) };
        return signPatch({ game: 'probe', manifest: { version, schema: 2, description: `score plus ${n}` }, files: changed }, trusted.privatePem);
      };
      const bundles = (s: Server) => s.rooms.games().find((g) => g.game === 'probe')!.versions.map((v) => `${v.number}:${v.version}`);
      const codes = (results: { status: number; body: { code?: string } }[]) => results.map((r) => r.body.code ?? r.status).sort();

      // Two servers, each given its own v2.
      const across = await Promise.all([upload(s1, variant(1, 2)), upload(s2, variant(2, 2))]);
      expect(codes(across)).toEqual([200, 'PATCH_VERSION_TAKEN']);
      await waitFor(() => bundles(s1).length === 2 && bundles(s2).length === 2, 'both servers have a v2');
      expect(bundles(s2)).toEqual(bundles(s1));
      expect(await s1.redis.llen(`${racePrefix}:patches:probe`)).toBe(1);

      // One server given two v3s.
      const within = await Promise.all([upload(s1, variant(3, 3)), upload(s1, variant(4, 3))]);
      expect(codes(within)).toEqual([200, 'PATCH_VERSION_TAKEN']);
      await waitFor(() => bundles(s2).length === 3, 'the other server has the v3');
      expect(bundles(s2)).toEqual(bundles(s1));
      expect(await s1.redis.llen(`${racePrefix}:patches:probe`)).toBe(2);

      // The same v4 to both at once (a push retried on another server): one version, no refusal.
      const same = variant(5, 4);
      const twice = await Promise.all([upload(s1, same), upload(s2, same)]);
      expect(codes(twice)).toEqual([200, 200]);
      await waitFor(() => bundles(s1).length === 4 && bundles(s2).length === 4, 'both servers have the v4');
      expect(bundles(s2)).toEqual(bundles(s1));
      expect(await s1.redis.llen(`${racePrefix}:patches:probe`)).toBe(3);

      // A number claimed by a package that is not there, or is not a patch: taken, all the same.
      await s1.redis.hset(`${racePrefix}:patch-versions:probe`, '5', 'f'.repeat(64));
      await s1.redis.set(`${racePrefix}:patch:${'f'.repeat(64)}`, 'not a patch');
      expect(await upload(s1, variant(6, 5))).toMatchObject({ status: 409, body: { code: 'PATCH_VERSION_TAKEN' } });
      expect(bundles(s1)).toEqual(bundles(s2));
      expect(bundles(s1)).toHaveLength(4);
    } finally {
      await s1.close();
      await s2.close();
    }
  });
});

describe('moonpatch keygen, and push of a patch folder', () => {
  it('signs, uploads and applies a folder in one command; a key the servers do not trust changes nothing', async () => {
    const keys = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-keys-'));
    const s = await startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: noPatches, defaultGame: 'probe', adminToken: TOKEN, trustedPatchKeys: [trusted.publicKey], redisPrefix: uniquePrefix('dist-cli') });
    const url = `http://127.0.0.1:${s.port}`;
    const folder = path.join(FIXTURE_PATCHES, 'probe', '002-score');
    try {
      // keygen: a private key only its owner can read, and the public key to trust.
      const strangerKey = path.join(keys, 'stranger.pem');
      const made = await runCli(url, TOKEN, 'keygen', '--out', strangerKey, '--json');
      expect(made.code).toBe(0);
      expect(JSON.parse(made.out)).toMatchObject({ key: strangerKey, publicKey: expect.any(String) });
      expect(statSync(strangerKey).mode & 0o777).toBe(0o600);
      expect((await runCli(url, TOKEN, 'keygen', '--out', strangerKey)).code).not.toBe(0); // never overwrites a key

      const roomId = 'dist-cli-' + Date.now();
      const c = testClient(s.url, { room: roomId, game: 'probe', name: 'p' });
      await c.connect();
      const seq = c.send({ op: 'add', n: 5 });
      await waitFor(() => c.lastAckedSeq >= seq, 'the input committed');

      // Signed with a key the server does not trust: refused, nothing uploaded or applied.
      const refused = await runCli(url, TOKEN, 'push', folder, '--room', roomId, '--key', strangerKey);
      expect(refused.code).toBe(1);
      expect(refused.out).toMatch(/refused: PATCH_UNTRUSTED/);
      // ... saying which key, and how to make the servers trust it.
      expect(refused.out).toContain(`${strangerKey} (public key ${JSON.parse(made.out).publicKey})`);
      expect(refused.out).toContain("add that to every server's TRUSTED_PATCH_KEYS");
      expect(versionsOf(s)).toEqual([1]);
      expect(s.rooms.get(roomId)!.current?.number).toBe(1);

      // With the trusted key: one command from the folder to the room.
      const trustedKey = path.join(keys, 'trusted.pem');
      writeFileSync(trustedKey, trusted.privatePem, { mode: 0o600 });
      const pushed = await runCli(url, TOKEN, 'push', folder, '--room', roomId, '--key', trustedKey);
      expect(pushed.code).toBe(0);
      expect(pushed.out).toMatch(/uploaded probe v2 /);
      expect(pushed.out).toMatch(/all 1 rooms on v2/);
      expect(versionsOf(s)).toEqual([1, 2]);
      expect(s.rooms.get(roomId)!.current?.number).toBe(2);
      const record = unpack((await s.store.readRecords(roomId)).get(`players/${c.playerId}`)!) as { score?: number; sum?: number };
      expect(record).toMatchObject({ score: 5 });
      expect(record.sum).toBeUndefined();
      expect(c.disconnects).toBe(0);

      // Not a number and not a patch folder: a usage error, nothing sent.
      const bad = await runCli(url, TOKEN, 'push', keys, '--room', roomId);
      expect(bad.code).toBe(2);
      expect(bad.err).toMatch(/a version number, or a patch folder/);
      c.close();
    } finally {
      await s.close();
      rmSync(keys, { recursive: true, force: true });
    }
  });
});
