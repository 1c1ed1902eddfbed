/**
 * Builds a running moonpatch server from a config: Redis store, games, rooms, HTTP and
 * WebSocket front door. main.ts runs it as a process; tests run it in-process.
 */
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ServerConfig } from './config/config.ts';
import { GameServer } from './net/ws-server.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createAdminHandler } from './net/admin-api.ts';
import { loadPerServer, NodeDirectory, roomWeight } from './net/cluster.ts';
import { roomMover } from './net/room-move.ts';
import { createHttpHandler } from './net/http.ts';
import { loadTlsFiles } from './net/tls.ts';
import { hostname } from 'node:os';
import { RoomManager } from './room/room-manager.ts';
import { Rebalancer } from './room/rebalancer.ts';
import { assignTargets, drainRooms } from './room/drain.ts';
import { OrphanTakeover } from './room/takeover.ts';
import { CrashBeacon } from './ops/crash-beacon.ts';
import { crashFilePath, takeCrashRecord, writeCrashRecordSync } from './ops/crash-record.ts';
import { GameSandbox, setIsolateSemiSpace } from './sandbox/sandbox.ts';
import { DashboardFeed } from './ops/dashboard-feed.ts';
import { ScriptJournal } from './ops/script-journal.ts';
import { crashJournalEntry, crashLinesJournalEntries, crashListEntry } from './ops/crash-wire.mjs';
import { JournalStore } from './state/journal-store.ts';
import { Metrics } from './ops/metrics.ts';
import { PatchDistribution } from './patch/distribution.ts';
import { inlineTicksEnabled, setInlineTickMaxMs } from './sandbox/call-placement.ts';
import { MainThreadWatchdog, type CrashTarget } from './sandbox/main-thread-watchdog.ts';
import { DevReloader } from './sandbox/dev-reload.ts';
import { GameRegistry } from './sandbox/games.ts';
import { setBundlerThreadLimits } from './sandbox/off-thread-bundler.ts';
import { RoomStore } from './state/room-store.ts';

export interface RunningServer {
  /** ws://host:port, or wss://host:port with TLS */
  url: string;
  port: number;
  rooms: RoomManager;
  store: RoomStore;
  net: GameServer;
  redis: Redis;
  /** Takes over rooms whose owner died (runs on its own unless config.takeover is off). */
  takeover: OrphanTakeover;
  /** Spreads rooms over the servers (runs on its own when config.rebalanceIntervalMs > 0; null without an admin token). */
  rebalancer: Rebalancer | null;
  /** Swaps running rooms to the new build when a script file changes (config.devReload; null when off). */
  devReloader: DevReloader | null;
  /** Stop rooms (closing players with 4000), the front door and the Redis connection. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Games to serve instead of reading config.scriptsDir (benchmarks build theirs in memory). */
  games?: GameRegistry;
  /** Where dev reload's lines for the designer go (default: stdout). */
  say?: (line: string) => void;
}

