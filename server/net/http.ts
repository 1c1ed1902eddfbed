/**
 * Plain HTTP routes: the play page (a canvas client bundled from web/ on first request),
 * the live ops dashboard (/dashboard, its script and its /dashboard/data JSON), /healthz and
 * /metrics.
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
  /** Prometheus exposition for /metrics. */
  metrics: { text(): Promise<string>; contentType: string };
  /** The ops dashboard's data (a DashboardFeed snapshot) for /dashboard/data. */
  dashboard: { data(): Promise<unknown> };
}

/** Bundle a page's script from web/ (on first request, then cached). */
async function bundlePage(entry: string): Promise<string> {
  const out = await esbuild.build({
    entryPoints: [path.join(WEB_DIR, entry)],
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

export function createHttpHandler(deps: HttpDeps): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  let page: Promise<string> | null = null;
  let script: Promise<string> | null = null;
  let dashboardPage: Promise<string> | null = null;
  let dashboardScript: Promise<string> | null = null;
  const serve = (res: http.ServerResponse, type: string, body: () => Promise<string>) =>
    void body().then(
      (text) => send(res, 200, type, text),
      (e: unknown) => {
        deps.log.error({ err: e }, 'page failed to build');
        send(res, 500, 'text/plain', 'page failed to build; see the server log');
      },
    );
  return (req, res) => {
    // A request target such as `//[` is not a URL: new URL() throws, and a throw here escapes
    // the server's 'request' event and ends the process (found by test/integration/fuzz.test.ts).
    let pathname: string;
    try {
      pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      return send(res, 400, 'text/plain', 'bad request target');
    }
    switch (pathname) {
      case '/':
        return serve(res, 'text/html; charset=utf-8', () => (page ??= readFile(path.join(WEB_DIR, 'index.html'), 'utf8')));
      case '/play.js':
        return serve(res, 'text/javascript; charset=utf-8', () => (script ??= bundlePage('play.ts')));
      case '/dashboard':
        return serve(res, 'text/html; charset=utf-8', () => (dashboardPage ??= readFile(path.join(WEB_DIR, 'dashboard.html'), 'utf8')));
      case '/dashboard.js':
        return serve(res, 'text/javascript; charset=utf-8', () => (dashboardScript ??= bundlePage('dashboard.ts')));
      case '/dashboard/data':
        void deps.dashboard.data().then(
          (data) => send(res, 200, 'application/json', JSON.stringify(data)),
          (e: unknown) => {
            deps.log.error({ err: e }, 'dashboard data failed');
            send(res, 500, 'text/plain', 'dashboard data failed; see the server log');
          },
        );
        return;
      case '/metrics':
        void deps.metrics.text().then(
          (text) => send(res, 200, deps.metrics.contentType, text),
          // A rejected promise without a handler would end the process (unhandled rejection).
          (e: unknown) => {
            deps.log.error({ err: e }, 'metrics failed');
            send(res, 500, 'text/plain', 'metrics failed; see the server log');
          },
        );
        return;
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
