/**
 * k6 load test: many players (one per VU) play the example arena over WebSockets, sending move
 * inputs at 20 Hz, while a second scenario patches their rooms live through the admin API.
 *
 *   k6 run loadtest/k6/arena.ts
 *   k6 run -e URL=ws://127.0.0.1:8080 -e PLAYERS=200 -e DURATION=60 \
 *          -e ADMIN_TOKEN=$(cat .data/admin-token) -e PATCH_EVERY=10 loadtest/k6/arena.ts
 *
 * Environment (all optional):
 *   URL           ws://127.0.0.1:8080    the server's WebSocket
 *   ADMIN_URL     URL with http(s)://    where /admin/... is served
 *   ADMIN_TOKEN   (none: no patching)    bearer token of the admin API
 *   PLAYERS       50                     VUs, one player each
 *   DURATION      30                     seconds each player plays after it is seated
 *   RAMP          5                      seconds over which the players join
 *   HZ            20                     inputs per second per player
 *   ROOM_SIZE     50                     players per room (rooms <ROOM_PREFIX>-0, -1, ...)
 *   ROOM_PREFIX   k6-<time>              room id prefix (fresh rooms by default)
 *   GAME          arena
 *   PATCH_EVERY   10                     seconds between patch rounds (0: none)
 *   TOP_VERSION   (the game's last)      highest version the patcher pushes before rolling back
 *   MAX_P99       100                    threshold: p99 input-to-ack, ms
 *   MAX_STATE_P99 150                    threshold: p99 input-to-state, ms
 *   DRAIN         5                      seconds a player waits at the end for its last acks
 *
 * A server started with `npm start` closes the 65th connection from one address
 * (MAX_CONNECTIONS_PER_ADDRESS, default 64): raise it for more players from one machine.
 *
 * Metrics (custom, besides k6's ws_* ones): moonpatch_input_ack_ms and moonpatch_input_state_ms
 * (Trend: from sending input N to its ack, and to the first snap/delta whose tick is at least
 * the acking tick), moonpatch_join_ms, moonpatch_inputs_{sent,acked,rejected,lost,duplicated},
 * moonpatch_protocol_anomalies, moonpatch_disconnects, moonpatch_join_ok (Rate),
 * moonpatch_version_notices, moonpatch_patches_{applied,failed}, moonpatch_patch_ms.
 * Thresholds fail the run on p99 ack/state latency, any disconnect, lost or duplicated input,
 * or failed join. A player does not resume after a disconnect: its pending inputs count as lost.
 */
import { sleep } from 'k6';
import exec from 'k6/execution';
import http from 'k6/http';
import { Counter, Rate, Trend } from 'k6/metrics';
import type { Options } from 'k6/options';
import { clearInterval, clearTimeout, setInterval, setTimeout } from 'k6/timers';
import { WebSocket } from 'k6/websockets';
import { peekFrame } from '../shared/frames.ts';
import { actionLabel, nextPatchAction, patchOutcome, patchRequest } from '../shared/patch-plan.ts';
import { Steering } from '../shared/steer.ts';
import { InputTracker } from '../shared/tracker.ts';
import { decode, encode } from './msgpack.ts';

