/**
 * Signed player tokens: with a secret configured, joining needs a valid HMAC token; a wrong,
 * tampered or expired one is refused; a user has one seat per room and coming back with the
 * token takes that same seat (the old connection is closed with 4004).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CloseCodes } from '../../server/errors/codes.ts';
import { signPlayerToken } from '../../server/room/player-token.ts';
import { EXPEL_AFTER_STOPS } from '../../server/room/stopped-ticks.ts';
import { FIXTURE_GAMES, startTestServer, testClient } from '../helpers/server.ts';

const SECRET = 'player-secret-0123456789abcdef';
type Server = Awaited<ReturnType<typeof startTestServer>>;
let server: Server;
beforeAll(async () => {
  server = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', playerTokenSecret: SECRET });
});
afterAll(async () => server?.close());

const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;

async function joinError(token: string | undefined): Promise<string> {
  const c = testClient(server.url, { room: 'auth-' + Date.now(), game: 'probe', name: 'x', autoReconnect: false, ...(token ? { token } : {}) });
  const codes: string[] = [];
  c.on('error', (e) => codes.push(e.code));
  await expect(c.connect()).rejects.toThrow();
  c.close();
  return codes[0]!;
}

describe('player tokens', () => {
  it('refuses a join without a token, with a forged one, a tampered one and an expired one', async () => {
    expect(await joinError(undefined)).toBe('AUTH_REQUIRED');
    expect(await joinError(signPlayerToken({ sub: 'mallory', exp: inAnHour() }, 'not-the-server-secret-at-all'))).toBe('AUTH_INVALID');
    const good = signPlayerToken({ sub: 'alice', exp: inAnHour() }, SECRET);
    const [payload, sig] = good.split('.');
    const tampered = Buffer.from(JSON.stringify({ sub: 'admin', exp: inAnHour() })).toString('base64url') + '.' + sig;
    expect(payload).toBeDefined();
    expect(await joinError(tampered)).toBe('AUTH_INVALID');
    expect(await joinError(signPlayerToken({ sub: 'alice', exp: Math.floor(Date.now() / 1000) - 10 }, SECRET))).toBe('AUTH_INVALID');
  });

  it('seats a user under the name in the token, and one seat per user: coming back takes the same seat', async () => {
    const room = 'auth-seat-' + Date.now();
    const token = signPlayerToken({ sub: 'user-42', name: 'Alice', exp: inAnHour() }, SECRET);
    const first = testClient(server.url, { room, game: 'probe', name: 'ignored', token, autoReconnect: false });
    const welcome = await first.connect();
    expect(welcome.name).toBe('Alice');
    const closed = new Promise<number>((r) => first.on('disconnect', (d) => r(d.code)));
    const second = testClient(server.url, { room, game: 'probe', token, autoReconnect: false });
    const again = await second.connect();
    expect(again.player).toBe(welcome.player);
    expect(await closed).toBe(CloseCodes.SEAT_TAKEN_OVER);
    expect(server.rooms.get(room)!.seats.size).toBe(1);
    // The rotated resume token is the one that works now.
    const seq = second.send({ op: 'add', n: 1 });
    await new Promise<void>((resolve) => second.on('settled', (s) => s.seq === seq && resolve()));
    second.close();
  });
});

describe('expelled users', () => {
  it('bars a signed-in user expelled for stopping ticks from taking a new seat in that room (EXPELLED), and no other user', async () => {
    const room = 'auth-expel-' + Date.now();
    const token = signPlayerToken({ sub: 'looper', exp: inAnHour() }, SECRET);
    const looper = testClient(server.url, { room, game: 'probe', token, autoReconnect: false });
    await looper.connect();
    const closed = new Promise<number>((r) => looper.on('disconnect', (d) => r(d.code)));
    // Each loop stops a tick (CPU budget); the room's clock runs them, one tick each: the next
    // loop goes once the last was refused.
    const refused: number[] = [];
    looper.on('error', (e) => {
      if (e.seq !== undefined) refused.push(e.seq);
      if (refused.length < EXPEL_AFTER_STOPS) looper.send({ op: 'loop' });
    });
    looper.send({ op: 'loop' });
    expect(await closed).toBe(CloseCodes.EXPELLED);
    const again = testClient(server.url, { room, game: 'probe', token, autoReconnect: false });
    const codes: string[] = [];
    again.on('error', (e) => codes.push(e.code));
    await expect(again.connect()).rejects.toThrow(/EXPELLED/);
    expect(codes).toEqual(['EXPELLED']);
    again.close();
    // Another user joins as usual.
    const other = testClient(server.url, { room, game: 'probe', token: signPlayerToken({ sub: 'someone-else', exp: inAnHour() }, SECRET), autoReconnect: false });
    await other.connect();
    other.close();
  });
});

describe('users whose joins stop ticks', () => {
  it(`bars a signed-in user after ${EXPEL_AFTER_STOPS} joins that stopped the tick (EXPELLED), and no other user`, async () => {
    const room = 'auth-loop-join-' + Date.now();
    const honest = testClient(server.url, { room, game: 'probe', token: signPlayerToken({ sub: 'honest', exp: inAnHour() }, SECRET), autoReconnect: false });
    await honest.connect();
    // The probe's join hook never returns for this name: each attempt stops a tick (CPU budget).
    const token = signPlayerToken({ sub: 'loop-join-user', name: 'loop-joiner', exp: inAnHour() }, SECRET);
    const attempt = async () => {
      const c = testClient(server.url, { room, game: 'probe', token, autoReconnect: false });
      const codes: string[] = [];
      c.on('error', (e) => codes.push(e.code));
      await expect(c.connect()).rejects.toThrow();
      c.close();
      return codes[0];
    };
    for (let i = 0; i < EXPEL_AFTER_STOPS; i++) expect(await attempt()).toBe('CPU_BUDGET_EXCEEDED');
    expect(await attempt()).toBe('EXPELLED');
    // The room played on: the honest player's input applied once, and another user still joins.
    const seq = honest.send({ op: 'add', n: 5 });
    await new Promise<void>((resolve) => honest.on('settled', (s) => s.seq === seq && resolve()));
    expect(server.rooms.get(room)!.seats.size).toBe(1);
    const other = testClient(server.url, { room, game: 'probe', token: signPlayerToken({ sub: 'someone-else', exp: inAnHour() }, SECRET), autoReconnect: false });
    await other.connect();
    other.close();
    honest.close();
  });
});

describe('secrets stay out of the logs', () => {
  it('no log line carries the token secret, the admin token, a player token or a resume token', async () => {
    const ADMIN = 'admin-token-0123456789abcdef-xyz';
    const lines: Record<string, unknown>[] = [];
    const s = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', playerTokenSecret: SECRET, adminToken: ADMIN, logLines: lines });
    try {
      const room = 'auth-logs-' + Date.now();
      const token = signPlayerToken({ sub: 'user-7', name: 'Bea', exp: inAnHour() }, SECRET);
      const forged = signPlayerToken({ sub: 'user-7', exp: inAnHour() }, 'wrong-secret-wrong-secret-wrong');
      const c = testClient(s.url, { room, game: 'probe', token });
      await c.connect();
      const resume = c.resumeToken;
      c.dropConnection(); // resumes with its resume token
      await new Promise<void>((r) => c.on('welcome', () => r()));
      const bad = testClient(s.url, { room, game: 'probe', token: forged, autoReconnect: false });
      await expect(bad.connect()).rejects.toThrow();
      const http = `http://127.0.0.1:${s.port}`;
      expect((await fetch(`${http}/admin/rooms`, { headers: { authorization: 'Bearer wrong-token-wrong-token' } })).status).toBe(401);
      expect((await fetch(`${http}/admin/rooms`, { headers: { authorization: `Bearer ${ADMIN}` } })).status).toBe(200);
      c.close();
      const text = lines.map((l) => JSON.stringify(l)).join('\n');
      expect(lines.length).toBeGreaterThan(0);
      // The refused join is logged for ops, with its code and room, without the token.
      expect(lines.find((l) => l.msg === 'join refused')).toMatchObject({ roomId: room, code: 'AUTH_INVALID', resuming: false });
      for (const secret of [SECRET, ADMIN, token, forged, resume, resume.split('.')[1]!]) expect(text).not.toContain(secret);
    } finally {
      await s.close();
    }
  });
});
