/**
 * docs/ops.md lists every metric the server exports, with its type and labels, and every room
 * event `moonpatch_patch_events_total` counts: a metric added without a word for its operators,
 * or a label renamed under their queries, fails here.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../server/ops/metrics.ts';
import { REPO_ROOT } from '../helpers/server.ts';

describe('docs/ops.md', () => {
  const doc = readFileSync(path.join(REPO_ROOT, 'docs', 'ops.md'), 'utf8');

  it('has a row for each moonpatch metric, with its type and labels', async () => {
    const metrics = new Metrics({ rooms: () => [], heaps: async () => [], watchdogUp: () => true });
    const all = await metrics.registry.getMetricsAsJSON();
    const ours = all.filter((m) => m.name.startsWith('moonpatch_'));
    expect(ours.length).toBeGreaterThan(15);
    for (const m of ours) {
      const row = new RegExp(`^\\| \`${m.name}\` \\| (\\w+) \\|([\\w, ]*)\\|`, 'm').exec(doc);
      const labels = ((metrics.registry.getSingleMetric(m.name) as unknown as { labelNames: string[] }).labelNames ?? []).join(', ');
      expect({ metric: m.name, row: row && { type: row[1], labels: row[2]!.trim() } }).toEqual({ metric: m.name, row: { type: m.type, labels } });
    }
    metrics.close();
    // And no row for a metric that is gone.
    const documented = [...doc.matchAll(/^\| `(moonpatch_\w+)` \|/gm)].map((r) => r[1]);
    expect(documented.sort()).toEqual(ours.map((m) => m.name).sort());
  });

  it('names every room event the patch events counter counts', () => {
    const events = readFileSync(path.join(REPO_ROOT, 'server', 'ops', 'events.ts'), 'utf8');
    const union = /what:\s*((?:\s*\|\s*'[a-z-]+')+);/.exec(events)![1]!;
    const whats = [...union.matchAll(/'([a-z-]+)'/g)].map((m) => m[1]!);
    expect(whats.length).toBeGreaterThan(10);
    const row = /^\| `moonpatch_patch_events_total` .*$/m.exec(doc)![0];
    for (const what of whats) expect({ what, listed: row.includes(`\`${what}\``) }).toEqual({ what, listed: true });
  });
});
