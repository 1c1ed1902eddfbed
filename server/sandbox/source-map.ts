/**
 * Maps stack frames that point into a bundle back to the designer's files, so a designer reads
 * `at input (main.ts:42:7)` instead of a position in generated code. Uses Node's built-in
 * SourceMap (node:module), so no dependency.
 */
import { SourceMap, type SourceMapPayload } from 'node:module';

export class StackMapper {
  private static readonly byBundle = new WeakMap<object, StackMapper>();

  /**
   * The mapper of a bundle, shared by every sandbox running it (each room on a version, each
   * rebuild of a room's isolate).
   */
  static of(bundle: { filename: string; sourceMap: string }): StackMapper {
    let mapper = StackMapper.byBundle.get(bundle);
    if (!mapper) StackMapper.byBundle.set(bundle, (mapper = new StackMapper(bundle.filename, bundle.sourceMap)));
    return mapper;
  }

  /**
   * Parsed on the first stack to map, not when a sandbox is created: parsing the arena's 170 KB
   * map took 3-10 ms of the main thread (six samples, a scratch script), which every room open, patch staging and isolate
   * rebuild paid while the server's other rooms waited, for stacks most sandboxes never map.
   */
  private parsed: SourceMap | null | undefined = undefined;
  private readonly frame: RegExp;

  constructor(
    filename: string,
    private readonly sourceMapJson: string,
  ) {
    const escaped = filename.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    this.frame = new RegExp(`${escaped}:(\\d+):(\\d+)`, 'g');
  }

  /** The parsed map, or null when it cannot be parsed (stacks are then left as they are). */
  private load(): SourceMap | null {
    if (this.parsed === undefined) {
      try {
        this.parsed = new SourceMap(JSON.parse(this.sourceMapJson) as SourceMapPayload);
      } catch {
        this.parsed = null;
      }
    }
    return this.parsed;
  }

  /**
   * Rewrite every `<bundle>:line:col` in `stack` to `<source>:line:col`, and drop the engine's
   * frames below the designer's last one (see withoutEngineCallers).
   */
  mapStack(stack: string): string {
    const map = this.load();
    if (!map) return stack;
    return withoutEngineCallers(this.mapFrames(map, stack));
  }

  private mapFrames(map: SourceMap, stack: string): string {
    return stack.replace(this.frame, (whole, line: string, col: string) => {
      const entry = map.findEntry(Number(line) - 1, Number(col) - 1) as {
        originalSource?: string;
        originalLine?: number;
        originalColumn?: number;
      };
      if (entry.originalSource === undefined || entry.originalLine === undefined) return whole;
      const source = entry.originalSource.replace(/^moonpatch-game:/, '');
      if (source.includes('sandbox/runtime/')) return `moonpatch-runtime/${source.slice(source.lastIndexOf('/') + 1)}:${entry.originalLine + 1}`;
      return `${source}:${entry.originalLine + 1}:${(entry.originalColumn ?? 0) + 1}`;
    });
  }
}

const ENGINE_FRAME = /^\s*at .*\bmoonpatch-runtime\//;
const FRAME = /^\s*at /;

/**
 * A hook's stack ends in the engine code that called it (`at call (moonpatch-runtime/entry.ts:111)`,
 * `at tick2 (...)`): the same for every error, and nothing a designer can act on. Those frames
 * are dropped once the designer's own last frame is found; engine frames above it stay (an
 * error thrown inside the engine, such as a refused world write, starts there), and a stack
 * with no frame of the designer's is left whole.
 */
export function withoutEngineCallers(stack: string): string {
  const lines = stack.split('\n');
  let lastOwn = -1;
  for (let i = 0; i < lines.length; i++) if (FRAME.test(lines[i]!) && !ENGINE_FRAME.test(lines[i]!)) lastOwn = i;
  if (lastOwn < 0) return stack;
  const tail = lines.slice(lastOwn + 1);
  if (!tail.every((l) => ENGINE_FRAME.test(l))) return stack;
  return lines.slice(0, lastOwn + 1).join('\n');
}
