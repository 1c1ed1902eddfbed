/**
 * Seats and connections: the resume window, taking a seat over from another connection, and a
 * slow consumer that is first merged, then disconnected, without slowing the room.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpack } from 'msgpackr';
import type { MoonpatchClient } from '../../client/client.ts';
import { CloseCodes } from '../../server/errors/codes.ts';
import { FIXTURE_GAMES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;
let server: Server;
beforeAll(async () => {
  server = await startTestServer({
    scriptsDir: FIXTURE_GAMES,
    defaultGame: 'probe',
    resumeWindowMs: 400,
    broadcastSoftLimitBytes: 32 * 1024,
    broadcastHardLimitBytes: 512 * 1024,
    broadcastMaxLagMs: 1500,
    inputRatePerSecond: 1000,
    inputBurst: 1000,
  });
});
afterAll(async () => server?.close());

/** The underlying ws socket of a client, to stop reading from it as a stalled device would. */
function rawSocket(c: MoonpatchClient): { _socket: { pause(): void; resume(): void } } {
  return (c as unknown as { socket: { _socket: { pause(): void; resume(): void } } }).socket;
}

describe('resume window', () => {
  it('keeps the seat while the player is away, then gives it up; the old token is refused', async () => {
    const roomId = 'window-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'away', autoReconnect: false });
    await c.connect();
    const room = server.rooms.get(roomId)!;
    const id = c.playerId;
    const token = c.resumeToken;
    c.close(); // not a leave: the seat stays for the window
    await waitFor(() => room.seats.get(id)?.link === null, 'seat detached');
    expect(room.committed.records.has(`players/${id}`)).toBe(true);
    await waitFor(() => !room.seats.has(id), 'seat given up after the window');
    await waitFor(() => !room.committed.records.has(`players/${id}`), 'leave hook ran and committed');
    const late = testClient(server.url, { room: roomId, autoReconnect: false });
    (late as unknown as { resumeToken: string }).resumeToken = token;
    const errors: string[] = [];
    late.on('error', (e) => errors.push(e.code));
    await expect(late.connect()).rejects.toThrow();
    expect(errors).toContain('RESUME_REJECTED');
  });

  it('a resume into a room that does not exist is refused and creates nothing, even naming a game', async () => {
    const roomId = 'never-' + Date.now();
    const ghost = testClient(server.url, { room: roomId, game: 'probe', autoReconnect: false });
    (ghost as unknown as { resumeToken: string }).resumeToken = 'p123.secret';
    const errors: string[] = [];
    ghost.on('error', (e) => errors.push(e.code));
    await expect(ghost.connect()).rejects.toThrow();
    expect(errors).toContain('RESUME_REJECTED');
    expect(await server.store.readMeta(roomId)).toBeNull();
    expect(server.rooms.get(roomId)).toBeUndefined();
  });

  it('a second connection resuming the seat takes it over; the first is closed with 4004', async () => {
    const roomId = 'takeover-' + Date.now();
    const first = testClient(server.url, { room: roomId, game: 'probe', name: 'dup', autoReconnect: false });
    await first.connect();
    const closed = new Promise<number>((r) => first.on('disconnect', (d) => r(d.code)));
    const second = testClient(server.url, { room: roomId, autoReconnect: false });
    (second as unknown as { resumeToken: string }).resumeToken = first.resumeToken;
    await second.connect();
    expect(second.playerId).toBe(first.playerId);
    expect(await closed).toBe(CloseCodes.SEAT_TAKEN_OVER);
    const seq = second.send({ op: 'add', n: 1 });
    await waitFor(() => second.lastAckedSeq >= seq, 'the new connection plays on');
    second.close();
  });
});

