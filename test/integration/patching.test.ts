/**
 * Live patching at a tick boundary, against real isolates, Redis and sockets: a good patch
 * migrates the live state and swaps while players stay connected with every input settled once;
 * a throwing migration, a migration that yields invalid state, and a patch that does not build
 * each leave the room on its version with its state unchanged; a patched room resumes on its
 * pinned version after a restart.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpack } from 'msgpackr';
import type { MoonpatchClient } from '../../client/client.ts';
import type { VersionMsg } from '../../server/protocol/messages.ts';
import type { Room } from '../../server/room/room.ts';
import type { VersionSwitch } from '../../server/room/version-switch.ts';
import { refusalsTooHigh } from '../../server/patch/refusals.ts';
import { loadGame } from '../../server/sandbox/games.ts';
import { BuildError } from '../../server/errors/errors.ts';
import { channels, subscribe, type TickFailedEvent } from '../../server/ops/events.ts';
import path from 'node:path';
import { FIXTURE_GAMES, FIXTURE_PATCHES, REPO_ROOT, startTestServer, testClient, waitFor } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;
let server: Server;
beforeAll(async () => {
  server = await startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', inputRatePerSecond: 500, inputBurst: 200 });
});
afterAll(async () => server?.close());

const record = (room: Room, key: string) => {
  const v = room.committed.records.get(key);
  return v ? (unpack(v) as Record<string, unknown>) : undefined;
};

describe('a good patch', () => {
  it('migrates the live state at one tick boundary while players keep playing, losing nothing', async () => {
    const roomId = 'patch-good-' + Date.now();
    const clients: MoonpatchClient[] = [];
    const applied = new Map<MoonpatchClient, number>();
    const notices: VersionMsg[] = [];
    for (let i = 0; i < 4; i++) {
      const c = testClient(server.url, { room: roomId, game: 'probe', name: `p${i}` });
      await c.connect();
      c.on('settled', (s) => {
        if (!s.rejected) applied.set(c, (applied.get(c) ?? 0) + 1);
      });
      c.on('version', (v) => notices.push(v));
      clients.push(c);
    }
    const room = server.rooms.get(roomId)!;
    const v1 = room.version;
    let sending = true;
    const senders = clients.map(async (c) => {
      while (sending) {
        c.send({ op: 'add', n: 1 });
        await new Promise((r) => setTimeout(r, 15));
      }
    });
    await new Promise((r) => setTimeout(r, 300));
    const result = await server.rooms.applyVersion(roomId, 2);
    await new Promise((r) => setTimeout(r, 300));
    sending = false;
    await Promise.all(senders);
    await waitFor(() => clients.every((c) => c.unsettled === 0), 'all inputs settled');

    expect(result).toMatchObject({ ok: true, from: v1, fromSchema: 1, toSchema: 2 });
    if (!result.ok) return;
    expect(room.version).toBe(result.to);
    expect(room.schema).toBe(2);
    // Every client was told once, about the same tick, and none was disconnected.
    expect(notices).toHaveLength(clients.length);
    for (const n of notices) expect(n).toEqual({ t: 'ver', from: v1, to: result.to, tick: result.tick });
    for (const c of clients) expect(c.disconnects).toBe(0);
    // The migrated state is what the migration says: `sum` became `score`, and every input
    // applied before and after the swap is in it exactly once.
    for (const c of clients) {
      const p = record(room, `players/${c.playerId}`)!;
      expect(p).not.toHaveProperty('sum');
      expect(p.score).toBe(applied.get(c));
      expect(p.inputs).toBe(applied.get(c));
    }
    const meta = (await server.store.readMeta(roomId))!;
    expect(meta).toMatchObject({ version: result.to, schema: 2 });
    await waitFor(() => clients.every((c) => c.version === result.to), 'clients see the new version on deltas');
    for (const c of clients) c.close();
  });
});

describe('refused patches leave version and state unchanged', () => {
  async function refusedAt(versionNumber: number, stage: string, code: string) {
    const roomId = `patch-bad-${versionNumber}-` + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'p' });
    await c.connect();
    const room = server.rooms.get(roomId)!;
    await room.pauseClock();
    c.send({ op: 'add', n: 5 });
    await waitFor(() => room.queue.size > 0, 'queued');
    await room.runTick();
    const before = { version: room.version, schema: room.schema, player: record(room, `players/${c.playerId}`) };
    const pending = server.rooms.applyVersion(roomId, versionNumber);
    await waitFor(() => (room as unknown as { versions: VersionSwitch }).versions.staging?.ready === true, 'patch staged');
    const seq = c.send({ op: 'add', n: 7 });
    await waitFor(() => room.queue.size > 0, 'queued');
    await room.runTick(); // the swap tick: refused, and run on the old version instead
    const result = await pending;
    expect(result).toMatchObject({ ok: false, stage, code });
    expect(room.version).toBe(before.version);
    expect(room.schema).toBe(before.schema);
    expect((await server.store.readMeta(roomId))!).toMatchObject({ version: before.version, schema: before.schema });
    // The input in the swap tick was applied by the old version, once; the migration left no trace.
    await waitFor(() => c.lastAckedSeq >= seq, 'input acknowledged');
    expect(record(room, `players/${c.playerId}`)).toEqual({ ...before.player, sum: 12, inputs: 2 });
    c.close();
    return result;
  }

  it('a migration that throws', async () => {
    const r = await refusedAt(4, 'migrate', 'SCRIPT_ERROR');
    if (!r.ok) expect(r.stack).toMatch(/migration\.ts:\d+:\d+/);
  });

  it('a migration that yields invalid state', async () => {
    const r = await refusedAt(5, 'migrate', 'STATE_INVALID_VALUE');
    if (!r.ok) expect(r.message).toMatch(/not plain data/);
  });

  it('a patch that does not build is reported with its file and line, and the versions before it stay usable', async () => {
    const problems: [string, unknown][] = [];
    const game = await loadGame(path.join(FIXTURE_GAMES, 'probe'), FIXTURE_PATCHES, (_g, folder, e) => problems.push([folder, e]));
    expect(game.versions.map((v) => v.number)).toEqual([1, 2, 3, 4, 5]);
    expect(problems).toHaveLength(1);
    expect(problems[0]![0]).toBe('006-syntax-error');
    expect(problems[0]![1]).toBeInstanceOf(BuildError);
    expect(String((problems[0]![1] as Error).message)).toMatch(/helper\.ts:\d+:\d+/);
    const room = await server.rooms.open('patch-nobuild-' + Date.now(), 'probe');
    await expect(server.rooms.applyVersion(room.id, 6).catch((e: { code: string }) => e.code)).resolves.toBe('GAME_NOT_FOUND');
    expect(room.version).toBe(game.versions[0]!.bundle.version);
  });
});

/**
 * The same server restarted: same prefix and node id, so it may claim its rooms without waiting
 * for their leases to lapse.
 */
