/**
 * Plain HTTP routes: the play page (a canvas client bundled from web/ at startup) and /healthz.
 */
import { readFile } from 'node:fs/promises';
import type http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

const WEB_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'web');

export interface HttpDeps {
  rooms: { list(): { degraded: boolean }[] };
  redis: Redis;
  log: Logger;
}

/** Bundle the play page's script once, at startup. */
async function bundlePlayPage(): Promise<string> {
  const out = await esbuild.build({
    entryPoints: [path.join(WEB_DIR, 'play.ts')],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    logLevel: 'silent',
  });
  return out.outputFiles[0]!.text;
}

export async function createHttpHandler(deps: HttpDeps): Promise<(req: http.IncomingMessage, res: http.ServerResponse) => void> {
  const [page, script] = await Promise.all([readFile(path.join(WEB_DIR, 'index.html'), 'utf8'), bundlePlayPage()]);
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    switch (url.pathname) {
      case '/':
        return send(res, 200, 'text/html; charset=utf-8', page);
      case '/play.js':
        return send(res, 200, 'text/javascript; charset=utf-8', script);
      case '/healthz':
        void health(deps).then((h) => send(res, h.ready ? 200 : 503, 'application/json', JSON.stringify(h)));
        return;
      default:
        return send(res, 404, 'text/plain', 'not found');
    }
  };
}

async function health(deps: HttpDeps): Promise<{ ready: boolean; redis: boolean; rooms: number; degradedRooms: number }> {
  let redis = false;
  try {
    redis = (await Promise.race([deps.redis.ping(), new Promise((r) => setTimeout(() => r('timeout'), 500))])) === 'PONG';
  } catch {
    redis = false;
  }
  const rooms = deps.rooms.list();
  const degradedRooms = rooms.filter((r) => r.degraded).length;
  return { ready: redis && degradedRooms === 0, redis, rooms: rooms.length, degradedRooms };
}

function send(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}
