/**
 * Hostile and broken client frames: each gets an error frame with a stable code or a documented
 * close code; the server and the room keep running; nothing in Redis changes because of a
 * rejected frame. Raw `ws` sockets, so the test can send exactly the bytes it means.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pack, unpack } from 'msgpackr';
import { WebSocket } from 'ws';
import { CloseCodes } from '../../server/errors/codes.ts';
import type { ErrorMsg, ServerMessage } from '../../server/protocol/messages.ts';
import type { Room } from '../../server/room/room.ts';
import { stateHash } from '../../server/state/committed-state.ts';
import { FIXTURE_GAMES, startTestServer, testClient, waitFor } from '../helpers/server.ts';
import type { MoonpatchClient } from '../../client/client.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;
let server: Server;
let room: Room;
let honest: MoonpatchClient;
const roomId = 'bad-input-' + Date.now();

/** A raw socket that records every server message and its close code. */
class RawSocket {
  readonly messages: ServerMessage[] = [];
  closeCode: number | null = null;
  private readonly ws: WebSocket;
  readonly opened: Promise<void>;

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.ws.on('message', (data) => this.messages.push(unpack(data as Buffer) as ServerMessage));
    this.ws.on('close', (code) => (this.closeCode = code));
    this.ws.on('error', () => {});
  }

  send(data: Uint8Array | string, binary = true): void {
    this.ws.send(data, { binary });
  }

  errors(): ErrorMsg[] {
    return this.messages.filter((m): m is ErrorMsg => m.t === 'err');
  }

  async nextError(): Promise<ErrorMsg> {
    const n = this.errors().length;
    await waitFor(() => this.errors().length > n || this.closeCode !== null, 'an error frame');
    const e = this.errors()[n];
    if (!e) throw new Error(`socket closed (${this.closeCode}) instead of answering with an error`);
    return e;
  }

  close(): void {
    this.ws.close();
  }
}

async function rawSocket(): Promise<RawSocket> {
  const s = new RawSocket(server.url);
  await s.opened;
  return s;
}

async function committedSnapshot(): Promise<{ hash: string; tick: number }> {
  return { hash: stateHash(await server.store.readRecords(roomId)), tick: (await server.store.readMeta(roomId))!.tick };
}

beforeAll(async () => {
  server = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', abuseLimit: 20, maxFrameBytes: 4096, inputRatePerSecond: 20, inputBurst: 12 });
  honest = testClient(server.url, { room: roomId, game: 'probe', name: 'honest' });
  await honest.connect();
  room = server.rooms.get(roomId)!;
  // Freeze the room so "nothing changed in Redis" is exact: no tick runs until we say so.
  await room.pauseClock();
});

afterAll(async () => {
  honest?.close();
  await server?.close();
});

describe('each bad frame gets a stable error code and changes nothing', () => {
  const cases: [string, () => Uint8Array | string, string, boolean?][] = [
    ['malformed msgpack', () => new Uint8Array([0xc1, 0xff, 0x00]), 'BAD_FRAME'],
    ['truncated msgpack', () => pack({ t: 'in', seq: 1, d: { move: [1, 0] } }).subarray(0, 7), 'BAD_FRAME'],
    ['a text frame', () => 'hello', 'BAD_FRAME', false],
    ['a msgpack value that is not a map', () => pack([1, 2, 3]), 'BAD_FRAME'],
    ['an unknown message type', () => pack({ t: 'teleport', x: 1 }), 'UNKNOWN_TYPE'],
    ['a missing type', () => pack({ seq: 1 }), 'UNKNOWN_TYPE'],
    ['seq of the wrong type', () => pack({ t: 'in', seq: 'one', d: 1 }), 'BAD_FIELD'],
    ['a negative seq', () => pack({ t: 'in', seq: -4, d: 1 }), 'BAD_FIELD'],
    ['a fractional seq', () => pack({ t: 'in', seq: 1.5, d: 1 }), 'BAD_FIELD'],
    ['an input without d', () => pack({ t: 'in', seq: 1 }), 'BAD_FIELD'],
    ['binary data inside an input', () => pack({ t: 'in', seq: 1, d: { blob: new Uint8Array(4) } }), 'BAD_FIELD'],
    ['an input nested too deep', () => pack({ t: 'in', seq: 1, d: JSON.parse('['.repeat(40) + ']'.repeat(40)) }), 'BAD_FIELD'],
    ['an input with too many items', () => pack({ t: 'in', seq: 1, d: new Array(2000).fill(0) }), 'BAD_FIELD'],
    ['a join with a numeric room', () => pack({ t: 'join', room: 42 }), 'BAD_FIELD'],
    ['a join with an overlong name', () => pack({ t: 'join', room: 'r', name: 'x'.repeat(100) }), 'BAD_FIELD'],
    ['a join with an invalid room id', () => pack({ t: 'join', room: 'no spaces!' }), 'BAD_ROOM_ID'],
    ['a join to a missing game', () => pack({ t: 'join', room: 'fresh-room-x', game: 'no-such-game' }), 'GAME_NOT_FOUND'],
    ['a resume with a forged token', () => pack({ t: 'join', room: roomId, resume: 'pAAAAAAAA.forged' }), 'RESUME_REJECTED'],
    ['an input before joining', () => pack({ t: 'in', seq: 1, d: { op: 'add', n: 1 } }), 'NOT_JOINED'],
  ];

  it.each(cases)('%s', async (_name, frame, code, binary = true) => {
    const before = await committedSnapshot();
    const s = await rawSocket();
    s.send(frame(), binary);
    const err = await s.nextError();
    expect(err.code).toBe(code);
    expect(typeof err.msg).toBe('string');
    // The connection survives one bad frame: it still answers a ping.
    s.send(pack({ t: 'ping', id: 7 }));
    await waitFor(() => s.messages.some((m) => m.t === 'pong'), 'pong after the bad frame');
    s.close();
    expect(await committedSnapshot()).toEqual(before);
  });
});

