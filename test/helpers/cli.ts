/** The designers' command line (`bin/moonpatch.js`), run for real as a child process. */
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from './server.ts';

const CLI = ['--no-node-snapshot', path.join(REPO_ROOT, 'bin', 'moonpatch.js')];

const cliEnv = (url: string, token: string) => ({ ...process.env, MOONPATCH_URL: url, MOONPATCH_ADMIN_TOKEN: token });

/** Run `moonpatch ...args` against the server at `url` (http://...) to the end. */
export function runCli(url: string, token: string, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...CLI, ...args], { cwd: REPO_ROOT, env: cliEnv(url, token) }, (e, out, err) =>
      resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
    );
  });
}

/**
 * Run `moonpatch ...args` with only `env` added to this process's environment: no URL or
 * token given, so the command line finds them as it does on a designer's machine (PORT,
 * DATA_DIR's admin token and signing key).
 */
export function runCliWithEnv(env: Record<string, string>, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const base = { ...process.env };
  delete base.MOONPATCH_URL;
  delete base.MOONPATCH_ADMIN_TOKEN;
  return new Promise((resolve) => {
    execFile(process.execPath, [...CLI, ...args], { cwd: REPO_ROOT, env: { ...base, ...env } }, (e, out, err) =>
      resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
    );
  });
}

/** Start `moonpatch ...args` and leave it running (`logs --follow`); the caller kills it. */
export function spawnCli(url: string, token: string, ...args: string[]): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, [...CLI, ...args], { cwd: REPO_ROOT, env: cliEnv(url, token) });
}
