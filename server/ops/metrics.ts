/**
 * Prometheus metrics (`GET /metrics`), fed by the engine's diagnostics channels: the tick code
 * publishes events and never imports this module. Labels are game and script version, so two
 * versions side by side (an A/B, a canary) can be compared.
 */
import client from 'prom-client';
import type diagnostics_channel from 'node:diagnostics_channel';
import { channels, subscribe, type BroadcastEvent, type RoomLifecycleEvent, type TickCommittedEvent, type TickFailedEvent } from './events.ts';

export interface MetricsSources {
  /** Current per-room figures, read when Prometheus scrapes. */
  rooms(): { game: string; version: string; players: number; connected: number; queueDepth: number; degraded: boolean }[];
  /** Each room's isolate heap in use, bytes; asked of the isolates, so asynchronous. */
  heaps(): Promise<{ game: string; version: string; heapBytes: number }[]>;
  /** Whether the main-thread watchdog is up, so that cheap ticks may run inline (sandbox/main-thread-watchdog.ts); absent: never. */
  watchdogUp?: () => boolean;
}

const TICK_BUCKETS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.1, 0.25, 1];

export class Metrics {
  readonly registry = new client.Registry();
  private readonly unsubscribe: (() => void)[] = [];

  constructor(sources: MetricsSources) {
    const r = [this.registry];
    // Node's own, under their standard names (process_cpu_seconds_total,
    // nodejs_eventloop_lag_seconds, nodejs_gc_duration_seconds, heap sizes...), for the
    // dashboards teams already have; the event loop's lag is the main thread every room ticks on.
    client.collectDefaultMetrics({ register: this.registry });
    const tick = new client.Histogram({ name: 'moonpatch_tick_duration_seconds', help: 'Committed tick: script plus Redis commit', labelNames: ['game', 'version'], buckets: TICK_BUCKETS, registers: r });
    const script = new client.Histogram({ name: 'moonpatch_tick_script_cpu_seconds', help: 'CPU time the isolate spent on a committed tick', labelNames: ['game', 'version'], buckets: TICK_BUCKETS, registers: r });
    const late = new client.Histogram({
      name: 'moonpatch_tick_lateness_seconds',
      help: 'How late each committed tick started against its slot in the room\'s cadence (what players feel as a hitch; a tick\'s duration does not show a main thread blocked between ticks)',
      labelNames: ['game'],
      buckets: TICK_BUCKETS,
      registers: r,
    });
    const commit = new client.Histogram({ name: 'moonpatch_commit_duration_seconds', help: 'Redis commit of a tick', labelNames: ['game'], buckets: TICK_BUCKETS, registers: r });
    const failed = new client.Counter({ name: 'moonpatch_ticks_failed_total', help: 'Ticks rolled back, by cause', labelNames: ['game', 'version', 'code'], registers: r });
    const events = new client.Counter({ name: 'moonpatch_events_total', help: 'Joins, inputs and leaves run in committed ticks', labelNames: ['game', 'version'], registers: r });
    const refused = new client.Counter({ name: 'moonpatch_events_refused_total', help: 'Events of committed ticks whose hook threw and was undone alone (a verification window compares this share before and after a patch)', labelNames: ['game', 'version'], registers: r });
    const inline = new client.Counter({ name: 'moonpatch_ticks_inline_total', help: 'Committed ticks whose script call ran on the main thread (INLINE_TICK_MAX_MS) rather than on the isolate\'s thread', labelNames: ['game', 'version'], registers: r });
    const starved = new client.Counter({
      name: 'moonpatch_tick_starved_reruns_total',
      help: 'Script calls of committed ticks run again because the clock limit stopped them before they had used their CPU budget: the machine gave the isolate too little CPU (sandbox/call-cost.ts)',
      labelNames: ['game', 'version'],
      registers: r,
    });
    const overruns = new client.Counter({ name: 'moonpatch_tick_overruns_total', help: 'Ticks that exceeded their CPU budget', labelNames: ['game', 'version'], registers: r });
    const patches = new client.Counter({ name: 'moonpatch_patch_events_total', help: 'Room lifecycle and patch events (patched, fenced, sandbox-rebuilt, ...)', labelNames: ['game', 'what'], registers: r });
    const bytes = new client.Counter({ name: 'moonpatch_broadcast_bytes_total', help: 'Bytes of snapshot and delta frames sent', labelNames: [], registers: r });
    const messages = new client.Counter({ name: 'moonpatch_broadcast_messages_total', help: 'Snapshot and delta frames sent', labelNames: [], registers: r });
    const gauge = (name: string, help: string, pick: (x: ReturnType<MetricsSources['rooms']>[number]) => number) =>
      new client.Gauge({
        name,
        help,
        labelNames: ['game', 'version'],
        registers: r,
        collect() {
          this.reset();
          for (const room of sources.rooms()) this.inc({ game: room.game, version: room.version }, pick(room));
        },
      });
    gauge('moonpatch_rooms', 'Rooms running', () => 1);
    gauge('moonpatch_players', 'Seated players', (x) => x.players);
    gauge('moonpatch_players_connected', 'Players with a live connection', (x) => x.connected);
    gauge('moonpatch_rooms_degraded', 'Rooms whose last commit failed: they hold their events and retry until Redis takes commits again (/healthz answers 503)', (x) => (x.degraded ? 1 : 0));
    new client.Gauge({
      name: 'moonpatch_isolate_heap_bytes',
      help: 'Isolate heap in use',
      labelNames: ['game', 'version'],
      registers: r,
      async collect() {
        const heaps = await sources.heaps();
        this.reset();
        for (const h of heaps) this.inc({ game: h.game, version: h.version }, h.heapBytes);
      },
    });
    new client.Gauge({
      name: 'moonpatch_main_thread_watchdog_up',
      help: '1 while the watchdog thread that lets cheap ticks run on the main thread is up; 0: every tick is handed to its isolate\'s thread (the watchdog is down, or INLINE_TICK_MAX_MS=0)',
      registers: r,
      collect() {
        this.set(sources.watchdogUp?.() ? 1 : 0);
      },
    });
    gauge('moonpatch_input_queue_depth', 'Events waiting to run: queued for the next tick, or held through failed ticks for a rollback', (x) => x.queueDepth);

    this.on(channels.tickCommitted, (e: TickCommittedEvent) => {
      tick.observe({ game: e.game, version: e.version }, (e.scriptMs + e.commitMs) / 1000);
      script.observe({ game: e.game, version: e.version }, e.cpuMs / 1000);
      commit.observe({ game: e.game }, e.commitMs / 1000);
      late.observe({ game: e.game }, e.lateMs / 1000);
      if (e.events > 0) events.inc({ game: e.game, version: e.version }, e.events);
      if (e.inline) inline.inc({ game: e.game, version: e.version });
      if (e.reruns > 0) starved.inc({ game: e.game, version: e.version }, e.reruns);
      if (e.rejections > 0) refused.inc({ game: e.game, version: e.version }, e.rejections);
    });
    this.on(channels.tickFailed, (e: TickFailedEvent) => {
      failed.inc({ game: e.game, version: e.version, code: e.code });
      if (e.code === 'CPU_BUDGET_EXCEEDED') overruns.inc({ game: e.game, version: e.version });
    });
    this.on(channels.room, (e: RoomLifecycleEvent) => patches.inc({ game: e.game, what: e.what }));
    this.on(channels.broadcast, (e: BroadcastEvent) => {
      bytes.inc(e.bytes);
      messages.inc(e.recipients);
    });
  }

  private on<T>(channel: diagnostics_channel.Channel, fn: (e: T) => void): void {
    this.unsubscribe.push(subscribe(channel, fn));
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  close(): void {
    for (const u of this.unsubscribe) u();
  }
}
