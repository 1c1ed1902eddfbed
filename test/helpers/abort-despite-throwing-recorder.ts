/**
 * Run as a child process by hostile-scripts.test.ts (never imported): a GameSandbox of the
 * `fatal` fixture game whose crash recorder throws (a full disk, say), fed the fatal
 * out-of-memory attack. The process must still abort (SIGABRT): a throw out of the
 * catastrophic-error callback would leave it hung. Exits 3 if V8 contained the attack every
 * time instead (see crashWithAttack in child-server.ts), so the test can tell that apart.
 */
import path from 'node:path';
import { setInlineTickMaxMs } from '../../server/sandbox/call-placement.ts';
import { loadGame } from '../../server/sandbox/games.ts';
import { EVENT_INPUT, EVENT_JOIN, GameSandbox } from '../../server/sandbox/sandbox.ts';
import { MsgpackWriter } from '../../server/sandbox/runtime/msgpack.ts';

// The catastrophic-error callback is the path under test: calls handed to the isolate's thread
// (an inline call's parked main thread is the watchdog's, main-thread-watchdog.test.ts).
setInlineTickMaxMs(0);
const game = await loadGame(path.join(import.meta.dirname, '..', 'fixtures', 'games', 'fatal'));
const sandbox = await GameSandbox.create(game.bundle, { memoryLimitMb: game.manifest.memoryLimitMb, cpuBudgetMs: game.manifest.cpuBudgetMs, roomId: 'abort-probe' });
GameSandbox.crashRecorder = () => {
  throw new Error('ENOSPC: no space left on device (thrown on purpose)');
};
const w = new MsgpackWriter();
const events = (kind: number, seq: number, data: unknown) => {
  w.reset();
  w.arrayHeader(1);
  w.arrayHeader(5);
  w.uint(kind);
  w.str('p1');
  w.str('mallory');
  w.uint(seq);
  w.value(data);
  return w.copyBytes();
};
const call = (tick: number, bytes: Uint8Array) => ({ events: bytes, seed: 1, tick, nowMs: 1_700_000_000_000 + tick * 50, dtSeconds: 0.05, runInit: tick === 1 });
let tick = 1;
await sandbox.tick(call(tick++, events(EVENT_JOIN, 0, null)));
for (let i = 1; i <= 6; i++) {
  const out = await sandbox.tick(call(tick++, events(EVENT_INPUT, i, { attack: 'fatal-oom-map' })));
  process.stdout.write(`attempt ${i}: ${out.ok ? 'ok' : out.code}\n`);
  if (out.ok === false && out.isolateDead) break; // the sandbox must be rebuilt; give up
}
process.exit(3);
