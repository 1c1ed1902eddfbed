/**
 * The Prometheus alerting rules in docs/prometheus: every rule is complete, and its expression
 * queries only metrics the server exports and lifecycle events it publishes, so a rename cannot
 * leave an alert that silently never fires.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../server/ops/metrics.ts';
import { REPO_ROOT } from '../helpers/server.ts';

interface Rule {
  alert: string;
  lines: string[];
}

/** The rules of the file: each `- alert:` block's lines (the file is plain, one key per line). */
function rules(text: string): Rule[] {
  const out: Rule[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s+- alert: (\S+)\s*$/.exec(line);
    if (m) out.push({ alert: m[1]!, lines: [] });
    else if (out.length > 0 && line.trim() !== '') out.at(-1)!.lines.push(line.trim());
  }
  return out;
}

const field = (r: Rule, name: string) => r.lines.find((l) => l.startsWith(`${name}:`))?.slice(name.length + 1).trim();

describe('docs/prometheus/moonpatch-alerts.yml', () => {
  const text = readFileSync(path.join(REPO_ROOT, 'docs', 'prometheus', 'moonpatch-alerts.yml'), 'utf8');
  const all = rules(text);

  it('has complete rules: an expression, a severity, a summary and a description each, names unique', () => {
    expect(all.length).toBeGreaterThan(5);
    expect(new Set(all.map((r) => r.alert)).size).toBe(all.length);
    for (const r of all) {
      expect({ alert: r.alert, expr: Boolean(field(r, 'expr')) }).toEqual({ alert: r.alert, expr: true });
      expect({ alert: r.alert, severity: field(r, 'severity') }).toEqual({ alert: r.alert, severity: expect.stringMatching(/^(critical|warning|info)$/) });
      expect({ alert: r.alert, summary: Boolean(field(r, 'summary')), description: Boolean(field(r, 'description')) }).toEqual({ alert: r.alert, summary: true, description: true });
      const forValue = field(r, 'for');
      if (forValue !== undefined) expect({ alert: r.alert, for: forValue }).toEqual({ alert: r.alert, for: expect.stringMatching(/^\d+[smh]$/) });
    }
  });

  it('queries only metrics /metrics exports, and lifecycle events the engine publishes', async () => {
    const metrics = new Metrics({ rooms: () => [], heaps: async () => [] });
    const exported = new Set((await metrics.registry.getMetricsAsJSON()).map((m) => m.name));
    metrics.close();
    const events = readFileSync(path.join(REPO_ROOT, 'server', 'ops', 'events.ts'), 'utf8');
    for (const r of all) {
      const expr = field(r, 'expr')!;
      for (const [name] of expr.matchAll(/moonpatch_[a-z_]+/g)) {
        expect({ alert: r.alert, metric: name, exported: exported.has(name.replace(/_(bucket|count|sum)$/, '')) }).toEqual({ alert: r.alert, metric: name, exported: true });
      }
      for (const [, what] of expr.matchAll(/what="([^"]+)"/g)) expect({ alert: r.alert, what, published: events.includes(`| '${what}'`) }).toEqual({ alert: r.alert, what, published: true });
    }
  });
});
