/**
 * Stack frames mapped back to the designer's files (server/sandbox/source-map.ts): one mapper
 * per bundle, shared by its sandboxes, parsing the map only when a stack needs it.
 */
import { describe, expect, it } from 'vitest';
import { bundleGame } from '../../server/sandbox/bundler.ts';
import { StackMapper } from '../../server/sandbox/source-map.ts';

describe('StackMapper', () => {
  it('maps a frame in the bundle to the designer\'s file and line, one mapper per bundle', async () => {
    const bundle = await bundleGame({ name: 'maps', entry: 'main.ts', files: new Map([['main.ts', 'export function tick(world: any) {\n  world.n = 1;\n  throw new Error("here");\n}\n']]) });
    const mapper = StackMapper.of(bundle);
    expect(StackMapper.of(bundle)).toBe(mapper);
    expect(StackMapper.of({ ...bundle })).not.toBe(mapper);
    const line = bundle.code.split('\n').findIndex((l) => l.includes('throw new Error("here")')) + 1;
    expect(line).toBeGreaterThan(0);
    expect(mapper.mapStack(`Error: here\n    at tick (${bundle.filename}:${line}:9)`)).toMatch(/at tick \(main\.ts:3:\d+\)$/);
  });

  it('leaves stacks as they are when the map cannot be parsed, instead of throwing on a failure path', () => {
    const mapper = new StackMapper('x@1.js', '{not a source map');
    const stack = 'Error: boom\n    at tick (x@1.js:10:5)';
    expect(mapper.mapStack(stack)).toBe(stack);
  });
});
