/**
 * What the load test's patcher does next to a room, for the k6 scenario and the Node runner
 * alike (pure ECMAScript): walk the game's versions upward, one patch at a time; at the top
 * version, roll back (the admin API's rollback: to the version before the last patch). A
 * rollback the server refuses (e.g. ROLLBACK_NEEDS_DOWNGRADE: the top patch changed the state
 * layout and exports no `downgrade`) leaves the room where it was, so the next turn tries the
 * rollback again and is counted again.
 */

export type PatchAction = { kind: 'patch'; version: number } | { kind: 'rollback' };

/**
 * @param current the room's version number (admin status `versionNumber`; null: unknown, taken as 1)
 * @param top the highest version to go to (the game's last one unless limited)
 */
export function nextPatchAction(current: number | null, top: number): PatchAction {
  const v = current ?? 1;
  return v < top ? { kind: 'patch', version: v + 1 } : { kind: 'rollback' };
}

/** The admin API request for an action: path under the server's origin and JSON body. */
export function patchRequest(roomId: string, a: PatchAction): { path: string; body: string } {
  const room = encodeURIComponent(roomId);
  return a.kind === 'patch'
    ? { path: `/admin/rooms/${room}/patch`, body: JSON.stringify({ version: a.version }) }
    : { path: `/admin/rooms/${room}/rollback`, body: '{}' };
}

/** Human label of an action, e.g. "v3" or "rollback". */
export function actionLabel(a: PatchAction): string {
  return a.kind === 'patch' ? `v${a.version}` : 'rollback';
}

/**
 * Reads the admin API's answer: a SwapResult `{ ok, from, to, ... }` (200) or an error
 * `{ code, msg }` (4xx/5xx). Returns ok and a code for failures.
 */
export function patchOutcome(status: number, body: unknown): { ok: boolean; code: string; detail: string } {
  const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  if (status === 200 && b.ok === true) return { ok: true, code: '', detail: `${String(b.from)} -> ${String(b.to)} at tick ${String(b.tick)}` };
  const code = typeof b.code === 'string' ? b.code : status === 200 ? 'SWAP_FAILED' : `HTTP_${status}`;
  const detail = typeof b.msg === 'string' ? b.msg : typeof b.message === 'string' ? b.message : typeof b.stage === 'string' ? `stage ${b.stage}` : '';
  return { ok: false, code, detail };
}
