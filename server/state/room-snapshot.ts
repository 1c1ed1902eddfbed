/**
 * A room snapshot: a room's committed world with the tick, version and schema it is at, as
 * GET /admin/rooms/:id/snapshot returns it and `moonpatch validate --room ID --save FILE` writes
 * it. `moonpatch validate --fixture FILE` reads it back, so it is checked field by field.
 * Records hold player data: the endpoint is admin-only and saved files are not world-readable.
 */

export const SNAPSHOT_FORMAT = 'moonpatch-room-snapshot/1';

export interface RoomSnapshot {
  format: typeof SNAPSHOT_FORMAT;
  room: string;
  game: string;
  /** Bundle version (content hash) and its number on the server that answered (null: unknown there). */
  version: string;
  versionNumber: number | null;
  schema: number;
  /** The committed tick the records are at. */
  tick: number;
  /** Wall clock when it was read, ms. */
  takenAt: number;
  /** Record key -> the record's msgpack bytes, base64. */
  records: Record<string, string>;
}

export interface ParsedSnapshot {
  game: string;
  schema: number;
  versionNumber: number | null;
  tick: number;
  takenAt: number;
  records: Map<string, Uint8Array>;
}

/** Check a snapshot read from JSON; throws an Error naming the first field that is wrong. */
export function parseSnapshot(v: unknown): ParsedSnapshot {
  const bad = (what: string) => new Error(what);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('not a JSON object');
  const o = v as Record<string, unknown>;
  if (o.format !== SNAPSHOT_FORMAT) throw bad(`format must be "${SNAPSHOT_FORMAT}"`);
  if (typeof o.game !== 'string') throw bad('game: a string');
  for (const f of ['schema', 'tick', 'takenAt'] as const) {
    if (typeof o[f] !== 'number' || !Number.isSafeInteger(o[f]) || (o[f] as number) < 0) throw bad(`${f}: a non-negative integer`);
  }
  if (o.versionNumber !== null && (typeof o.versionNumber !== 'number' || !Number.isInteger(o.versionNumber))) throw bad('versionNumber: an integer or null');
  if (typeof o.records !== 'object' || o.records === null || Array.isArray(o.records)) throw bad('records: an object of record key -> base64');
  const records = new Map<string, Uint8Array>();
  for (const [k, b64] of Object.entries(o.records as Record<string, unknown>)) {
    if (typeof b64 !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw bad(`records["${k}"]: base64 of the record's msgpack`);
    records.set(k, new Uint8Array(Buffer.from(b64, 'base64')));
  }
  return { game: o.game, schema: o.schema as number, versionNumber: o.versionNumber as number | null, tick: o.tick as number, takenAt: o.takenAt as number, records };
}