describe('resuming with a backlog', () => {
  it('a player away for seconds while sending at 20 Hz has every input applied once, none refused, within the default limits', async () => {
    // Default rate limit (60 a second, bursts of 30) and the probe's input queue bound (8).
    const own = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe' });
    try {
      const c = testClient(own.url, { room: 'backlog', game: 'probe', name: 'away', reconnectDelayMs: 3000 });
      await c.connect();
      let acked = 0;
      const refused: string[] = [];
      c.on('settled', (e) => (e.rejected ? refused.push(e.rejected.code) : acked++));
      c.dropConnection(); // reconnects after 3 s
      const SENDS = 60;
      for (let i = 0; i < SENDS; i++) {
        c.send({ op: 'add', n: 1 });
        await new Promise((r) => setTimeout(r, 50));
      }
      await waitFor(() => c.unsettled === 0, 'every input settled', 30_000);
      expect(refused).toEqual([]);
      expect(acked).toBe(SENDS);
      expect(c.disconnects).toBe(1);
      const room = own.rooms.get('backlog')!;
      expect(unpack(room.committed.records.get(`players/${c.playerId}`)!)).toMatchObject({ sum: SENDS, inputs: SENDS });
      c.close();
    } finally {
      await own.close();
    }
  });
});

describe('slow consumers', () => {
  it('a client that stops reading is merged, then disconnected; the room and other players carry on', async () => {
    const roomId = 'slow-' + Date.now();
    const fast = testClient(server.url, { room: roomId, game: 'probe', name: 'fast' });
    const slow = testClient(server.url, { room: roomId, game: 'probe', name: 'slow', autoReconnect: false });
    await fast.connect();
    await slow.connect();
    const room = server.rooms.get(roomId)!;
    const slowClosed = new Promise<number>((r) => slow.on('disconnect', (d) => r(d.code)));
    const slowSeat = room.seats.get(slow.playerId)!;
    rawSocket(slow)._socket.pause();
    // Big deltas every tick until the slow client is dropped.
    let n = 0;
    const pump = setInterval(() => fast.send({ op: 'grow', bytes: 60_000, tag: String(n++) }), 50);
    const tickAtPause = room.tick;
    try {
      // The server drops it (seat detached, kept for the resume window)...
      await waitFor(() => slowSeat.link === null, 'server dropped the slow consumer');
      // ...and the socket is closed: with 4002 if the close frame got through the stalled
      // reader, else as an abnormal close once the server gives up on the handshake.
      expect([CloseCodes.SLOW_CONSUMER, 1006]).toContain(await slowClosed);
    } finally {
      clearInterval(pump);
    }
    // The room kept ticking meanwhile, and the fast player is in step with the committed state.
    expect(room.tick).toBeGreaterThan(tickAtPause + 5);
    await waitFor(() => fast.unsettled === 0, 'fast inputs settled');
    await waitFor(() => fast.tick >= room.tick - 1, 'fast client caught up');
    const committed = unpack(room.committed.records.get(`players/${fast.playerId}`)!) as { junk: string };
    await waitFor(
      () => ((fast.world.players as Record<string, { junk?: string }>)[fast.playerId]?.junk ?? '') === committed.junk,
      'fast client sees the committed record',
    );
    fast.close();
  });

  it('a client that stalls briefly catches up with one merged update and ends equal to the server', async () => {
    const roomId = 'stall-' + Date.now();
    const c = testClient(server.url, { room: roomId, game: 'probe', name: 'stall' });
    const other = testClient(server.url, { room: roomId, game: 'probe', name: 'other' });
    await c.connect();
    await other.connect();
    const room = server.rooms.get(roomId)!;
    rawSocket(c)._socket.pause();
    for (let i = 0; i < 10; i++) {
      other.send({ op: 'grow', bytes: 40_000, tag: String(i) });
      await new Promise((r) => setTimeout(r, 60));
    }
    rawSocket(c)._socket.resume();
    await waitFor(() => other.unsettled === 0, 'inputs settled');
    const committed = unpack(room.committed.records.get(`players/${other.playerId}`)!) as { junk: string };
    await waitFor(
      () => ((c.world.players as Record<string, { junk?: string }>)[other.playerId]?.junk ?? '') === committed.junk,
      'stalled client converges to the committed state',
    );
    expect(c.disconnects).toBe(0);
    c.close();
    other.close();
  });
});
