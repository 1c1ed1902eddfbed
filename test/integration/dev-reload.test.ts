/**
 * Dev reload (server/sandbox/dev-reload.ts): a real server watching a scratch copy of the probe
 * game. Saving a file swaps the running room to the new build between two ticks, its player
 * connected and its state kept; a file that does not build changes nothing; a schema change
 * migrates; a room unloaded on an old build is brought up to date when it starts again. Real
 * files, watcher, Redis, sockets and isolates.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MoonpatchClient } from '../../client/client.ts';
import { JournalStore } from '../../server/state/journal-store.ts';
import { FIXTURE_GAMES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;

describe('dev reload', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-dev-'));
  const scripts = path.join(dir, 'scripts');
  const patches = path.join(dir, 'patches');
  const main = path.join(scripts, 'probe', 'main.ts');
  const said: string[] = [];
  let server: Server;
  let player: MoonpatchClient;
  const roomId = 'dev-' + Date.now();
  const sumOf = (c: MoonpatchClient) => (c.world.players as Record<string, { sum?: number; total?: number }>)[c.playerId!]!;
  const room = () => server.rooms.get(roomId)!;
  const journalTexts = async (id: string) => (await new JournalStore(server.redis, server.prefix).read(id, '0', 200)).entries.map((e) => (JSON.parse(e.text) as { text: string }).text);
  const currentBuild = () => server.rooms.games().find((g) => g.game === 'probe')!.versions[0]!.version;
  /** Edit the game's main.ts on disk, as an editor would. */
  const edit = (from: string, to: string) => {
    const text = readFileSync(main, 'utf8');
    expect(text).toContain(from);
    writeFileSync(main, text.replace(from, to));
  };

  beforeAll(async () => {
    mkdirSync(patches);
    cpSync(path.join(FIXTURE_GAMES, 'probe'), path.join(scripts, 'probe'), { recursive: true });
    server = await startTestServer({ scriptsDir: scripts, patchesDir: patches, defaultGame: 'probe', devReload: true, roomIdleUnloadMs: 300, say: (l) => said.push(l) });
    player = testClient(server.url, { room: roomId, game: 'probe', name: 'designer' });
    await player.connect();
    const seq = player.send({ op: 'add', n: 5 });
    await waitFor(() => player.lastAckedSeq >= seq, 'the first input');
  });
  afterAll(async () => {
    player?.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('swaps the running room to the new build when a file is saved: player connected, state kept, new behaviour', async () => {
    const before = room().version;
    edit("log('probe says', msg.text);", "log('probe now says', msg.text);");
    await waitFor(() => room().version !== before, 'the room on the new build');
    expect(room().current!.number).toBe(1); // the same version, rebuilt
    expect(said.some((l) => l.includes(`room ${roomId}: ${before} -> ${room().version}, swapped at tick`))).toBe(true);
    const seq = player.send({ op: 'log', text: 'hello' });
    await waitFor(() => player.lastAckedSeq >= seq, 'the log input');
    await waitFor(async () => (await journalTexts(roomId)).includes('probe now says hello'), 'the new line in the journal');
    expect(sumOf(player).sum).toBe(5);
    expect(player.disconnects).toBe(0);
    expect(player.version).toBe(room().version); // told of the new version
  });

  it('follows an editor that saves by renaming a new file over the old, save after save', async () => {
    for (const word of ['first', 'second']) {
      const before = room().version;
      const text = readFileSync(main, 'utf8').replace(/log\('probe [^']*'/, `log('probe ${word} save'`);
      writeFileSync(main + '.tmp', text);
      renameSync(main + '.tmp', main);
      await waitFor(() => room().version !== before, `the ${word} save swapped in`);
    }
    edit("log('probe second save'", "log('probe now says'");
    await waitFor(async () => {
      const seq = player.send({ op: 'log', text: 'x' });
      await waitFor(() => player.lastAckedSeq >= seq, 'the log input');
      return (await journalTexts(roomId)).at(-1) === 'probe now says x';
    }, 'the third save running');
  });

  it('a file that does not build changes nothing: the error is shown, the room plays on', async () => {
    const before = room().version;
    const text = readFileSync(main, 'utf8');
    writeFileSync(main, text + '\nexport function broken( {\n');
    const outcome = await server.devReloader!.reload('probe');
    expect(outcome.error).toMatch(/main\.ts/);
    expect(outcome.rooms).toEqual([]);
    expect(said.some((l) => l.startsWith('moonpatch: probe does not build'))).toBe(true);
    expect(room().version).toBe(before);
    const seq = player.send({ op: 'add', n: 1 });
    await waitFor(() => player.lastAckedSeq >= seq, 'an input on the old build');
    expect(sumOf(player).sum).toBe(6);
    writeFileSync(main, text); // fixed: the same build as before, nothing to swap
    const fixed = await server.devReloader!.reload('probe');
    expect(fixed).toEqual({ game: 'probe', rooms: [] });
    expect(said.at(-1)).toBe('moonpatch: probe builds again');
    expect(room().version).toBe(before);
  });

  it('a build that fails ticks in its verification window is rolled back to the build before', async () => {
    const before = room().version;
    const text = readFileSync(main, 'utf8');
    edit("log('probe now says', msg.text);", "log('probe says, buggy', msg.text);");
    await waitFor(() => room().version !== before, 'the new build swapped in');
    // Three failed ticks inside the window (each `fail-tick` input fails the tick it lands in).
    for (let i = 0; i < 3 && room().version !== before; i++) {
      const seq = player.send({ op: 'fail-tick' });
      await waitFor(() => player.lastAckedSeq >= seq || player.unsettled === 0, 'the failed tick settled');
    }
    await waitFor(() => room().version === before, 'rolled back to the build before');
    expect(room().lastPatch).toMatchObject({ kind: 'rolled-back', to: before });
    expect(player.disconnects).toBe(0);
    writeFileSync(main, text); // the build the room runs again: nothing to swap
    expect(await server.devReloader!.reload('probe')).toEqual({ game: 'probe', rooms: [] });
  });

  it('a schema change in game.json runs the new build\'s migration in the swap tick', async () => {
    const manifest = path.join(scripts, 'probe', 'game.json');
    const game = JSON.parse(readFileSync(manifest, 'utf8')) as Record<string, unknown>;
    // Version 2 of the state: players' `sum` becomes `total`.
    edit('export function init(', `export function migrate(world: any, from: number) {\n  if (from === 1) for (const p of Object.values(world.players) as any[]) { p.total = p.sum; delete p.sum; }\n}\n\nexport function init(`);
    edit('me.sum += msg.n;', 'me.total = (me.total ?? 0) + msg.n;');
    writeFileSync(manifest, JSON.stringify({ ...game, schema: 2 }));
    await waitFor(() => room().meta.schema === 2, 'the room migrated to schema 2');
    await waitFor(() => sumOf(player).total === 6, 'the migrated record reached the player');
    expect(sumOf(player).sum).toBeUndefined();
    const seq = player.send({ op: 'add', n: 4 });
    await waitFor(() => player.lastAckedSeq >= seq, 'an input on the new schema');
    await waitFor(() => sumOf(player).total === 10, 'the new rule applied');
    expect(player.disconnects).toBe(0);
  });

  it('a room unloaded on an old build resumes on it and is brought to the current build as it starts', async () => {
    const idle = 'dev-idle-' + Date.now();
    const c = testClient(server.url, { room: idle, game: 'probe', name: 'later' });
    await c.connect();
    const seq = c.send({ op: 'add', n: 3 });
    await waitFor(() => c.lastAckedSeq >= seq, 'an input');
    const ticksBefore = (c.world.meta as { ticks: number }).ticks;
    c.leave();
    await waitFor(() => server.rooms.get(idle) === undefined, 'the idle room unloaded');
    const old = (await server.store.readMeta(idle))!.version;
    expect(old).toBe(currentBuild());
    edit("log('probe now says', msg.text);", "log('probe says again', msg.text);");
    await waitFor(() => currentBuild() !== old, 'the build replaced');
    const back = testClient(server.url, { room: idle, game: 'probe', name: 'again' });
    await back.connect();
    await waitFor(() => server.rooms.get(idle)?.version === currentBuild(), 'the reopened room on the current build');
    expect(said.some((l) => l.includes(`room ${idle}: ${old} -> ${currentBuild()}`))).toBe(true);
    // Its state came along: the world ticks on from where it was.
    expect((back.world.meta as { ticks: number }).ticks).toBeGreaterThan(ticksBefore);
    back.close();
  });
});
