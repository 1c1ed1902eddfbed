/**
 * Redis key layout (documented in docs/state.md). Every key of a room shares the hash tag
 * `{roomId}`, so a room's commit is one atomic script call even on Redis Cluster.
 */

const ROOM_ID = /^[A-Za-z0-9_-]{1,64}$/;

export function isValidRoomId(id: unknown): id is string {
  return typeof id === 'string' && ROOM_ID.test(id);
}

export interface RoomKeys {
  /** Hash: game, version, schema, tick, epoch, checkpoint, seed, createdAt, tickHz. */
  meta: string;
  /** Hash: record key -> msgpack of the record's value, as of the last checkpoint (or newer). */
  state: string;
  /** Hash: player id -> msgpack {name, th} (th: sha256 of the resume secret). */
  seats: string;
  /** Hash: player id -> last input sequence number applied (exactly-once across restarts), as of the last checkpoint. */
  seqs: string;
  /** List: one delta per tick committed since the checkpoint, oldest first. */
  log: string;
  /** List: the room's patch history, newest first (JSON entries, at most 100). */
  history: string;
  /**
   * String with a TTL: "<node id> <url>" of the server that owns the room. Set by a claim,
   * renewed by every commit, deleted on a clean shutdown; see room-store.ts.
   */
  lease: string;
  /** List: the times this room's script aborted a server process, newest first (JSON, 20 kept). */
  crashes: string;
  /**
   * Stream: what the room's scripts logged and threw lately, one JSON entry per line or error,
   * the newest 200 kept (ops/script-journal.ts, state/journal-store.ts).
   */
  journal: string;
}

export function roomKeys(prefix: string, roomId: string): RoomKeys {
  const base = `${prefix}:room:{${roomId}}`;
  return { meta: `${base}:meta`, state: `${base}:state`, seats: `${base}:seats`, seqs: `${base}:seqs`, log: `${base}:log`, history: `${base}:history`, lease: `${base}:lease`, crashes: `${base}:crashes`, journal: `${base}:journal` };
}

/** Set of every room id, so a starting server can resume them all. */
export function roomIndexKey(prefix: string): string {
  return `${prefix}:rooms`;
}

/**
 * String (JSON {current, previous, withdrawn}): the version every unpinned room of a game
 * should run, set by a promote; see RoomManager.setTarget.
 */
export function gameTargetKey(prefix: string, game: string): string {
  return `${prefix}:game:${game}:target`;
}

/**
 * String with a TTL (JSON {node, url, at, rooms}): what one server runs, rewritten every couple
 * of seconds (server/net/cluster.ts).
 */
export function nodeKey(prefix: string, node: string): string {
  return `${prefix}:node:${node}`;
}

/** Set of the node ids that wrote a nodeKey (members whose key lapsed are pruned on read). */
export function nodesKey(prefix: string): string {
  return `${prefix}:nodes`;
}
