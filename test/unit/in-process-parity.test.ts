/**
 * The capacity benchmark's sandbox_overhead_ratio compares the arena in an isolate with the
 * same bundle run in-process (bench/in-process-sandbox.ts). That comparison means something only
 * if both run the same game: fed the same ticks, they must produce the same changes every tick
 * and end with the same world. bench/sandbox-overhead.ts checks exactly that; it runs in a
 * process of its own (the in-process sandbox locks its process down), so it is run here as one.
 * No timing is asserted.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { OverheadResult } from '../../bench/sandbox-overhead.ts';
import { REPO_ROOT } from '../helpers/server.ts';

function runOverhead(argv: string[]): Promise<OverheadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--no-node-snapshot', '--import', 'tsx', path.join(REPO_ROOT, 'bench', 'sandbox-overhead.ts'), ...argv], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`sandbox-overhead exited with ${code}: ${err}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()!) as OverheadResult);
    });
  });
}

describe('in-process sandbox parity', () => {
  it('the arena run in-process and in isolates, fed the same ticks, makes the same changes and ends in the same world', async () => {
    const r = await runOverhead(['--players', '60', '--ticks', '110', '--warmup', '1', '--large-heap-mb', '128']);
    const runs = ['isolate', 'isolate_large_heap', 'in_process'];
    expect(Object.keys(r.outcome_hash).sort()).toEqual([...runs].sort());
    for (const run of runs) {
      expect(r.outcome_hash[run], run).toBe(r.outcome_hash.isolate);
      expect(r.world_hash[run], run).toBe(r.world_hash.isolate);
      // The runs went through the refused-input path too (one refused input every 10 ticks).
      expect(r.rejections[run], run).toBe(11);
    }
    expect(r.same_state_hash).toBe(true);
    expect(r.state_hash).toBe(r.world_hash.isolate);
    expect(r.state_hash).toMatch(/^[0-9a-f]{64}$/);
  });
});
