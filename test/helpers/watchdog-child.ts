/**
 * Run as a child process by main-thread-watchdog.test.ts (never imported). It sets up the
 * process's main-thread watchdog with a real crash target (a crash file, a crash beacon on the
 * test's Redis, a RoomStore's keys), then, by WATCHDOG_MODE:
 * - `hang`: enters a watched call and parks its main thread for good (Atomics.wait), as
 *   isolated-vm does to a thread that hit a catastrophic out-of-memory;
 * - `pause`: enters a watched call whose limit is 5 s, says `in-call` and spins until 1 s of
 *   wall time has passed (the test stops the whole process meanwhile, past the call's
 *   deadline, then lets it go on), returns, and exits 0 after the watchdog has looked again;
 * - `fatal`: runs the `fatal` fixture game's sandbox until its ticks run inline, then sends the
 *   real attack in an inline tick (on a leash long enough for it). Exits 3 if every attempt was contained (MEMORY_LIMIT) instead.
 * Env: REDIS_URL, PREFIX, CRASH_FILE, ROOM_ID.
 */
import { Redis } from 'ioredis';
import { CrashBeacon } from '../../server/ops/crash-beacon.ts';
import { setInlineTickMaxMs } from '../../server/sandbox/call-placement.ts';
import { MainThreadWatchdog } from '../../server/sandbox/main-thread-watchdog.ts';
import { RoomStore } from '../../server/state/room-store.ts';
import { fatalRoom } from './fatal-sandbox.ts';

const env = (name: string) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
};
const NODE = 'watchdog-node';
const roomId = env('ROOM_ID');
const redis = new Redis(env('REDIS_URL'));
const store = new RoomStore(redis, env('PREFIX'), { node: NODE, url: '' });
const beacon = await CrashBeacon.open(env('REDIS_URL'), NODE);
const watchdog = MainThreadWatchdog.shared();
watchdog.setTarget({
  file: env('CRASH_FILE'),
  node: NODE,
  keysOf: (id) => ({ crashes: store.crashListKey(id), journal: store.keys(id).journal }),
  beaconFd: () => beacon.socketFd(),
});
while (!watchdog.running) await new Promise((r) => setTimeout(r, 10));

const spinUntil = (t: number) => {
  while (Date.now() < t) {
    /* a long call */
  }
};

const mode = env('WATCHDOG_MODE');
if (mode === 'hang') {
  const id = watchdog.register({ roomId, game: 'probe', version: 'v7' });
  // Let the registration reach the watchdog thread before this one stops for good.
  await new Promise((r) => setTimeout(r, 100));
  watchdog.begin(id, 1234, 50);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
} else if (mode === 'pause') {
  const id = watchdog.register({ roomId, game: 'probe', version: 'v7' });
  await new Promise((r) => setTimeout(r, 100));
  watchdog.begin(id, 77, 5000);
  process.stdout.write('in-call\n');
  spinUntil(Date.now() + 1000);
  watchdog.end();
  await new Promise((r) => setTimeout(r, 1500)); // the watchdog looks several times more
  process.stdout.write('survived\n');
  process.exit(0);
} else if (mode === 'fatal') {
  // A leash long enough for the attack to fill the heap inline (it takes ~200 ms on a quiet
  // machine, and was seen past 400 ms on a loaded one); with a shorter one the inline attempt is
  // stopped and the attack aborts on the isolate's thread instead, through isolated-vm's callback.
  setInlineTickMaxMs(2000);
  const room = await fatalRoom(roomId);
  for (let ticks = 0; !room.sandbox.lastTickInline; ticks++) {
    if (ticks > 100) throw new Error('the sandbox never ran a tick inline');
    await room.next({ op: 'add', n: 1 });
  }
  for (let i = 1; i <= 6; i++) {
    const out = await room.next({ attack: 'fatal-oom-map' });
    process.stdout.write(`attempt ${i}: ${out.ok ? 'ok' : out.code} inline=${room.sandbox.lastTickInline}\n`);
    if (out.ok === false && out.isolateDead) break;
  }
  process.exit(3);
} else {
  throw new Error(`unknown WATCHDOG_MODE ${mode}`);
}
