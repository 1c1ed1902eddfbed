/**
 * Seats: the players of a room, whether connected or not. A seat outlives its connection for the
 * resume window, and outlives a server crash (seats are committed to Redis with the tick that
 * created them), so a player can come back to the same seat with the resume token.
 *
 * A resume token is `<playerId>.<secret>`; only sha256(secret) is stored.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { pack, unpack } from 'msgpackr';
import type { PlayerLink } from './link.ts';

export interface Seat {
  id: string;
  name: string;
  /** The signed player token's subject when the server requires tokens: one seat per user. */
  userId: string | null;
  tokenHash: string;
  link: PlayerLink | null;
  /** Highest input seq accepted into the queue (dedupe of resends). */
  lastQueuedSeq: number;
  /** Highest input seq processed by a committed tick (persisted). */
  lastAppliedSeq: number;
  /** Pending leave after the resume window, while disconnected. */
  leaveTimer: NodeJS.Timeout | null;
  /** A leave event is queued: the seat takes no more input. */
  leaving: boolean;
}

export function newPlayerId(): string {
  return 'p' + randomBytes(6).toString('base64url');
}

export function newResumeToken(playerId: string): { token: string; tokenHash: string } {
  const secret = randomBytes(18).toString('base64url');
  return { token: `${playerId}.${secret}`, tokenHash: hashSecret(secret) };
}

function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Split a token into player id and secret; null when it is not shaped like one. */
export function parseResumeToken(token: string): { playerId: string; secret: string } | null {
  const dot = token.indexOf('.');
  if (dot <= 0 || dot === token.length - 1) return null;
  return { playerId: token.slice(0, dot), secret: token.slice(dot + 1) };
}

export function tokenMatches(seat: Seat, secret: string): boolean {
  const a = Buffer.from(hashSecret(secret), 'hex');
  const b = Buffer.from(seat.tokenHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The seat as committed to Redis (seats hash). */
export function encodeSeat(seat: Pick<Seat, 'name' | 'tokenHash' | 'userId'>): Uint8Array {
  return pack(seat.userId ? { name: seat.name, th: seat.tokenHash, uid: seat.userId } : { name: seat.name, th: seat.tokenHash });
}

export function decodeSeat(id: string, bytes: Uint8Array, lastAppliedSeq: number): Seat {
  const v = unpack(bytes) as { name?: unknown; th?: unknown; uid?: unknown };
  return {
    id,
    name: typeof v.name === 'string' ? v.name : id,
    userId: typeof v.uid === 'string' ? v.uid : null,
    tokenHash: typeof v.th === 'string' ? v.th : '',
    link: null,
    lastQueuedSeq: lastAppliedSeq,
    lastAppliedSeq,
    leaveTimer: null,
    leaving: false,
  };
}
