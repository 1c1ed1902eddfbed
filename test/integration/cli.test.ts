/**
 * The designers' command line against a real server: validate a patch locally, push it to a
 * room, see status and history, roll back; the admin API refuses a wrong token. Runs the real
 * `bin/moonpatch.js` as a child process.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pack, unpack } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findFreePort } from '../../server/state/redis-launcher.ts';
import { COMMAND_HELP } from '../../cli/help.ts';
import { runCli, spawnCli } from '../helpers/cli.ts';
import { uniquePrefix } from '../helpers/redis.ts';
import { FIXTURE_GAMES, FIXTURE_PATCHES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

const TOKEN = 'test-admin-token-0123456789';
type Server = Awaited<ReturnType<typeof startTestServer>>;
let server: Server;
let httpUrl = '';
const tmpDir = mkdtempSync(path.join(tmpdir(), 'moonpatch-cli-'));

function moonpatch(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return moonpatchAt(httpUrl, ...args);
}

function moonpatchAt(url: string, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return runCli(url, TOKEN, ...args);
}

beforeAll(async () => {
  server = await startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', adminToken: TOKEN });
  httpUrl = `http://127.0.0.1:${server.port}`;
});
afterAll(async () => {
  await server?.close();
  rmSync(tmpDir, { recursive: true, force: true });
});

describe('help and usage errors', () => {
  it('`help` lists every command; `moonpatch` alone prints the same to stderr and exits 2', async () => {
    const help = await moonpatch('help');
    expect(help.code).toBe(0);
    for (const name of Object.keys(COMMAND_HELP)) expect(help.out).toMatch(new RegExp(`^  ${name} +\\S`, 'm'));
    const bare = await moonpatch();
    expect(bare.code).toBe(2);
    expect(bare.out).toBe('');
    expect(bare.err.trim()).toBe(help.out.trim());
  });

  it('`help push` and `push --help` show the command\'s usage and every option it takes, and do nothing else', async () => {
    const roomId = 'cli-help-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'p' });
    await c.connect();
    const a = await moonpatch('help', 'push');
    const b = await moonpatch('push', '2', '--room', roomId, '--help');
    expect([a.code, b.code]).toEqual([0, 0]);
    expect(b.out).toBe(a.out);
    expect(a.out).toMatch(/^ {2}moonpatch push <version>/m);
    for (const option of Object.keys(COMMAND_HELP.push.options)) expect(a.out).toContain(`--${option} `);
    // --help asked for help: the push did not happen.
    expect(server.rooms.get(roomId)!.current?.number).toBe(1);
    c.close();
  });

  it('refuses a mistyped command or option with exit 2 and a suggestion, before anything reaches the server', async () => {
    const roomId = 'cli-typo-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'p' });
    await c.connect();
    const cases: [string[], RegExp][] = [
      [['pussh', '2', '--room', roomId], /unknown command 'pussh' \(did you mean push\?\)/],
      [['push', '2', '--rooom', roomId], /push does not take --rooom \(did you mean --room\?\)/],
      [['push', '2', '--room', roomId, '--jsno'], /push does not take --jsno \(did you mean --json\?\)/],
      [['push', '2', '--room', roomId, '--frobnicate'], /push does not take --frobnicate; see `moonpatch help push`/],
      [['push', '2', '3', '--room', roomId], /push: unexpected argument '3'; see/],
      [['history', roomId], new RegExp(`history: unexpected argument '${roomId}' \\(did you mean --room ${roomId}\\?\\)`)],
      [['push', '2', '--room'], /--room needs a value/],
      [['rollback', '--room', roomId, '--to', 'two'], /--to takes a whole number of at least 1, not 'two'/],
      [['push', '2', '--room', roomId, '--safe-point', '--deadline', '-5'], /--deadline takes a whole number from 1 to 86400/],
      [['validate', '2', '--game', 'probe', '--scripts', FIXTURE_GAMES, '--patches', FIXTURE_PATCHES, '--players', 'lots'], /--players takes a whole number from 1 to 2000, not 'lots'/],
      [['validate', '2', '--game', 'probe', '--scripts', FIXTURE_GAMES, '--patches', FIXTURE_PATCHES, '--from', '9'], /probe has no version 9 to migrate from \(it has v1, /],
      [['help', 'nope'], /unknown command 'nope'/],
      [['validate', '2', '--game', 'nope', '--scripts', FIXTURE_GAMES, '--patches', FIXTURE_PATCHES], /no game nope in .*\(games there: .*probe/],
    ];
    const results = await Promise.all(cases.map(([args]) => moonpatch(...args)));
    cases.forEach(([args, message], i) => {
      const r = results[i]!;
      expect({ args, code: r.code, out: r.out }).toEqual({ args, code: 2, out: '' });
      expect(r.err).toMatch(message);
    });
    expect(server.rooms.get(roomId)!.current?.number).toBe(1);
    expect(JSON.parse((await moonpatch('history', '--room', roomId, '--json')).out)).toEqual([]);
    c.close();
    // A version past a patch that does not build: refused, saying which patch and where.
    const blocked = await moonpatch('validate', '9', '--game', 'probe', '--scripts', FIXTURE_GAMES, '--patches', FIXTURE_PATCHES);
    expect(blocked.code).toBe(1);
    expect(blocked.err).toMatch(/^version 9 of probe is not usable:\n {2}006-syntax-error: .*\n {2}helper\.ts:3:1: /);
    // A version that does not exist (yet) where every patch builds: refused, naming the ones there are.
    const missing = await moonpatch('validate', '9', '--game', 'probe', '--scripts', FIXTURE_GAMES, '--patches', tmpDir);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^probe has no version 9 \(it has v1\)/);
  });

  it('keygen never writes over a key, and a system error is one line for people, not a stack', async () => {
    const key = path.join(tmpDir, 'signing.pem');
    expect((await moonpatch('keygen', '--out', key)).code).toBe(0);
    const first = readFileSync(key, 'utf8');
    const again = await moonpatch('keygen', '--out', key);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/a signing key is already at .*signing\.pem; keep using it/);
    expect(readFileSync(key, 'utf8')).toBe(first);
    writeFileSync(path.join(tmpDir, 'a-file'), '');
    const blocked = await moonpatch('keygen', '--out', path.join(tmpDir, 'a-file', 'key.pem'));
    expect(blocked.code).toBe(2);
    expect(blocked.err.trim()).toMatch(/^moonpatch: E[A-Z]+: /);
    expect(blocked.err).not.toMatch(/^\s+at /m);
  });

  it('takes --name=value, and a switch never swallows the argument after it', async () => {
    const r = await moonpatch('validate', '--json', '2', '--game=probe', `--scripts=${FIXTURE_GAMES}`, '--patches', FIXTURE_PATCHES, '--players=3', '--ticks', '5');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ ok: true, version: 2, from: 1, ticksRun: 5 });
  });
});

describe('moonpatch validate', () => {
  /** A copy of probe's patch 002 as a folder of game probe, with one of its files edited. */
  const editedCopyOf002 = (name: string, file: string, edit: (text: string) => string) => {
    const folder = path.join(tmpDir, 'probe', name);
    cpSync(path.join(FIXTURE_PATCHES, 'probe', '002-score'), folder, { recursive: true });
    const text = readFileSync(path.join(folder, file), 'utf8');
    const edited = edit(text);
    expect(edited).not.toBe(text); // the edit found its place
    writeFileSync(path.join(folder, file), edited);
    return folder;
  };

  it('passes a good patch and reports what its migration changed', async () => {
    const r = await moonpatch('validate', '2', '--game', 'probe', '--scripts', FIXTURE_GAMES, '--patches', FIXTURE_PATCHES, '--players', '5', '--ticks', '20', '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out);
    expect(report).toMatchObject({ ok: true, version: 2, from: 1 });
    expect(report.migration.fieldsAdded).toContain('players.score');
    expect(report.migration.fieldsRemoved).toContain('players.sum');
    // Its downgrade ran on the migrated world and v1 played what it left.
    expect(report.rollback).toEqual({ fromSchema: 2, toSchema: 1, downgrade: true, played: true });
  });

  it('tries the way back across a schema change: a downgrade that throws fails, a patch with none is told how it can be rolled back', async () => {
    const throwing = editedCopyOf002('002-downgrade-throws', 'migration.ts', (t) => t.replace('p.sum = p.score;', "throw new Error('no way back');"));
    const none = editedCopyOf002('002-no-downgrade', 'main.ts', (t) => t.replace('export { downgrade, migrate, validate }', 'export { migrate, validate }'));
    const args = ['--scripts', FIXTURE_GAMES, '--patches', FIXTURE_PATCHES, '--players', '3', '--ticks', '5'];
    const [thrown, without] = await Promise.all([moonpatch('validate', throwing, ...args), moonpatch('validate', none, ...args)]);
    expect(thrown.code).toBe(1);
    expect(thrown.out).toMatch(/rollback failed: SCRIPT_ERROR: downgrade\(world, 1\) failed: no way back\n/);
    expect(thrown.out).toMatch(/^\s+at downgrade \(migration\.ts:\d+:\d+\)$/m);
    expect(without.code).toBe(0);
    expect(without.out).toMatch(/rollback: v2 exports no downgrade\(world, toSchema\), so going back \(schema 2 -> 1\) can only replay the ticks since its swap/);
  });

  it('validates a patch folder as it is on disk, on top of the versions before it', async () => {
    // Edited copies of 002 outside the patches folder (their game is their parent folder's
    // name), one per case so that the cases run at once (each is a CLI process of its own).
    const copy = (parent: string, name: string, edit: (folder: string) => void = () => {}) => {
      const folder = path.join(tmpDir, parent, name);
      cpSync(path.join(FIXTURE_PATCHES, 'probe', '002-score'), folder, { recursive: true });
      edit(folder);
      return folder;
    };
    const args = ['--scripts', FIXTURE_GAMES, '--patches', FIXTURE_PATCHES, '--players', '3', '--ticks', '5'];
    const asIs = copy('probe', '002-as-is');
    // The edit is what runs, not patches/probe/002-score (which passes).
    const throwing = copy('probe', '002-throws', (f) => {
      const migration = path.join(f, 'migration.ts');
      writeFileSync(migration, readFileSync(migration, 'utf8').replace('p.score = p.sum;', "throw new Error('edited on disk');"));
    });
    const syntax = copy('probe', '002-syntax', (f) => writeFileSync(path.join(f, 'bomb.ts'), 'export function bomb(_world: any): void {}\nexport const x = ;\n'));
    const gap = copy('probe', '009-gap', (f) => writeFileSync(path.join(f, 'patch.json'), JSON.stringify({ version: 9, schema: 2 })));
    const loose = copy('drafts', '002-loose');
    const [good, thrown, broken, gapped, unnamed, named, nothing] = await Promise.all([
      moonpatch('validate', asIs, ...args, '--json'),
      moonpatch('validate', throwing, ...args),
      moonpatch('validate', syntax, ...args),
      moonpatch('validate', gap, ...args),
      // Elsewhere, its parent folder is not a game: --game names it.
      moonpatch('validate', loose, ...args),
      moonpatch('validate', loose, '--game', 'probe', ...args),
      // Not a folder with a patch.json, nor a number.
      moonpatch('validate', path.join(tmpDir, 'probe', '003-not-there'), ...args),
    ]);
    expect(good.code).toBe(0);
    expect(JSON.parse(good.out)).toMatchObject({ ok: true, version: 2, from: 1, migration: { fieldsAdded: ['players.score'] } });
    expect(thrown.code).toBe(1);
    expect(thrown.out).toMatch(/migrate failed: SCRIPT_ERROR: edited on disk/);
    expect(thrown.out).toMatch(/migration\.ts:\d+:\d+/);
    // A syntax error: the file and line, nothing run.
    expect(broken.code).toBe(1);
    expect(broken.err).toMatch(/002-syntax\/patch\.json: not usable:\n.*\n\s*bomb\.ts:2:\d+: /);
    // A version that does not follow one the game has.
    expect(gapped.code).toBe(1);
    expect(gapped.err).toMatch(/version 9 follows version 8, which probe does not have \(it has v1, v2, v3, v4, v5\)/);
    expect(unnamed).toMatchObject({ code: 2, out: '' });
    expect(unnamed.err).toMatch(/no game drafts in .*; a patch folder's game is its parent folder's name \(drafts\) unless --game names it/);
    expect(named.code).toBe(0);
    expect(nothing).toMatchObject({ code: 2, out: '' });
    expect(nothing.err).toMatch(/validate a version number or a patch folder with its patch\.json; there is no .*003-not-there/);
  });

  it('runs every player hook: a patch whose input or leave hook refuses what the version before took fails, with the first error mapped', async () => {
    const inputs = editedCopyOf002('002-refuses-moves', 'main.ts', (t) => t.replace('const me = world.players[p.id]!;', "const me = world.players[p.id]!;\n  if (msg?.move) throw new Error('moves are refused now');"));
    const leaves = editedCopyOf002('002-leave-throws', 'main.ts', (t) => t.replace(/(export function leave\([^)]*\) \{\n)/, "$1  throw new Error('leave edited to throw');\n"));
    // Enough bots for their share to count (20 events at least), few ticks.
    const args = ['--scripts', FIXTURE_GAMES, '--patches', FIXTURE_PATCHES, '--players', '25', '--ticks', '3'];
    const [good, refusing, leaving, refusingJson] = await Promise.all([
      moonpatch('validate', '2', '--game', 'probe', ...args, '--json'),
      moonpatch('validate', inputs, ...args),
      moonpatch('validate', leaves, ...args),
      moonpatch('validate', inputs, ...args, '--json'),
    ]);
    expect(good.code).toBe(0);
    const hooks = JSON.parse(good.out).hooks as { hook: string; events: number; refused: number; refusedBefore: number | null }[];
    // Each hook ran: 25 inputs a tick for 3 ticks, and 25 leaves; the base version built the world with 25 joins and 39 ticks of moves.
    expect(hooks).toEqual([
      { hook: 'join', events: 0, refused: 0, refusedBefore: 0 },
      { hook: 'input', events: 75, refused: 0, refusedBefore: 0 },
      { hook: 'leave', events: 25, refused: 0, refusedBefore: null },
    ]);
    expect(refusing.code).toBe(1);
    expect(refusing.out).toMatch(/hooks failed: HOOK_REFUSALS: the input hook refused 75 of 75 of the bots' inputs \(100%; the version before 0%, margin 25 points\): moves are refused now/);
    expect(refusing.out).toMatch(/main\.ts:\d+:\d+/); // the stack, mapped to the patch's file
    expect(refusing.out).toMatch(/^input: refused 75 of 75; the version before refused 0%; first: moves are refused now$/m);
    expect(JSON.parse(refusingJson.out)).toMatchObject({ ok: false, failures: [{ stage: 'hooks', code: 'HOOK_REFUSALS' }] });
    expect(leaving.code).toBe(1);
    expect(leaving.out).toMatch(/hooks failed: HOOK_REFUSALS: the leave hook refused 25 of 25 of the bots' leaves \(100%; none expected, margin 25 points\): leave edited to throw/);
  });

  it('reports the ticks\' CPU against the version before\'s, and fails a version whose ticks pass the game\'s cpuBudgetMs', async () => {
    // The probe game with a budget of 5 ms, and a 002 whose tick hook burns 20M rounds of
    // arithmetic (14 ms at 0.7 ns a round, the fastest a machine might go; 50-100 ms here).
    const games = path.join(tmpDir, 'tight-games');
    cpSync(path.join(FIXTURE_GAMES, 'probe'), path.join(games, 'probe'), { recursive: true });
    const manifest = path.join(games, 'probe', 'game.json');
    writeFileSync(manifest, JSON.stringify({ ...JSON.parse(readFileSync(manifest, 'utf8')), cpuBudgetMs: 5 }));
    const folder = path.join(tmpDir, 'probe', '002-slow-ticks');
    cpSync(path.join(FIXTURE_PATCHES, 'probe', '002-score'), folder, { recursive: true });
    const ticking = path.join(folder, 'ticking.ts');
    const text = readFileSync(ticking, 'utf8');
    const slow = text.replace('  world.meta.ticks += 1;', '  let x = 0;\n  for (let i = 0; i < 20_000_000; i++) x = (x * 31 + i) | 0;\n  world.meta.burnt = x;\n  world.meta.ticks += 1;');
    expect(slow).not.toBe(text);
    writeFileSync(ticking, slow);
    const args = ['--patches', FIXTURE_PATCHES, '--players', '3', '--ticks', '15', '--json'];
    const [good, slowRun] = await Promise.all([
      moonpatch('validate', '2', '--game', 'probe', '--scripts', FIXTURE_GAMES, ...args),
      moonpatch('validate', folder, '--scripts', games, ...args),
    ]);
    expect(good.code).toBe(0);
    const fine = JSON.parse(good.out).tickCpuMs as { p99: number; n: number; budgetMs: number; before: { n: number } | null };
    expect(fine).toMatchObject({ n: 10, budgetMs: 50, before: { n: 35 } }); // 15 ticks less 5 warming up; the world's ticks 6-40
    expect(fine.p99).toBeLessThanOrEqual(50);
    expect(slowRun.code).toBe(1);
    const report = JSON.parse(slowRun.out);
    expect(report.tickCpuMs).toMatchObject({ budgetMs: 5, n: 10 });
    expect(report.tickCpuMs.p99).toBeGreaterThan(5);
    expect(report.failures).toEqual([expect.objectContaining({ stage: 'budget', code: 'CPU_BUDGET', message: expect.stringMatching(/over the game's cpuBudgetMs of 5:/) })]);
  });

  it('fails a patch whose migration throws, with the stack mapped to the patch file', async () => {
    const r = await moonpatch('validate', '4', '--game', 'probe', '--scripts', FIXTURE_GAMES, '--patches', FIXTURE_PATCHES, '--from', '2', '--players', '3', '--ticks', '5');
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/migrate failed: SCRIPT_ERROR: migration 3 is broken on purpose/);
    expect(r.out).toMatch(/migration\.ts:\d+:\d+/);
  });
});

describe('moonpatch validate on real state', () => {
  const validateArgs = ['--scripts', FIXTURE_GAMES, '--patches', FIXTURE_PATCHES, '--players', '3', '--ticks', '10'];

  it('migrates a live room\'s committed world in a scratch isolate, leaving the room as it was, and saves it', async () => {
    const roomId = 'cli-live-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'p' });
    await c.connect();
    c.send({ op: 'add', n: 7 });
    await waitFor(async () => ((await server.store.readMeta(roomId))?.tick ?? 0) > 3 && c.lastAckedSeq >= 1, 'input committed');
    const file = path.join(tmpDir, 'live.json');
    const r = await moonpatch('validate', '2', '--room', roomId, '--save', file, ...validateArgs, '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out);
    expect(report).toMatchObject({ ok: true, version: 2, from: 1 });
    expect(report.world).toMatch(new RegExp(`^room ${roomId} at tick \\d+$`));
    expect(report.migration).toMatchObject({ ran: true, fieldsAdded: ['players.score'], fieldsRemoved: ['players.sum'] });
    // The live room did not move: still v1, its player's sum intact.
    expect(server.rooms.get(roomId)!.current?.number).toBe(1);
    expect(((c.world.players as Record<string, { sum: number }>)[c.playerId!])!.sum).toBe(7);
    // Saved for later, not readable by others (it holds player data).
    expect(statSync(file).mode & 0o077).toBe(0);
    const saved = JSON.parse(readFileSync(file, 'utf8'));
    expect(saved).toMatchObject({ format: 'moonpatch-room-snapshot/1', room: roomId, game: 'probe', versionNumber: 1, schema: 1 });
    c.close();
  });

  it("reports only the migration's changes, not the bots' (they join after the swap tick)", async () => {
    const roomId = 'cli-empty-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'p' });
    await c.connect();
    c.leave(); // a room that has run, with nobody in it now
    await waitFor(async () => server.rooms.get(roomId)?.seats.size === 0 && ((await server.store.readMeta(roomId))?.tick ?? 0) > 3, 'room empty');
    const r = await moonpatch('validate', '2', '--room', roomId, ...validateArgs, '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out);
    // No player to migrate: the bots' own records (name, score, inputs) are not "added fields".
    expect(report.migration).toMatchObject({ ran: true, fieldsAdded: [], fieldsRemoved: [] });
    expect(report.ticksRun).toBe(10);
  });

  it('fails on a saved world whose real data the migration does not expect, naming the player', async () => {
    const roomId = 'cli-legacy-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'old-timer' });
    await c.connect();
    await waitFor(async () => ((await server.store.readMeta(roomId))?.tick ?? 0) > 2, 'a few ticks');
    const file = path.join(tmpDir, 'legacy.json');
    expect((await moonpatch('validate', '2', '--room', roomId, '--save', file, ...validateArgs)).code).toBe(0);
    // A player record from before `sum` existed: what a world built by bots never holds.
    const snap = JSON.parse(readFileSync(file, 'utf8'));
    const key = `players/${c.playerId}`;
    const { sum: _sum, ...legacy } = unpack(Buffer.from(snap.records[key], 'base64')) as Record<string, unknown>;
    snap.records[key] = Buffer.from(pack(legacy)).toString('base64');
    writeFileSync(file, JSON.stringify(snap));
    const r = await moonpatch('validate', '2', '--fixture', file, ...validateArgs);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(new RegExp(`migrate failed: SCRIPT_ERROR: .*player ${c.playerId} is not schema 2`));
    c.close();
  });

  it('refuses a missing room, a file that is not a snapshot, and both sources at once', async () => {
    const missing = await moonpatch('validate', '2', '--room', 'no-such-room-' + Date.now(), ...validateArgs);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/ROOM_NOT_FOUND/);
    const bad = path.join(tmpDir, 'bad.json');
    for (const [content, says] of [
      ['{"format":"something-else"}', /format must be/],
      ['[1,2,3]', /not a JSON object/],
      ['not json', /cannot read the fixture/],
      [JSON.stringify({ format: 'moonpatch-room-snapshot/1', game: 'probe', schema: 1, tick: 5, takenAt: 1, versionNumber: 1, records: { 'players/x': '%%%' } }), /records\["players\/x"\]/],
      [JSON.stringify({ format: 'moonpatch-room-snapshot/1', game: 'probe', schema: -1, tick: 5, takenAt: 1, versionNumber: 1, records: {} }), /schema/],
    ] as const) {
      writeFileSync(bad, content);
      const r = await moonpatch('validate', '2', '--fixture', bad, ...validateArgs);
      expect(r.code, content).toBe(2);
      expect(r.err, content).toMatch(says);
    }
    const both = await moonpatch('validate', '2', '--room', 'x', '--fixture', bad, ...validateArgs);
    expect(both.code).toBe(2);
    expect(both.err).toMatch(/not both/);
  });

  it('the snapshot endpoint needs the admin token and a valid room id', async () => {
    expect((await fetch(`${httpUrl}/admin/rooms/x/snapshot`)).status).toBe(401);
    const r = await fetch(`${httpUrl}/admin/rooms/no%20spaces/snapshot`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ code: 'BAD_ROOM_ID' });
  });
});

describe('push, status, history, rollback', () => {
  it('pushes a version to a room, shows it, and rolls it back', async () => {
    const roomId = 'cli-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'p' });
    await c.connect();
    const push = await moonpatch('push', '2', '--room', roomId);
    expect(push.code).toBe(0);
    // Versions named as designers push them, beside the hash players' frames carry.
    expect(push.out).toMatch(new RegExp(`${roomId}: v1 [0-9a-f]{12} -> v2 [0-9a-f]{12} at tick \\d+`));
    const status = JSON.parse((await moonpatch('status', '--json')).out) as { room: string; versionNumber: number; schema: number }[];
    expect(status.find((s) => s.room === roomId)).toMatchObject({ versionNumber: 2, schema: 2, lastPatch: { kind: 'applied' } });
    // For people: a row per room, its CPU as a share of a core (the rooms have been ticking).
    const table = (await moonpatch('status')).out.split('\n');
    expect(table[0]).toMatch(/p50\/p99 ms +cpu +last patch/);
    expect(table.find((l) => l.startsWith(roomId))).toMatch(/ \d+\.\d% +applied at tick \d+/);
    const back = await moonpatch('rollback', '--room', roomId);
    expect(back.code).toBe(0);
    expect(back.out).toMatch(new RegExp(`${roomId}: v2 [0-9a-f]{12} -> v1 [0-9a-f]{12} at tick \\d+`));
    const history = JSON.parse((await moonpatch('history', '--room', roomId, '--json')).out) as { kind: string; from: string; to: string }[];
    expect(history.map((h) => h.kind)).toEqual(['rolled-back', 'applied']);
    const lines = (await moonpatch('history', '--room', roomId)).out.trim().split('\n');
    expect(lines[1]).toMatch(new RegExp(` applied +v1 ${history[1]!.from} -> v2 ${history[1]!.to}$`));
    expect(c.disconnects).toBe(0);
    c.close();
  });

  it('--watch waits for the verification window: 1 when the room rolls the version back, 0 when it keeps it', async () => {
    const bombed = 'cli-watch-bomb-' + Date.now();
    await server.rooms.open(bombed, 'probe');
    expect((await moonpatch('push', '2', '--room', bombed)).code).toBe(0);
    const bomb = await moonpatch('push', '3', '--room', bombed, '--watch'); // its ticks throw after the swap
    expect(bomb.code).toBe(1);
    expect(bomb.out).toMatch(new RegExp(`${bombed}: ROLLED BACK at tick \\d+: verification failed: 3 failed ticks`));
    expect(bomb.out).toMatch(/1 of 1 rooms did not keep v3/);

    const kept = 'cli-watch-kept-' + Date.now();
    await server.rooms.open(kept, 'probe');
    const good = await moonpatch('push', '2', '--room', kept, '--watch', '--json'); // the window: 200 ticks, 10 s
    expect(good.code).toBe(0);
    const report = JSON.parse(good.out) as { results: Record<string, { ok: boolean }>; verification: Record<string, { kind: string; reason: string }> };
    expect(report.results[kept]).toMatchObject({ ok: true });
    expect(report.verification[kept]).toMatchObject({ kind: 'verified', reason: expect.stringMatching(/^0 failed ticks in the window/) });
  });

  it('exits non-zero when a room refuses the patch', async () => {
    const roomId = 'cli-refused-' + Date.now();
    await server.rooms.open(roomId, 'probe');
    const r = await moonpatch('push', '4', '--room', roomId);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/REFUSED at migrate/);
    // With --watch: every room refused it, so there is no window to wait out.
    const watched = await moonpatch('push', '4', '--room', roomId, '--watch');
    expect(watched.code).toBe(1);
    expect(watched.out).toMatch(/the room refused v4; nothing to watch/);
    expect(watched.out).not.toMatch(/verified/);
  });

  it('the admin API refuses a wrong token and changes nothing', async () => {
    const roomId = 'cli-auth-' + Date.now();
    const room = await server.rooms.open(roomId, 'probe');
    const before = room.version;
    const r = await moonpatch('push', '2', '--room', roomId, '--token', 'wrong-token-wrong-token');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/UNAUTHORIZED/);
    expect(room.version).toBe(before);
    const raw = await fetch(`${httpUrl}/admin/rooms`);
    expect(raw.status).toBe(401);
  });
});

describe('create and delete rooms', () => {
  it('creates a room, refuses to create it twice, and deletes it only when told --yes', async () => {
    const roomId = 'cli-room-' + Date.now();
    const made = await moonpatch('create', '--room', roomId, '--game', 'probe');
    expect(made.code).toBe(0);
    expect(made.out).toMatch(new RegExp(`${roomId}: created \\(probe v1\\)`));
    const twice = await moonpatch('create', '--room', roomId);
    expect(twice.code).toBe(1);
    expect(twice.out).toMatch(/ROOM_EXISTS/);

    const unsure = await moonpatch('delete', '--room', roomId);
    expect(unsure.code).toBe(2);
    expect(unsure.err).toMatch(/--yes/);
    expect(await server.store.readMeta(roomId)).not.toBeNull();

    const gone = await moonpatch('delete', '--room', roomId, '--yes', '--json');
    expect(gone.code).toBe(0);
    expect(JSON.parse(gone.out)).toMatchObject({ room: roomId, deleted: true });
    expect(await server.store.readMeta(roomId)).toBeNull();
    const again = await moonpatch('delete', '--room', roomId, '--yes');
    expect(again.code).toBe(1);
    expect(again.out).toMatch(/ROOM_NOT_FOUND/);
  });
});

describe('canary, promote, abort', () => {
  it('pushes to a share of the rooms, then promotes to all or aborts back', async () => {
    // A server of its own, so "all rooms of the game" is exactly these four.
    const own = await startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', adminToken: TOKEN });
    try {
      const url = `http://127.0.0.1:${own.port}`;
      const ids = Array.from({ length: 4 }, (_, i) => `canary-${i}`);
      for (const id of ids) await own.rooms.open(id, 'probe');
      const onV = (n: number) => ids.filter((id) => own.rooms.get(id)!.current?.number === n);
      expect((await moonpatchAt(url, 'push', '2', '--canary', '25', '--game', 'probe')).code).toBe(0);
      expect(onV(2)).toHaveLength(1);
      expect((await moonpatchAt(url, 'abort', '2', '--game', 'probe')).code).toBe(0);
      expect(onV(2)).toHaveLength(0);
      expect(onV(1)).toHaveLength(4);
      // Withdrawn for the rooms not running now, too (they move off it when they open).
      expect(await own.store.readTarget('probe')).toEqual({ current: null, previous: null, withdrawn: [2] });
      expect((await moonpatchAt(url, 'promote', '2', '--game', 'probe')).code).toBe(0);
      expect(onV(2)).toHaveLength(4);
      expect(await own.store.readTarget('probe')).toEqual({ current: 2, previous: null, withdrawn: [] });
    } finally {
      await own.close();
    }
  });
});

describe('pinning for A/B', () => {
  it('a pinned room keeps its version while the others are patched, and status compares versions', async () => {
    const own = await startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', adminToken: TOKEN });
    try {
      const url = `http://127.0.0.1:${own.port}`;
      await own.rooms.open('ab-a', 'probe');
      await own.rooms.open('ab-b', 'probe');
      expect((await moonpatchAt(url, 'pin', '--room', 'ab-a')).code).toBe(0);
      expect((await moonpatchAt(url, 'push', '2', '--all', '--game', 'probe')).code).toBe(0);
      expect(own.rooms.get('ab-a')!.current?.number).toBe(1);
      const b = own.rooms.get('ab-b')!;
      expect(b.current?.number).toBe(2);
      // Its tick times start over at the swap: v2 is judged on v2's ticks only.
      const swapTick = b.lastPatch!.tick;
      expect(swapTick).toBeGreaterThan(1);
      expect(b.recentTicks.summary().n).toBeLessThanOrEqual(b.tick - swapTick + 1);
      const refused = await moonpatchAt(url, 'push', '2', '--room', 'ab-a');
      expect(refused.code).toBe(1);
      expect(refused.out).toMatch(/ROOM_PINNED/);
      const groups = JSON.parse((await moonpatchAt(url, 'status', '--by-version', '--json')).out) as { version: number; rooms: number; ticks: number; tickP50Ms: number; tickP99Ms: number }[];
      expect(groups.map((g) => [g.version, g.rooms]).sort()).toEqual([[1, 1], [2, 1]]);
      for (const g of groups) {
        expect(g.ticks).toBeGreaterThan(0);
        expect(g.tickP50Ms).toBeGreaterThan(0);
        expect(g.tickP99Ms).toBeGreaterThanOrEqual(g.tickP50Ms);
      }
      const people = await moonpatchAt(url, 'status', '--by-version');
      expect(people.out).toMatch(/^probe v2: 1 rooms, 0 players, tick p50 [\d.]+ ms, p99 [\d.]+ ms \(the rooms' last \d+ ticks on it\)$/m);
      expect((await own.store.readMeta('ab-a'))!.pinned).toBe(true);
    } finally {
      await own.close();
    }
  });
});

describe('moonpatch release', () => {
  it('lets a quarantined room run again (crashes recorded straight into Redis: a real crash loop is quarantine.test.ts)', async () => {
    const roomId = 'cli-quarantined-' + Date.now();
    await server.store.create(roomId, { game: 'probe', version: '', schema: 1, seed: 1, createdAt: Date.now(), tickHz: 20 });
    // Two crashes: distinct times (the same node and millisecond would be the same crash).
    const now = Date.now();
    for (let i = 0; i < 2; i++) await server.store.recordCrash(roomId, { at: now - i, tick: 1, version: 'v', node: 'gone' });
    const refused = await server.rooms.open(roomId).catch((e: { code: string }) => e);
    expect(refused).toMatchObject({ code: 'ROOM_QUARANTINED' });
    const r = await moonpatch('release', '--room', roomId);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/released from quarantine, running again/);
    expect(server.rooms.get(roomId)).toBeDefined();
    expect(await server.store.crashesSince(roomId, 0)).toBe(0);
  });
});


describe('moonpatch logs', () => {
  const logsOf = (roomId: string, query = '', token = TOKEN) =>
    fetch(`${httpUrl}/admin/rooms/${encodeURIComponent(roomId)}/logs${query}`, { headers: { authorization: `Bearer ${token}` } }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));

  it('shows what a live room\'s scripts logged and threw, stacks mapped to the source, and follows new lines', async () => {
    const roomId = 'cli-logs-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'designer' });
    await c.connect();
    const settled: number[] = [];
    c.on('settled', (s) => settled.push(s.seq));
    const seqs = [c.send({ op: 'log', text: 'hello from the room' }), c.send({ op: 'throw-deep' })];
    await waitFor(() => seqs.every((s) => settled.includes(s)), 'both inputs settled');
    const failSeq = c.send({ op: 'fail-tick' }); // the whole tick is rolled back
    await waitFor(() => settled.includes(failSeq), 'the failed tick settled');

    // Entries reach Redis within a flush (250 ms).
    await waitFor(async () => (await logsOf(roomId)).body.entries?.length === 3, 'three entries in the journal');
    const { status, body } = await logsOf(roomId);
    expect(status).toBe(200);
    expect(body).toMatchObject({ room: roomId, running: true, node: server.store.leaseHolder.node, truncated: false });
    const kinds = body.entries.map((e: { kind: string }) => e.kind);
    expect(kinds).toEqual(['log', 'hook-error', 'tick-failed']);
    const ids = body.entries.map((e: { id: string }) => e.id);
    expect(body.next).toBe(ids[2]);
    const [logged, threw, failed] = body.entries;
    expect(logged.text).toBe('probe says hello from the room');
    expect(threw).toMatchObject({ code: 'SCRIPT_ERROR', hook: 'input', playerId: c.playerId, text: 'TypeError: thrown two modules deep' });
    expect(threw.stack).toMatch(/helper\.ts:\d+:\d+/);
    expect(failed).toMatchObject({ code: 'SCRIPT_ERROR', text: 'Error: tick asked to fail' });
    expect(failed.stack).toMatch(/main\.ts:\d+:\d+/);
    expect(threw.tick).toBeLessThan(failed.tick);

    // Paging: after the last seen, nothing; one at a time.
    expect((await logsOf(roomId, `?after=${ids[2]}`)).body).toMatchObject({ entries: [], next: ids[2] });
    expect((await logsOf(roomId, `?after=${ids[0]}&limit=1`)).body.entries.map((e: { id: string }) => e.id)).toEqual([ids[1]]);

    // The command line, for people.
    const r = await moonpatch('logs', '--room', roomId);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/tick \d+ {2}\S+ {2}probe says hello from the room/);
    expect(r.out).toMatch(/SCRIPT_ERROR in input \(player [^)]+\), event undone: TypeError: thrown two modules deep\n {4}at .*helper\.ts:\d+:\d+/);
    expect(r.out).toMatch(/SCRIPT_ERROR, tick rolled back: Error: tick asked to fail/);

    // --follow prints what comes later, once.
    const follower = spawnCli(httpUrl, TOKEN, 'logs', '--room', roomId, '--follow');
    let out = '';
    follower.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(() => out.includes('tick asked to fail'), 'the follower printed the journal so far');
      c.send({ op: 'log', text: 'a later line' });
      await waitFor(() => out.includes('probe says a later line'), 'the follower printed the new line');
      await new Promise((r) => setTimeout(r, 1500)); // a poll or two more
      expect(out.split('probe says a later line').length).toBe(2);
      expect(out.split('probe says hello from the room').length).toBe(2);
    } finally {
      follower.kill();
    }
    c.close();
  });

  it('--follow keeps following through a restart of the room\'s server, one journal before and after; a stopped room\'s journal stays readable', async () => {
    const port = await findFreePort();
    const own = { scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', adminToken: TOKEN, port, redisPrefix: uniquePrefix('cli-follow') };
    let s = await startTestServer(own);
    const url = `http://127.0.0.1:${port}`;
    const roomId = 'cli-follow-' + Date.now();
    const c = testClient(s.url, { room: roomId, game: 'probe', name: 'designer' });
    await c.connect();
    c.send({ op: 'log', text: 'before the restart' });
    const follower = spawnCli(url, TOKEN, 'logs', '--room', roomId, '--follow');
    let out = '';
    follower.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(() => out.includes('probe says before the restart'), 'the first line');
      c.send({ op: 'log', text: 'just before the stop' });
      await waitFor(() => c.lastAckedSeq >= 2, 'the last line committed');
      await s.close(); // a clean stop sends the journal's last entries
      await waitFor(() => out.includes('no answer from the server; still following'), 'the follower waiting');
      expect(follower.exitCode).toBeNull();
      // While no server runs the room, its journal is still in Redis: another server reads it.
      const other = await startTestServer({ ...own, port: 0 });
      try {
        const r = await fetch(`http://127.0.0.1:${other.port}/admin/rooms/${roomId}/logs`, { headers: { authorization: `Bearer ${TOKEN}` } }).then((x) => x.json() as Promise<any>);
        expect(r.entries.map((e: { text: string }) => e.text)).toEqual(['probe says before the restart', 'probe says just before the stop']);
      } finally {
        await other.close();
      }
      s = await startTestServer(own); // same port and Redis prefix: the room resumes here
      await waitFor(() => c.connected, 'the player back');
      c.send({ op: 'log', text: 'after the restart' });
      await waitFor(() => out.includes('probe says after the restart'), 'the line logged after the restart');
      // Each line once, in order, across the restart.
      for (const line of ['before the restart', 'just before the stop', 'after the restart']) expect(out.split(`probe says ${line}`).length, line).toBe(2);
      expect(out.indexOf('just before the stop')).toBeLessThan(out.indexOf('after the restart'));
    } finally {
      follower.kill();
      c.close();
      await s.close();
    }
  });

  it('refuses bad requests with stable codes: no token, bad paging, a bad or unknown room', async () => {
    const roomId = 'cli-logs-bad-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'p' });
    await c.connect();
    expect((await logsOf(roomId, '', 'wrong-token')).body.code).toBe('UNAUTHORIZED');
    for (const q of ['?after=-1', '?after=abc', '?after=1.5', '?after=1-2-3', '?after=%2B', '?after=(1-0', '?limit=0', '?limit=201', '?after=']) {
      const r = await logsOf(roomId, q);
      expect([r.status, r.body.code], q).toEqual([400, 'BAD_FIELD']);
    }
    expect((await logsOf('no-such-room-' + Date.now())).body.code).toBe('ROOM_NOT_FOUND');
    expect((await logsOf('bad room!')).body.code).toBe('BAD_ROOM_ID');
    // A room with nothing logged: an empty page, not an error.
    expect((await logsOf(roomId)).body).toMatchObject({ running: true, entries: [], next: '0' });
    const r = await moonpatch('logs', '--room', 'no-such-room-' + Date.now());
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/ROOM_NOT_FOUND/);
    expect((await moonpatch('logs')).err).toMatch(/--room ID/);
    c.close();
  });
});
