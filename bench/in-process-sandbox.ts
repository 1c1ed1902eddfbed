/**
 * A game sandbox WITHOUT an isolate, for measuring what the isolate costs (bench/sandbox-overhead.ts
 * and the parity test). Benchmarks only: nothing here contains a script.
 *
 * It is the real GameSandbox (server/sandbox/sandbox.ts) with the same bundle
 * (server/sandbox/bundler.ts: lockdown, journaled world proxies, msgpack codec, the game) and the
 * same host-side code for every call (result unpacking and checking, rejection mapping,
 * timing). Only the isolated-vm objects underneath are replaced:
 *
 * - the bundle runs in this process's own V8 context (vm.runInThisContext): same heap, same
 *   thread, no isolate switch, no heap limit and no timeout;
 * - `Reference.apply(undefined, args, { arguments: { copy: true }, result: { copy: true } })` becomes
 *   a direct call, making the same copies an ExternalCopy makes (the event buffer in, the result
 *   buffer out), answered with a settled promise instead of a hop to an isolated-vm thread.
 *
 * THE PROCESS IS LOCKED DOWN AFTERWARDS. The runtime's lockdown (runtime/lockdown.ts) runs on
 * the host's global: built-ins are sealed or frozen, global bindings become read-only,
 * Math.random and Date become the engine's seeded RNG and tick clock, WebAssembly and
 * SharedArrayBuffer are gone. Call it once, in a process of its own that does little else
 * (bench/sandbox-overhead.ts is that process).
 *
 * Why not a node:vm context, which would spare the host: Node's contextified globals are
 * interceptors, and every global lookup inside one (`Math`, `Object`, `Reflect`, `Proxy`, all
 * over the runtime and the game) goes through a C++ callback. Measured here: a loop reading
 * `Math.abs` runs ~100x slower in a vm context than in the main one, which would make any
 * isolate look cheap. (Node 20's vm also turns the lockdown's attribute-only
 * `defineProperty(globalThis, name, { writable: false })` into "set it to undefined".)
 *
 * GameSandbox's constructor is private (production code creates sandboxes with
 * GameSandbox.create only); this file reaches it at run time on purpose, so that the host code
 * measured is the production code and not a copy of it.
 */
import { createHash } from 'node:crypto';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { GameBundle } from '../server/sandbox/bundler.ts';
import { GameSandbox, type SandboxLimits, type TickOutcome } from '../server/sandbox/sandbox.ts';
import { StackMapper } from '../server/sandbox/source-map.ts';

type AnyFn = (...args: unknown[]) => unknown;

interface ApplyOptions {
  arguments?: { copy?: boolean };
  result?: { copy?: boolean };
  timeout?: number;
}

/** The part of ivm.Reference that GameSandbox uses, over a function of the runtime. */
class DirectReference {
  constructor(private readonly fn: AnyFn) {}

  get typeof(): string {
    return typeof this.fn;
  }

  async apply(_recv: unknown, args: unknown[] = [], opts: ApplyOptions = {}): Promise<unknown> {
    // The copies isolated-vm makes with { copy: true }: buffers are copied across, both ways.
    const a = opts.arguments?.copy ? args.map((x) => (x instanceof Uint8Array ? new Uint8Array(x) : x)) : args;
    const r = Reflect.apply(this.fn, undefined, a);
    return opts.result?.copy && r instanceof Uint8Array ? new Uint8Array(r) : r;
  }

  release(): void {}
}

/** The part of ivm.Isolate that GameSandbox uses. */
class HostAsIsolate {
  isDisposed = false;
  /** Process CPU time, ns: there is no per-isolate clock when everything shares the host's thread. */
  get cpuTime(): bigint {
    const u = process.cpuUsage();
    return BigInt(u.user + u.system) * 1000n;
  }
  getHeapStatisticsSync(): v8.HeapInfo {
    return v8.getHeapStatistics();
  }
  dispose(): void {
    this.isDisposed = true;
  }
}

type SandboxConstructor = new (
  bundle: GameBundle,
  limits: SandboxLimits,
  isolate: unknown,
  context: unknown,
  fns: Record<string, unknown>,
  hooks: readonly string[],
  stacks: StackMapper,
) => GameSandbox;

let created = false;

/**
 * A GameSandbox running `bundle` in this process's own context (see the top of the file): same
 * entry points, same arguments, same results as GameSandbox.create(bundle, limits). Once per
 * process; it locks the process down.
 */
export function createInProcessSandbox(bundle: GameBundle, limits: SandboxLimits): GameSandbox {
  if (created) throw new Error('createInProcessSandbox: once per process (its lockdown has already run on this global)');
  created = true;
  const g = globalThis as Record<string, unknown>;
  // Node's global has a second name for itself, `global`. The lockdown seals everything reachable
  // from the global's properties except `globalThis`, so through `global` it would seal the
  // global object too, and the runtime could not install its entry points. An isolate's global
  // has no such alias.
  delete g.global;
  vm.runInThisContext(bundle.code, { filename: bundle.filename });
  const api = g.__moonpatch as (Record<string, AnyFn> & { hooks: readonly string[] }) | undefined;
  if (typeof api !== 'object' || api === null) throw new Error('bundle did not install the moonpatch runtime');
  // As GameSandbox.create does: scripts must never reach the engine's entry points.
  delete g.__moonpatch;
  const ref = (name: string) => new DirectReference(api[name] as AnyFn);
  const fns = {
    tick: ref('tick'),
    rollback: ref('rollback'),
    load: ref('load'),
    applyRecords: ref('applyRecords'),
    safeToPatch: ref('safeToPatch'),
    exportRecords: ref('exportRecords'),
  };
  const Ctor = GameSandbox as unknown as SandboxConstructor;
  const sandbox = new Ctor(bundle, limits, new HostAsIsolate(), { release() {} }, fns, [...api.hooks], StackMapper.of(bundle));
  GameSandbox.live++;
  return sandbox;
}

/**
 * A running sha256 over tick outcomes (ok, every changed record's key and bytes, every deleted
 * key, rejections): two sandboxes fed the same calls must end with the same digest.
 */
export class OutcomeHash {
  private readonly h = createHash('sha256');
  ticks = 0;

  add(out: TickOutcome): void {
    this.ticks++;
    this.h.update(`#${out.ok ? 1 : 0}`);
    if (!out.ok) {
      this.h.update(`${out.code}:${out.thrown?.name ?? ''}:${out.thrown?.message ?? ''}`);
      return;
    }
    for (const [k, v] of out.sets) {
      this.h.update(`s${k}\0`);
      this.h.update(v);
    }
    for (const k of out.dels) this.h.update(`d${k}\0`);
    for (const [k, v] of out.patches) {
      this.h.update(`p${k}\0`);
      this.h.update(v);
    }
    for (const r of out.rejections) this.h.update(`r${r.index}:${r.thrown.message}\0`);
  }

  digest(): string {
    return this.h.copy().digest('hex');
  }
}

/** sha256 of a sandbox's whole world (its exportRecords bytes). */
export async function worldHash(sandbox: GameSandbox): Promise<string> {
  return createHash('sha256').update(await sandbox.exportRecords()).digest('hex');
}
