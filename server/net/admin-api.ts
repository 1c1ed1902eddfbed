/**
 * The admin HTTP API, for the `moonpatch` command line and ops: room status, applying a patch
 * version, rolling back, patch history. Every request needs `Authorization: Bearer <token>`
 * (the server's admin token, compared in constant time); players' WebSocket connections never
 * reach these operations. JSON in, JSON out; errors carry the stable code.
 *
 *   GET  /admin/rooms                       status of every room on this server
 *   GET  /admin/rooms?scope=cluster         ... on every server of the deployment (each row names its `node`)
 *   POST /admin/rooms     {room, game?}     create a room (it starts when a player joins)
 *   DELETE /admin/rooms/:id                 delete a room for good (its players are closed with 4007)
 *   GET  /admin/games                       games and their versions
 *   POST /admin/rooms/:id/patch    {version, safePoint?, deadlineMs?}   swap to a version (waits for the swap tick)
 *   POST /admin/rooms/:id/rollback {version?}       roll back (waits)
 *   GET  /admin/rooms/:id/history           patch history, newest first
 *   GET  /admin/rooms/:id/snapshot          the room's committed world (for `moonpatch validate --room`)
 *   GET  /admin/rooms/:id/logs?after=ID&limit=M  what its scripts logged and threw lately (ops/script-journal.ts)
 *   POST /admin/rooms/:id/pin      {pinned}         pin a room to its version, or unpin it
 *   POST /admin/rooms/:id/move     {to}             move a running room to another server (node id)
 *   POST /admin/rooms/:id/open                      open (claim) the room on this server: what a move asks of its target
 *   POST /admin/patches   {package, signature, publicKey}   upload a signed patch (all servers get it)
 *   GET  /admin/games/:game/target          the version unpinned rooms of the game should run
 *   PUT  /admin/games/:game/target {version}        set it (promote): rooms not running now get it when they open
 *   POST /admin/games/:game/target/withdraw {version}   withdraw a version (abort)
 *
 * A request about a room that another server runs (ROOM_OWNED_ELSEWHERE) is forwarded to that
 * server once, with the same method, path, body and token (every server of a deployment has the
 * same admin token), and its answer is returned as is: one address reaches every room. A
 * forwarded request carries `x-moonpatch-forwarded` and is never forwarded again.
 */
import { timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import { ErrorCodes, type ErrorCode } from '../errors/codes.ts';
import { MoonpatchError, RoomOwnedElsewhereError } from '../errors/errors.ts';
import { adminBaseUrl } from './cluster.ts';
import { MAX_READ } from '../ops/script-journal.ts';
import { isJournalCursor } from '../state/journal-store.ts';

/** What the admin API needs from the rooms (implemented by the room manager). */
export interface AdminOps {
  status(): unknown[];
  /** Every room of every server sharing this Redis (NodeDirectory.rooms). */
  clusterStatus(): Promise<unknown[]>;
  games(): unknown[];
  patch(roomId: string, version: number, opts: { safePoint?: boolean; deadlineMs?: number }): Promise<unknown>;
  rollback(roomId: string, version?: number): Promise<unknown>;
  history(roomId: string): Promise<unknown[]>;
  /** The room's committed world, tick, version and schema (RoomManager.snapshot). */
  snapshot(roomId: string): Promise<unknown>;
  /** Its scripts' recent log lines and errors after entry `after` (ScriptJournal.read). */
  logs(roomId: string, after: string, limit: number): Promise<unknown>;
  pin(roomId: string, pinned: boolean): Promise<unknown>;
  /** Let a quarantined room run again (forget the crashes it caused). */
  release(roomId: string): Promise<unknown>;
  /** Accept a signed patch package (see patch/package.ts). */
  upload(signed: Record<string, unknown>): Promise<unknown>;
  /** A game's target version (RoomManager.target, setTarget, withdrawTarget). */
  target(game: string): Promise<unknown>;
  setTarget(game: string, version: number): Promise<unknown>;
  withdrawTarget(game: string, version: number): Promise<unknown>;
  /** Create a room, or delete one for good (RoomManager.createRoom, deleteRoom). */
  createRoom(roomId: string, game: string | undefined): Promise<unknown>;
  deleteRoom(roomId: string): Promise<unknown>;
  /** Move a room to the server `to` (RoomManager.moveRoom); open one here (its target's half). */
  moveRoom(roomId: string, to: string): Promise<unknown>;
  openRoom(roomId: string): Promise<unknown>;
}

/** Big enough for a signed patch package (whole script files). */
const MAX_BODY = 4 * 1024 * 1024;

export function createAdminHandler(ops: AdminOps, adminToken: string): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  const expected = Buffer.from(`Bearer ${adminToken}`);
  const authorised = (req: http.IncomingMessage) => {
    const got = Buffer.from(req.headers.authorization ?? '');
    return got.length === expected.length && timingSafeEqual(got, expected);
  };
  return (req, res) => {
    if (!authorised(req)) return json(res, 401, { code: 'UNAUTHORIZED', msg: 'admin operations need the admin token (Authorization: Bearer ...)' });
    let body: Record<string, unknown> | undefined;
    void (async () => {
      body = req.method === 'POST' || req.method === 'PUT' ? await readJson(req) : {};
      return route(ops, req, body);
    })().then(
      (out) => json(res, 200, out),
      async (e: unknown) => {
        const owner = e instanceof RoomOwnedElsewhereError && !req.headers[FORWARDED] && body !== undefined ? adminBaseUrl(e.ownerUrl) : null;
        if (owner) {
          const forwarded = await forward(owner, req, body!).catch(() => null);
          if (forwarded) return json(res, forwarded.status, forwarded.body);
        }
        const code: ErrorCode = e instanceof MoonpatchError ? e.code : 'ENGINE_ERROR';
        const status =
          code === 'ROOM_NOT_FOUND' || code === 'GAME_NOT_FOUND' || code === 'NODE_NOT_FOUND' ? 404
          : code === 'BAD_FIELD' || code === 'BAD_ROOM_ID' || code === 'PATCH_BAD_SIGNATURE' ? 400
          : code === 'PATCH_UNTRUSTED' ? 403
          : ErrorCodes[code].retry ? 503 : 409;
        json(res, status, { code, msg: e instanceof Error ? e.message : String(e) });
      },
    );
  };
}

/** Marks a request one server forwarded to another, so it is never forwarded again. */
const FORWARDED = 'x-moonpatch-forwarded';

/** How long a forwarded request may take: a patch waits for its swap tick (a safe point can take minutes). */
const FORWARD_TIMEOUT_MS = 10 * 60_000;

/** Send the same request to the server that runs the room; its status and JSON answer. */
async function forward(base: string, req: http.IncomingMessage, body: Record<string, unknown>): Promise<{ status: number; body: unknown }> {
  const res = await fetch(base + (req.url ?? '/'), {
    method: req.method,
    headers: { authorization: req.headers.authorization ?? '', 'content-type': 'application/json', [FORWARDED]: '1' },
    body: req.method === 'POST' || req.method === 'PUT' ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(FORWARD_TIMEOUT_MS),
  });
  return { status: res.status, body: await res.json() };
}

