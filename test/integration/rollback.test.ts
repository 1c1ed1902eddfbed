/**
 * A tick that throws, overruns its CPU budget or exhausts its memory leaves the room's state
 * exactly as before: in the isolate, in the committed mirror and in Redis. The room keeps
 * ticking. Real isolates, real Redis, real sockets; the tick clock is paused so each test
 * decides exactly which events go into which tick.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpack } from 'msgpackr';
import type { MoonpatchClient } from '../../client/client.ts';
import type { ErrorMsg } from '../../server/protocol/messages.ts';
import type { Room } from '../../server/room/room.ts';
import { EXPEL_AFTER_STOPS } from '../../server/room/stopped-ticks.ts';
import { CloseCodes } from '../../server/errors/codes.ts';
import { channels, type RoomLifecycleEvent } from '../../server/ops/events.ts';
import { stateHash } from '../../server/state/committed-state.ts';
import { FIXTURE_GAMES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

type Server = Awaited<ReturnType<typeof startTestServer>>;

let server: Server;
let room: Room;
let alice: MoonpatchClient;
let bob: MoonpatchClient;
const errors: ErrorMsg[] = [];
const logLines: Record<string, unknown>[] = [];

/** Decode the isolate's own export and hash it like the mirror, to prove the isolate rolled back too. */
async function isolateHash(): Promise<string> {
  const flat = unpack(await room.isolateRecords()) as (string | Uint8Array)[];
  const m = new Map<string, Uint8Array>();
  for (let i = 0; i < flat.length; i += 2) m.set(flat[i] as string, flat[i + 1] as Uint8Array);
  return stateHash(m);
}

async function redisHash(): Promise<string> {
  return stateHash(await server.store.readRecords(room.id));
}

/** Hashes of the three copies of the state; all must agree. */
async function hashes(): Promise<{ mirror: string; isolate: string; redis: string }> {
  return { mirror: room.committed.hash(), isolate: await isolateHash(), redis: await redisHash() };
}

function player(c: MoonpatchClient): { sum: number; inputs: number } {
  return (room.committed.records.has(`players/${c.playerId}`)
    ? unpack(room.committed.records.get(`players/${c.playerId}`)!)
    : undefined) as { sum: number; inputs: number };
}

/** A new player in the room, whose clock is paused: its join needs a tick run by hand. */
async function joinPaused(name: string): Promise<MoonpatchClient> {
  const c = testClient(server.url, { room: room.id, game: 'probe', name });
  const connected = c.connect();
  await queued(1);
  await room.runTick();
  await connected;
  return c;
}

/** Queue inputs from a client and wait until the room has them all queued. */
async function queued(count: number): Promise<void> {
  await waitFor(() => room.queue.size >= count, `${count} events queued`);
}

beforeAll(async () => {
  server = await startTestServer({ scriptsDir: FIXTURE_GAMES, defaultGame: 'probe', logLines });
  const roomId = 'rollback-' + Date.now();
  alice = testClient(server.url, { room: roomId, game: 'probe', name: 'alice' });
  bob = testClient(server.url, { room: roomId, game: 'probe', name: 'bob' });
  await alice.connect();
  await bob.connect();
  alice.on('error', (e) => errors.push(e));
  room = server.rooms.get(roomId)!;
  await room.pauseClock();
});

afterAll(async () => {
  alice?.close();
  bob?.close();
  await server?.close();
});

