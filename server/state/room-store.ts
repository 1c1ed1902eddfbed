/**
 * A room's authoritative state in Redis: create, claim (load for ticking), the atomic fenced
 * commit of one tick, and checkpoints.
 *
 * Layout (docs/state.md): a checkpoint of the world (the `state` and `seqs` hashes) plus a log
 * of the ticks committed since (the `log` list, one delta per tick). A tick's commit appends
 * ONE value to the log, however many records it changed: per-field writes cost Redis ~4 ms p50
 * (16 ms p99) for 1,000 changed records, one appended delta a fraction of that. A checkpoint,
 * run off the tick path every second or so, folds the log into the hashes in small chunks and
 * trims it. Deltas hold absolute values, so a crash in the middle of a checkpoint is harmless:
 * loading replays the whole remaining log over whatever the hashes hold.
 *
 * Fencing: meta holds `epoch` (bumped by every claim) and `tick` (the last committed tick). A
 * commit names the epoch it was claimed under and the tick it builds on; the script applies it
 * only if both still match. So a stale owner (an older claim) or a duplicate writer (the same
 * tick twice) can never overwrite newer state: its commit is refused as a whole. Checkpoints
 * are fenced by the epoch.
 *
 * Ownership: one server ticks a room at a time. A claim takes the room's lease (a key with a
 * TTL naming the owner) and is refused while another server's lease is alive; every commit
 * renews it; a clean shutdown deletes it. When an owner dies, its lease lapses after ttlMs and
 * another server may claim the room. The lease is for liveness (who should tick); safety comes
 * from the epoch fence: an owner that was paused or partitioned past its lease and lost the
 * room to a new claim has its next commit refused, whatever it believes about its lease.
 */
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { gameTargetKey, roomIndexKey, roomKeys, type RoomKeys } from './keys.ts';
import { MoonpatchError } from '../errors/errors.ts';
import { applyTickDelta } from './tick-delta.ts';
import { crashListEntry } from '../ops/crash-wire.mjs';

/**
 * The room storage format this code writes, and the newest it reads (docs/state.md, "Storage
 * format"). 1: tick deltas of four elements (rooms created before formats were recorded have
 * no `format` field and are 1); 2: a fifth element, field patches. A server never claims a room
 * stored in a newer format: it would misread the log, and the claim itself would fence out the
 * newer server that runs the room. A claim by a server whose format is newer raises the room's,
 * since that server's commits will use it.
 */
export const STORAGE_FORMAT = 2;

export interface RoomMeta {
  game: string;
  version: string;
  schema: number;
  tick: number;
  epoch: number;
  seed: number;
  createdAt: number;
  tickHz: number;
  /** The tick the checkpoint (state and seqs hashes) is at least as new as. */
  checkpoint: number;
  /** Pinned to its version: patches skip it (A/B comparisons). */
  pinned: boolean;
  /** The storage format its log and checkpoint use (see STORAGE_FORMAT). */
  format: number;
}

/** A room as claimed from Redis: everything needed to resume it at its last committed tick. */
export interface ClaimedRoom {
  meta: RoomMeta;
  /** Record key -> msgpack bytes, at the last committed tick. */
  records: Map<string, Uint8Array>;
  /** Player id -> msgpack bytes of the seat. */
  seats: Map<string, Buffer>;
  /** Player id -> last applied input seq. */
  seqs: Map<string, number>;
  /**
   * What the replayed log touched: records and players whose newest values are only in the
   * log. The new owner's first checkpoint must write them, because it trims that log.
   */
  uncheckpointed: { keys: Set<string>; players: Set<string> };
}

export interface TickCommit {
  epoch: number;
  /** The tick this commit builds on (the last committed tick). */
  prevTick: number;
  tick: number;
  /** The tick's delta (see tick-delta.ts). */
  delta: Uint8Array;
  seatSets: Iterable<readonly [string, Uint8Array]>;
  seatDels: Iterable<string>;
  /** Meta fields to change with this tick (version and schema on a patch). */
  metaSets?: Iterable<readonly [string, string | number]>;
}

export interface CheckpointChunk {
  epoch: number;
  sets: Iterable<readonly [string, Uint8Array]>;
  dels: Iterable<string>;
  seqSets: Iterable<readonly [string, number]>;
}

/**
 * 'lost': Redis no longer has this owner's newest commits (it restarted without persistence, or
 * from an AOF older than what it acknowledged). The owner still has them: see restore().
 */
export type CommitResult = 'ok' | 'fenced' | 'tick-mismatch' | 'lost';

