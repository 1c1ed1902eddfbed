/**
 * The probe fixture game (test/fixtures/games/probe) copied into a temporary games folder with
 * a larger tick budget. The probe's 50 ms "CPU" budget is enforced as wall time (isolated-vm's
 * timeout), so on a loaded machine a tick that uses a few ms of CPU can be descheduled past it
 * and fail; tests whose assertions need every honest input to apply use this copy instead.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FIXTURE_GAMES } from './server.ts';

/** A games folder holding `probe` with `cpuBudgetMs`; remove it with the returned function. */
export function roomyProbeGames(cpuBudgetMs = 1000): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-probe-'));
  cpSync(path.join(FIXTURE_GAMES, 'probe'), path.join(dir, 'probe'), { recursive: true });
  const manifestFile = path.join(dir, 'probe', 'game.json');
  writeFileSync(manifestFile, JSON.stringify({ ...JSON.parse(readFileSync(manifestFile, 'utf8')), cpuBudgetMs }));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
