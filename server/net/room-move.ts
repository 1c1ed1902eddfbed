/**
 * Moving a room to another server (POST /admin/rooms/:id/move, `moonpatch move`): find the
 * target among the deployment's live servers, then let the room manager hand the room over,
 * asking the target to open it through its own admin API (POST /admin/rooms/:id/open). See
 * RoomManager.moveRoom for the order of the hand-over and what players see.
 */
import { MoonpatchError } from '../errors/errors.ts';
import type { RoomManager } from '../room/room-manager.ts';
import { adminBaseUrl, type NodeDirectory } from './cluster.ts';

/** How long the target may take to open the room (load its game version, resume its state). */
const OPEN_TIMEOUT_MS = 30_000;

export function roomMover(rooms: RoomManager, nodes: NodeDirectory, selfNode: () => string, adminToken: string) {
  return async (roomId: string, to: string) => {
    let base: string | null = null;
    if (to !== selfNode()) {
      const url = await nodes.urlOf(to);
      base = url === null ? null : adminBaseUrl(url);
      if (base === null) throw new MoonpatchError('NODE_NOT_FOUND', `no live server named ${JSON.stringify(to)} (see \`moonpatch status\` for the servers)`);
    }
    return rooms.moveRoom(roomId, to, () => openOn(base!, roomId, adminToken));
  };
}

/** Ask the server at `base` to open the room; throws with its answer when it does not. */
async function openOn(base: string, roomId: string, adminToken: string): Promise<void> {
  const res = await fetch(`${base}/admin/rooms/${encodeURIComponent(roomId)}/open`, {
    method: 'POST',
    // Marked as forwarded: the target must open the room itself, not pass the request on.
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json', 'x-moonpatch-forwarded': '1' },
    body: '{}',
    signal: AbortSignal.timeout(OPEN_TIMEOUT_MS),
  });
  if (res.ok) return;
  const answer = (await res.json().catch(() => ({}))) as { code?: string; msg?: string };
  throw new Error(`${res.status} ${answer.code ?? ''}: ${answer.msg ?? ''}`.trim());
}
