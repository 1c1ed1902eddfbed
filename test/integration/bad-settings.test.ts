/**
 * The real entry point (server/main.ts, as `npm start` runs it) refusing a bad setting: one line
 * on stderr naming the environment variable and its value, exit code 2, no stack trace, and
 * nothing started (it never reaches Redis: the setting is read first).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/server.ts';

function runMain(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, ['--no-node-snapshot', '--import', 'tsx', path.join(REPO_ROOT, 'server', 'main.ts')], {
      cwd: REPO_ROOT,
      // A Redis URL nothing answers on: were the setting not refused first, the start would fail
      // on Redis instead, with another message.
      env: { ...process.env, REDIS_URL: 'redis://127.0.0.1:1', PORT: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => (stdout += d));
    proc.stderr.on('data', (d) => (stderr += d));
    proc.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('a bad setting stops the server at start', () => {
  it('says which variable and what it held, in one line, with exit code 2', async () => {
    const r = await runMain({ ROOM_EXPIRE_MS: 'soon' });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^moonpatch: bad configuration: ROOM_EXPIRE_MS must be an integer from 0 to \d+ \(got "soon"\)$/)]);
    expect(r.stdout).toBe('');
  });

  it('a secret too short is named but not repeated', async () => {
    const r = await runMain({ ADMIN_TOKEN: 'hunter2' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('moonpatch: bad configuration: ADMIN_TOKEN must be at least 16 characters');
    expect(r.stderr).not.toContain('hunter2');
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});
