/**
 * Maps stack frames that point into a bundle back to the designer's files, so a designer reads
 * `at input (main.ts:42:7)` instead of a position in generated code. Uses Node's built-in
 * SourceMap (node:module), so no dependency.
 */
import { SourceMap, type SourceMapPayload } from 'node:module';

export class StackMapper {
  private readonly map: SourceMap;
  private readonly frame: RegExp;

  constructor(
    private readonly filename: string,
    sourceMapJson: string,
  ) {
    this.map = new SourceMap(JSON.parse(sourceMapJson) as SourceMapPayload);
    const escaped = filename.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    this.frame = new RegExp(`${escaped}:(\\d+):(\\d+)`, 'g');
  }

  /** Rewrite every `<bundle>:line:col` in `stack` to `<source>:line:col`. */
  mapStack(stack: string): string {
    return stack.replace(this.frame, (whole, line: string, col: string) => {
      const entry = this.map.findEntry(Number(line) - 1, Number(col) - 1) as {
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