describe('limits', () => {
  it('an oversized frame closes the socket with 1009 and changes nothing', async () => {
    const before = await committedSnapshot();
    const s = await rawSocket();
    s.send(pack({ t: 'ping', id: 1, pad: 'x'.repeat(10_000) }));
    await waitFor(() => s.closeCode !== null, 'close');
    expect(s.closeCode).toBe(1009);
    expect(await committedSnapshot()).toEqual(before);
  });

  it('connections past the per-address limit are closed with 4006; closing one makes room', async () => {
    const limited = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', maxConnectionsPerAddress: 2 });
    try {
      const open = (): Promise<{ ws: WebSocket; code: Promise<number> }> =>
        new Promise((resolve) => {
          const ws = new WebSocket(limited.url);
          const code = new Promise<number>((r) => ws.on('close', (c) => r(c)));
          ws.on('error', () => {});
          ws.on('open', () => resolve({ ws, code }));
        });
      const a = await open();
      const b = await open();
      const c = await open();
      expect(await c.code).toBe(CloseCodes.TOO_MANY_CONNECTIONS);
      a.ws.close();
      await a.code;
      const d = await open();
      d.ws.send(pack({ t: 'ping', id: 1 }));
      const pong = await new Promise<Buffer>((r) => d.ws.once('message', (m) => r(m as Buffer)));
      expect(unpack(pong)).toMatchObject({ t: 'pong', id: 1 });
      b.ws.close();
      d.ws.close();
    } finally {
      await limited.close();
    }
  });

  it('a second join on the same connection is refused while the first is pending or seated', async () => {
    const s = await rawSocket();
    s.send(pack({ t: 'join', room: roomId, game: 'probe', name: 'a' }));
    s.send(pack({ t: 'join', room: roomId, game: 'probe', name: 'b' }));
    const err = await s.nextError();
    expect(err.code).toBe('ALREADY_JOINED');
    await waitFor(() => room.queue.size === 1, 'exactly one join queued');
    await room.runTick();
    await waitFor(() => s.messages.some((m) => m.t === 'welcome'), 'welcome for the first join');
    s.send(pack({ t: 'join', room: roomId, game: 'probe', name: 'c' }));
    expect((await s.nextError()).code).toBe('ALREADY_JOINED');
    s.close();
  });

  it('a flood above the rate limit gets RATE_LIMITED, then the abuse close; honest players are unaffected', async () => {
    const flooder = await rawSocket();
    const before = await committedSnapshot();
    for (let i = 0; i < 60; i++) flooder.send(pack({ t: 'ping', id: i }));
    await waitFor(() => flooder.closeCode !== null, 'flooder closed');
    expect(flooder.errors().some((e) => e.code === 'RATE_LIMITED')).toBe(true);
    expect(flooder.closeCode).toBe(CloseCodes.ABUSE);
    expect(await committedSnapshot()).toEqual(before);
    // The honest player in the room still gets inputs applied.
    const seq = honest.send({ op: 'add', n: 1 });
    await waitFor(() => room.queue.size > 0, 'honest input queued');
    await room.runTick();
    await waitFor(() => honest.lastAckedSeq >= seq, 'honest input acknowledged');
  });

  it('inputs beyond the per-player queue bound get QUEUE_FULL and are not applied', async () => {
    // A raw client: the bundled one paces itself by the welcome's limits and would never send
    // past the bound (see the next test).
    const raw = await rawSocket();
    raw.send(pack({ t: 'join', room: roomId, name: 'crowder' }));
    await waitFor(() => room.queue.size > 0, 'join queued');
    await room.runTick();
    await waitFor(() => raw.messages.some((m) => m.t === 'welcome'), 'seated');
    const limit = room.settings.inputQueueLimit;
    const seqs: number[] = [];
    for (let i = 1; i <= limit + 3; i++) {
      raw.send(pack({ t: 'in', seq: i, d: { op: 'add', n: 1 } }));
      seqs.push(i);
    }
    const full = () => raw.errors().filter((e) => e.code === 'QUEUE_FULL');
    await waitFor(() => full().length === 3, '3 QUEUE_FULL errors');
    expect(full().map((e) => e.seq)).toEqual(seqs.slice(limit));
    expect(room.queue.size).toBe(limit);
    await room.runTick();
    raw.close();
  });

  it('the bundled client sends a burst past the queue bound at the pace the room takes it, so nothing is refused', async () => {
    const errors: ErrorMsg[] = [];
    const off = honest.on('error', (e) => errors.push(e));
    const limit = room.settings.inputQueueLimit;
    const seqs: number[] = [];
    for (let i = 0; i < limit + 3; i++) seqs.push(honest.send({ op: 'add', n: 1 }));
    await waitFor(() => room.queue.size === limit, 'the first inputs queued');
    await new Promise((r) => setTimeout(r, 100));
    expect(room.queue.size).toBe(limit); // the client holds the rest while the room has not ticked
    await room.runTick();
    await waitFor(() => room.queue.size === 3, 'the rest sent once the tick settled the first');
    await room.runTick();
    await waitFor(() => honest.lastAckedSeq >= seqs.at(-1)!, 'every input acknowledged');
    expect(errors).toEqual([]);
    off();
  });
});
