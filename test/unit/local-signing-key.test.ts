/**
 * The local patch-signing key a designer's own server trusts: made once (mode 0600), then
 * read; a file that is not an ed25519 private key is refused with SIGNING_KEY_INVALID and left
 * as it is.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { signPatch, verifyPatch } from '../../server/patch/package.ts';
import { LOCAL_SIGNING_KEY_FILE, localSigningKey } from '../../server/patch/local-signing-key.ts';

const root = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-localkey-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => path.join(root, `d${n++}`);

describe('localSigningKey', () => {
  it('makes the key when missing (owner-only), then reads the same key; patches signed with it verify against its public key', async () => {
    const dir = freshDir(); // not there yet: made with the key
    const made = await localSigningKey(dir);
    expect(made).toMatchObject({ file: path.join(dir, LOCAL_SIGNING_KEY_FILE), created: true });
    expect(statSync(made.file).mode & 0o777).toBe(0o600);
    const again = await localSigningKey(dir);
    expect(again).toEqual({ ...made, created: false });

    const signed = signPatch({ game: 'g', manifest: { version: 2, schema: 1, description: 'd' }, files: { 'main.ts': '' } }, readFileSync(made.file, 'utf8'));
    expect(signed.publicKey).toBe(made.publicKey);
    expect(verifyPatch(signed, [made.publicKey]).pkg.game).toBe('g');
  });

  it('two servers starting together agree on one key', async () => {
    const dir = freshDir();
    const keys = await Promise.all([localSigningKey(dir), localSigningKey(dir), localSigningKey(dir)]);
    expect(new Set(keys.map((k) => k.publicKey)).size).toBe(1);
    expect(keys.filter((k) => k.created)).toHaveLength(1);
  });

  const refusals: [string, (file: string) => void, RegExp][] = [
    ['junk', (f) => writeFileSync(f, 'not a key at all\n'), /not a PEM private key/],
    ['an RSA key', (f) => writeFileSync(f, generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' })), /a rsa key, patches are signed with ed25519/],
    ['a public key only', (f) => writeFileSync(f, generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' })), /not a PEM private key/],
    ['a folder', (f) => mkdirSync(f), /cannot be read \(EISDIR\)/],
  ];
  for (const [what, put, message] of refusals) {
    it(`refuses ${what} in the key file with SIGNING_KEY_INVALID and leaves the file alone`, async () => {
      const dir = freshDir();
      mkdirSync(dir);
      const file = path.join(dir, LOCAL_SIGNING_KEY_FILE);
      put(file);
      const before = statSync(file).isFile() ? readFileSync(file, 'utf8') : null;
      const error = await localSigningKey(dir).then(() => null, (e: unknown) => e as { code?: string; message: string });
      expect(error).toMatchObject({ code: 'SIGNING_KEY_INVALID' });
      expect(error!.message).toMatch(message);
      expect(error!.message).toContain(file);
      if (before !== null) {
        expect(readFileSync(file, 'utf8')).toBe(before);
        expect(error!.message).not.toContain(before.trim().split('\n')[1] ?? before.trim());
      }
    });
  }
});
