/**
 * Bots that play the example arena over real WebSockets:
 *
 *   npm run bots -- --players 200 [--url ws://127.0.0.1:8080] [--room arena-1] [--duration 60]
 *                   [--hz 2] [--game arena] [--observers 5]
 *
 * Each bot joins, then steers toward a wandering target, sending a move input `--hz` times a
 * second (default 2; 20 for load) and a boost now and then. Only `--observers` bots keep a
 * copy of the world and steer by it; the rest steer blindly and skip decoding deltas, so that
 * this process measures the server rather than its own msgpack decoding. Prints a status line every second
 * and a summary at the end (Ctrl-C ends early).
 */
import { WebSocket } from 'ws';
import { MoonpatchClient, type SocketFactory } from '../client/client.ts';
import { parseArgs, percentile, round, sleep } from '../bench/lib.ts';
import type { Value } from '../server/protocol/messages.ts';
import { Steering } from './shared/steer.ts';

const args = parseArgs(process.argv.slice(2));
const PLAYERS = Number(args.players ?? 10);
const URL = args.url ?? `ws://127.0.0.1:${process.env.PORT ?? 8080}`;
const ROOM = args.room ?? 'arena-1';
const GAME = args.game ?? 'arena';
const DURATION_S = args.duration ? Number(args.duration) : Infinity;
const HZ = Number(args.hz ?? 2);
const OBSERVERS = Number(args.observers ?? 5);

interface BotStats {
  sent: number;
  applied: number;
  rejected: number;
  latencies: number[];
  errors: Record<string, number>;
}

function makeBot(i: number, stats: BotStats): { client: MoonpatchClient; step(): void } {
  const observer = i < OBSERVERS;
  const client = new MoonpatchClient({ url: URL, room: ROOM, game: GAME, name: `bot-${i}`, WebSocket: WebSocket as unknown as SocketFactory, trackWorld: observer });
  const steering = new Steering(HZ);
  client.on('settled', (s) => {
    if (s.rejected) stats.rejected++;
    else stats.applied++;
    if (stats.latencies.length < 200_000) stats.latencies.push(s.latencyMs);
  });
  client.on('error', (e) => (stats.errors[e.code] = (stats.errors[e.code] ?? 0) + 1));
  return {
    client,
    step() {
      if (!client.connected) return;
      let me: { x: number; y: number } | undefined;
      if (observer) {
        me = (client.world.players as Record<string, { x: number; y: number }> | undefined)?.[client.playerId];
        if (!me) return;
      }
      client.send(steering.next(me) as Value);
      stats.sent++;
    },
  };
}

async function main(): Promise<void> {
  const stats: BotStats = { sent: 0, applied: 0, rejected: 0, latencies: [], errors: {} };
  const bots: ReturnType<typeof makeBot>[] = [];
  console.log(`bots: ${PLAYERS} players -> ${URL} room ${ROOM} (${GAME}), ${HZ} inputs/s each`);
  let failedJoins = 0;
  // Stagger the joins a little so the server sees a ramp, not a wall.
  for (let i = 0; i < PLAYERS; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(PLAYERS, i + 50); j++) {
      const bot = makeBot(j, stats);
      bots.push(bot);
      batch.push(bot.client.connect().catch((e: Error) => {
        failedJoins++;
        console.error(`bot-${j}: ${e.message}`);
      }));
    }
    await Promise.all(batch);
  }
  const started = Date.now();
  const stepTimer = setInterval(() => bots.forEach((b) => b.step()), 1000 / HZ);
  let stop = false;
  process.once('SIGINT', () => (stop = true));
  while (!stop && (Date.now() - started) / 1000 < DURATION_S) {
    await sleep(1000);
    const connected = bots.filter((b) => b.client.connected).length;
    const lat = stats.latencies.slice(-5000);
    console.log(
      `t=${Math.round((Date.now() - started) / 1000)}s connected=${connected}/${PLAYERS} sent=${stats.sent} applied=${stats.applied} rejected=${stats.rejected} ` +
        `ack p50=${round(percentile(lat, 50), 1)}ms p99=${round(percentile(lat, 99), 1)}ms tick=${bots[0]?.client.tick ?? 0} v=${bots[0]?.client.version ?? ''}`,
    );
  }
  clearInterval(stepTimer);
  await sleep(500); // let the last acks arrive
  const disconnects = bots.reduce((n, b) => n + b.client.disconnects, 0);
  const unsettled = bots.reduce((n, b) => n + b.client.unsettled, 0);
  for (const b of bots) b.client.close();
  console.log(
    JSON.stringify({
      players: PLAYERS,
      failed_joins: failedJoins,
      inputs_sent: stats.sent,
      inputs_applied: stats.applied,
      inputs_rejected: stats.rejected,
      inputs_unsettled: unsettled,
      disconnects,
      errors: stats.errors,
      ack_ms: { p50: round(percentile(stats.latencies, 50), 2), p99: round(percentile(stats.latencies, 99), 2) },
    }),
  );
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