function env(name: string, fallback: string): string {
  const v = __ENV[name];
  return v === undefined || v === '' ? fallback : v;
}
function num(name: string, fallback: number): number {
  const n = Number(env(name, String(fallback)));
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got ${__ENV[name]}`);
  return n;
}

const URL = env('URL', 'ws://127.0.0.1:8080');
const ADMIN_URL = env('ADMIN_URL', URL.replace(/^ws/, 'http').replace(/^(https?:\/\/[^/]+).*$/, '$1'));
const ADMIN_TOKEN = env('ADMIN_TOKEN', '');
const PLAYERS = Math.max(1, Math.floor(num('PLAYERS', 50)));
const DURATION_S = num('DURATION', 30);
const RAMP_S = num('RAMP', 5);
const HZ = Math.max(1, num('HZ', 20));
const ROOM_SIZE = Math.max(1, Math.floor(num('ROOM_SIZE', 50)));
const GAME = env('GAME', 'arena');
const PATCH_EVERY_S = ADMIN_TOKEN ? num('PATCH_EVERY', 10) : 0;
const TOP_VERSION = num('TOP_VERSION', 0);
const MAX_P99 = num('MAX_P99', 100);
const MAX_STATE_P99 = num('MAX_STATE_P99', 150);
const DRAIN_S = num('DRAIN', 5);
const PING_MS = 5000;

const ackMs = new Trend('moonpatch_input_ack_ms', true);
const stateMs = new Trend('moonpatch_input_state_ms', true);
const joinMs = new Trend('moonpatch_join_ms', true);
const inputsSent = new Counter('moonpatch_inputs_sent');
const inputsAcked = new Counter('moonpatch_inputs_acked');
const inputsRejected = new Counter('moonpatch_inputs_rejected');
const inputsLost = new Counter('moonpatch_inputs_lost');
const inputsDuplicated = new Counter('moonpatch_inputs_duplicated');
const anomalies = new Counter('moonpatch_protocol_anomalies');
const disconnects = new Counter('moonpatch_disconnects');
const joinOk = new Rate('moonpatch_join_ok');
const versionNotices = new Counter('moonpatch_version_notices');
const patchesApplied = new Counter('moonpatch_patches_applied');
const patchesFailed = new Counter('moonpatch_patches_failed');
const patchMs = new Trend('moonpatch_patch_ms', true);

/** A player's whole session, in seconds: its ramp delay, the join, play, drain, and slack. */
const SESSION_MAX_S = RAMP_S + DURATION_S + DRAIN_S + 30;

export const options: Options = {
  scenarios: {
    players: {
      executor: 'per-vu-iterations',
      exec: 'player',
      vus: PLAYERS,
      iterations: 1,
      maxDuration: `${Math.ceil(SESSION_MAX_S)}s`,
      gracefulStop: '10s',
    },
    ...(PATCH_EVERY_S > 0
      ? {
          patches: {
            executor: 'per-vu-iterations' as const,
            exec: 'patcher',
            vus: 1,
            iterations: 1,
            maxDuration: `${Math.ceil(SESSION_MAX_S)}s`,
            gracefulStop: '60s',
          },
        }
      : {}),
  },
  thresholds: {
    moonpatch_input_ack_ms: [`p(99)<${MAX_P99}`],
    moonpatch_input_state_ms: [`p(99)<${MAX_STATE_P99}`],
    moonpatch_disconnects: ['count==0'],
    moonpatch_inputs_lost: ['count==0'],
    moonpatch_inputs_duplicated: ['count==0'],
    moonpatch_join_ok: ['rate==1'],
  },
};

interface SetupData {
  roomPrefix: string;
  /** Highest version the patcher goes to; 0 when not patching. */
  top: number;
}

const auth = { headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' }, timeout: '60s' };

export function setup(): SetupData {
  const roomPrefix = env('ROOM_PREFIX', `k6-${Date.now().toString(36)}`);
  let top = 0;
  if (PATCH_EVERY_S > 0) {
    const res = http.get(`${ADMIN_URL}/admin/games`, auth);
    if (res.status !== 200) throw new Error(`GET /admin/games: HTTP ${res.status} ${String(res.body)}`);
    const games = res.json() as unknown as { game: string; versions: { number: number }[] }[];
    const game = games.find((g) => g.game === GAME);
    if (!game) throw new Error(`the server has no game ${GAME}`);
    const last = Math.max(...game.versions.map((v) => v.number));
    top = TOP_VERSION > 0 ? Math.min(TOP_VERSION, last) : last;
    if (top < 2) console.warn(`${GAME} has only version 1: nothing to patch`);
  }
  return { roomPrefix, top };
}

// ------------------------------------------------------------------------------------------
// Players
// ------------------------------------------------------------------------------------------

interface ServerFrame {
  t: string;
  seq?: number;
  tick?: number;
  code?: string;
  msg?: string;
}

export function player(data: SetupData): void {
  const id = exec.vu.idInTest;
  const room = `${data.roomPrefix}-${Math.floor((id - 1) / ROOM_SIZE)}`;
  const tracker = new InputTracker({ ack: (ms) => ackMs.add(ms), state: (ms) => stateMs.add(ms) });
  const steering = new Steering(HZ);
  const delayMs = PLAYERS > 1 ? ((id - 1) / PLAYERS) * RAMP_S * 1000 : 0;

  setTimeout(() => {
    const ws = new WebSocket(URL);
    ws.binaryType = 'arraybuffer';
    const openedAt = Date.now();
    let seq = 0;
    let seated = false;
    let stopping = false;
    let inputTimer: number | null = null;
    let pingTimer: number | null = null;
    let endTimer: number | null = null;
    const send = (m: unknown) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(encode(m));
    };
    const stopTimers = () => {
      if (inputTimer !== null) clearInterval(inputTimer);
      if (pingTimer !== null) clearInterval(pingTimer);
      if (endTimer !== null) clearTimeout(endTimer);
      inputTimer = pingTimer = endTimer = null;
    };
    const finish = () => {
      stopTimers();
      inputsSent.add(tracker.sent);
      inputsAcked.add(tracker.acked);
      inputsRejected.add(tracker.rejected);
      inputsLost.add(tracker.pending);
      inputsDuplicated.add(tracker.duplicated);
      anomalies.add(tracker.ackRegressions + tracker.unknownSeqs + tracker.duplicateSeqErrors);
      disconnects.add(0); // so that the count==0 thresholds always have a sample
    };
    const onSeated = () => {
      seated = true;
      joinOk.add(true);
      joinMs.add(Date.now() - openedAt);
      inputTimer = setInterval(() => {
        seq++;
        tracker.onSend(seq, Date.now());
        send({ t: 'in', seq, d: steering.next() });
      }, 1000 / HZ);
      pingTimer = setInterval(() => send({ t: 'ping', id: Date.now() }), PING_MS);
      endTimer = setTimeout(() => {
        // Stop sending, wait for the last acks (at most DRAIN seconds), then leave.
        stopping = true;
        if (inputTimer !== null) clearInterval(inputTimer);
        inputTimer = null;
        const drainUntil = Date.now() + DRAIN_S * 1000;
        const check = setInterval(() => {
          if (tracker.pending > 0 && Date.now() < drainUntil && ws.readyState === WebSocket.OPEN) return;
          clearInterval(check);
          send({ t: 'leave' });
          ws.close();
        }, 50);
      }, DURATION_S * 1000);
    };

    ws.onopen = () => send({ t: 'join', room, game: GAME, name: `k6-${id}` });
    ws.onmessage = (e) => {
      const at = Date.now();
      if (!e || !(e.data instanceof ArrayBuffer)) return;
      const bytes = new Uint8Array(e.data);
      const head = peekFrame(bytes);
      if (head && head.tick >= 0 && (head.t === 'delta' || head.t === 'snap')) {
        tracker.onState(head.tick, at);
        if (head.t === 'snap' && !seated) onSeated();
        return;
      }
      const m = decode(bytes) as ServerFrame;
      switch (m.t) {
        case 'welcome':
          tracker.onWelcome(m.seq ?? 0, m.tick ?? 0, at);
          return;
        case 'ack':
          tracker.onAck(m.seq ?? 0, m.tick ?? 0, at);
          return;
        case 'err':
          tracker.onErr(m.seq, m.code ?? '', at);
          if (m.seq === undefined && !seated) {
            console.error(`VU ${id}: join refused: ${m.code}: ${m.msg}`);
            joinOk.add(false);
            stopping = true;
            ws.close();
          }
          return;
        case 'ver':
          versionNotices.add(1);
          return;
      }
    };
    ws.onclose = () => {
      if (!stopping) {
        disconnects.add(1);
        if (!seated) joinOk.add(false);
        console.warn(`VU ${id}: connection closed unexpectedly (${tracker.pending} inputs pending)`);
      }
      finish();
    };
    ws.onerror = (e) => {
      if (!stopping) console.warn(`VU ${id}: websocket error: ${e?.error ?? ''}`);
    };
  }, delayMs);
}

// ------------------------------------------------------------------------------------------
// Patcher: every PATCH_EVERY seconds, the next version (or a rollback) for each of our rooms
// ------------------------------------------------------------------------------------------

interface RoomStatus {
  room: string;
  versionNumber: number | null;
}

export function patcher(data: SetupData): void {
  if (data.top < 2) return;
  const start = Date.now();
  const end = start + (RAMP_S + DURATION_S) * 1000;
  for (let k = 1; start + k * PATCH_EVERY_S * 1000 < end; k++) {
    const wait = start + k * PATCH_EVERY_S * 1000 - Date.now();
    if (wait > 0) sleep(wait / 1000);
    const res = http.get(`${ADMIN_URL}/admin/rooms?scope=cluster`, auth);
    if (res.status !== 200) {
      console.error(`GET /admin/rooms: HTTP ${res.status}`);
      patchesFailed.add(1, { action: 'status' });
      continue;
    }
    const rooms = (res.json() as unknown as RoomStatus[]).filter((r) => r.room.startsWith(`${data.roomPrefix}-`));
    const actions = rooms.map((r) => nextPatchAction(r.versionNumber, data.top));
    const requests = rooms.map((r, i) => {
      const q = patchRequest(r.room, actions[i]!);
      return { method: 'POST', url: `${ADMIN_URL}${q.path}`, body: q.body, params: auth };
    });
    const responses = http.batch(requests);
    responses.forEach((r, i) => {
      let body: unknown = null;
      try {
        body = r.json();
      } catch {
        /* not JSON */
      }
      const out = patchOutcome(r.status, body);
      const tags = { action: actionLabel(actions[i]!), code: out.code };
      patchMs.add(r.timings.duration, tags);
      if (out.ok) patchesApplied.add(1, tags);
      else {
        patchesFailed.add(1, tags);
        console.warn(`${rooms[i]!.room}: ${actionLabel(actions[i]!)} refused: ${out.code} ${out.detail}`);
      }
    });
  }
}
