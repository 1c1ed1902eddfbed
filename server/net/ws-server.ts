/**
 * The HTTP + WebSocket front door. HTTP routes are supplied by the caller (play page, health);
 * every WebSocket connection becomes a Session. Also sweeps for idle and half-open sockets.
 * With `tls`, the same thing over https/wss.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer } from 'ws';
import { CloseCodes } from '../errors/codes.ts';
import { Session, type RoomDirectory, type SessionLimits } from './session.ts';

export type HttpHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export interface GameServerOptions extends SessionLimits {
  rooms: RoomDirectory;
  http: HttpHandler;
  /** Largest frame accepted; a larger one closes the socket with 1009 (ws does this). */
  maxFrameBytes: number;
  /** Close a connection that sent nothing (frames or pongs) for this long, ms. */
  idleTimeoutMs: number;
  /** Open connections allowed per remote address; more are closed with 4006. */
  maxConnectionsPerAddress: number;
  /** PEM certificate and key: serve https and wss instead of http and ws (see net/tls.ts). */
  tls?: { cert: Buffer; key: Buffer };
}

export class GameServer {
  readonly http: http.Server | https.Server;
  private readonly wss: WebSocketServer;
  readonly sessions = new Set<Session>();
  private readonly perAddress = new Map<string, number>();
  private readonly sweepTimer: NodeJS.Timeout;

  constructor(private readonly opts: GameServerOptions) {
    this.http = opts.tls
      ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key, handshakeTimeout: opts.idleTimeoutMs }, opts.http)
      : http.createServer(opts.http);
    // A connection that never sends a request (or an upgrade) is no session yet, so the idle
    // sweep does not see it, and Node's headersTimeout only starts at its first byte: one that
    // sends nothing was held forever (found by test/integration/fuzz.test.ts). Give it the idle
    // timeout; Node's own 'timeout' handling then destroys it. A request clears the timeout
    // (idle keep-alive sockets are Node's keepAliveTimeout), and so does an upgrade (ws calls
    // setTimeout(0)). Over TLS this is the decrypted socket; the handshake has handshakeTimeout.
    this.http.on(opts.tls ? 'secureConnection' : 'connection', (socket: Socket) => socket.setTimeout(opts.idleTimeoutMs));
    this.http.on('request', (req: http.IncomingMessage) => req.socket.setTimeout(0));
    this.wss = new WebSocketServer({ server: this.http, maxPayload: opts.maxFrameBytes, perMessageDeflate: false });
    this.wss.on('connection', (ws, req) => {
      const address = req.socket.remoteAddress ?? '';
      const open = this.perAddress.get(address) ?? 0;
      if (open >= opts.maxConnectionsPerAddress) {
        // The refused socket can still deliver frames until the close handshake is done; an
        // invalid one (bad opcode, bad UTF-8, too large) makes ws emit 'error', which without a
        // listener is an uncaught exception that ends the process (found by the fuzz test).
        ws.on('error', () => {});
        ws.close(CloseCodes.TOO_MANY_CONNECTIONS, 'too many connections from this address');
        return;
      }
      this.perAddress.set(address, open + 1);
      const session = new Session(ws, opts.rooms, opts, address, req.socket);
      this.sessions.add(session);
      ws.on('close', () => {
        this.sessions.delete(session);
        const left = (this.perAddress.get(address) ?? 1) - 1;
        if (left > 0) this.perAddress.set(address, left);
        else this.perAddress.delete(address);
      });
    });
    // One sweep for all sockets instead of a timer each: ping everyone (a half-open socket
    // never answers, so it goes idle) and close those idle past the timeout.
    const every = Math.min(5000, Math.max(250, opts.idleTimeoutMs / 3));
    this.sweepTimer = setInterval(() => this.sweep(), every);
    this.sweepTimer.unref();
  }

  async listen(port: number, host: string): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => resolve());
    });
    return this.http.address() as AddressInfo;
  }

  private sweep(): void {
    const now = Date.now();
    for (const ws of this.wss.clients) if (ws.readyState === ws.OPEN) ws.ping();
    for (const s of this.sessions) {
      if (now - s.lastSeenAt > this.opts.idleTimeoutMs) s.close(CloseCodes.IDLE, 'idle timeout');
    }
  }

  /** Close every connection with `code`, then stop listening. */
  async close(code: number = CloseCodes.SHUTDOWN, reason = 'server shutting down'): Promise<void> {
    clearInterval(this.sweepTimer);
    for (const s of this.sessions) s.close(code, reason);
    for (const ws of this.wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }
}