export async function startServer(config: ServerConfig & { redisUrl: string }, log: Logger, opts: StartOptions = {}): Promise<RunningServer> {
  // TLS files first: a bad certificate fails the start (TLS_FILE_INVALID) before anything runs.
  const tls = config.tlsCertFile && config.tlsKeyFile ? await loadTlsFiles(config.tlsCertFile, config.tlsKeyFile) : undefined;
  if (tls) log.info({ cert: config.tlsCertFile, key: config.tlsKeyFile }, 'TLS on: serving https and wss'); // paths only, never contents
  // Before any isolate exists: their young generation is fixed when each is created.
  setIsolateSemiSpace(config.isolateSemiSpaceMb);
  setInlineTickMaxMs(config.inlineTickMaxMs);
  setBundlerThreadLimits({ timeoutMs: config.buildTimeoutMs, memoryMb: config.buildMemoryMb });
  const games =
    opts.games ??
    (await GameRegistry.fromDirectory(config.scriptsDir, config.patchesDir, (game, folder, e) =>
      log.error({ game, patch: folder, err: e }, 'patch is not usable; it and the patches after it are skipped'),
    ));
  if (!games.has(config.defaultGame)) log.warn({ game: config.defaultGame, games: games.names() }, 'default game not found');
  // Fail fast on a wrong REDIS_URL instead of retrying forever at startup; after startup
  // ioredis reconnects on its own and rooms hold their events until it is back.
  // Commands in flight when the connection drops are sent again after it comes back (ioredis's
  // default; turning it off leaves their promises pending forever). A commit that had landed is
  // then refused as a duplicate tick: the room checks whether it was its own (Room.resolveUnknownCommit).
  const redis = new Redis(config.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: true });
  // ioredis reconnects by itself; log its errors (at most every 5 s) instead of letting them
  // surface as unhandled 'error' events.
  let lastRedisErrorLog = 0;
  redis.on('error', (e: Error) => {
    if (Date.now() - lastRedisErrorLog < 5000) return;
    lastRedisErrorLog = Date.now();
    log.warn({ err: e }, 'redis connection error; rooms hold their events until it is back');
  });
  redis.on('ready', () => {
    if (lastRedisErrorLog) log.info('redis connection ready again');
  });
  await redis.connect();
  const store = new RoomStore(redis, config.redisPrefix, undefined, config.leaseMs);
  // Patches uploaded through Redis (by any server) before rooms resume, so pinned versions exist.
  const patches = new PatchDistribution(redis, config.redisPrefix, games, config.trustedPatchKeys, log);
  await patches.start();
  const rooms = new RoomManager(store, games, config, log);
  const metrics = new Metrics({
    rooms: () => rooms.list().map((r) => ({ game: r.game, version: r.version, players: r.playerCount, connected: r.connectedCount, queueDepth: r.waitingEvents, degraded: r.degraded })),
    heaps: () => Promise.all(rooms.list().map(async (r) => ({ game: r.game, version: r.version, heapBytes: await r.heapUsed() }))),
    // Never starts the watchdog itself: with inline ticks off there is none.
    watchdogUp: () => inlineTicksEnabled() && MainThreadWatchdog.shared().running,
  });
  const feed = new DashboardFeed();
  // What the rooms' scripts log and throw, in Redis for `moonpatch logs` from any server.
  const journalStore = new JournalStore(redis, config.redisPrefix);
  const journal = new ScriptJournal(journalStore, {
    node: () => store.leaseHolder.node,
    runsHere: (roomId) => rooms.get(roomId) !== undefined,
    flushMs: config.journalFlushMs,
    onFlushError: (err, dropped) => log.warn({ err, dropped }, 'script journal: could not write to Redis; entries dropped'),
  });
  // What this server runs, written to Redis for the admin API of every server (net/cluster.ts).
  // Each beat carries this server's last 10 s of latency, for the others' dashboards.
  const nodes = new NodeDirectory(redis, config.redisPrefix, () => store.leaseHolder, () => rooms.status(), () => feed.recent(10));
  // The dashboard shows every server's rooms and latency; with Redis away, this server's own.
  const dashboardData = async () => {
    const view = await nodes.view().catch(() => ({ rooms: rooms.status().map((r) => ({ ...r, node: store.leaseHolder.node })), latency: [] }));
    feed.mergeServers(view.latency);
    return feed.snapshot(view.rooms, store.leaseHolder.node, games.versionNumbers());
  };
  const pages = createHttpHandler({ rooms, redis, log, metrics, dashboard: { data: dashboardData } });
  // Moving a room asks the target through its admin API: only with the (shared) admin token.
  const moveRoom = config.adminToken ? roomMover(rooms, nodes, () => store.leaseHolder.node, config.adminToken) : null;
  const admin = config.adminToken
    ? createAdminHandler(
        {
          status: () => rooms.status(),
          clusterStatus: () => nodes.rooms(),
          games: () => rooms.games(),
          patch: (roomId, version, opts) => rooms.applyVersion(roomId, version, opts),
          rollback: (roomId, version) => rooms.rollback(roomId, version),
          history: (roomId) => rooms.history(roomId),
          snapshot: (roomId) => rooms.snapshot(roomId),
          logs: async (roomId, after, limit) => ({ room: roomId, ...(await rooms.whereRuns(roomId)), ...(await journal.read(roomId, after, limit)) }),
          upload: (signed) => patches.upload(signed),
          pin: (roomId, pinned) => rooms.pin(roomId, pinned),
          release: (roomId) => rooms.release(roomId),
          target: (game) => rooms.target(game),
          setTarget: (game, version) => rooms.setTarget(game, version),
          withdrawTarget: (game, version) => rooms.withdrawTarget(game, version),
          createRoom: (roomId, game) => rooms.createRoom(roomId, game),
          deleteRoom: (roomId) => rooms.deleteRoom(roomId),
          moveRoom: moveRoom!,
          openRoom: async (roomId) => ({ room: roomId, node: store.leaseHolder.node, tick: (await rooms.open(roomId)).tick }),
        },
        config.adminToken,
      )
    : null;
  const http = (req: IncomingMessage, res: ServerResponse) => {
    if (req.url?.startsWith('/admin/')) {
      if (admin) return admin(req, res);
      res.writeHead(404, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ code: 'UNAUTHORIZED', msg: 'the admin API is off: no admin token configured' }));
    }
    return pages(req, res);
  };
  const net = new GameServer({ ...config, rooms, http, tls });
  const addr = await net.listen(config.port, config.host);
  const host = config.host === '0.0.0.0' ? '127.0.0.1' : config.host;
  // Rooms are claimed as this node; other servers send players of those rooms to publicUrl.
  store.setLeaseHolder({
    node: config.nodeId ?? `${hostname()}:${addr.port}`,
    url: config.publicUrl ?? `${tls ? 'wss' : 'ws'}://${config.host === '0.0.0.0' ? hostname() : host}:${addr.port}`,
  });
  // If a room's script aborted this node's previous run, count it against the room before
  // resuming anything (unless the crash beacon already did), and record the next one should it
  // happen: in a local file, and in Redis through the beacon so that every server sees it at
  // once (ops/crash-record.ts, ops/crash-beacon.ts).
  const crashFile = crashFilePath(config.dataDir, store.leaseHolder.node);
  const crash = takeCrashRecord(crashFile);
  if (crash) {
    // Not in Redis yet (the beacon could not send it): into the crash list and the journal.
    if (await store.recordCrash(crash.roomId, crash)) {
      await journalStore.append(new Map([[crash.roomId, [...crashLinesJournalEntries(crash), crashJournalEntry(crash)]]])).catch(() => {});
    }
    log.warn({ roomId: crash.roomId, tick: crash.tick, version: crash.version, game: crash.game }, 'the previous run of this server was aborted by this room\'s script');
  }
  const beacon = await CrashBeacon.open(config.redisUrl, store.leaseHolder.node);
  const recordCrash: NonNullable<typeof GameSandbox.crashRecorder> = ({ lines, ...info }) => {
    const record = { ...info, at: Date.now(), node: store.leaseHolder.node };
    const withLines = { ...record, lines };
    writeCrashRecordSync(crashFile, withLines);
    // The room's lines since the last flush go with it, and those of the call that crashed:
    // what its script said just before.
    const entries = [...journal.takeForCrash(info.roomId, withLines), crashJournalEntry(record)];
    beacon.sendSync(store.crashListKey(info.roomId), crashListEntry(record), undefined, { key: store.keys(info.roomId).journal, entries });
  };
  // One per process (the abort ends every server in it); the latest server started owns it.
  GameSandbox.crashRecorder = recordCrash;
  // The same records, written by the watchdog thread when a tick run on the main thread never
  // returns (sandbox/main-thread-watchdog.ts).
  const crashTarget: CrashTarget = {
    file: crashFile,
    node: store.leaseHolder.node,
    keysOf: (roomId) => ({ crashes: store.crashListKey(roomId), journal: store.keys(roomId).journal }),
    beaconFd: () => beacon.socketFd(),
  };
  if (inlineTicksEnabled()) {
    const watchdog = MainThreadWatchdog.shared();
    watchdog.setTarget(crashTarget);
    watchdog.onDown = (err) => log.error({ err }, 'the main-thread watchdog stopped: every tick is handed to its isolate\'s thread from now on');
  }
  await rooms.resumeAll();
  rooms.startIdleSweep();
  nodes.start();
  const takeover = new OrphanTakeover(store, rooms, Math.max(250, Math.floor(config.leaseMs / 2)), log);
  if (config.takeover) takeover.start();
  /** Hand the running rooms to the other live servers (a clean stop; see drain.ts). */
  const drain = async (move: NonNullable<typeof moveRoom>) => {
    const others = loadPerServer(await nodes.view(), store.leaseHolder.node, config.rebalanceBy);
    const mine = rooms.list().filter((r) => !r.isStopped && !r.isSwitchingVersion).map((r) => ({ id: r.id, weight: roomWeight(config.rebalanceBy, { connected: r.connectedCount, cpuCores: r.cpuCores }) }));
    if (others.size === 0 || mine.length === 0) return;
    const result = await drainRooms(assignTargets(mine, others), move, Date.now() + config.shutdownTimeoutMs / 2, log);
    log.info({ moved: result.moved.length, left: result.left.length }, 'drained: rooms handed to other servers before stopping');
  };
  const rebalancer = moveRoom ? new Rebalancer(nodes, rooms, moveRoom, () => store.leaseHolder.node, config.rebalanceIntervalMs, log, config.rebalanceBy) : null;
  if (config.rebalanceIntervalMs > 0 && !rebalancer) log.warn('REBALANCE_INTERVAL_MS is set but no ADMIN_TOKEN: rooms are not rebalanced');
  rebalancer?.start();
  const devReloader = config.devReload
    ? new DevReloader({ scriptsDir: config.scriptsDir, patchesDir: config.patchesDir, games, rooms: () => rooms.list(), log, say: opts.say })
    : null;
  devReloader?.start();
  log.info({ port: addr.port, tls: !!tls, games: games.names(), rooms: rooms.list().length }, 'moonpatch listening');
  return {
    url: `${tls ? 'wss' : 'ws'}://${host}:${addr.port}`,
    port: addr.port,
    rooms,
    store,
    net,
    redis,
    takeover,
    rebalancer,
    devReloader,
    async close() {
      devReloader?.close();
      takeover.stop();
      rebalancer?.stop();
      rooms.stopOpening();
      // Leave the list of servers first, so that no server moves a room here while this one
      // hands its rooms over (drain.ts).
      await nodes.stop().catch(() => {}); // Redis gone: the entry lapses on its own
      if (moveRoom && config.drainOnShutdown) await drain(moveRoom).catch((e: unknown) => log.warn({ err: e }, 'drain failed; the rooms stop here'));
      await rooms.shutdown();
      await net.close();
      patches.stop();
      metrics.close();
      feed.close();
      await journal.close().catch(() => {});
      if (GameSandbox.crashRecorder === recordCrash) GameSandbox.crashRecorder = null;
      if (inlineTicksEnabled()) MainThreadWatchdog.shared().clearTarget(crashTarget);
      beacon.close();
      redis.disconnect();
    },
  };
}