describe('a failing input hook is undone alone', () => {
  it('rolls back only the throwing input; the others in the same tick apply', async () => {
    const before = player(alice).sum;
    const bobBefore = player(bob).sum;
    alice.send({ op: 'add', n: 5 });
    const bad = alice.send({ op: 'throw' });
    alice.send({ op: 'add', n: 7 });
    bob.send({ op: 'add', n: 1 });
    await queued(4);
    const tickBefore = room.tick;
    await room.runTick();
    expect(room.tick).toBe(tickBefore + 1);
    expect(player(alice).sum).toBe(before + 12); // not +1012: the throw's partial write is gone
    expect(player(bob).sum).toBe(bobBefore + 1);
    await waitFor(() => errors.some((e) => e.seq === bad), 'error frame for the throwing input');
    const err = errors.find((e) => e.seq === bad)!;
    expect(err.code).toBe('SCRIPT_ERROR');
    await waitFor(() => alice.lastAckedSeq >= bad + 1, 'ack covering all three inputs');
    const h = await hashes();
    expect(h.isolate).toBe(h.mirror);
    expect(h.redis).toBe(h.mirror);
  });

  it.each([['throw-string'], ['throw-object'], ['throw-deep']])('normalises a thrown %s into an error frame', async (op) => {
    const before = player(alice).sum;
    const seq = alice.send({ op });
    await queued(1);
    await room.runTick();
    await waitFor(() => errors.some((e) => e.seq === seq), `error frame for ${op}`);
    expect(errors.find((e) => e.seq === seq)!.code).toBe('SCRIPT_ERROR');
    expect(player(alice).sum).toBe(before);
  });

  it('refuses a non-plain value stored in the world with STATE_INVALID_VALUE, and undoes it', async () => {
    const seq = alice.send({ op: 'bad-value' });
    await queued(1);
    const h0 = await hashes();
    await room.runTick();
    await waitFor(() => errors.some((e) => e.seq === seq), 'error frame for bad value');
    const err = errors.find((e) => e.seq === seq)!;
    expect(err.code).toBe('STATE_INVALID_VALUE');
    expect(err.msg).toMatch(/not plain data/);
    // Only meta (tick counter and roll) changed; the player record is untouched.
    const h1 = await hashes();
    expect(h1.isolate).toBe(h1.mirror);
    expect(h1.redis).toBe(h1.mirror);
    expect(h0.mirror).not.toBe(h1.mirror);
    expect(player(alice)).not.toHaveProperty('junk');
    // Ops see the same code as the player.
    const line = logLines.findLast((l) => l.msg === 'script hook threw; its changes were undone' && l.hook === 'input');
    expect(line).toMatchObject({ roomId: room.id, code: 'STATE_INVALID_VALUE' });
  });
});

describe('writes outside a hook', () => {
  it('a promise callback that writes after the hook returned fails its tick and changes nothing', async () => {
    const before = player(alice);
    const tickBefore = room.tick;
    const seq = alice.send({ op: 'async-write' });
    await queued(1);
    await room.runTick();
    await waitFor(() => errors.some((e) => e.seq === seq), 'error frame for async-write');
    expect(errors.find((e) => e.seq === seq)!.msg).toMatch(/only be changed inside a hook/);
    expect(room.tick).toBe(tickBefore);
    await room.runTick();
    expect(player(alice)).toEqual(before);
    const h = await hashes();
    expect(h.isolate).toBe(h.mirror);
    expect(h.redis).toBe(h.mirror);
  });
});

