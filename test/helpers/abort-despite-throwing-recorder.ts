/**
 * Run as a child process by hostile-scripts.test.ts (never imported): a GameSandbox of the
 * `fatal` fixture game whose crash recorder throws (a full disk, say), fed the fatal
 * out-of-memory attack. The process must still abort (SIGABRT): a throw out of the
 * catastrophic-error callback would leave it hung. Exits 3 if V8 contained the attack every
 * time instead (see crashWithAttack in child-server.ts), so the test can tell that apart.
 */
import { setInlineTickMaxMs } from '../../server/sandbox/call-placement.ts';
import { GameSandbox } from '../../server/sandbox/sandbox.ts';
import { fatalRoom } from './fatal-sandbox.ts';

// The catastrophic-error callback is the path under test: calls handed to the isolate's thread
// (an inline call's parked main thread is the watchdog's, main-thread-watchdog.test.ts).
setInlineTickMaxMs(0);
const room = await fatalRoom('abort-probe');
GameSandbox.crashRecorder = () => {
  throw new Error('ENOSPC: no space left on device (thrown on purpose)');
};
for (let i = 1; i <= 6; i++) {
  const out = await room.next({ attack: 'fatal-oom-map' });
  process.stdout.write(`attempt ${i}: ${out.ok ? 'ok' : out.code}\n`);
  if (out.ok === false && out.isolateDead) break; // the sandbox must be rebuilt; give up
}
process.exit(3);
