/**
 * TLS by configuration (TLS_CERT_FILE, TLS_KEY_FILE): the server listens with https, so the
 * WebSocket, /healthz, /metrics, /dashboard and the admin API all go over TLS. A self-signed
 * certificate is made with openssl at test time; clients trust it explicitly. Missing, unreadable
 * or unusable files stop the start with TLS_FILE_INVALID, and the key is never logged.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { MoonpatchClient, type SocketFactory } from '../../client/client.ts';
import { configFromEnv, makeConfig } from '../../server/config/config.ts';
import { ConfigError, MoonpatchError } from '../../server/errors/errors.ts';
import { testRedisUrl } from '../helpers/redis.ts';
import { roomyProbeGames } from '../helpers/roomy-probe.ts';
import { REPO_ROOT, startTestServer, waitFor } from '../helpers/server.ts';

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

type Server = Awaited<ReturnType<typeof startTestServer>>;

/** A self-signed P-256 certificate for localhost and 127.0.0.1, and its key, in `dir`. */
function selfSigned(dir: string, name: string): { certFile: string; keyFile: string } {
  const certFile = path.join(dir, `${name}.crt`);
  const keyFile = path.join(dir, `${name}.key`);
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyFile, '-out', certFile],
    { stdio: 'ignore' },
  );
  return { certFile, keyFile };
}

/** GET over https, trusting `ca`. */
function get(url: string, ca: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca, headers }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      })
      .on('error', reject);
  });
}

/** Whether a WebSocket to `url` opens; resolves with the error message when it does not. */
function tryWs(url: string, options: ConstructorParameters<typeof WebSocket>[2] = {}): Promise<{ opened: boolean; error: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { handshakeTimeout: 10_000, ...options });
    ws.once('open', () => {
      ws.close();
      resolve({ opened: true, error: '' });
    });
    ws.once('error', (e) => resolve({ opened: false, error: e.message }));
  });
}

