/**
 * The local patch-signing key: `<dataDir>/patch-signing-key.pem`, the key `moonpatch keygen`
 * writes and `moonpatch upload`/`push <folder>` sign with by default.
 *
 * A server started with neither ADMIN_TOKEN nor TRUSTED_PATCH_KEYS runs on a designer's own
 * machine (it already keeps its admin token in the same folder, see server/main.ts). Such a
 * server trusts this key, creating it when it is missing, so that `moonpatch push <folder>`
 * works there without a keygen, a copied public key and a restart. A deployment sets
 * TRUSTED_PATCH_KEYS (and ADMIN_TOKEN) and never uses this file: servers sharing a Redis must
 * trust the same keys, which a key made on one machine cannot give them.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { MoonpatchError } from '../errors/errors.ts';
import { generateSigningKey, publicKeyOf } from './package.ts';

export const LOCAL_SIGNING_KEY_FILE = 'patch-signing-key.pem';

export interface LocalSigningKey {
  file: string;
  /** Its public half, as TRUSTED_PATCH_KEYS lists keys. */
  publicKey: string;
  /** True when this call wrote the file. */
  created: boolean;
}

/**
 * The key in `<dataDir>/patch-signing-key.pem`, written first (mode 0600) when there is none.
 * Throws SIGNING_KEY_INVALID when the file is there but is not an ed25519 private key in PEM:
 * it is never replaced, since whoever signs with it expects its public key to stay trusted.
 */
export async function localSigningKey(dataDir: string): Promise<LocalSigningKey> {
  const file = path.join(dataDir, LOCAL_SIGNING_KEY_FILE);
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new MoonpatchError('SIGNING_KEY_INVALID', `${file}: cannot be read (${code})`, { cause: e });
    const made = await writeNewKey(file);
    if (made) return { file, publicKey: made, created: true };
    // Another process (a second local server) wrote it between our read and our write.
    pem = await readFile(file, 'utf8');
  }
  return { file, publicKey: publicKeyOfPem(file, pem), created: false };
}

/** Write a new key unless a file is already there: its public key, or null when one was. */
async function writeNewKey(file: string): Promise<string | null> {
  const { privatePem, publicKey } = generateSigningKey();
  await mkdir(path.dirname(file), { recursive: true });
  try {
    await writeFile(file, privatePem, { mode: 0o600, flag: 'wx' });
    return publicKey;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return null;
    throw e;
  }
}

function publicKeyOfPem(file: string, pem: string): string {
  let key;
  try {
    key = createPrivateKey(pem);
  } catch {
    // Never the file's contents in the message: it may be a private key of another kind.
    throw new MoonpatchError('SIGNING_KEY_INVALID', `${file}: not a PEM private key; move it away (a new key is made) or set TRUSTED_PATCH_KEYS`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new MoonpatchError('SIGNING_KEY_INVALID', `${file}: a ${key.asymmetricKeyType} key, patches are signed with ed25519; move it away (a new key is made) or set TRUSTED_PATCH_KEYS`);
  }
  return publicKeyOf(createPublicKey(key));
}
