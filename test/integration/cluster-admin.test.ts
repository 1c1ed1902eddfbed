/**
 * The admin API across servers: two servers on one Redis prefix, each running a room. Either one
 * lists both rooms (scope=cluster), a patch or rollback asked of the wrong one is forwarded to
 * the server that runs the room, a forwarded request is never forwarded again, a room moves from
 * one server to the other with its player (and a move the target refuses leaves it where it was),
 * and a server that shuts down leaves the list. Real Redis, sockets, isolates, and the real
 * `moonpatch` command.
 */
import { unpack } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MoonpatchClient } from '../../client/client.ts';
import { runCli } from '../helpers/cli.ts';
import { FIXTURE_GAMES, FIXTURE_PATCHES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;
const TOKEN = 'cluster-admin-token-0123456789';

async function admin(server: Server, method: string, route: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://127.0.0.1:${server.port}${route}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

function moonpatch(server: Server, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return runCli(`http://127.0.0.1:${server.port}`, TOKEN, ...args);
}

describe('admin API across two servers', () => {
  let a: Server;
  let b: Server;
  const clients: MoonpatchClient[] = [];
  const stamp = Date.now();
  const roomA = `on-a-${stamp}`;
  const roomB = `on-b-${stamp}`;

  beforeAll(async () => {
    const common = { scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', adminToken: TOKEN, takeover: false };
    a = await startTestServer({ ...common, nodeId: 'node-a' });
    b = await startTestServer({ ...common, nodeId: 'node-b', redisPrefix: a.prefix });
    for (const [server, room] of [[a, roomA], [b, roomB]] as const) {
      const c = testClient(server.url, { room, game: 'probe', name: 'p', autoReconnect: false });
      await c.connect();
      clients.push(c);
    }
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await b?.close();
    await a?.close();
  });

  it('either server lists every room with the server running it', async () => {
    for (const server of [a, b]) {
      let rows: { room: string; node: string }[] = [];
      await waitFor(async () => {
        rows = (await admin(server, 'GET', '/admin/rooms?scope=cluster')).body;
        return rows.some((r) => r.room === roomA) && rows.some((r) => r.room === roomB);
      }, 'both rooms listed');
      expect(rows.find((r) => r.room === roomA)!.node).toBe('node-a');
      expect(rows.find((r) => r.room === roomB)!.node).toBe('node-b');
    }
    // Without the scope, a server lists its own rooms only.
    expect((await admin(b, 'GET', '/admin/rooms')).body.map((r: { room: string }) => r.room)).toEqual([roomB]);
    expect(await admin(b, 'GET', '/admin/rooms?scope=everything')).toMatchObject({ status: 400, body: { code: 'BAD_FIELD' } });
  });

  it('a patch and a rollback asked of the other server are forwarded to the one running the room', async () => {
    const patched = await admin(b, 'POST', `/admin/rooms/${roomA}/patch`, { version: 2 });
    expect(patched).toMatchObject({ status: 200, body: { ok: true, roomId: roomA } });
    expect(a.rooms.get(roomA)!.current?.number).toBe(2);
    expect(b.rooms.get(roomA)).toBeUndefined();
    const back = await admin(b, 'POST', `/admin/rooms/${roomA}/rollback`, {});
    expect(back).toMatchObject({ status: 200, body: { ok: true } });
    expect(a.rooms.get(roomA)!.current?.number).toBe(1);
    expect(clients.every((c) => c.disconnects === 0)).toBe(true);
  });

  it('a room\'s script journal asked of the other server comes from Redis, with the server running it', async () => {
    const c = clients[0]!; // in roomA, on a
    const seq = c.send({ op: 'log', text: 'said on a' });
    await waitFor(() => c.lastAckedSeq >= seq, 'the log input committed');
    const texts = async () => (await admin(b, 'GET', `/admin/rooms/${roomA}/logs`)).body.entries.map((e: { text: string }) => e.text);
    await waitFor(async () => (await texts()).includes('probe says said on a'), 'the line in the journal, read through b');
    const r = await admin(b, 'GET', `/admin/rooms/${roomA}/logs`);
    expect(r).toMatchObject({ status: 200, body: { room: roomA, node: 'node-a', running: true } });
    expect(r.body.entries.find((e: { text: string }) => e.text === 'probe says said on a').node).toBe('node-a');
  });

  it('a request that was forwarded once is not forwarded again', async () => {
    const r = await admin(b, 'POST', `/admin/rooms/${roomA}/patch`, { version: 2 }, { 'x-moonpatch-forwarded': '1' });
    expect(r).toMatchObject({ status: 503, body: { code: 'ROOM_OWNED_ELSEWHERE' } });
    expect(a.rooms.get(roomA)!.current?.number).toBe(1);
  });

  it('`moonpatch push --all` through one server patches the rooms of both, and status shows the servers', async () => {
    const push = await moonpatch(b, 'push', '2', '--all', '--game', 'probe');
    expect(push.code).toBe(0);
    expect(a.rooms.get(roomA)!.current?.number).toBe(2);
    expect(b.rooms.get(roomB)!.current?.number).toBe(2);
    const status = await moonpatch(b, 'status');
    expect(status.out).toMatch(new RegExp(`${roomA}\\s+node-a`));
    expect(status.out).toMatch(new RegExp(`${roomB}\\s+node-b`));
  });

  it('ignores a node entry that is not a server status (garbage in Redis) instead of failing the list', async () => {
    await a.redis.multi().set(`${a.prefix}:node:garbage`, 'not json', 'PX', 60_000).sadd(`${a.prefix}:nodes`, 'garbage').exec();
    await a.redis.multi().set(`${a.prefix}:node:odd`, JSON.stringify({ node: 'odd', rooms: 'nope' }), 'PX', 60_000).sadd(`${a.prefix}:nodes`, 'odd').exec();
    // A status whose latency points are partly not points: the bad ones are dropped, the good one kept.
    const good = { t: Math.floor(Date.now() / 1000) * 1000 - 5_000, p50: 1, p99: 2, ticks: 20, failed: 0 };
    const latency = [good, { t: 'x' }, null, { ...good, p99: 'NaN' }, { ...good, t: good.t + 1_000, p50: null }];
    await a.redis.multi().set(`${a.prefix}:node:liar`, JSON.stringify({ node: 'liar', url: '', at: 0, rooms: [], latency }), 'PX', 60_000).sadd(`${a.prefix}:nodes`, 'liar').exec();
    try {
      const r = await admin(b, 'GET', '/admin/rooms?scope=cluster');
      expect(r.status).toBe(200);
      expect(r.body.map((x: { room: string }) => x.room)).toEqual(expect.arrayContaining([roomA, roomB]));
      const dash = (await (await fetch(`http://127.0.0.1:${b.port}/dashboard/data`)).json()) as { servers: { node: string; series: unknown[] }[] };
      expect(dash.servers.find((s) => s.node === 'liar')?.series).toEqual([good]);
    } finally {
      await a.redis.multi().del(`${a.prefix}:node:garbage`, `${a.prefix}:node:odd`, `${a.prefix}:node:liar`).srem(`${a.prefix}:nodes`, 'garbage', 'odd', 'liar').exec();
    }
  });

  it('moves a room with a player in it to the other server: same seat, every input applied once, the ticks go on', async () => {
    const room = `moving-${stamp}`;
    const player = testClient(a.url, { room, game: 'probe', name: 'mover', reconnectDelayMs: 50 });
    clients.push(player);
    const welcome = await player.connect();
    let settled = 0;
    let rejected = 0;
    const rejections: string[] = [];
    player.on('settled', (e) => (e.rejected ? (rejected++, rejections.push(`${e.rejected.code}: ${e.rejected.msg}`)) : settled++));
    // Inputs keep coming before, during and after the move, faster than a tick (the client
    // resends what the old server never committed at the pace the new one takes: welcome.lim).
    const SENDS = 60;
    let sent = 0;
    const sender = setInterval(() => {
      if (sent < SENDS) {
        player.send({ op: 'add', n: 1 });
        sent++;
      }
    }, 20);
    try {
      await waitFor(() => sent >= 15, 'inputs sent before the move');
      const tickBefore = a.rooms.get(room)!.tick;
      // Asked of the server that does not run it: forwarded to the one that does.
      const r = await admin(b, 'POST', `/admin/rooms/${room}/move`, { to: 'node-b' });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body).toMatchObject({ room, from: 'node-a', to: 'node-b' });
      expect(r.body.tick).toBeGreaterThanOrEqual(tickBefore);
      expect(a.rooms.get(room)).toBeUndefined();
      expect(b.rooms.get(room)).toBeDefined();
      await waitFor(() => sent === SENDS && settled + rejected === SENDS, 'every input settled');
    } finally {
      clearInterval(sender);
    }
    expect(rejections).toEqual([]);
    expect(rejected).toBe(0);
    expect(player.currentUrl).toBe(b.url);
    const moved = b.rooms.get(room)!;
    // (The push --all above made version 2 the probe's target, which renamed `sum` to `score`.)
    const me = unpack(moved.committed.records.get(`players/${player.playerId}`)!) as { name: string; sum?: number; score?: number; inputs: number };
    expect({ name: me.name, total: me.sum ?? me.score, inputs: me.inputs }).toEqual({ name: 'mover', total: SENDS, inputs: SENDS }); // same seat, each input once
    expect([...moved.committed.records.keys()].filter((k) => k.startsWith('players/'))).toHaveLength(1);
    const tick = moved.tick;
    await waitFor(() => moved.tick > tick + 5, 'the room ticking on its new server');
    // Ops see the move on the old server's dashboard, and in its metrics.
    const dash = (await (await fetch(`http://127.0.0.1:${a.port}/dashboard/data`)).json()) as { events: { what: string; roomId: string; detail?: string }[] };
    expect(dash.events).toContainEqual(expect.objectContaining({ what: 'moved', roomId: room, detail: 'to node-b' }));
    const metrics = await (await fetch(`http://127.0.0.1:${a.port}/metrics`)).text();
    expect(metrics).toMatch(/moonpatch_patch_events_total\{game="probe",what="moved"\} [1-9]/);
  });

  it('refuses a move to a server that is not live, to the one running it, and without a target, changing nothing', async () => {
    const unknown = await admin(a, 'POST', `/admin/rooms/${roomA}/move`, { to: 'node-zz' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('NODE_NOT_FOUND');
    const same = await admin(a, 'POST', `/admin/rooms/${roomA}/move`, { to: 'node-a' });
    expect(same.status).toBe(400);
    expect(same.body.code).toBe('BAD_FIELD');
    for (const body of [{}, { to: 5 }, { to: '' }]) {
      const bad = await admin(a, 'POST', `/admin/rooms/${roomA}/move`, body);
      expect(bad.status).toBe(400);
      expect(bad.body.code).toBe('BAD_FIELD');
    }
    expect(a.rooms.get(roomA)).toBeDefined();
    expect(b.rooms.get(roomA)).toBeUndefined();
    // And the command line says so, with a non-zero exit.
    const cli = await moonpatch(a, 'move', '--room', roomA, '--to', 'node-zz');
    expect(cli.code).toBe(1);
    expect(cli.out).toMatch(/NODE_NOT_FOUND/);
  });

  it('a move the other server cannot take (it refuses the request) leaves the room running here, its player resumed', async () => {
    // A live server with another admin token: it refuses the hand-over's open request.
    const c = await startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', adminToken: 'another-token-0123456789', takeover: false, nodeId: 'node-c', redisPrefix: a.prefix });
    try {
      const room = `unmovable-${stamp}`;
      const player = testClient(a.url, { room, game: 'probe', name: 'stayer', reconnectDelayMs: 50 });
      clients.push(player);
      await player.connect();
      const id = player.playerId;
      player.send({ op: 'add', n: 7 });
      await waitFor(() => player.unsettled === 0, 'the input before the move settled');
      await waitFor(async () => (await c.redis.get(`${a.prefix}:node:node-c`)) !== null, 'node-c listed');
      const r = await admin(a, 'POST', `/admin/rooms/${room}/move`, { to: 'node-c' });
      expect(r.status).toBe(503);
      expect(r.body.code).toBe('ROOM_MOVE_FAILED');
      expect(r.body.msg).toMatch(/node-c could not open room/);
      expect(a.rooms.get(room)).toBeDefined();
      expect(c.rooms.get(room)).toBeUndefined();
      player.send({ op: 'add', n: 1 });
      await waitFor(() => player.unsettled === 0 && player.currentUrl === a.url, 'the player resumed on the same server');
      expect(player.playerId).toBe(id);
      const me = unpack(a.rooms.get(room)!.committed.records.get(`players/${id}`)!) as { sum?: number; score?: number; inputs: number };
      expect({ total: me.sum ?? me.score, inputs: me.inputs }).toEqual({ total: 8, inputs: 2 });
    } finally {
      await c.close();
    }
  });

  it('a server that shuts down leaves the list', async () => {
    const c = await startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', adminToken: TOKEN, takeover: false, nodeId: 'node-c', redisPrefix: a.prefix });
    const roomC = `on-c-${stamp}`;
    await c.rooms.open(roomC, 'probe');
    await waitFor(async () => (await admin(a, 'GET', '/admin/rooms?scope=cluster')).body.some((r: { room: string }) => r.room === roomC), 'room on c listed');
    await c.close();
    const rows = (await admin(a, 'GET', '/admin/rooms?scope=cluster')).body as { node: string }[];
    expect(rows.some((r) => r.node === 'node-c')).toBe(false);
  });
});