describe('a failing tick leaves the state exactly as before', () => {
  /**
   * Alice's `op` fails the whole tick, with Bob's input in it. `inAlicesHook`: it failed inside
   * Alice's input hook (a loop, a memory bomb), so only she is told and Bob's input runs in the
   * next tick; otherwise (the tick hook threw) nobody's hook can be blamed and Bob is told too.
   */
  async function failedTickLeavesNoTrace(op: string, expectedCode: string, inAlicesHook: boolean) {
    const seq = alice.send({ op });
    const okSeq = bob.send({ op: 'add', n: 3 });
    const bobErrors: ErrorMsg[] = [];
    const off = bob.on('error', (e) => bobErrors.push(e));
    await queued(2);
    const before = await hashes();
    const bobBefore = player(bob).sum;
    const tickBefore = room.tick;
    await room.runTick();
    // Nothing moved: same tick, same state in the isolate, the mirror and Redis.
    expect(room.tick).toBe(tickBefore);
    const after = await hashes();
    expect(after).toEqual(before);
    const meta = await server.store.readMeta(room.id);
    expect(meta!.tick).toBe(tickBefore);
    await waitFor(() => errors.some((e) => e.seq === seq), `error frame for ${op}`);
    expect(errors.find((e) => e.seq === seq)!.code).toBe(expectedCode);
    if (!inAlicesHook) {
      // The other player's input in the failed tick is reported too, not silently lost.
      await waitFor(() => bobErrors.some((e) => e.seq === okSeq), 'error frame for the bystander input');
      expect(bobErrors.find((e) => e.seq === okSeq)!.retry).toBe(true);
    }
    // And the room still ticks: a normal tick commits afterwards.
    await room.runTick();
    expect(room.tick).toBe(tickBefore + 1);
    if (inAlicesHook) {
      // Bob's input was put back and ran in that tick: applied once, acknowledged, never refused.
      await waitFor(() => bob.lastAckedSeq >= okSeq, 'the bystander input acknowledged');
      expect(player(bob).sum).toBe(bobBefore + 3);
      expect(bobErrors).toEqual([]);
      const entry = logLines.findLast((l) => l.msg === 'tick failed and was rolled back' && l.code === expectedCode);
      expect(entry).toMatchObject({ roomId: room.id, culprit: { kind: 'input', playerId: alice.playerId, seq } });
    } else {
      expect(player(bob).sum).toBe(bobBefore);
    }
    off();
    const final = await hashes();
    expect(final.isolate).toBe(final.mirror);
    expect(final.redis).toBe(final.mirror);
  }

  it('a tick hook that throws', async () => {
    await failedTickLeavesNoTrace('fail-tick', 'TICK_FAILED', false);
    // Ops and the designer see it: room, tick, version, code and the script's stack, mapped.
    const entry = logLines.findLast((l) => l.msg === 'tick failed and was rolled back' && l.code === 'SCRIPT_ERROR');
    expect(entry).toMatchObject({ roomId: room.id, version: room.version, tick: room.tick });
    expect((entry!.err as { stack: string }).stack).toMatch(/at tick \(main\.ts:\d+:\d+\)/);
  });

  it('an infinite loop in an input hook overrunning the CPU budget: only its player is told, the others\' inputs run next tick', async () => {
    await failedTickLeavesNoTrace('loop', 'CPU_BUDGET_EXCEEDED', true);
  });

  it('a memory bomb in an input hook that kills the isolate (rebuilt from the committed state): only its player is told', async () => {
    await failedTickLeavesNoTrace('bomb', 'MEMORY_LIMIT', true);
  });

  it('runs a bystander\'s input again once: when the tick it runs again in also fails in another player\'s hook, it is refused', async () => {
    const bobErrors: ErrorMsg[] = [];
    const off = bob.on('error', (e) => bobErrors.push(e));
    // Carol sends the loops: Alice has stopped two ticks already, and a third would expel her.
    const carol = await joinPaused('carol');
    const carolErrors: ErrorMsg[] = [];
    carol.on('error', (e) => carolErrors.push(e));
    const bobBefore = player(bob).sum;
    const tickBefore = room.tick;
    const loop1 = carol.send({ op: 'loop' });
    const okSeq = bob.send({ op: 'add', n: 4 });
    await queued(2);
    await room.runTick(); // fails in Carol's hook: Bob's input goes back in the queue, in front
    await waitFor(() => carolErrors.some((e) => e.seq === loop1), 'the first loop refused');
    expect(bobErrors).toEqual([]);
    const loop2 = carol.send({ op: 'loop' });
    await queued(2); // Bob's input, then Carol's second loop
    await room.runTick(); // fails in Carol's hook again, with Bob's input in it a second time
    await waitFor(() => carolErrors.some((e) => e.seq === loop2), 'the second loop refused');
    await waitFor(() => bobErrors.some((e) => e.seq === okSeq), 'the bystander input refused');
    expect(bobErrors.find((e) => e.seq === okSeq)).toMatchObject({ code: 'CPU_BUDGET_EXCEEDED', retry: true });
    expect(room.tick).toBe(tickBefore);
    expect(room.queue.size).toBe(0);
    await room.runTick();
    expect(room.tick).toBe(tickBefore + 1);
    expect(player(bob).sum).toBe(bobBefore); // never applied
    off();
    carol.close();
    const h = await hashes();
    expect(h.isolate).toBe(h.mirror);
    expect(h.redis).toBe(h.mirror);
  });

  it(`expels a player whose inputs stop ${EXPEL_AFTER_STOPS} ticks: closed with 4008, its queued inputs dropped, its seat given up; the others play on`, async () => {
    const mallory = await joinPaused('mallory');
    const malloryId = mallory.playerId;
    const closed = new Promise<number>((resolve) => mallory.on('disconnect', (d) => resolve(d.code)));
    const roomEvents: RoomLifecycleEvent[] = [];
    const onRoomEvent = (e: unknown) => roomEvents.push(e as RoomLifecycleEvent);
    channels.room.subscribe(onRoomEvent);
    const bobBefore = player(bob).sum;
    const tickBefore = room.tick;
    for (let i = 1; i <= EXPEL_AFTER_STOPS; i++) {
      mallory.send({ op: 'loop' });
      if (i === EXPEL_AFTER_STOPS) mallory.send({ op: 'add', n: 1 }); // queued behind the last loop: dropped with her
      await queued(i === EXPEL_AFTER_STOPS ? 2 : 1);
      await room.runTick();
      expect(room.tick).toBe(tickBefore);
      if (i < EXPEL_AFTER_STOPS) expect(room.seats.get(malloryId)?.link).not.toBeNull();
    }
    expect(await closed).toBe(CloseCodes.EXPELLED);
    expect(room.queue.peek().map((e) => [e.kind, e.playerId])).toEqual([['leave', malloryId]]);
    expect(logLines.some((l) => l.msg === 'player expelled: their inputs kept stopping the tick' && l.playerId === malloryId && l.stops === EXPEL_AFTER_STOPS)).toBe(true);
    channels.room.unsubscribe(onRoomEvent);
    // Ops count it (moonpatch_patch_events_total{what="player-expelled"}) and see it on the dashboard.
    expect(roomEvents.filter((e) => e.roomId === room.id && e.what === 'player-expelled')).toHaveLength(1);
    // Her resume token is no good any more: the seat is leaving.
    const okSeq = bob.send({ op: 'add', n: 2 });
    await queued(2);
    await room.runTick();
    expect(room.tick).toBe(tickBefore + 1);
    expect(room.seats.has(malloryId)).toBe(false);
    expect(room.committed.records.has(`players/${malloryId}`)).toBe(false); // her leave hook ran
    await waitFor(() => bob.lastAckedSeq >= okSeq, "Bob's input acknowledged");
    expect(player(bob).sum).toBe(bobBefore + 2);
    const h = await hashes();
    expect(h.isolate).toBe(h.mirror);
    expect(h.redis).toBe(h.mirror);
  });

  it('a leave hook that never returns stops two ticks, then the seat is given up without it and the room goes on', async () => {
    const leaver = await joinPaused('stuck-leaver');
    const leaverId = leaver.playerId;
    expect(room.seats.has(leaverId)).toBe(true);
    const bobErrors: ErrorMsg[] = [];
    const off = bob.on('error', (e) => bobErrors.push(e));
    const bobBefore = player(bob).sum;
    const tickBefore = room.tick;
    leaver.leave();
    const okSeq = bob.send({ op: 'add', n: 6 });
    await queued(2);
    await room.runTick(); // stops in the leave hook: the leave and Bob's input go back
    expect(room.tick).toBe(tickBefore);
    expect(room.queue.size).toBe(2);
    await room.runTick(); // stops in it again: Bob's input, in two failed ticks, is refused; the leave goes back, to run without its hook
    expect(room.tick).toBe(tickBefore);
    await waitFor(() => bobErrors.some((e) => e.seq === okSeq), 'the bystander input refused after two failed ticks');
    expect(room.queue.size).toBe(1);
    await room.runTick();
    expect(room.tick).toBe(tickBefore + 1);
    expect(room.seats.has(leaverId)).toBe(false);
    expect(await server.redis.hexists(server.store.keys(room.id).seats, leaverId)).toBe(0);
    expect(logLines.some((l) => l.msg === "a player's leave hook stopped two ticks: the seat is given up without running it" && l.playerId === leaverId)).toBe(true);
    // The hook never ran to its end: the game still has the player's record (the designer's bug to fix).
    expect(room.committed.records.has(`players/${leaverId}`)).toBe(true);
    // And the room goes on.
    const next = bob.send({ op: 'add', n: 1 });
    await queued(1);
    await room.runTick();
    await waitFor(() => bob.lastAckedSeq >= next, 'the next input acknowledged');
    expect(player(bob).sum).toBe(bobBefore + 1);
    off();
    leaver.close();
    const h = await hashes();
    expect(h.isolate).toBe(h.mirror);
    expect(h.redis).toBe(h.mirror);
  });

  it('keeps ticking on its own clock after failures', async () => {
    const t = room.tick;
    room.resumeClock();
    await waitFor(() => room.tick >= t + 3, 'three more ticks');
    await room.pauseClock();
  });
});
