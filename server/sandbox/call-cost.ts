/**
 * What a call into an isolate cost: the CPU it may have used, measured so that a busy machine
 * does not count against the script.
 *
 * isolated-vm's `isolate.cpuTime` is not the CPU time of the isolate's thread. It is
 * steady-clock time while the isolate is entered (its Executor::CpuTimer), so it also counts the
 * time the thread waited for a core. Measured with `npm run bench:clock` on a 2-core VM: a loop
 * of 14.9 ms of process CPU read 14.9 ms on the isolate's clock on a quiet machine, and 45.1 ms
 * (medians of 40 calls) with six busy-loop processes beside it. A budget checked on that clock fails a
 * script's tick, and rejects its players' inputs, because of what other processes do.
 *
 * `process.cpuUsage()` over the same span is the CPU time of every thread of this process: never
 * less than the call's own (the call runs inside the span, on one of those threads), and close to
 * it when the process has little else to do. The smaller of the two clocks is therefore still an
 * upper bound on the call's CPU: a call over its budget on it is over its budget for sure.
 * When this process is busy with other work as well (many rooms on few cores), both clocks read
 * high and the bound is the isolate's clock, as before.
 */
import type ivm from 'isolated-vm';

export interface CallCostReading {
  /** The upper bound on the call's CPU time, ms: what budgets are checked against. */
  cpuMs: number;
  /** isolated-vm's clock: time the isolate was entered, waiting for a core included, ms. */
  isolateMs: number;
  /** Clock time since the start, ms. */
  wallMs: number;
}

export class CallCost {
  private readonly isolateAt: bigint;
  private readonly processAt: NodeJS.CpuUsage;
  private readonly wallAt: number;

  constructor(private readonly isolate: ivm.Isolate) {
    this.isolateAt = isolate.cpuTime;
    this.processAt = process.cpuUsage();
    this.wallAt = performance.now();
  }

  read(): CallCostReading {
    const wallMs = performance.now() - this.wallAt;
    // A disposed isolate (it died in the call) has no clock left to read.
    const isolateMs = this.isolate.isDisposed ? 0 : Number(this.isolate.cpuTime - this.isolateAt) / 1e6;
    const used = process.cpuUsage(this.processAt);
    const processMs = (used.user + used.system) / 1000;
    return { cpuMs: Math.min(isolateMs, processMs), isolateMs, wallMs };
  }
}
