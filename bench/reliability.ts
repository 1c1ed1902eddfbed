/**
 * `npm run reliability`: runs the fault and hostile-input tests (real processes, real Redis)
 * and writes what they did to bench/results/reliability.json:
 *
 *   faults_injected, frames_fuzzed, inputs_acknowledged, inputs_lost, committed_ticks_lost,
 *   ticks_applied_twice, hostile_scripts_contained; per scenario too; and machine.
 *
 * Each test reports its figures through test/helpers/figures.ts; this script points them at a
 * file (MOONPATCH_FIGURES_FILE), runs vitest on the reliability suites, and sums the lines.
 * It exits non-zero when a test failed or anything was lost, so it can gate a release.
 *
 *   npm run reliability [-- --only fuzz]   (a substring of the test file names)
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { machine, parseArgs, writeResult } from './lib.ts';

const SUITES = [
  'test/integration/crash.test.ts', // kill -9 of the server under load
  'test/integration/redis-outage.test.ts', // Redis stopped, restarted with and without AOF, killed
  'test/integration/ownership.test.ts', // two owners racing, a paused owner, a dead owner
  'test/integration/fuzz.test.ts', // 100k hostile frames
  'test/integration/hostile-scripts.test.ts', // named hostile-script fixtures
  'test/integration/quarantine.test.ts', // a script that keeps aborting the process
  'test/integration/auth.test.ts', // signed player tokens, admin credential
  'test/integration/bad-input.test.ts', // each bad frame and every limit
];

const REPO = path.resolve(import.meta.dirname, '..');
const args = parseArgs(process.argv.slice(2));
const suites = SUITES.filter((f) => existsSync(path.join(REPO, f)) && (!args.only || f.includes(args.only)));
const dir = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-reliability-'));
const figuresFile = path.join(dir, 'figures.jsonl');

console.log(`reliability: running ${suites.length} suites\n  ${suites.join('\n  ')}`);
const started = Date.now();
const run = spawnSync('npx', ['vitest', 'run', ...suites], {
  cwd: REPO,
  stdio: 'inherit',
  env: { ...process.env, MOONPATCH_FIGURES_FILE: figuresFile },
});
const passed = run.status === 0;

const totals: Record<string, number> = {
  faults_injected: 0,
  frames_fuzzed: 0,
  inputs_acknowledged: 0,
  inputs_lost: 0,
  committed_ticks_lost: 0,
  ticks_applied_twice: 0,
  hostile_scripts_contained: 0,
};
const scenarios: Record<string, Record<string, number>> = {};
const lines = existsSync(figuresFile) ? readFileSync(figuresFile, 'utf8').split('\n').filter(Boolean) : [];
for (const line of lines) {
  const { scenario, name, value } = JSON.parse(line) as { scenario: string; name: string; value: number };
  totals[name] = (totals[name] ?? 0) + value;
  (scenarios[scenario] ??= {})[name] = (scenarios[scenario][name] ?? 0) + value;
}
rmSync(dir, { recursive: true, force: true });

const result = {
  tests_passed: passed,
  ...totals,
  suites,
  scenarios,
  duration_s: Math.round((Date.now() - started) / 1000),
  machine: machine(),
  at: new Date().toISOString(),
};
const file = writeResult('reliability', result);

console.log('\nreliability figures');
for (const [k, v] of Object.entries(totals)) console.log(`  ${k.padEnd(26)} ${v}`);
for (const [name, figs] of Object.entries(scenarios)) {
  console.log(`  ${name}: ${Object.entries(figs).map(([k, v]) => `${k}=${v}`).join(' ')}`);
}
console.log(`tests ${passed ? 'passed' : 'FAILED'}; written to ${path.relative(REPO, file)}`);
const lost = totals.inputs_lost! + totals.committed_ticks_lost! + totals.ticks_applied_twice!;
process.exit(passed && lost === 0 ? 0 : 1);
