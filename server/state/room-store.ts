/**
 * A room's authoritative state in Redis: create, claim (load for ticking), and the atomic,
 * fenced commit of one tick.
 *
 * Fencing: the meta hash holds `epoch` (bumped by every claim) and `tick` (the last committed
 * tick). A commit names the epoch it was claimed under and the tick it builds on; the script
 * applies it only if both still match. So a stale owner (an older claim) or a duplicate writer
 * (the same tick twice) can never overwrite newer state: its commit is refused as a whole.
 */
import type { Redis } from 'ioredis';
import { roomIndexKey, roomKeys, type RoomKeys } from './keys.ts';

export interface RoomMeta {
  game: string;
  version: string;
  schema: number;
  tick: number;
  epoch: number;
  seed: number;
  createdAt: number;
  tickHz: number;
}

/** A room as claimed from Redis: everything needed to resume it at its last committed tick. */
export interface ClaimedRoom {
  meta: RoomMeta;
  /** Record key -> msgpack bytes. */
  records: Map<string, Buffer>;
  /** Player id -> msgpack bytes of the seat. */
  seats: Map<string, Buffer>;
  /** Player id -> last applied input seq. */
  seqs: Map<string, number>;
}

export interface TickCommit {
  epoch: number;
  /** The tick this commit builds on (the last committed tick). */
  prevTick: number;
  tick: number;
  sets: Iterable<readonly [string, Uint8Array]>;
  dels: Iterable<string>;
  seatSets: Iterable<readonly [string, Uint8Array]>;
  seatDels: Iterable<string>;
  seqSets: Iterable<readonly [string, number]>;
  /** Meta fields to change with this tick (version and schema on a patch). */
  metaSets?: Iterable<readonly [string, string | number]>;
}

export type CommitResult = 'ok' | 'fenced' | 'tick-mismatch';

// KEYS: meta, state, seats, seqs.
// ARGV: epoch, prevTick, tick, nSet, nDel, nSeatSet, nSeatDel, nSeq, nMeta, then the items in
// that order (sets as field/value pairs, dels as fields). Chunked, because Lua's unpack is
// limited to a few thousand values.
const COMMIT_LUA = `
local cur = redis.call('HMGET', KEYS[1], 'epoch', 'tick')
if cur[1] ~= ARGV[1] then return -1 end
if cur[2] ~= ARGV[2] then return -2 end
local i = 10
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
hset(KEYS[2], tonumber(ARGV[4]))
hdel(KEYS[2], tonumber(ARGV[5]))
hset(KEYS[3], tonumber(ARGV[6]))
local seatDels = tonumber(ARGV[7])
local seatDelStart = i
hdel(KEYS[3], seatDels)
i = seatDelStart
hdel(KEYS[4], seatDels)
hset(KEYS[4], tonumber(ARGV[8]))
hset(KEYS[1], tonumber(ARGV[9]))
redis.call('HSET', KEYS[1], 'tick', ARGV[3])
return 1
`;

// KEYS: meta, state, seats, seqs. Bumps the epoch (fencing out any previous owner) and reads
// everything in the same atomic step, so nothing can commit between the bump and the read.
const CLAIM_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
return { redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4]) }
`;

// KEYS: meta. ARGV: field/value pairs. Creates the room only if it does not exist.
const CREATE_LUA = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
`;

interface StoreCommands {
  mpCommit(meta: string, state: string, seats: string, seqs: string, ...argv: (string | Buffer | Uint8Array)[]): Promise<number>;
  mpClaimBuffer(meta: string, state: string, seats: string, seqs: string): Promise<[Buffer[], Buffer[], Buffer[], Buffer[]] | null>;
  mpCreate(meta: string, ...argv: (string | number)[]): Promise<number>;
}

export class RoomStore {
  private readonly redis: Redis & StoreCommands;