const restartedServer = () =>
  startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', redisPrefix: server.prefix, nodeId: server.store.leaseHolder.node });

describe('pinned versions', () => {
  it('a patched room resumes on its version after a restart', async () => {
    const roomId = 'patch-pin-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'p', autoReconnect: false });
    await c.connect();
    const result = await server.rooms.applyVersion(roomId, 2);
    expect(result.ok).toBe(true);
    c.close();
    const again = await restartedServer();
    try {
      const room = await again.rooms.open(roomId);
      expect(room.version).toBe(result.ok ? result.to : '');
      expect(room.schema).toBe(2);
      // Status shows the patch that got it there, read back from the room's history in Redis
      // (the server that applied it is not the one answering).
      expect(again.rooms.status().find((r) => r.room === roomId)?.lastPatch).toMatchObject({ kind: 'applied', to: room.version });
    } finally {
      await again.close();
    }
  });
});

describe('patch history', () => {
  it('skips entries in Redis that are not history entries, and status shows none when the newest is junk', async () => {
    const roomId = 'patch-junk-history-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'p', autoReconnect: false });
    await c.connect();
    expect((await server.rooms.applyVersion(roomId, 2)).ok).toBe(true);
    c.close();
    const key = server.store.keys(roomId).history;
    for (const junk of ['not json', '{"kind":"applied"}', '[1,2]', '{"at":1,"kind":"exploded","from":"a","to":"b","tick":1}']) await server.redis.lpush(key, junk);
    const history = await server.store.readHistory(roomId);
    expect(history.map((h) => h.kind)).toEqual(['applied']);
    expect(await server.store.latestHistory(roomId)).toBeNull();
    // Opened by a restarted server: it reads the junk as no outcome.
    const again = await restartedServer();
    try {
      const room = await again.rooms.open(roomId);
      expect(room.schema).toBe(2);
      expect(room.lastPatch).toBeNull();
    } finally {
      await again.close();
    }
  });
});