describe.skipIf(!hasOpenssl)('TLS (wss://, https://)', () => {
  let dir = '';
  let cert: Buffer;
  let key: Buffer;
  let files: { certFile: string; keyFile: string };
  let server: Server;
  const logLines: Record<string, unknown>[] = [];
  const adminToken = 'tls-test-admin-token-0123456789';
  let games: ReturnType<typeof roomyProbeGames> | undefined;
  const roomId = 'tls-' + Date.now().toString(36);

  beforeAll(async () => {
    games = roomyProbeGames();
    dir = mkdtempSync(path.join(os.tmpdir(), 'moonpatch-tls-'));
    files = selfSigned(dir, 'server');
    cert = readFileSync(files.certFile);
    key = readFileSync(files.keyFile);
    server = await startTestServer({ scriptsDir: games!.dir, defaultGame: 'probe', tlsCertFile: files.certFile, tlsKeyFile: files.keyFile, adminToken, logLines });
  });

  afterAll(async () => {
    await server?.close();
    games?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a client that trusts the certificate plays over wss:// and gets its input acknowledged', async () => {
    expect(server.url).toBe(`wss://127.0.0.1:${server.port}`);
    // The client takes a WebSocket constructor; this one trusts our self-signed certificate.
    class TrustingWebSocket extends WebSocket {
      constructor(url: string) {
        super(url, { ca: cert });
      }
    }
    const c = new MoonpatchClient({ url: server.url, room: roomId, game: 'probe', name: 'secure', WebSocket: TrustingWebSocket as unknown as SocketFactory, reconnectDelayMs: 50 });
    await c.connect();
    const seq = c.send({ op: 'add', n: 7 });
    await waitFor(() => c.lastAckedSeq >= seq, 'the input acknowledged');
    await waitFor(() => (c.world.players as Record<string, { sum: number }> | undefined)?.[c.playerId]?.sum === 7, 'the input applied, seen in a delta');
    expect(c.disconnects).toBe(0);
    c.close();
  });

  it('serves /healthz, /metrics, /dashboard and the admin API over https', async () => {
    const base = `https://127.0.0.1:${server.port}`;
    const health = await get(`${base}/healthz`, cert);
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toMatchObject({ ready: true, redis: true });
    const metrics = await get(`${base}/metrics`, cert);
    expect(metrics.status).toBe(200);
    expect(metrics.body).toContain('# TYPE');
    expect((await get(`${base}/dashboard`, cert)).status).toBe(200);
    expect((await get(`${base}/admin/rooms`, cert)).status).toBe(401);
    const rooms = await get(`${base}/admin/rooms`, cert, { authorization: `Bearer ${adminToken}` });
    expect(rooms.status).toBe(200);
    expect((JSON.parse(rooms.body) as { room: string }[]).some((r) => r.room === roomId)).toBe(true);
  });

  it('refuses plain ws:// on the TLS port, and wss:// from a client that does not trust the certificate', async () => {
    const plain = await tryWs(`ws://127.0.0.1:${server.port}`);
    expect(plain.opened).toBe(false);
    const untrusting = await tryWs(server.url);
    expect(untrusting.opened).toBe(false);
    expect(untrusting.error).toMatch(/self[- ]signed/i);
    // The server is unharmed: a trusting client still connects.
    expect((await tryWs(server.url, { ca: cert })).opened).toBe(true);
  });

  it('logs that TLS is on, with the file paths, and never the key', () => {
    const on = logLines.find((l) => l.msg === 'TLS on: serving https and wss');
    expect(on).toMatchObject({ cert: files.certFile, key: files.keyFile });
    expect(logLines.find((l) => l.msg === 'moonpatch listening')).toMatchObject({ tls: true });
    const all = JSON.stringify(logLines);
    const keyBody = key.toString('utf8').split('\n').filter((l) => l && !l.startsWith('-----'));
    expect(keyBody.length).toBeGreaterThan(0);
    for (const line of keyBody) expect(all.includes(line)).toBe(false);
    expect(all.includes('PRIVATE KEY-----')).toBe(false);
  });

  describe('files that cannot be used stop the start with TLS_FILE_INVALID', () => {
    /** Start with these files; the error it fails with. Redis is unreachable on purpose: TLS is checked first. */
    async function startError(certFile: string, keyFile: string): Promise<MoonpatchError> {
      const lines: Record<string, unknown>[] = [];
      try {
        const s = await startTestServer({ scriptsDir: games!.dir, defaultGame: 'probe', tlsCertFile: certFile, tlsKeyFile: keyFile, redisUrl: 'redis://127.0.0.1:1', logLines: lines });
        await s.close();
      } catch (e) {
        expect(e).toBeInstanceOf(MoonpatchError);
        expect(JSON.stringify(lines)).not.toContain('PRIVATE KEY');
        return e as MoonpatchError;
      }
      throw new Error('the server started');
    }

    it('a missing certificate file', async () => {
      const e = await startError(path.join(dir, 'missing.crt'), files.keyFile);
      expect(e.code).toBe('TLS_FILE_INVALID');
      expect(e.message).toContain('TLS_CERT_FILE');
      expect(e.message).toContain('missing.crt');
      expect(e.message).toContain('ENOENT');
    });

    it('a key file that cannot be read (a directory)', async () => {
      const e = await startError(files.certFile, dir);
      expect(e.code).toBe('TLS_FILE_INVALID');
      expect(e.message).toContain('TLS_KEY_FILE');
      expect(e.message).toContain('EISDIR');
    });

    it('files that are not PEM, or a key that is not the certificate\'s', async () => {
      const junk = path.join(dir, 'junk.pem');
      writeFileSync(junk, 'not a certificate\n');
      const notCert = await startError(junk, files.keyFile);
      expect(notCert.code).toBe('TLS_FILE_INVALID');
      expect(notCert.message).toContain('no PEM certificate');
      const certAsKey = await startError(files.certFile, files.certFile);
      expect(certAsKey.code).toBe('TLS_FILE_INVALID');
      expect(certAsKey.message).toContain('no PEM private key');
      const other = selfSigned(dir, 'other');
      const mismatch = await startError(files.certFile, other.keyFile);
      expect(mismatch.code).toBe('TLS_FILE_INVALID');
      expect(mismatch.message).toMatch(/not a usable certificate/);
      expect(mismatch.message).not.toContain(readFileSync(other.keyFile, 'utf8').split('\n')[1]!);
    });

    it('the server process exits with the code in its log', async () => {
      const proc = spawn(process.execPath, ['--no-node-snapshot', '--import', 'tsx', path.join(REPO_ROOT, 'server', 'main.ts')], {
        cwd: REPO_ROOT,
        env: {
          ...process.env,
          PORT: '0',
          HOST: '127.0.0.1',
          REDIS_URL: testRedisUrl(),
          ADMIN_TOKEN: adminToken,
          DATA_DIR: dir,
          TLS_CERT_FILE: path.join(dir, 'nope.crt'),
          TLS_KEY_FILE: files.keyFile,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      proc.stdout.on('data', (d) => (out += d));
      proc.stderr.on('data', (d) => (out += d));
      const code = await new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
      expect(code, out).toBe(1);
      expect(out).toContain('TLS_FILE_INVALID');
      expect(out).toContain('nope.crt');
      expect(out).not.toContain('PRIVATE KEY');
    });
  });

  it('configuration: TLS_CERT_FILE and TLS_KEY_FILE come together', () => {
    expect(configFromEnv({ TLS_CERT_FILE: '/a.crt', TLS_KEY_FILE: '/a.key' })).toMatchObject({ tlsCertFile: '/a.crt', tlsKeyFile: '/a.key' });
    expect(configFromEnv({}).tlsCertFile).toBeUndefined();
    expect(() => configFromEnv({ TLS_CERT_FILE: '/a.crt' })).toThrow(ConfigError);
    expect(() => makeConfig({ tlsKeyFile: '/a.key' })).toThrow(/tlsCertFile/);
  });
});