  constructor(
    redis: Redis,
    readonly prefix: string,
  ) {
    this.redis = redis as Redis & StoreCommands;
    if (!('mpCommit' in redis)) {
      redis.defineCommand('mpCommit', { numberOfKeys: 4, lua: COMMIT_LUA });
      redis.defineCommand('mpClaim', { numberOfKeys: 4, lua: CLAIM_LUA });
      redis.defineCommand('mpCreate', { numberOfKeys: 1, lua: CREATE_LUA });
    }
  }

  keys(roomId: string): RoomKeys {
    return roomKeys(this.prefix, roomId);
  }

  /** Create a room (tick 0, epoch 0) unless it exists. Returns false when it already existed. */
  async create(roomId: string, meta: Omit<RoomMeta, 'tick' | 'epoch'>): Promise<boolean> {
    const k = this.keys(roomId);
    const fields: (string | number)[] = ['tick', 0, 'epoch', 0];
    for (const [f, v] of Object.entries(meta)) fields.push(f, v);
    const created = (await this.redis.mpCreate(k.meta, ...fields)) === 1;
    await this.redis.sadd(roomIndexKey(this.prefix), roomId);
    return created;
  }

  /**
   * Take the room for ticking: bump its epoch and read its last committed state. Any previous
   * owner's commits are refused from here on. Returns null when the room does not exist.
   */
  async claim(roomId: string): Promise<ClaimedRoom | null> {
    const k = this.keys(roomId);
    const reply = await this.redis.mpClaimBuffer(k.meta, k.state, k.seats, k.seqs);
    if (!reply) return null;
    const [metaFlat, stateFlat, seatsFlat, seqsFlat] = reply;
    const metaMap = pairs(metaFlat, (b) => b.toString());
    const seqs = new Map<string, number>();
    for (const [id, v] of pairs(seqsFlat, (b) => Number(b.toString()))) seqs.set(id, v);
    return {
      meta: parseMeta(metaMap),
      records: pairs(stateFlat, (b) => b),
      seats: pairs(seatsFlat, (b) => b),
      seqs,
    };
  }

  /** Apply one tick's changes atomically in one round trip, if the fence still holds. */
  async commit(roomId: string, c: TickCommit): Promise<CommitResult> {
    const k = this.keys(roomId);
    const items: (string | Uint8Array)[] = [];
    const count = { set: 0, del: 0, seatSet: 0, seatDel: 0, seq: 0, meta: 0 };
    for (const [f, v] of c.sets) (items.push(f, asBuffer(v)), count.set++);
    for (const f of c.dels) (items.push(f), count.del++);
    for (const [f, v] of c.seatSets) (items.push(f, asBuffer(v)), count.seatSet++);
    for (const f of c.seatDels) (items.push(f), count.seatDel++);
    for (const [f, v] of c.seqSets) (items.push(f, String(v)), count.seq++);
    for (const [f, v] of c.metaSets ?? []) (items.push(f, String(v)), count.meta++);
    const header = [c.epoch, c.prevTick, c.tick, count.set, count.del, count.seatSet, count.seatDel, count.seq, count.meta].map(String);
    const r = await this.redis.mpCommit(k.meta, k.state, k.seats, k.seqs, ...header, ...items);
    return r === 1 ? 'ok' : r === -1 ? 'fenced' : 'tick-mismatch';
  }

  async listRooms(): Promise<string[]> {
    return this.redis.smembers(roomIndexKey(this.prefix));
  }

  /** Read the committed meta without claiming (status, tests). */
  async readMeta(roomId: string): Promise<RoomMeta | null> {
    const m = await this.redis.hgetall(this.keys(roomId).meta);
    if (!m || Object.keys(m).length === 0) return null;
    return parseMeta(new Map(Object.entries(m)));
  }

  /** Read the committed records without claiming (tests, tools). */
  async readRecords(roomId: string): Promise<Map<string, Buffer>> {
    const flat = await this.redis.hgetallBuffer(this.keys(roomId).state);
    return new Map(Object.entries(flat));
  }
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
  };
}