describe('rollback', () => {
  it('goes back across a schema change with the downgrade, keeping what players did since the patch', async () => {
    const roomId = 'rollback-down-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'p' });
    await c.connect();
    const room = server.rooms.get(roomId)!;
    const v1 = room.version;
    let applied = 0;
    c.on('settled', (s) => {
      if (!s.rejected) applied++;
    });
    for (let i = 0; i < 5; i++) c.send({ op: 'add', n: 1 });
    await waitFor(() => c.unsettled === 0, 'inputs before the patch');
    expect((await server.rooms.applyVersion(roomId, 2)).ok).toBe(true);
    for (let i = 0; i < 5; i++) c.send({ op: 'add', n: 1 });
    await waitFor(() => c.unsettled === 0, 'inputs on version 2');
    const back = await server.rooms.rollback(roomId);
    expect(back).toMatchObject({ ok: true, to: v1, fromSchema: 2, toSchema: 1 });
    for (let i = 0; i < 5; i++) c.send({ op: 'add', n: 1 });
    await waitFor(() => c.unsettled === 0, 'inputs after the rollback');
    expect(applied).toBe(15);
    expect(record(room, `players/${c.playerId}`)).toMatchObject({ sum: 15, inputs: 15 });
    expect(record(room, `players/${c.playerId}`)).not.toHaveProperty('score');
    const kinds = (await server.rooms.history(roomId)).map((h) => h.kind);
    expect(kinds.slice(0, 2)).toEqual(['rolled-back', 'applied']);
    c.close();
  });

  /** A fresh room with one player, patched to version 2 (on watch from then), and how each of its inputs settled. */
  async function playerOnVersion2(name: string) {
    const roomId = `${name}-${Date.now()}`;
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'p' });
    await c.connect();
    const room = server.rooms.get(roomId)!;
    expect((await server.rooms.applyVersion(roomId, 2)).ok).toBe(true);
    const settled = new Map<number, string>();
    c.on('settled', (s) => settled.set(s.seq, s.rejected?.code ?? 'applied'));
    return { roomId, c, room, v2: room.version, settled };
  }

  it('rolls back automatically a patch whose ticks fail after it went live, records it, and loses no input or join sent meanwhile', async () => {
    const { roomId, c, room, v2, settled } = await playerOnVersion2('rollback-auto');
    // A second player asks for a seat as the first tick fails: the join waits too.
    const late = testClient(server.url, { room: roomId, game: 'probe', name: 'late' });
    const lateErrors: string[] = [];
    late.on('error', (m) => lateErrors.push(m.code));
    let lateSeated: Promise<unknown> | null = null;
    // And an operator asks for a rollback as the automatic one starts (the third failure): one
    // of the two is refused as already under way, and that must not stop the holding.
    let failures = 0;
    let asked: Promise<unknown> | null = null;
    const stop = subscribe<TickFailedEvent>(channels.tickFailed, (e) => {
      if (e.roomId !== roomId) return;
      lateSeated ??= late.connect();
      if (++failures === 3) asked = server.rooms.rollback(roomId).catch((err: { code?: string }) => err.code);
    });
    const bomb = await server.rooms.applyVersion(roomId, 3);
    expect(bomb.ok).toBe(true); // the swap tick itself succeeds; the ticks after it throw
    // Inputs all through the failing ticks and the rollback: they wait for a version that
    // can run them (the one rolled back to) instead of being refused with their tick.
    let sent = 0;
    while (room.version !== v2) {
      c.send({ op: 'add', n: 1 });
      sent++;
      await new Promise((r) => setTimeout(r, 10));
    }
    await waitFor(() => c.unsettled === 0, 'every input settled');
    expect(sent).toBeGreaterThan(3);
    expect([...settled.values()].filter((how) => how !== 'applied')).toEqual([]);
    expect(record(room, `players/${c.playerId}`)).toMatchObject({ score: sent, inputs: sent });
    stop();
    // Usually the automatic one stages first; when the operator's wins, it is the one recorded.
    const answer = await asked;
    const operatorWon = answer !== 'PATCH_IN_PROGRESS';
    if (operatorWon) expect(answer).toMatchObject({ ok: true, to: v2 });
    expect(lateSeated).not.toBeNull();
    await lateSeated;
    expect(lateErrors).toEqual([]);
    expect(record(room, `players/${late.playerId}`)).toMatchObject({ name: 'late' });
    const history = await server.rooms.history(roomId);
    expect(history[0]).toMatchObject({ kind: 'rolled-back', to: v2 });
    expect(history[0]!.reason).toMatch(operatorWon ? /^manual rollback/ : /^verification failed/);
    // The room ticks on the restored version.
    const t = room.tick;
    await waitFor(() => room.tick > t + 3, 'ticking again');
    c.close();
    late.close();
  });

  it('an input that fails every version\'s tick, sent while a broken patch fails its ticks, does not stop its rollback: it is refused after it', async () => {
    const { roomId, c, room, v2, settled } = await playerOnVersion2('rollback-poison');
    expect((await server.rooms.applyVersion(roomId, 3)).ok).toBe(true); // every tick after this throws
    // Held with the failing ticks' events; version 2's tick fails on it too.
    const poison = c.send({ op: 'fail-tick' });
    await waitFor(() => room.version === v2, 'rolled back to version 2');
    await waitFor(() => c.unsettled === 0, 'every input settled');
    expect(settled.get(poison)).toBe('TICK_FAILED');
    expect((await server.rooms.history(roomId))[0]).toMatchObject({ kind: 'rolled-back', to: v2 });
    const add = c.send({ op: 'add', n: 1 });
    await waitFor(() => settled.has(add), 'an input after it');
    expect(settled.get(add)).toBe('applied');
    c.close();
  });

  it('a tick that fails once while a patch is on watch: its inputs wait for a rollback that does not come, and are refused before later inputs are acknowledged', async () => {
    const { roomId, c, room, v2, settled } = await playerOnVersion2('watch-one-off');
    // One tick fails (the input asks it to); the next ones commit. An add sent as soon as the
    // tick has failed goes in the next tick, whose ack must not come before the failing input's
    // refusal: the client would settle that input as applied.
    let later: number | undefined;
    let waitingAtFailure = -1;
    const stop = subscribe<TickFailedEvent>(channels.tickFailed, (e) => {
      if (e.roomId !== roomId || later !== undefined) return;
      waitingAtFailure = room.waitingEvents; // what moonpatch_input_queue_depth shows
      later = c.send({ op: 'add', n: 1 });
    });
    const failing = c.send({ op: 'fail-tick' });
    await waitFor(() => later !== undefined && c.unsettled === 0, 'every input settled');
    stop();
    expect(waitingAtFailure).toBe(1); // the failing input, held
    expect(settled.get(failing)).toBe('TICK_FAILED');
    expect(settled.get(later!)).toBe('applied');
    expect(record(room, `players/${c.playerId}`)).toMatchObject({ score: 1, inputs: 1 });
    expect(room.version).toBe(v2); // one failure is under the limit: no rollback
    c.close();
  });

  it('an input that stops a tick while a sound patch is on watch costs only its player: held, then refused when the next tick commits; the others\' inputs run a tick late; no rollback, no charge', async () => {
    const { roomId, c, room, v2, settled } = await playerOnVersion2('watch-poison');
    const b = testClient(server.url, { room: roomId, game: 'probe', name: 'bystander' });
    await b.connect();
    const bSettled = new Map<number, string>();
    b.on('settled', (s) => bSettled.set(s.seq, s.rejected?.code ?? 'applied'));
    await room.pauseClock();
    expect((room as unknown as { versions: VersionSwitch }).versions.holdsFailedTickEvents).toBe(true); // v2 is on watch
    const tickBefore = room.tick;
    const loop = c.send({ op: 'loop' });
    const add = b.send({ op: 'add', n: 5 });
    await waitFor(() => room.queue.size >= 2, 'both inputs queued');
    await room.runTick(); // stops in c's input hook
    expect(room.tick).toBe(tickBefore);
    expect(room.waitingEvents).toBe(2); // the loop held for a rollback, the add back in the queue
    expect(settled.has(loop)).toBe(false);
    await room.runTick(); // commits: no rollback came, so the loop is refused before the add's ack
    expect(room.tick).toBe(tickBefore + 1);
    await waitFor(() => settled.has(loop) && bSettled.has(add), 'both settled');
    expect(settled.get(loop)).toBe('CPU_BUDGET_EXCEEDED');
    expect(bSettled.get(add)).toBe('applied');
    expect(record(room, `players/${b.playerId}`)).toMatchObject({ score: 5 });
    expect(room.version).toBe(v2);
    expect(room.seats.get(c.playerId)?.link).not.toBeNull(); // not charged while on watch
    room.resumeClock();
    b.close();
    c.close();
  });

  it('rolls the arena\'s v4 (no downgrade) back to v3 by replay, and refuses to go further back without a downgrade, changing nothing', async () => {
    const arena = await startTestServer({ redisPrefix: server.prefix + 'a' });
    try {
      const roomId = 'rollback-nodown-' + Date.now();
      const room = await arena.rooms.open(roomId, 'arena');
      const c = testClient(arena.url, { room: roomId, game: 'arena', name: 'runner' });
      await c.connect();
      c.send({ move: [1, 0] });
      expect((await arena.rooms.applyVersion(roomId, 3)).ok).toBe(true);
      const v3 = room.version;
      expect((await arena.rooms.applyVersion(roomId, 4)).ok).toBe(true);
      expect(record(room, `players/${c.playerId}`)).toHaveProperty('boost');
      c.send({ move: [0, 1] });
      // v4 restructured boost fields and has no downgrade: back to v3 by replaying its ticks.
      expect(await arena.rooms.rollback(roomId)).toMatchObject({ ok: true, to: v3, toSchema: 2 });
      const me = record(room, `players/${c.playerId}`)!;
      expect(me).not.toHaveProperty('boost');
      expect(me).toHaveProperty('boostUntil');
      // v1 is older than the recorded swap point (schema 1): no way back without a downgrade.
      const before = room.committed.hash();
      await room.pauseClock();
      const err = await arena.rooms.rollback(roomId, 1).catch((e: { code: string }) => e);
      expect(err).toMatchObject({ code: 'ROLLBACK_NEEDS_DOWNGRADE' });
      expect(room.version).toBe(v3);
      expect(room.committed.hash()).toBe(before);
      c.close();
    } finally {
      await arena.close();
    }
  });
});