/** Everything a room is, as its owner knows it: what restore() writes back. */
export interface RoomImage {
  meta: RoomMeta;
  records: Iterable<readonly [string, Uint8Array]>;
  seats: Iterable<readonly [string, Uint8Array]>;
  seqs: Iterable<readonly [string, number]>;
}

/** Who this store claims rooms as. */
export interface LeaseHolder {
  /** Stable id of the server process (NODE_ID; by default host name and port). No spaces. */
  node: string;
  /** Where players reach that server (PUBLIC_URL), so other servers can redirect them. */
  url: string;
}

/** A claim refused because the room is stored in a format newer than STORAGE_FORMAT. */
export interface FormatTooNew {
  /** As stored (a corrupt value is refused too, and shown as it is). */
  format: string;
}

/** A claim refused because another server's lease on the room is alive. */
export interface OwnedElsewhere {
  ownedBy: LeaseHolder;
  /** How long the lease still runs unless renewed, ms. */
  ttlMs: number;
}

export const DEFAULT_LEASE_MS = 5000;

/** One line of a room's patch history. */
/**
 * The version rooms of a game should run: `current` (null: none, each room keeps its own),
 * the one it replaced, and versions withdrawn after a promote (a room still on one of those is
 * moved off it when it opens).
 */
export interface GameTarget {
  current: number | null;
  previous: number | null;
  withdrawn: number[];
}

export interface PatchHistoryEntry {
  /** ms since epoch */
  at: number;
  kind: 'applied' | 'refused' | 'verified' | 'rolled-back' | 'rollback-refused';
  from: string;
  to: string;
  tick: number;
  reason?: string;
}

const HISTORY_KINDS = new Set<string>(['applied', 'refused', 'verified', 'rolled-back', 'rollback-refused']);

/** A history entry as stored, or null for anything that is not one (the key is Redis's: anyone can write it). */
export function parseHistoryEntry(text: string): PatchHistoryEntry | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const e = v as Record<string, unknown>;
  if (!HISTORY_KINDS.has(e.kind as string) || typeof e.at !== 'number' || typeof e.tick !== 'number' || typeof e.from !== 'string' || typeof e.to !== 'string') return null;
  const entry: PatchHistoryEntry = { at: e.at, kind: e.kind as PatchHistoryEntry['kind'], from: e.from, to: e.to, tick: e.tick };
  if (typeof e.reason === 'string') entry.reason = e.reason;
  return entry;
}

/** One time a room's script aborted a server process: an entry of the room's crash list. */
export interface RoomCrash {
  /** ms since epoch */
  at: number;
  tick: number;
  version: string;
  node: string;
}

/** How many entries a room's crash list keeps (newest first). */
export const CRASHES_KEPT = 20;


/** An entry of the crash list, or null for one that is not (written by hand, say). */
function parseCrash(line: string): RoomCrash | null {
  try {
    const c = JSON.parse(line) as Partial<RoomCrash> | null;
    return c && typeof c.at === 'number' && typeof c.node === 'string' ? (c as RoomCrash) : null;
  } catch {
    return null;
  }
}

/** One process aborts once: the same node at the same millisecond is the same crash. */
function sameCrash(line: string, crash: RoomCrash): boolean {
  const c = parseCrash(line);
  return c !== null && c.at === crash.at && c.node === crash.node;
}

// Shared by the scripts below: HSET/HDEL over ARGV items starting at `i`, in chunks, because
// Lua's unpack is limited to a few thousand values.
const LUA_HELPERS = `
local i = 0
local function hset(key, pairs)
  while pairs > 0 do
    local c = math.min(pairs, 400)
    redis.call('HSET', key, unpack(ARGV, i, i + 2 * c - 1))
    i = i + 2 * c
    pairs = pairs - c
  end
end
local function hdel(key, n)
  while n > 0 do
    local c = math.min(n, 800)
    redis.call('HDEL', key, unpack(ARGV, i, i + c - 1))
    i = i + c
    n = n - c
  end
end
`;

// KEYS: meta, seats, seqs, log, lease.
// ARGV: epoch, prevTick, tick, delta, nSeatSet, nSeatDel, nMeta, lease holder, lease ms, then
// seat pairs, seat dels, meta pairs. Returns 1, or -1 (epoch moved on: fenced), -2 (tick is
// not next: duplicate), or -3 (Redis lost this owner's newest commits: the room is gone, or its
// tick is behind under the same epoch, which only a Redis restart without them can do). A commit that passes the fence renews the lease: the epoch proves this
// writer is the owner, so it may also take back a lease that lapsed while Redis was away.
const COMMIT_LUA = LUA_HELPERS + `
local cur = redis.call('HMGET', KEYS[1], 'epoch', 'tick')
if not cur[1] then return -3 end
if cur[1] ~= ARGV[1] then return -1 end
if cur[2] ~= ARGV[2] then
  if tonumber(cur[2]) < tonumber(ARGV[2]) then return -3 end
  return -2
end
redis.call('RPUSH', KEYS[4], ARGV[4])
redis.call('SET', KEYS[5], ARGV[8], 'PX', ARGV[9])
i = 10
hset(KEYS[2], tonumber(ARGV[5]))
local seatDels = tonumber(ARGV[6])
local seatDelStart = i
hdel(KEYS[2], seatDels)
i = seatDelStart
hdel(KEYS[3], seatDels)
hset(KEYS[1], tonumber(ARGV[7]))
redis.call('HSET', KEYS[1], 'tick', ARGV[3])
return 1
`;

