/**
 * A child process for busy-machine.test.ts: one sandbox whose tick spins a loop, grown until a
 * tick takes at least 200 ms of CPU, then given a budget of twice that. It prints
 * {"ready":true,"budgetMs":...} when calibrated; each line it reads on stdin runs one tick,
 * announced by "running" once the call into the isolate is made and answered by the outcome as
 * one JSON line (with the call's clock time, `wallMs`, and the isolate's, `isolateMs`).
 * The test stops the process (SIGSTOP) while a tick runs.
 *
 *   node --no-node-snapshot --import tsx test/helpers/stoppable-tick.ts
 */
import { createInterface } from 'node:readline';
import { bundleGame } from '../../server/sandbox/bundler.ts';
import { GameSandbox } from '../../server/sandbox/sandbox.ts';
import { MsgpackWriter } from '../../server/sandbox/runtime/msgpack.ts';

const bundle = await bundleGame({
  name: 't',
  entry: 'main.ts',
  files: new Map([['main.ts', `
    export function init(world: any) { world.meta = { ticks: 0, x: 0, n: 1000 }; }
    export function input(world: any, _p: unknown, msg: any) { world.meta.n = msg.n; }
    export function tick(world: any) {
      let x = 0;
      for (let i = 0; i < world.meta.n; i++) x = (x + i * 7) % 1000003;
      world.meta.ticks += 1;
      world.meta.x = x;
    }`]]),
});
const sandbox = await GameSandbox.create(bundle, { memoryLimitMb: 32, cpuBudgetMs: 1000 });
let tick = 0;
const run = (budgetMs: number, events: unknown[] = []) => {
  const w = new MsgpackWriter();
  w.value(events);
  return sandbox.tick({ events: w.bytes().slice(), seed: 1, tick: ++tick, nowMs: 0, dtSeconds: 0.05, runInit: tick === 1, budgetMs });
};
for (let i = 0; i < 5; i++) await run(10_000); // past the warm-up ticks
let cpuMs = 0;
for (let n = 1e6; cpuMs < 200; n *= 2) {
  const out = await run(100_000, [[3, 'p', 'p', tick, { n }]]);
  if (!out.ok) throw new Error(`calibration failed: ${out.code}`);
  cpuMs = (await run(100_000)).cpuMs; // the same loop, without the input
}
const budgetMs = Math.ceil(cpuMs * 2);
console.log(JSON.stringify({ ready: true, budgetMs, cpuMs }));
for await (const _line of createInterface({ input: process.stdin })) {
  const started = performance.now();
  // With a budget given, GameSandbox.tick calls into the isolate before its first await, so
  // the call is on its way when "running" goes out (a pipe write is synchronous on Linux).
  const pending = run(budgetMs);
  console.log('running');
  const out = await pending;
  // The call's clock time, stops included: tells the test whether its stop landed in the call.
  const wallMs = performance.now() - started;
  console.log(JSON.stringify(out.ok ? { ok: true, reruns: out.reruns, cpuMs: out.cpuMs, isolateMs: out.isolateMs, ticks: tick, wallMs } : { ok: false, code: out.code, cpuMs: out.cpuMs, wallMs }));
}
sandbox.dispose();
