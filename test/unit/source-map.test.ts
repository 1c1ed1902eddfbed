/**
 * Stack frames mapped back to the designer's files (server/sandbox/source-map.ts): one mapper
 * per bundle, shared by its sandboxes, parsing the map only when a stack needs it.
 */
import { describe, expect, it } from 'vitest';
import { bundleGame } from '../../server/sandbox/bundler.ts';
import { GameSandbox } from '../../server/sandbox/sandbox.ts';
import { MsgpackWriter } from '../../server/sandbox/runtime/msgpack.ts';
import { StackMapper, withoutEngineCallers } from '../../server/sandbox/source-map.ts';

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

  it("a hook's stack in a real isolate ends at the designer's last frame, not the engine's callers", async () => {
    const bundle = await bundleGame({
      name: 'maps-real',
      entry: 'main.ts',
      files: new Map([
        ['main.ts', `import { step } from './step';\nexport function init(world: any) { world.n = 0; }\nexport function tick(world: any) {\n  step(world);\n}\n`],
        ['step.ts', `export function step(world: any) {\n  world.n = world.missing.field;\n}\n`],
      ]),
    });
    const sb = await GameSandbox.create(bundle, { memoryLimitMb: 32, cpuBudgetMs: 500 });
    try {
      const w = new MsgpackWriter();
      w.value([]);
      const out = await sb.tick({ events: w.bytes().slice(), seed: 1, tick: 1, nowMs: 0, dtSeconds: 0.05, runInit: true });
      expect(out.ok).toBe(false);
      const frames = (out.ok ? '' : (out.thrown?.stack ?? '')).split('\n').filter((l) => /^\s+at /.test(l));
      expect(frames).toEqual([expect.stringMatching(/at step \(step\.ts:2:\d+\)$/), expect.stringMatching(/at tick \(main\.ts:4:\d+\)$/)]);
    } finally {
      sb.dispose();
    }
  });

  it('keeps engine frames above the designer\'s and stacks with none of the designer\'s', () => {
    const thrownInEngine = ['Error: cannot store a function', '    at set (moonpatch-runtime/world.ts:40)', '    at tick (main.ts:3:5)', '    at call (moonpatch-runtime/entry.ts:111)'].join('\n');
    expect(withoutEngineCallers(thrownInEngine)).toBe(thrownInEngine.split('\n').slice(0, 3).join('\n'));
    const engineOnly = 'Error: x\n    at call (moonpatch-runtime/entry.ts:111)';
    expect(withoutEngineCallers(engineOnly)).toBe(engineOnly);
    // An engine frame between two of the designer's (a callback the engine calls) stays.
    const between = ['E', '    at cb (main.ts:9:1)', '    at forEach (moonpatch-runtime/guards.ts:5)', '    at tick (main.ts:3:5)', '    at call (moonpatch-runtime/entry.ts:111)'].join('\n');
    expect(withoutEngineCallers(between)).toBe(between.split('\n').slice(0, 4).join('\n'));
  });
});