describe('safe points', () => {
  it('waits for the script to say it is safe, then swaps', async () => {
    const roomId = 'safe-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'p' });
    await c.connect();
    const room = server.rooms.get(roomId)!;
    const v1 = room.version;
    let done = false;
    const pending = server.rooms.applyVersion(roomId, 2, { safePoint: true, deadlineMs: 60_000 }).finally(() => (done = true));
    const t = room.tick;
    await waitFor(() => room.tick > t + 10, 'ten ticks while not safe');
    expect(done).toBe(false);
    expect(room.version).toBe(v1);
    c.send({ op: 'make-safe' });
    const result = await pending;
    expect(result.ok).toBe(true);
    expect(room.version).not.toBe(v1);
    c.close();
  });

  it('applies anyway once the deadline has passed', async () => {
    const roomId = 'safe-deadline-' + Date.now();
    const room = await server.rooms.open(roomId, 'probe');
    const v1 = room.version;
    const result = await server.rooms.applyVersion(roomId, 2, { safePoint: true, deadlineMs: 300 });
    expect(result.ok).toBe(true);
    expect(room.version).not.toBe(v1);
  });
});

describe('many patches', () => {
  it('50 successive patches under load leave the isolate count and heap near where they started', async () => {
    const { GameSandbox } = await import('../../server/sandbox/sandbox.ts');
    const roomId = 'many-' + Date.now();
    const clients: MoonpatchClient[] = [];
    for (let i = 0; i < 3; i++) {
      const c = testClient(server.url, { room: roomId, game: 'probe', name: `p${i}` });
      await c.connect();
      clients.push(c);
    }
    const room = server.rooms.get(roomId)!;
    let sending = true;
    const senders = clients.map(async (c) => {
      while (sending) {
        c.send({ op: 'add', n: 1 });
        await new Promise((r) => setTimeout(r, 20));
      }
    });
    const liveBefore = GameSandbox.live;
    const heapBefore = await room.heapUsed();
    for (let i = 0; i < 50; i++) {
      const r = i % 2 === 0 ? await server.rooms.applyVersion(roomId, 2) : await server.rooms.rollback(roomId);
      expect(r.ok, `patch ${i}`).toBe(true);
    }
    sending = false;
    await Promise.all(senders);
    await waitFor(() => clients.every((c) => c.unsettled === 0), 'inputs settled');
    expect(GameSandbox.live).toBe(liveBefore);
    // One isolate's heap, a few MB: not 50 isolates' worth.
    expect(await room.heapUsed()).toBeLessThan(Math.max(heapBefore * 3, 16 * 2 ** 20));
    for (const c of clients) {
      expect(c.disconnects).toBe(0);
      c.close();
    }
  });
});

