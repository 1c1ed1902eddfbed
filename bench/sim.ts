/**
 * Simulated players for benchmarks: seated through the room's own seat API (the calls a
 * WebSocket session makes after decoding a frame), with connections that only count bytes.
 * They measure the tick, not thousands of sockets on the same two cores.
 */
import { ErrorCodes, type ErrorCode } from '../server/errors/codes.ts';
import type { PlayerLink } from '../server/room/link.ts';
import type { Room, SeatHandle } from '../server/room/room.ts';
import { round } from './lib.ts';

/** A connection that only counts what it is sent. */
export class CountingLink implements PlayerLink {
  bytes = 0;
  frames = 0;
  readonly bufferedAmount = 0;
  readonly isOpen = true;
  send(frame: Uint8Array): void {
    this.bytes += frame.length;
    this.frames++;
  }
  close(): void {}
}

export interface SimulatedPlayers {
  seats: SeatHandle[];
  /** Inputs the room refused (queue full, rate). */
  refused(): number;
  /** Send an input from one seat outside the regular stream (e.g. a fault trigger). */
  extra(seat: number, data: Parameters<SeatHandle['input']>[1]): void;
  stop(): void;
}

/**
 * Join as a real client does: a join whose tick failed (100 joins in a fresh isolate on a slow
 * machine can pass the CPU budget) is asked for again, a few times, instead of ending the run.
 */
async function joinRetrying(room: Room, name: string): Promise<SeatHandle> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await room.join(new CountingLink(), name);
    } catch (e) {
      // The catalog says which refusals may succeed if asked again (a failed tick's among them).
      const code = (e as { code?: string }).code;
      if (attempt >= 5 || !(code !== undefined && code in ErrorCodes && ErrorCodes[code as ErrorCode].retry)) throw e;
    }
  }
}

/**
 * Seat `count` players in `room` (in batches of 100, each batch one tick) and make each send an
 * arena move every 1000/hz ms, turning every `turnEvery` inputs.
 */
export async function simulatePlayers(room: Room, count: number, hz = 20, turnEvery = 1): Promise<SimulatedPlayers> {
  const seats: SeatHandle[] = [];
  for (let i = 0; i < count; i += 100) {
    const batch = [];
    for (let j = i; j < Math.min(count, i + 100); j++) batch.push(joinRetrying(room, `bot${j}`));
    seats.push(...(await Promise.all(batch)));
  }
  let seq = 0;
  let refused = 0;
  const timer = setInterval(() => {
    seq++;
    for (let i = 0; i < seats.length; i++) {
      const a = (Math.floor(seq / turnEvery) * 0.3 + i) % (2 * Math.PI);
      if (seats[i]!.input(seq, { move: [round(Math.cos(a), 2), round(Math.sin(a), 2)] })) refused++;
    }
  }, 1000 / hz);
  return {
    seats,
    refused: () => refused,
    extra: (i, data) => void seats[i]!.input(++seq, data),
    stop: () => clearInterval(timer),
  };
}
