/**
 * TLS for the front door: reads and checks the PEM certificate and key named by TLS_CERT_FILE
 * and TLS_KEY_FILE, once at startup. Any problem is a MoonpatchError with code TLS_FILE_INVALID
 * whose message names the variable, the path and what is wrong, and never the files' contents.
 */
import { readFile } from 'node:fs/promises';
import tls from 'node:tls';
import { MoonpatchError } from '../errors/errors.ts';

export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

async function read(variable: string, file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new MoonpatchError('TLS_FILE_INVALID', `${variable} ${file}: cannot be read (${code})`, { cause: e });
  }
}

export async function loadTlsFiles(certFile: string, keyFile: string): Promise<TlsFiles> {
  const cert = await read('TLS_CERT_FILE', certFile);
  const key = await read('TLS_KEY_FILE', keyFile);
  if (!cert.includes('-----BEGIN CERTIFICATE-----')) {
    throw new MoonpatchError('TLS_FILE_INVALID', `TLS_CERT_FILE ${certFile}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)`);
  }
  if (!/-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/.test(key.toString('latin1'))) {
    throw new MoonpatchError('TLS_FILE_INVALID', `TLS_KEY_FILE ${keyFile}: no PEM private key in it (expected -----BEGIN PRIVATE KEY-----)`);
  }
  try {
    // What https.createServer would do, so a bad pair fails here with a clear message. OpenSSL's
    // messages name the problem (key mismatch, bad decrypt, ...), not the key material.
    tls.createSecureContext({ cert, key });
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new MoonpatchError(
      'TLS_FILE_INVALID',
      `TLS_CERT_FILE ${certFile} and TLS_KEY_FILE ${keyFile} are not a usable certificate and unencrypted key: ${why}`,
      { cause: e },
    );
  }
  return { cert, key };
}
