/**
 * Player tokens: `<payload>.<signature>`, both base64url; the payload is JSON
 * `{ sub, name?, exp }` (exp in seconds since the epoch) and the signature is
 * HMAC-SHA256(secret, payload part). A game's login service mints them with the secret the
 * server is configured with (PLAYER_TOKEN_SECRET); the server only verifies.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { MoonpatchError } from '../errors/errors.ts';

export interface PlayerIdentity {
  /** Stable user id: one seat per user per room. */
  sub: string;
  name?: string;
  /** Expiry, seconds since the epoch. */
  exp: number;
}

function mac(secret: string, payload: string): Buffer {
  return createHmac('sha256', secret).update(payload).digest();
}

export function signPlayerToken(identity: PlayerIdentity, secret: string): string {
  const payload = Buffer.from(JSON.stringify(identity)).toString('base64url');
  return `${payload}.${mac(secret, payload).toString('base64url')}`;
}

/** The identity in a token, or AUTH_INVALID (bad shape, bad signature, expired). */
export function verifyPlayerToken(token: string, secret: string, nowMs = Date.now()): PlayerIdentity {
  const dot = token.indexOf('.');
  const payload = dot > 0 ? token.slice(0, dot) : '';
  const sig = dot > 0 ? Buffer.from(token.slice(dot + 1), 'base64url') : Buffer.alloc(0);
  const expected = mac(secret, payload);
  if (!payload || sig.length !== expected.length || !timingSafeEqual(sig, expected)) {
    throw new MoonpatchError('AUTH_INVALID', 'the player token is not signed by this server');
  }
  let id: Partial<PlayerIdentity>;
  try {
    id = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Partial<PlayerIdentity>;
  } catch {
    throw new MoonpatchError('AUTH_INVALID', 'the player token payload is not JSON');
  }
  if (typeof id.sub !== 'string' || id.sub.length < 1 || id.sub.length > 128 || typeof id.exp !== 'number') {
    throw new MoonpatchError('AUTH_INVALID', 'the player token needs sub and exp');
  }
  if (id.exp * 1000 <= nowMs) throw new MoonpatchError('AUTH_INVALID', 'the player token has expired');
  return { sub: id.sub, exp: id.exp, ...(typeof id.name === 'string' ? { name: id.name.slice(0, 32) } : {}) };
}