// KEYS: meta, state, seqs. ARGV: epoch, nSet, nDel, nSeq, then the items.
const CHECKPOINT_CHUNK_LUA = LUA_HELPERS + `
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return -1 end
i = 5
hset(KEYS[2], tonumber(ARGV[2]))
hdel(KEYS[2], tonumber(ARGV[3]))
hset(KEYS[3], tonumber(ARGV[4]))
return 1
`;

// KEYS: meta, log. ARGV: epoch, upToTick. Drops the log entries of ticks <= upToTick (one
// entry per tick since the previous checkpoint) and records the new checkpoint tick.
const CHECKPOINT_FINISH_LUA = `
local cur = redis.call('HMGET', KEYS[1], 'epoch', 'checkpoint')
if cur[1] ~= ARGV[1] then return -1 end
local n = tonumber(ARGV[2]) - tonumber(cur[2] or '0')
if n <= 0 then return 0 end
redis.call('LTRIM', KEYS[2], n, -1)
redis.call('HSET', KEYS[1], 'checkpoint', ARGV[2])
return n
`;

// KEYS: meta, state, seats, seqs, log, lease, history, crashes, journal. ARGV: lease holder
// ("<node> <url>"), lease ms, storage format. Refused ({0, holder, pttl}) while another node's
// lease is alive, and ({2, format}) when the room's storage format is newer than ARGV[3] (before
// anything changes: the room is a newer server's to run). Otherwise takes the lease, bumps the
// epoch (fencing out any previous owner), raises the format to ARGV[3] and reads everything in
// the same atomic step, so nothing can commit between the bump and the read. The same node may
// claim again (a restart with the same NODE_ID need not wait for its own lease to lapse). A
// deleted room's tombstone is no room. The claim cancels the expiry an unload may have set (see
// EXPIRE_LUA): with meta present, every other key is still there.
const CLAIM_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'deleted') == 1 then return false end
local holder = redis.call('GET', KEYS[6])
if holder then
  local node = string.match(holder, '^[^ ]*')
  if node ~= string.match(ARGV[1], '^[^ ]*') then return { 0, holder, redis.call('PTTL', KEYS[6]) } end
end
local format = tonumber(redis.call('HGET', KEYS[1], 'format') or '1') or 0
if format > tonumber(ARGV[3]) or format < 1 then return { 2, redis.call('HGET', KEYS[1], 'format') } end
if format < tonumber(ARGV[3]) then redis.call('HSET', KEYS[1], 'format', ARGV[3]) end
for k = 1, 9 do if k ~= 6 then redis.call('PERSIST', KEYS[k]) end end
redis.call('SET', KEYS[6], ARGV[1], 'PX', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
return { 1, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4]), redis.call('LRANGE', KEYS[5], 0, -1) }
`;

// KEYS: meta, state, seats, seqs, log, lease. ARGV: epoch, tick, lease holder, lease ms, nMeta,
// nState, nSeats, nSeqs, then the items. Rewrites the whole room from its owner's image when
// Redis lost it (no meta) or lost its newest ticks (same epoch, older tick); refuses (-1) when
// another server claimed the room since, and (-2) when Redis is not behind after all.
const RESTORE_LUA = LUA_HELPERS + `
local cur = redis.call('HMGET', KEYS[1], 'epoch', 'tick')
if cur[1] then
  if cur[1] ~= ARGV[1] then return -1 end
  if tonumber(cur[2]) >= tonumber(ARGV[2]) then return -2 end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
i = 9
hset(KEYS[1], tonumber(ARGV[5]))
hset(KEYS[2], tonumber(ARGV[6]))
hset(KEYS[3], tonumber(ARGV[7]))
hset(KEYS[4], tonumber(ARGV[8]))
redis.call('SET', KEYS[6], ARGV[3], 'PX', ARGV[4])
return 1
`;

// KEYS: meta, lease. ARGV: lease holder, epoch. Gives the lease up (clean shutdown) if this
// node still holds it under that epoch, so another server may claim the room at once.
const RELEASE_LUA = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[2])
return 1
`;