describe('the verification window watches what the hooks refuse', () => {
  it('rolls back a patch whose input hook throws for everyone although no tick fails, and adds work again after it', async () => {
    const refusing = await startTestServer({
      scriptsDir: FIXTURE_GAMES, patchesDir: path.join(REPO_ROOT, 'test', 'fixtures', 'patches-refusing'), defaultGame: 'probe', inputRatePerSecond: 500, inputBurst: 200,
    });
    try {
      const roomId = 'refusals-' + Date.now();
      const players = [0, 1].map((i) => testClient(refusing.url, { room: roomId, game: 'probe', name: `p${i}` }));
      for (const c of players) await c.connect();
      const room = refusing.rooms.get(roomId)!;
      const refusedCodes: string[] = [];
      for (const c of players) c.on('settled', (x) => x.rejected && refusedCodes.push(x.rejected.code));
      // The version before refuses a little: 1 throw in 31 events per player.
      const addAll = async (n: number) => {
        const seqs = players.flatMap((c) => Array.from({ length: n }, () => c.send({ op: 'add', n: 1 })));
        await waitFor(() => players.every((c) => c.unsettled === 0), `${seqs.length} inputs settled`);
      };
      for (const c of players) c.send({ op: 'throw' });
      await addAll(30);
      const v1 = room.version;
      const sums = () => players.map((c) => (record(room, `players/${c.playerId}`) as { sum: number }).sum);
      expect(sums()).toEqual([30, 30]);

      expect(await refusing.rooms.applyVersion(roomId, 2)).toMatchObject({ ok: true });
      const refusedBefore = refusedCodes.length;
      await addAll(15); // every one of them refused by the bug: 30 events, no failed tick
      await waitFor(() => room.version === v1, 'rolled back to v1 by itself');
      expect(refusedCodes.length - refusedBefore).toBeGreaterThanOrEqual(20);
      const history = await refusing.rooms.history(roomId);
      expect(history[0]).toMatchObject({ kind: 'rolled-back', to: v1 });
      expect(history[0]!.reason).toMatch(/verification failed: the scripts refused 100% of \d+ events \(\d+\) by tick \d+, against 3% before the patch/);

      // Back on v1: adds apply again; what v2 refused stays refused (its players were told).
      await addAll(2);
      expect(sums()).toEqual([32, 32]);
      expect(players.every((c) => c.disconnects === 0)).toBe(true);
      for (const c of players) c.close();
    } finally {
      await refusing.close();
    }
  });

  it('the threshold: a share of refusals above the old one by more than the margin, from 20 events on; 100 turns it off', () => {
    const at = (events: number, refused: number, refusedBefore: number, margin = 25) => refusalsTooHigh({ events, refused, refusedBefore }, margin);
    expect(at(19, 19, 0)).toBe(false); // too few events to judge
    expect(at(20, 6, 0)).toBe(true); // 30% against none
    expect(at(20, 5, 0)).toBe(false); // 25%: not above the margin
    expect(at(100, 70, 0.5)).toBe(false); // 70% against 50%: within 25 points
    expect(at(100, 80, 0.5)).toBe(true);
    expect(at(100, 100, 0, 100)).toBe(false); // check off
    expect(at(100, 1, 0, 0)).toBe(true); // margin 0: any rise
  });
});
