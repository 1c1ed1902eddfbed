/**
 * Run the real server entry point (server/main.ts) as a child process, for tests that kill it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { MoonpatchClient } from '../../client/client.ts';
import { REPO_ROOT } from './server.ts';

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ChildServer {
  proc: ChildProcess;
  url: string;
  /** Resolves when the process has exited, however it went. */
  exit: Promise<ChildExit>;
  /** Everything the child wrote, for failure messages. */
  output(): string;
  /** SIGKILL, and wait until it is gone. */
  kill9(): Promise<void>;
  /** SIGTERM (graceful), and wait until it is gone. */
  stop(): Promise<void>;
}

export async function startChildServer(env: Record<string, string>): Promise<ChildServer> {
  const proc = spawn(process.execPath, ['--no-node-snapshot', '--import', 'tsx', path.join(REPO_ROOT, 'server', 'main.ts')], {
    cwd: REPO_ROOT,
    env: { ...process.env, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<ChildExit>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const url = await new Promise<string>((resolve, reject) => {
    const onData = () => {
      const m = /WebSocket (ws:\/\/[^\s)]+)/.exec(out);
      if (m) resolve(m[1]!);
    };
    proc.stdout!.on('data', onData);
    proc.once('exit', (code) => reject(new Error(`server exited (${code}) before listening:\n${out}`)));
  });
  return {
    proc,
    url,
    exit: exited,
    output: () => out,
    async kill9() {
      proc.kill('SIGKILL');
      await exited;
    },
    async stop() {
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * The child's exit, caused by input `seq` of `client` (an attack that aborts the process). Fails
 * at once, with the child's output, if that input is settled instead (applied, or refused with
 * a code such as CPU_BUDGET_EXCEEDED): then no crash is coming, and waiting would only end in
 * the test's timeout with nothing said.
 */
export function crashCausedBy(child: ChildServer, client: MoonpatchClient, seq: number): Promise<ChildExit> {
  return new Promise<ChildExit>((resolve, reject) => {
    const stopListening = client.on('settled', (s) => {
      if (s.seq !== seq) return;
      stopListening();
      const how = s.rejected ? `refused with ${s.rejected.code} (${s.rejected.msg})` : 'applied';
      reject(new Error(`input ${seq} was ${how} instead of aborting the server; its output:\n${child.output().slice(-2000)}`));
    });
    void child.exit.then((e) => {
      stopListening();
      resolve(e);
    });
  });
}

/**
 * Make the child abort with an attack input from `client`, trying up to `tries` times, and
 * resolve with its exit. The fatal out-of-memory attack does not abort V8 every time: now and
 * then (more often on a loaded machine) isolated-vm's own heap check catches it first and the
 * tick fails with MEMORY_LIMIT, the room running on, and an attacker would simply send it
 * again. `first`, when given, is the seq of an attack already sent (a client resends its
 * unacknowledged inputs after a reconnect); otherwise the first try is sent here too.
 */
export async function crashWithAttack(child: ChildServer, client: MoonpatchClient, attack: () => number, tries = 6, first?: number): Promise<ChildExit> {
  let seq = first ?? attack();
  for (let i = 1; ; i++) {
    try {
      return await crashCausedBy(child, client, seq);
    } catch (e) {
      if (i >= tries) throw e;
      seq = attack();
    }
  }
}
