/**
 * scripts/game.schema.json (editor completion and checking for game.json) says what the server's
 * parser (parseGameManifest) accepts: the same fields, and for each integer the same range,
 * tested by giving the parser each bound and one past it.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseGameManifest } from '../../server/config/config.ts';
import { REPO_ROOT } from '../helpers/server.ts';

interface Prop {
  type: string;
  minimum?: number;
  maximum?: number;
  default?: unknown;
  properties?: Record<string, Prop>;
}
const schema = JSON.parse(readFileSync(path.join(REPO_ROOT, 'scripts', 'game.schema.json'), 'utf8')) as { properties: Record<string, Prop> };
const props = schema.properties;

/** A valid interest setting, for probing its fields one at a time. */
const INTEREST = { tables: ['players'], cellSize: 10 };

describe('scripts/game.schema.json', () => {
  it('names every field the parser reads, and no other (besides $schema and the ignored name)', () => {
    const parsed = Object.keys(parseGameManifest('g', {})).filter((k) => k !== 'name');
    expect(Object.keys(props).filter((k) => k !== '$schema' && k !== 'name').sort()).toEqual(parsed.sort());
    const interest = parseGameManifest('g', { interest: INTEREST }).interest!;
    expect(Object.keys(props.interest!.properties!).sort()).toEqual(Object.keys(interest).sort());
  });

  const integers: [string, Prop, (v: number) => unknown][] = [];
  for (const [name, p] of Object.entries(props)) if (p.type === 'integer') integers.push([name, p, (v) => ({ [name]: v, ...(name === 'broadcastHz' ? { tickHz: 60 } : {}) })]);
  for (const [name, p] of Object.entries(props.interest!.properties!)) if (p.type === 'integer') integers.push([`interest.${name}`, p, (v) => ({ interest: { ...INTEREST, [name]: v } })]);

  it.each(integers)('%s: the parser takes exactly the schema\'s range', (_name, p, game) => {
    expect(p.minimum).toBeTypeOf('number');
    expect(p.maximum).toBeTypeOf('number');
    expect(() => parseGameManifest('g', game(p.minimum!))).not.toThrow();
    expect(() => parseGameManifest('g', game(p.maximum!))).not.toThrow();
    expect(() => parseGameManifest('g', game(p.minimum! - 1))).toThrow();
    expect(() => parseGameManifest('g', game(p.maximum! + 1))).toThrow();
  });

  it('defaults are the parser\'s defaults', () => {
    const m = parseGameManifest('g', {}) as unknown as Record<string, unknown>;
    for (const [name, p] of Object.entries(props)) if (p.default !== undefined) expect(m[name], name).toEqual(p.default);
    const interest = parseGameManifest('g', { interest: INTEREST }).interest as unknown as Record<string, unknown>;
    for (const [name, p] of Object.entries(props.interest!.properties!)) if (p.default !== undefined) expect(interest[name], name).toEqual(p.default);
  });

  it('every bundled game.json points at it', () => {
    const arena = JSON.parse(readFileSync(path.join(REPO_ROOT, 'scripts', 'arena', 'game.json'), 'utf8')) as Record<string, unknown>;
    expect(arena.$schema).toBe('../game.schema.json');
  });
});
