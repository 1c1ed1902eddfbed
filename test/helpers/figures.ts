/**
 * Reliability figures: a test that injects faults or fuzzes frames reports what it did
 * (faults injected, frames fuzzed, inputs acknowledged, inputs lost, ...) through here.
 *
 * Each figure is printed, so a plain `npm test` shows it, and, when MOONPATCH_FIGURES_FILE is
 * set (by `npm run reliability`, see bench/reliability.ts), appended to that file as one JSON
 * line, which the reliability script sums into bench/results/reliability.json.
 */
import { appendFileSync } from 'node:fs';

export type FigureName =
  | 'faults_injected'
  | 'frames_fuzzed'
  | 'inputs_acknowledged'
  | 'inputs_lost'
  | 'committed_ticks_lost'
  | 'ticks_applied_twice'
  | 'hostile_scripts_contained'
  | (string & {});

/** Add `value` to figure `name`, reported by `scenario` (a short name of the test). */
export function reportFigure(scenario: string, name: FigureName, value: number): void {
  console.log(`[figure] ${scenario}: ${name}=${value}`);
  const file = process.env.MOONPATCH_FIGURES_FILE;
  if (file) appendFileSync(file, JSON.stringify({ scenario, name, value }) + '\n');
}
