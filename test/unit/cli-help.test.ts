/**
 * The command line's help table (cli/help.ts): typo suggestions, and usage lines that agree
 * with the options each command accepts. The command line itself runs in cli.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { acceptedOptions, closest, COMMAND_HELP, commandText, SWITCHES, type CommandName } from '../../cli/help.ts';

describe('closest', () => {
  it('suggests the likely intended word for a typo: a letter added, missing, changed or two swapped', () => {
    const options = ['room', 'json', 'canary', 'safe-point', 'to', 'yes', 'watch'];
    expect(closest('rooom', options)).toBe('room');
    expect(closest('jsno', options)).toBe('json');
    expect(closest('canry', options)).toBe('canary');
    expect(closest('safepoint', options)).toBe('safe-point');
    expect(closest('wach', options)).toBe('watch');
  });

  it('suggests nothing for a word that is not close to any', () => {
    expect(closest('frobnicate', ['room', 'json'])).toBeNull();
    expect(closest('ab', ['to', 'yes'])).toBeNull();
    expect(closest('x', [])).toBeNull();
  });
});

describe('the help table', () => {
  const names = Object.keys(COMMAND_HELP) as CommandName[];

  it('every option a usage line shows is one the command accepts, and its text names it', () => {
    for (const name of names) {
      const accepted = acceptedOptions(name);
      for (const line of COMMAND_HELP[name].usage) {
        for (const [, option] of line.matchAll(/--([a-z-]+)/g)) expect({ name, option, accepted: accepted.has(option!) }).toEqual({ name, option, accepted: true });
      }
      const text = commandText(name);
      for (const option of Object.keys(COMMAND_HELP[name].options)) expect(text).toContain(`--${option} `);
    }
  });

  it('an option takes a value exactly when its text shows one (`--name VALUE`), so SWITCHES and the texts agree', () => {
    for (const name of names) {
      for (const [option, text] of Object.entries(COMMAND_HELP[name].options as Record<string, string>)) {
        const showsValue = new RegExp(`--${option} [A-Z]`).test(text);
        expect({ name, option, switch: SWITCHES.has(option) }).toEqual({ name, option, switch: !showsValue });
      }
    }
  });

  it('switches are only options that some command takes', () => {
    const all = new Set(names.flatMap((n) => [...acceptedOptions(n)]));
    for (const s of SWITCHES) expect({ s, known: all.has(s) }).toEqual({ s, known: true });
  });
});
