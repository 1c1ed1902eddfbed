/**
 * The Grafana dashboard in docs/grafana only queries metrics the server really exports, so it
 * does not silently show empty panels after a rename.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../server/ops/metrics.ts';
import { REPO_ROOT } from '../helpers/server.ts';

describe('docs/grafana/moonpatch-dashboard.json', () => {
  it('uses only metric names that /metrics exports', async () => {
    const dashboard = readFileSync(path.join(REPO_ROOT, 'docs', 'grafana', 'moonpatch-dashboard.json'), 'utf8');
    const used = new Set([...dashboard.matchAll(/moonpatch_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, '')));
    const metrics = new Metrics({ rooms: () => [], heaps: async () => [] });
    const exported = new Set((await metrics.registry.getMetricsAsJSON()).map((m) => m.name));
    metrics.close();
    expect(used.size).toBeGreaterThan(5);
    for (const name of used) expect(exported, name).toContain(name);
  });
});
