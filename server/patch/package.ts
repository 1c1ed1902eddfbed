/**
 * Signed patch packages: how a patch travels from a designer's machine to every server.
 *
 * A package is canonical JSON (keys sorted, files sorted by path) of the patch's manifest and
 * files; its sha256 is its id (content addressing). The designer signs those exact bytes with an
 * ed25519 key; a server accepts a package only when the signature verifies with a key in its
 * trusted-keys configuration. Keys travel as base64 of their SPKI DER encoding.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { MoonpatchError } from '../errors/errors.ts';
import { parsePatchManifest, type PatchManifest } from './manifest.ts';

export interface PatchPackage {
  game: string;
  manifest: PatchManifest;
  /** Relative path -> file text. */
  files: Record<string, string>;
}

export interface SignedPatch {
  /** Canonical JSON of the package: the bytes that were signed. */
  package: string;
  /** base64 ed25519 signature of `package`. */
  signature: string;
  /** base64 SPKI DER of the signing key. */
  publicKey: string;
}

/** Canonical JSON: object keys sorted at every level, no whitespace. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    return `{${Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function packageId(packageJson: string): string {
  return createHash('sha256').update(packageJson).digest('hex');
}

export function generateSigningKey(): { privatePem: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), publicKey: publicKeyOf(publicKey) };
}

/** A public key as TRUSTED_PATCH_KEYS and a signed patch carry it: base64 of its DER (spki). */
export function publicKeyOf(key: KeyObject): string {
  return key.export({ type: 'spki', format: 'der' }).toString('base64');
}

export function signPatch(pkg: PatchPackage, privatePem: string): SignedPatch {
  const body = canonicalJson(pkg);
  const key = createPrivateKey(privatePem);
  return { package: body, signature: sign(null, Buffer.from(body), key).toString('base64'), publicKey: publicKeyOf(createPublicKey(key)) };
}

/**
 * Check a signed patch against the trusted keys and parse it. Throws PATCH_UNTRUSTED (key not
 * trusted), PATCH_BAD_SIGNATURE (tampered, or not signed by that key) or BAD_FIELD.
 */
export function verifyPatch(signed: unknown, trustedKeys: readonly string[]): { id: string; pkg: PatchPackage } {
  const s = signed as Partial<SignedPatch> | null;
  if (!s || typeof s.package !== 'string' || typeof s.signature !== 'string' || typeof s.publicKey !== 'string') {
    throw new MoonpatchError('PATCH_BAD_SIGNATURE', 'a patch needs package, signature and publicKey (it is not signed)');
  }
  if (!trustedKeys.includes(s.publicKey)) throw new MoonpatchError('PATCH_UNTRUSTED', 'the patch is signed by a key this server does not trust');
  let ok = false;
  try {
    const key = createPublicKey({ key: Buffer.from(s.publicKey, 'base64'), format: 'der', type: 'spki' });
    ok = verify(null, Buffer.from(s.package), key, Buffer.from(s.signature, 'base64'));
  } catch {
    ok = false;
  }
  if (!ok) throw new MoonpatchError('PATCH_BAD_SIGNATURE', 'the signature does not match the patch: it was changed after signing, or signed by another key');
  let raw: unknown;
  try {
    raw = JSON.parse(s.package);
  } catch {
    throw new MoonpatchError('BAD_FIELD', 'the package is not JSON');
  }
  const r = raw as Record<string, unknown>;
  if (typeof r.game !== 'string' || typeof r.files !== 'object' || r.files === null) throw new MoonpatchError('BAD_FIELD', 'the package needs game and files');
  for (const [p, text] of Object.entries(r.files as Record<string, unknown>)) {
    if (typeof text !== 'string' || p.includes('..') || p.startsWith('/')) throw new MoonpatchError('BAD_FIELD', `bad file in the package: ${p}`);
  }
  let manifest: PatchManifest;
  try {
    manifest = parsePatchManifest(r.manifest, `patch ${packageId(s.package).slice(0, 12)}`);
  } catch (e) {
    throw new MoonpatchError('BAD_FIELD', (e as Error).message);
  }
  return { id: packageId(s.package), pkg: { game: r.game, manifest, files: r.files as Record<string, string> } };
}
