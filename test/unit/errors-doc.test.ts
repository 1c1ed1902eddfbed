/**
 * docs/errors.md must document exactly the error catalog: one "### `CODE`" section per code in
 * ErrorCodes (and none for codes that do not exist), each stating **Retry:** yes/no as the
 * catalog's `retry` flag says, and a close-code table naming every CloseCodes value.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CloseCodes, ErrorCodes } from '../../server/errors/codes.ts';

const DOC = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'errors.md');
const text = readFileSync(DOC, 'utf8');

/** Level-3 headings naming a code in backticks, with the text of their section. */
function codeSections(md: string): Map<string, string> {
  const sections = new Map<string, string>();
  const heading = /^### `([^`]+)`[ \t]*$/gm;
  for (const m of md.matchAll(heading)) {
    // A section runs to the next heading of level 1-3.
    const rest = md.slice(m.index! + m[0].length);
    const next = rest.search(/^#{1,3} /m);
    const code = m[1]!;
    if (sections.has(code)) throw new Error(`docs/errors.md: two sections for ${code}`);
    sections.set(code, next < 0 ? rest : rest.slice(0, next));
  }
  return sections;
}

const sections = codeSections(text);
const codes = Object.keys(ErrorCodes) as (keyof typeof ErrorCodes)[];

describe('docs/errors.md', () => {
  it('has a "### `CODE`" section for every error code', () => {
    const missing = codes.filter((c) => !sections.has(c));
    expect(missing, `codes without a section in docs/errors.md`).toEqual([]);
  });

  it('has no section for a code that does not exist', () => {
    const unknown = [...sections.keys()].filter((c) => !(c in ErrorCodes));
    expect(unknown, `headings naming codes that are not in ErrorCodes`).toEqual([]);
  });

  it("states each code's retry flag as the catalog does", () => {
    for (const code of codes) {
      const body = sections.get(code);
      if (body === undefined) continue; // reported by the first test
      const m = /\*\*Retry:\*\*\s*(yes|no)\b/i.exec(body);
      expect(m, `section ${code} has no "**Retry:** yes|no" line`).not.toBeNull();
      expect(m![1]!.toLowerCase() === 'yes', `section ${code}: Retry does not match retry: ${ErrorCodes[code].retry}`).toBe(
        ErrorCodes[code].retry,
      );
    }
  });

  it('lists every close code in backticks, plus 1009, in the Close codes section', () => {
    const at = text.search(/^## Close codes\s*$/m);
    expect(at, 'a "## Close codes" section').toBeGreaterThanOrEqual(0);
    const closeSection = text.slice(at);
    for (const [name, code] of Object.entries(CloseCodes)) {
      expect(closeSection.includes(`\`${code}\``), `close code ${name} (${code}) in backticks`).toBe(true);
    }
    expect(closeSection.includes('`1009`'), 'ws close code 1009 (frame too large)').toBe(true);
  });
});