// KEYS: meta, state, seqs, log. The same read without claiming (tools and tests), with the
// meta the records go with (tick, version, schema: a swap tick's commit changes all of them
// at once), read in the same atomic step.
const READ_LUA = `
return { redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), redis.call('LRANGE', KEYS[4], 0, -1), redis.call('HGETALL', KEYS[1]) }
`;

// KEYS: meta, state, seats, seqs, log, history, lease, crashes, journal. ARGV: field/value pairs.
// Creates the room only if it does not exist. A deleted room's tombstone or an expired room's
// leftover keys do not count as a room: they are cleared, and the new room keeps the
// tombstone's epoch, so a server still running the deleted room stays fenced out.
const CREATE_LUA = `
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HEXISTS', KEYS[1], 'deleted') == 0 then return 0 end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
-- Not the lease (KEYS[7]): a live lease is a running owner's, and its claim rules still apply.
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[8], KEYS[9])
redis.call('HSET', KEYS[1], unpack(ARGV))
if epoch then redis.call('HSET', KEYS[1], 'epoch', epoch) end
return 1
`;

// KEYS: meta, state, seats, seqs, log, history, lease, crashes, journal. ARGV: tombstone ms.
// Deletes a room for good: bumps the epoch (any server still running it is fenced out at its
// next commit and stops), removes every key, and leaves a tombstone meta {deleted, epoch} for
// ARGV[1] ms so that a fenced owner cannot write the room back (restore needs its own epoch).
// Returns 0 when there is no such room.
const DELETE_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'deleted') == 1 then return 0 end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('DEL', unpack(KEYS))
redis.call('HSET', KEYS[1], 'deleted', '1', 'epoch', epoch)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`;

// KEYS: meta, state, seats, seqs, log, history, crashes, lease, journal. ARGV: ms, epoch. An unloaded
// room's keys expire (see RoomStore.expireUnloaded): meta first, everything else a minute
// later, so a claim that finds meta always finds the rest, and a room whose meta is gone is
// absent (create clears what is left). Only while nobody holds the lease and the epoch is the
// unloader's: a room claimed again in the meantime is not touched.
const EXPIRE_LUA = `
if redis.call('EXISTS', KEYS[8]) == 1 then return 0 end
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[2] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
for k = 2, 9 do if k ~= 8 then redis.call('PEXPIRE', KEYS[k], tonumber(ARGV[1]) + 60000) end end
return 1
`;

type Arg = string | Buffer;
interface StoreCommands {
  mpCommit(meta: string, seats: string, seqs: string, log: string, lease: string, ...argv: Arg[]): Promise<number>;
  mpCheckpointChunk(meta: string, state: string, seqs: string, ...argv: Arg[]): Promise<number>;
  mpCheckpointFinish(meta: string, log: string, epoch: string, upTo: string): Promise<number>;
  mpClaimBuffer(meta: string, state: string, seats: string, seqs: string, log: string, lease: string, history: string, crashes: string, journal: string, holder: string, ms: string, format: string): Promise<[1, Buffer[], Buffer[], Buffer[], Buffer[], Buffer[]] | [0, Buffer, number] | [2, Buffer] | null>;
  mpRelease(meta: string, lease: string, holder: string, epoch: string): Promise<number>;
  mpRestore(meta: string, state: string, seats: string, seqs: string, log: string, lease: string, ...argv: Arg[]): Promise<number>;
  mpReadBuffer(meta: string, state: string, seqs: string, log: string): Promise<[Buffer[], Buffer[], Buffer[], Buffer[]]>;
  mpCreate(...keysThenArgv: (string | number)[]): Promise<number>;
  mpDelete(meta: string, state: string, seats: string, seqs: string, log: string, history: string, lease: string, crashes: string, journal: string, tombstoneMs: string): Promise<number>;
  mpExpire(meta: string, state: string, seats: string, seqs: string, log: string, history: string, crashes: string, lease: string, journal: string, ms: string, epoch: string): Promise<number>;
}

export class RoomStore {
  private readonly redis: Redis & StoreCommands;
  private holder: LeaseHolder;

  constructor(
    redis: Redis,
    readonly prefix: string,
    holder: LeaseHolder = { node: `${hostname()}:${process.pid}`, url: '' },
    /** A claim's lease lasts this long unless a commit renews it, ms. */
    readonly leaseMs = DEFAULT_LEASE_MS,
  ) {
    this.redis = redis as Redis & StoreCommands;
    this.holder = checkHolder(holder);
    if (!('mpCommit' in redis)) {
      redis.defineCommand('mpCommit', { numberOfKeys: 5, lua: COMMIT_LUA });
      redis.defineCommand('mpRelease', { numberOfKeys: 2, lua: RELEASE_LUA });
      redis.defineCommand('mpRestore', { numberOfKeys: 6, lua: RESTORE_LUA });
      redis.defineCommand('mpCheckpointChunk', { numberOfKeys: 3, lua: CHECKPOINT_CHUNK_LUA });
      redis.defineCommand('mpCheckpointFinish', { numberOfKeys: 2, lua: CHECKPOINT_FINISH_LUA });
      redis.defineCommand('mpClaim', { numberOfKeys: 9, lua: CLAIM_LUA });
      redis.defineCommand('mpRead', { numberOfKeys: 4, lua: READ_LUA });
      redis.defineCommand('mpCreate', { numberOfKeys: 9, lua: CREATE_LUA });
      redis.defineCommand('mpDelete', { numberOfKeys: 9, lua: DELETE_LUA });
      redis.defineCommand('mpExpire', { numberOfKeys: 9, lua: EXPIRE_LUA });
    }
  }

  keys(roomId: string): RoomKeys {
    return roomKeys(this.prefix, roomId);
  }

  /**
   * Create a room (tick 0, epoch 0) unless it exists. Returns false when it already existed.
   * `listed`: put it on the index of rooms that should be running (see unlist), so a starting
   * server or a takeover opens it; a room created for players to join later is not listed
   * until its first claim.
   */
  async create(roomId: string, meta: Omit<RoomMeta, 'tick' | 'epoch' | 'checkpoint' | 'pinned' | 'format'>, listed = true): Promise<boolean> {
    const k = this.keys(roomId);
    const fields: (string | number)[] = ['tick', 0, 'epoch', 0, 'checkpoint', 0, 'format', STORAGE_FORMAT];
    for (const [f, v] of Object.entries(meta)) fields.push(f, v);
    const created = (await this.redis.mpCreate(k.meta, k.state, k.seats, k.seqs, k.log, k.history, k.lease, k.crashes, k.journal, ...fields)) === 1;
    if (listed) await this.redis.sadd(roomIndexKey(this.prefix), roomId);
    return created;
  }

  /** A game's target version (see RoomManager.setTarget), or null when none was set. */
  async readTarget(game: string): Promise<GameTarget | null> {
    const raw = await this.redis.get(gameTargetKey(this.prefix, game));
    if (raw === null) return null;
    const t = JSON.parse(raw) as GameTarget;
    return { current: t.current ?? null, previous: t.previous ?? null, withdrawn: Array.isArray(t.withdrawn) ? t.withdrawn : [] };
  }

  async writeTarget(game: string, target: GameTarget): Promise<void> {
    await this.redis.set(gameTargetKey(this.prefix, game), JSON.stringify(target));
  }

  /** Who this store claims rooms as (set once the server knows its port). */
  get leaseHolder(): LeaseHolder {
    return this.holder;
  }

  setLeaseHolder(holder: LeaseHolder): void {
    this.holder = checkHolder(holder);
  }

  /**
   * Take the room for ticking: take its lease, bump its epoch and read its last committed
   * state. Any previous owner's commits are refused from here on. Returns null when the room
   * does not exist, who owns it when another server's lease on it is alive, and the room's
   * format when it is stored in one newer than this code reads (nothing changed then).
   */
  async claim(roomId: string): Promise<ClaimedRoom | OwnedElsewhere | FormatTooNew | null> {
    const k = this.keys(roomId);
    const reply = await this.redis.mpClaimBuffer(k.meta, k.state, k.seats, k.seqs, k.log, k.lease, k.history, k.crashes, k.journal, holderValue(this.holder), String(this.leaseMs), String(STORAGE_FORMAT));
    if (!reply) return null;
    if (reply[0] === 0) return { ownedBy: parseHolder(reply[1].toString()), ttlMs: Number(reply[2]) };
    if (reply[0] === 2) return { format: reply[1].toString() };
    const [, metaFlat, stateFlat, seatsFlat, seqsFlat, log] = reply;
    // Back on the index of rooms that should be running, if it was unloaded while idle (see
    // unlist): from here on a takeover or a restart brings it back after a crash.
    await this.redis.sadd(roomIndexKey(this.prefix), roomId);
    const meta = parseMeta(pairs(metaFlat, (b) => b.toString()));
    const { records, seqs, touched } = replay(stateFlat, seqsFlat, log);
    return { meta, records, seats: pairs(seatsFlat, (b) => b), seqs, uncheckpointed: touched };
  }

  /** Commit one tick atomically in one round trip, if the fence still holds. */
  async commit(roomId: string, c: TickCommit): Promise<CommitResult> {
    const k = this.keys(roomId);
    const items: Arg[] = [];
    const seatSets = pushPairs(items, c.seatSets);
    const seatDels = pushFields(items, c.seatDels);
    const metas = pushPairs(items, c.metaSets ?? []);
    const r = await this.redis.mpCommit(
      k.meta, k.seats, k.seqs, k.log, k.lease,
      String(c.epoch), String(c.prevTick), String(c.tick), asBuffer(c.delta), seatSets, seatDels, metas,
      holderValue(this.holder), String(this.leaseMs),
      ...items,
    );
    return r === 1 ? 'ok' : r === -1 ? 'fenced' : r === -3 ? 'lost' : 'tick-mismatch';
  }

  /**
   * Write a room back whole after Redis lost it or its newest ticks (a commit said 'lost'), from
   * its owner's committed mirror. Only the owner under the current epoch can: 'fenced' when
   * another server claimed the room meanwhile, 'not-behind' when Redis has it after all.
   */
  async restore(roomId: string, image: RoomImage): Promise<'ok' | 'fenced' | 'not-behind'> {
    const k = this.keys(roomId);
    const items: Arg[] = [];
    const m = { ...image.meta, checkpoint: image.meta.tick, pinned: image.meta.pinned ? '1' : '0', format: STORAGE_FORMAT };
    const counts = [pushPairs(items, Object.entries(m)), pushPairs(items, image.records), pushPairs(items, image.seats), pushPairs(items, image.seqs)];
    const r = await this.redis.mpRestore(
      k.meta, k.state, k.seats, k.seqs, k.log, k.lease,
      String(image.meta.epoch), String(image.meta.tick), holderValue(this.holder), String(this.leaseMs), ...counts,
      ...items,
    );
    if (r === 1) await this.redis.sadd(roomIndexKey(this.prefix), roomId);
    return r === 1 ? 'ok' : r === -1 ? 'fenced' : 'not-behind';
  }

  /** Write part of a checkpoint: current values of some records and seqs. */
  async checkpointChunk(roomId: string, c: CheckpointChunk): Promise<'ok' | 'fenced'> {
    const k = this.keys(roomId);
    const items: Arg[] = [];
    const sets = pushPairs(items, c.sets);
    const dels = pushFields(items, c.dels);
    const seqs = pushPairs(items, c.seqSets);
    const r = await this.redis.mpCheckpointChunk(k.meta, k.state, k.seqs, String(c.epoch), sets, dels, seqs, ...items);
    return r === 1 ? 'ok' : 'fenced';
  }

  /** Finish a checkpoint: the hashes now hold every tick up to `upToTick`; trim the log. */
  async checkpointFinish(roomId: string, epoch: number, upToTick: number): Promise<'ok' | 'fenced'> {
    const k = this.keys(roomId);
    const r = await this.redis.mpCheckpointFinish(k.meta, k.log, String(epoch), String(upToTick));
    return r === -1 ? 'fenced' : 'ok';
  }

  /** The list of times the room's script aborted a server process (the crash beacon writes it raw). */
  crashListKey(roomId: string): string {
    return this.keys(roomId).crashes;
  }

  /**
   * Record that this room's script aborted a server process (see ops/crash-record.ts), unless
   * the list already has it: the crash beacon sends the same record from the abort path, and
   * the node's next start finds it again in its local file. Returns whether it was new.
   */
  async recordCrash(roomId: string, crash: RoomCrash): Promise<boolean> {
    const key = this.keys(roomId).crashes;
    const known = await this.redis.lrange(key, 0, -1);
    if (known.some((line) => sameCrash(line, crash))) return false;
    await this.redis.multi().lpush(key, crashListEntry(crash)).ltrim(key, 0, CRASHES_KEPT - 1).exec();
    return true;
  }

  /** How many times the room aborted a server process since `sinceMs` (ms since epoch). */
  async crashesSince(roomId: string, sinceMs: number): Promise<number> {
    const list = await this.redis.lrange(this.keys(roomId).crashes, 0, -1);
    return list.filter((s) => {
      const crash = parseCrash(s);
      return crash !== null && crash.at >= sinceMs;
    }).length;
  }

  /** Forget the room's crashes: ops release it from quarantine. */
  async clearCrashes(roomId: string): Promise<void> {
    await this.redis.del(this.keys(roomId).crashes);
  }

  /** Give up the room's lease (clean shutdown) if this node still owns it under `epoch`. */
  async release(roomId: string, epoch: number): Promise<boolean> {
    const k = this.keys(roomId);
    return (await this.redis.mpRelease(k.meta, k.lease, holderValue(this.holder), String(epoch))) === 1;
  }

  /** The room's current owner, or null when no lease is alive (ops, takeover). */
  async leaseOf(roomId: string): Promise<LeaseHolder | null> {
    const v = await this.redis.get(this.keys(roomId).lease);
    return v === null ? null : parseHolder(v);
  }

  /** The rooms that should be running somewhere: created, and not unloaded since (see unlist). */
  async listRooms(): Promise<string[]> {
    return this.redis.smembers(roomIndexKey(this.prefix));
  }

  /**
   * Take a room off that index (an idle room being unloaded, while this node still holds its
   * lease): a starting server does not resume it and no takeover opens it; its keys stay, and a
   * join opens it again (claim puts it back). Not atomic with the release that follows: the
   * index key has no room hash tag, so one script cannot touch both on Redis Cluster.
   */
  async unlist(roomId: string): Promise<void> {
    await this.redis.srem(roomIndexKey(this.prefix), roomId);
  }

  /** Whether a room is on the index of rooms that should be running. */
  async isListed(roomId: string): Promise<boolean> {
    return (await this.redis.sismember(roomIndexKey(this.prefix), roomId)) === 1;
  }

  /** Put a room back on the index (an unload whose release failed: someone else runs it). */
  async relist(roomId: string): Promise<void> {
    await this.redis.sadd(roomIndexKey(this.prefix), roomId);
  }

  /**
   * Delete a room for good (admin): every key goes, any server still running it is fenced out,
   * and a tombstone keeps a fenced owner from writing it back for `tombstoneMs`. False when
   * there is no such room. The room id may be used again at once: a new room created on it
   * starts from tick 0.
   */
  async deleteRoom(roomId: string, tombstoneMs = Math.max(60_000, 4 * this.leaseMs)): Promise<boolean> {
    const k = this.keys(roomId);
    const deleted = (await this.redis.mpDelete(k.meta, k.state, k.seats, k.seqs, k.log, k.history, k.lease, k.crashes, k.journal, String(tombstoneMs))) === 1;
    await this.redis.srem(roomIndexKey(this.prefix), roomId);
    return deleted;
  }

  /**
   * Let an unloaded room's keys expire after `ms` unless it is claimed again first (a claim
   * cancels it). Call after giving the lease back; `epoch` is the unloader's, so a room someone
   * claimed in between is left alone. False when it did not apply.
   */
  async expireUnloaded(roomId: string, epoch: number, ms: number): Promise<boolean> {
    const k = this.keys(roomId);
    return (await this.redis.mpExpire(k.meta, k.state, k.seats, k.seqs, k.log, k.history, k.crashes, k.lease, k.journal, String(ms), String(epoch))) === 1;
  }

  /** Read the committed meta without claiming (status, tests). Null for no room (or a deleted one). */
  async readMeta(roomId: string): Promise<RoomMeta | null> {
    const m = await this.redis.hgetall(this.keys(roomId).meta);
    if (!m || Object.keys(m).length === 0 || m.deleted !== undefined) return null;
    return parseMeta(new Map(Object.entries(m)));
  }

  /** The committed records (checkpoint plus log), without claiming (tests, tools). */
  async readRecords(roomId: string): Promise<Map<string, Uint8Array>> {
    const k = this.keys(roomId);
    const [stateFlat, seqsFlat, log, metaFlat] = await this.redis.mpReadBuffer(k.meta, k.state, k.seqs, k.log);
    checkReadable(roomId, pairs(metaFlat, (b) => b.toString()));
    return replay(stateFlat, seqsFlat, log).records;
  }

  /**
   * The committed records and the meta they go with (tick, version, schema), read together
   * without claiming (a snapshot for `moonpatch validate --room`); null when there is no room.
   */
  async readCommitted(roomId: string): Promise<{ meta: RoomMeta; records: Map<string, Uint8Array> } | null> {
    const k = this.keys(roomId);
    const [stateFlat, seqsFlat, log, metaFlat] = await this.redis.mpReadBuffer(k.meta, k.state, k.seqs, k.log);
    const meta = pairs(metaFlat, (b) => b.toString());
    if (meta.size === 0 || meta.has('deleted')) return null;
    checkReadable(roomId, meta);
    return { meta: parseMeta(meta), records: replay(stateFlat, seqsFlat, log).records };
  }

  /** Pin a room to its version (or unpin it); kept in the room's meta, survives restarts. */
  async setPinned(roomId: string, pinned: boolean): Promise<void> {
    await this.redis.hset(this.keys(roomId).meta, 'pinned', pinned ? '1' : '0');
  }

  /** Record a patch outcome in the room's history (newest first, 100 kept). */
  async appendHistory(roomId: string, entry: PatchHistoryEntry): Promise<void> {
    const key = this.keys(roomId).history;
    await this.redis.multi().lpush(key, JSON.stringify(entry)).ltrim(key, 0, 99).exec();
  }

  /** The room's patch history, newest first; entries that are not history entries are skipped. */
  async readHistory(roomId: string): Promise<PatchHistoryEntry[]> {
    return (await this.redis.lrange(this.keys(roomId).history, 0, -1)).map(parseHistoryEntry).filter((e) => e !== null);
  }

  /** The room's latest patch outcome, or null (none, or not a history entry). */
  async latestHistory(roomId: string): Promise<PatchHistoryEntry | null> {
    const text = await this.redis.lindex(this.keys(roomId).history, 0);
    return text === null ? null : parseHistoryEntry(text);
  }

  /** Length of the log not yet folded into a checkpoint (tests, ops). */
  async logLength(roomId: string): Promise<number> {
    return this.redis.llen(this.keys(roomId).log);
  }
}

function checkHolder(h: LeaseHolder): LeaseHolder {
  if (!/^[^\s]{1,200}$/.test(h.node)) throw new Error(`lease holder node id must be 1-200 characters without spaces (got ${JSON.stringify(h.node)})`);
  return h;
}

/** The lease's value: node id, a space, the url (which may be empty). */
function holderValue(h: LeaseHolder): string {
  return `${h.node} ${h.url}`;
}

function parseHolder(v: string): LeaseHolder {
  const space = v.indexOf(' ');
  return space < 0 ? { node: v, url: '' } : { node: v.slice(0, space), url: v.slice(space + 1) };
}

/** The checkpoint hashes with the log replayed over them, in order, and what the log touched. */
function replay(
  stateFlat: Buffer[],
  seqsFlat: Buffer[],
  log: Buffer[],
): { records: Map<string, Uint8Array>; seqs: Map<string, number>; touched: { keys: Set<string>; players: Set<string> } } {
  const records: Map<string, Uint8Array> = pairs(stateFlat, (b) => b);
  const seqs = pairs(seqsFlat, (b) => Number(b.toString()));
  const touched = { keys: new Set<string>(), players: new Set<string>() };
  for (const delta of log) applyTickDelta(delta, records, seqs, touched);
  return { records, seqs, touched };
}

/**
 * Append field/value pairs to a script's ARGV items (bytes as Buffers, anything else as text)
 * and return how many there were, as the count argument the scripts read.
 */
function pushPairs(items: Arg[], pairs: Iterable<readonly [string, Uint8Array | string | number]>): string {
  let n = 0;
  for (const [f, v] of pairs) {
    items.push(f, v instanceof Uint8Array ? asBuffer(v) : String(v));
    n++;
  }
  return String(n);
}

/** Append bare fields (keys to delete) to a script's ARGV items; returns their count. */
function pushFields(items: Arg[], fields: Iterable<string>): string {
  let n = 0;
  for (const f of fields) (items.push(f), n++);
  return String(n);
}

/** ioredis sends Buffers as bytes but stringifies a plain Uint8Array ("1,2,3"): view it as a Buffer. */
function asBuffer(v: Uint8Array): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

function pairs<T>(flat: Buffer[], value: (b: Buffer) => T): Map<string, T> {
  const out = new Map<string, T>();
  for (let i = 0; i < flat.length; i += 2) out.set(flat[i]!.toString(), value(flat[i + 1]!));
  return out;
}

/** Throws ROOM_FORMAT_NEWER when a room's stored format is one this code cannot read. */
function checkReadable(roomId: string, meta: Map<string, string>): void {
  const format = Number(meta.get('format') ?? 1);
  if (!(format >= 1 && format <= STORAGE_FORMAT)) throw formatTooNewError(roomId, meta.get('format') ?? '');
}

export function formatTooNewError(roomId: string, format: string): MoonpatchError {
  return new MoonpatchError(
    'ROOM_FORMAT_NEWER',
    `room ${roomId} is stored in format ${format}; this server reads formats up to ${STORAGE_FORMAT}: a newer moonpatch runs it (upgrade this server, or leave the room to the newer ones)`,
  );
}

function parseMeta(m: Map<string, string>): RoomMeta {
  const num = (f: string) => Number(m.get(f) ?? 0);
  return {
    game: m.get('game') ?? '',
    version: m.get('version') ?? '',
    schema: num('schema'),
    tick: num('tick'),
    epoch: num('epoch'),
    seed: num('seed'),
    createdAt: num('createdAt'),
    tickHz: num('tickHz'),
    checkpoint: num('checkpoint'),
    pinned: m.get('pinned') === '1',
    format: Number(m.get('format') ?? 1),
  };
}