async function route(ops: AdminOps, req: http.IncomingMessage, body: Record<string, unknown>): Promise<unknown> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const parts = url.pathname.split('/').filter(Boolean); // ['admin', ...]
  if (req.method === 'GET' && parts[1] === 'rooms' && parts.length === 2) {
    const scope = url.searchParams.get('scope');
    if (scope !== null && scope !== 'cluster' && scope !== 'node') throw new MoonpatchError('BAD_FIELD', 'scope: "node" (default) or "cluster"');
    return scope === 'cluster' ? ops.clusterStatus() : ops.status();
  }
  if (req.method === 'POST' && parts[1] === 'rooms' && parts.length === 2) {
    const { room, game } = body;
    if (typeof room !== 'string') throw new MoonpatchError('BAD_FIELD', 'room: a room id (1-64 characters of A-Z a-z 0-9 _ -)');
    if (game !== undefined && typeof game !== 'string') throw new MoonpatchError('BAD_FIELD', 'game: a game name');
    return ops.createRoom(room, game);
  }
  if (req.method === 'DELETE' && parts[1] === 'rooms' && parts.length === 3) return ops.deleteRoom(decodeURIComponent(parts[2]!));
  if (req.method === 'GET' && parts[1] === 'games' && parts.length === 2) return ops.games();
  if (req.method === 'POST' && parts[1] === 'patches' && parts.length === 2) return ops.upload(body);
  if (parts[1] === 'games' && parts[3] === 'target' && (parts.length === 4 || parts.length === 5)) {
    const game = decodeURIComponent(parts[2]!);
    if (req.method === 'GET' && parts.length === 4) return ops.target(game);
    const isSet = req.method === 'PUT' && parts.length === 4;
    const isWithdraw = req.method === 'POST' && parts[4] === 'withdraw';
    if (isSet || isWithdraw) {
      const { version } = body;
      if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) throw new MoonpatchError('BAD_FIELD', 'version: a positive integer');
      return isSet ? ops.setTarget(game, version) : ops.withdrawTarget(game, version);
    }
  }
  if (parts[1] === 'rooms' && parts.length === 4) {
    const roomId = decodeURIComponent(parts[2]!);
    if (req.method === 'GET' && parts[3] === 'history') return ops.history(roomId);
    if (req.method === 'GET' && parts[3] === 'snapshot') return ops.snapshot(roomId);
    if (req.method === 'GET' && parts[3] === 'logs') {
      const after = url.searchParams.get('after') ?? '0';
      if (!isJournalCursor(after)) throw new MoonpatchError('BAD_FIELD', "after: 0, or the id of the last entry read (the previous page's `next`)");
      return ops.logs(roomId, after, countParam(url, 'limit', 1, MAX_READ, MAX_READ));
    }
    if (req.method === 'POST' && parts[3] === 'release') return ops.release(roomId);
    if (req.method === 'POST' && parts[3] === 'open') return ops.openRoom(roomId);
    if (req.method === 'POST' && parts[3] === 'move') {
      const { to } = body;
      if (typeof to !== 'string' || to.length === 0 || to.length > 200) throw new MoonpatchError('BAD_FIELD', 'to: the node id of a live server (see `moonpatch status`)');
      return ops.moveRoom(roomId, to);
    }
    if (req.method === 'POST' && parts[3] === 'patch') {
      const { version, safePoint, deadlineMs } = body;
      if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) throw new MoonpatchError('BAD_FIELD', 'version: a positive integer');
      if (deadlineMs !== undefined && (typeof deadlineMs !== 'number' || !(deadlineMs >= 0 && deadlineMs <= 3_600_000))) throw new MoonpatchError('BAD_FIELD', 'deadlineMs: 0 to 3600000');
      return ops.patch(roomId, version, { safePoint: safePoint === true, deadlineMs: deadlineMs as number | undefined });
    }
    if (req.method === 'POST' && parts[3] === 'pin') {
      const { pinned } = body;
      if (typeof pinned !== 'boolean') throw new MoonpatchError('BAD_FIELD', 'pinned: true or false');
      return ops.pin(roomId, pinned);
    }
    if (req.method === 'POST' && parts[3] === 'rollback') {
      const { version } = body;
      if (version !== undefined && (typeof version !== 'number' || !Number.isInteger(version) || version < 1)) throw new MoonpatchError('BAD_FIELD', 'version: a positive integer');
      return ops.rollback(roomId, version as number | undefined);
    }
  }
  throw new MoonpatchError('UNKNOWN_TYPE', `no admin operation ${req.method} ${url.pathname}`);
}

/** A whole-number query parameter within [min, max], or `absent` when it is not given. */
function countParam(url: URL, name: string, min: number, max: number, absent: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null) return absent;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) throw new MoonpatchError('BAD_FIELD', `${name}: a whole number from ${min} to ${max}`);
  return n;
}

async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new MoonpatchError('BAD_FIELD', 'request body too large');
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  try {
    const v = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch {
    throw new MoonpatchError('BAD_FIELD', 'body must be a JSON object');
  }
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}
