/**
 * The load-test runner (`npm run loadtest`, loadtest/run.ts) end to end, small: it starts its
 * own server (server/main.ts as a child process, on this run's private Redis under a fresh
 * prefix), seats 5 players that send 20 inputs/s for 4 s, patches their room once (v1 -> v2,
 * a schema migration) through the admin API, and writes a report and a plot. The report must
 * show every input settled exactly once, nobody dropped, the patch applied, and the plot must
 * mark the patch. Latency is not asserted (the p99 limit is set out of reach): this checks the
 * accounting, not the machine's speed. The threshold logic that sets the exit code is checked
 * on reports that should fail.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { evaluateThresholds, type ThresholdInput } from '../../loadtest/stats.ts';
import type { LoadTestReport } from '../../loadtest/runner.ts';
import { testRedisUrl } from '../helpers/redis.ts';
import { REPO_ROOT } from '../helpers/server.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-loadtest-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runLoadtest(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.ADMIN_TOKEN;
    const proc = spawn(process.execPath, ['--no-node-snapshot', '--import', 'tsx', path.join(REPO_ROOT, 'loadtest', 'run.ts'), ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    proc.stdout.on('data', (d) => (output += d));
    proc.stderr.on('data', (d) => (output += d));
    proc.once('error', reject);
    proc.once('exit', (code) => resolve({ code, output }));
  });
}

describe('npm run loadtest', () => {
  it('plays and patches a room, then reports every input settled once, no disconnect, the patch applied and plotted', async () => {
    const out = path.join(dir, 'loadtest.json');
    const svg = path.join(dir, 'loadtest.svg');
    const { code, output } = await runLoadtest([
      '--players', '5', '--duration', '4', '--patch-every', '2',
      '--redis', testRedisUrl(), '--out', out, '--svg', svg,
      '--max-p99', '3600000', '--drain', '30',
    ]);
    expect(code, output).toBe(0);
    const r = JSON.parse(readFileSync(out, 'utf8')) as LoadTestReport;

    expect(r.target.started_server).toBe(true);
    expect(r.players).toMatchObject({ requested: 5, joined: 5, failed_joins: 0, rooms: 1 });
    // Every input sent was settled, by an ack (applied) or an err (rejected), exactly once.
    expect(r.inputs.sent).toBeGreaterThan(0);
    expect(r.inputs.acked + r.inputs.rejected).toBe(r.inputs.sent);
    expect(r.inputs.lost).toBe(0);
    expect(r.inputs.duplicated).toBe(0);
    expect(r.inputs.anomalies).toBe(0);
    expect(r.inputs.anomaly_detail.client_unsettled).toBe(0);
    expect(r.disconnects.total).toBe(0);
    // Each acked input has one ack latency sample, and states were seen.
    expect(r.latency_ms.ack.n).toBe(r.inputs.acked);
    expect(r.latency_ms.state.n).toBeGreaterThan(0);
    expect(r.latency_ms.ack.p99).not.toBeNull();

    // One patch round (at 2 s of 4): the room went from version 1 to 2, and everyone heard.
    expect(r.patches.rounds).toBe(1);
    expect(r.patches.events).toHaveLength(1);
    expect(r.patches.events[0]).toMatchObject({ action: 'v2', ok: true, code: '' });
    expect(r.patches).toMatchObject({ applied: 1, failed: 0 });
    expect(r.server.versions_at_end).toEqual({ v2: 1 });
    expect(r.server.version_notices).toBe(5);

    // The server's figures were collected.
    expect(r.server.missed_ticks_during_run).toEqual(expect.any(Number));
    expect(r.server.ticks).toBeGreaterThan(0);
    expect(r.server.tick_ms_p99).toEqual(expect.any(Number));
    expect(r.server.tick_lateness_ms_p99).toEqual(expect.any(Number));
    expect(r.series.length).toBeGreaterThan(0);
    expect(r.thresholds.passed).toBe(true);

    // The plot: latency lines and one marker at the patch round.
    const plot = readFileSync(svg, 'utf8');
    expect(plot.startsWith('<svg')).toBe(true);
    expect(plot).toContain('data-series="ackP99"');
    const markers = [...plot.matchAll(/<g class="patch-marker" data-t="([^"]+)" data-label="([^"]+)" data-applied="(\d+)" data-failed="(\d+)">/g)];
    expect(markers.map((m) => m.slice(1))).toEqual([['2', 'v2', '1', '0']]);
  }, 180_000);

  it('fails the run on a lost or duplicated input, an anomaly, a disconnect, a failed join, a slow p99 or no input at all', () => {
    const good: ThresholdInput = {
      inputs: { sent: 100, lost: 0, duplicated: 0, anomalies: 0 },
      disconnects: { total: 0 },
      players: { failed_joins: 0 },
      latency_ms: { ack: { p99: 40 } },
    };
    const failing = (r: ThresholdInput) => evaluateThresholds(r, 100).filter((c) => !c.ok).map((c) => c.name);
    expect(failing(good)).toEqual([]);
    expect(failing({ ...good, inputs: { ...good.inputs, lost: 1 } })).toEqual(['lost inputs']);
    expect(failing({ ...good, inputs: { ...good.inputs, duplicated: 2 } })).toEqual(['duplicated inputs']);
    expect(failing({ ...good, inputs: { ...good.inputs, anomalies: 1 } })).toEqual(['protocol anomalies']);
    expect(failing({ ...good, disconnects: { total: 1 } })).toEqual(['disconnects']);
    expect(failing({ ...good, players: { failed_joins: 3 } })).toEqual(['failed joins']);
    expect(failing({ ...good, latency_ms: { ack: { p99: 100.5 } } })).toEqual(['p99 input-to-ack (ms)']);
    expect(failing({ ...good, latency_ms: { ack: { p99: null } } })).toEqual(['p99 input-to-ack (ms)']);
    expect(failing({ ...good, inputs: { ...good.inputs, sent: 0 } })).toEqual(['inputs sent']);
  });
});
