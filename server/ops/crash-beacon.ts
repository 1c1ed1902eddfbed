/**
 * Tells Redis which room aborted this process, from the abort path itself.
 *
 * When a script makes V8 abort the process (ops/crash-record.ts), nothing asynchronous can run
 * any more: no ioredis command, no event loop. The local crash file is written synchronously,
 * but only this node's next start reads it. In a cluster that is too late and too narrow: the
 * room's lease lapses, another server takes it over, the player's client resends the input
 * that did it, and that server aborts too, each crash counted (if ever) on the disk of a node
 * that may never come back (a replaced container). The room is then never quarantined.
 *
 * So the server keeps one idle connection to Redis, opened and authenticated by ioredis like
 * any other, and at the abort writes `LPUSH crashes <record>` and `LTRIM` (and the crash's entry
 * in the room's script journal, `XADD`) straight onto its
 * socket with a synchronous write(2). The kernel delivers bytes already in a socket's buffer
 * when the process dies, so Redis runs the commands even though nobody reads the reply. The
 * record carries `at` and `node`, so the restart that later finds the same record in the local
 * file does not count it twice (RoomStore.recordCrash).
 *
 * Best effort, on purpose: over TLS the bytes would have to be encrypted (no synchronous way),
 * and a connection that is down has no socket; the file still covers both.
 */
import { writeSync } from 'node:fs';
import { TLSSocket } from 'node:tls';
import { Redis } from 'ioredis';
import { JOURNAL_KEPT } from '../state/journal-store.ts';
import { CRASHES_KEPT } from '../state/room-store.ts';
import { crashRecordCommands } from './crash-wire.mjs';

/** The file descriptor of a plain TCP connection, or null (TLS, closed, not a socket). */
function plainSocketFd(stream: unknown): number | null {
  if (!stream || stream instanceof TLSSocket) return null;
  const fd = (stream as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

export class CrashBeacon {
  private closed = false;

  private constructor(private readonly redis: Redis) {}

  /**
   * Opens the idle connection; resolves once ioredis has connected (and authenticated) it. It is
   * named `moonpatch-crash-beacon:<node>` in Redis's CLIENT LIST.
   */
  static async open(redisUrl: string, node: string): Promise<CrashBeacon> {
    const connectionName = `moonpatch-crash-beacon:${node.replace(/[^\x21-\x7e]/g, '_')}`;
    // No offline queue and no retries per request: nothing is ever sent through ioredis here
    // after connecting, and a beacon that is down must not hold anything.
    const redis = new Redis(redisUrl, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, connectionName });
    redis.on('error', () => {
      /* reconnects by itself; the abort path checks the status */
    });
    try {
      await redis.connect();
    } catch (e) {
      redis.disconnect(); // or ioredis goes on reconnecting in the background
      throw e;
    }
    return new CrashBeacon(redis);
  }

  /**
   * Whether the commands could be handed to the kernel whole. Synchronous and never throws:
   * this runs on the abort path. `key` is the room's crash list, `record` the JSON line;
   * `journal`, when given, also appends `entries` to the room's script journal (the designers'
   * view: ops/script-journal.ts), in the same write after the crash list: the room's lines not
   * yet flushed, then the crash itself. The caller keeps the whole write small (a few KB): an
   * idle connection's send buffer takes that in one write, and if it did not, what is cut off
   * is the end, never the crash list.
   */
  sendSync(key: string, record: string, keep = CRASHES_KEPT, journal?: { key: string; entries: readonly string[] }): boolean {
    try {
      const fd = this.socketFd();
      if (fd === null) return false;
      const bytes = crashRecordCommands(key, record, keep, journal && { key: journal.key, kept: JOURNAL_KEPT, entries: journal.entries });
      // The socket is non-blocking; a few KB into an idle connection's empty send buffer (16 KB
      // at least on Linux) go in one write. A short write would leave a broken command on the
      // wire, which Redis drops with the connection; the process is about to end.
      return writeSync(fd, bytes) === bytes.length;
    } catch {
      return false;
    }
  }

  /**
   * The connection's socket while it is a plain one and up, else null: what the main-thread
   * watchdog writes the same commands to when the main thread itself is stuck
   * (sandbox/main-thread-watchdog.ts).
   */
  socketFd(): number | null {
    return this.closed || this.redis.status !== 'ready' ? null : plainSocketFd(this.redis.stream);
  }

  close(): void {
    this.closed = true;
    this.redis.disconnect();
  }
}
