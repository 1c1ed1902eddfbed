/**
 * What isolated-vm's `isolate.cpuTime` reads against the CPU the call really used, on a quiet
 * machine and beside busy-loop processes (`npm run bench:clock`). The tick budget's clock
 * (server/sandbox/call-cost.ts) rests on the answer: isolated-vm times the span the isolate was
 * entered, so waiting for a core counts as "CPU" there, and a budget on that clock fails ticks
 * because of other processes.
 *
 *   npm run bench:clock -- [--calls 40] [--hogs 6]
 *
 * The same loop is called on this thread (applySync), so the process's CPU time over each call
 * (process.cpuUsage) is the call's own plus this thread's little overhead. Reports, per
 * condition, the median and max of: isolate clock, process CPU, clock time; and the bound the
 * budget uses (the smaller of the first two). Writes bench/results/isolate-clock.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import ivm from 'isolated-vm';
import { CallCost } from '../server/sandbox/call-cost.ts';
import { machine, parseArgs, round, sleep, summary, writeResult } from './lib.ts';

const args = parseArgs(process.argv.slice(2));
const CALLS = Number(args.calls ?? 40);
const HOGS = Number(args.hogs ?? 6);

const isolate = new ivm.Isolate({ memoryLimit: 64 });
const context = await isolate.createContext();
const loop = (await context.eval('(function (n) { let x = 0; for (let i = 0; i < n; i++) x = (x * 31 + i) | 0; return x; })', { reference: true })) as ivm.Reference<(n: number) => number>;

function measure(): Record<string, ReturnType<typeof summary>> {
  const isolateMs: number[] = [];
  const processMs: number[] = [];
  const wallMs: number[] = [];
  const boundMs: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const cost = new CallCost(isolate);
    const before = process.cpuUsage();
    loop.applySync(undefined, [3e6]);
    const used = process.cpuUsage(before);
    const r = cost.read();
    isolateMs.push(r.isolateMs);
    processMs.push((used.user + used.system) / 1000);
    wallMs.push(r.wallMs);
    boundMs.push(r.cpuMs);
  }
  return { isolate_clock_ms: summary(isolateMs), process_cpu_ms: summary(processMs), wall_ms: summary(wallMs), budget_bound_ms: summary(boundMs) };
}

measure(); // warm up: compile the loop
const quiet = measure();
const hogs: ChildProcess[] = [];
for (let i = 0; i < HOGS; i++) hogs.push(spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }));
await sleep(300);
const busy = measure();
for (const h of hogs) h.kill('SIGKILL');
isolate.dispose();

const result = { benchmark: 'isolate-clock', calls: CALLS, busy_loop_processes: HOGS, quiet, busy, machine: machine() };
for (const [name, r] of [['quiet', quiet], [`beside ${HOGS} busy loops`, busy]] as const) {
  const line = Object.entries(r).map(([k, s]) => `${k} ${round(s.p50, 2)} (max ${round(s.max, 2)})`).join(', ');
  console.log(`${name}: ${line}`);
}
console.log(`wrote ${writeResult('isolate-clock', result)}`);
