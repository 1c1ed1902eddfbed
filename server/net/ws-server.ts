/**
 * The HTTP + WebSocket front door. HTTP routes are supplied by the caller (play page, health);
 * every WebSocket connection becomes a Session. Also sweeps for idle and half-open sockets.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
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
}

export class GameServer {
  readonly http: http.Server;
  private readonly wss: WebSocketServer;
  readonly sessions = new Set<Session>();
  private readonly perAddress = new Map<string, number>();
  private readonly sweepTimer: NodeJS.Timeout;

  constructor(private readonly opts: GameServerOptions) {
    this.http = http.createServer(opts.http);
    this.wss = new WebSocketServer({ server: this.http, maxPayload: opts.maxFrameBytes, perMessageDeflate: false });
    this.wss.on('connection', (ws, req) => {
      const address = req.socket.remoteAddress ?? '';
      const open = this.perAddress.get(address) ?? 0;
      if (open >= opts.maxConnectionsPerAddress) {
        ws.close(CloseCodes.TOO_MANY_CONNECTIONS, 'too many connections from this address');
        return;
      }
      this.perAddress.set(address, open + 1);
      const session = new Session(ws, opts.rooms, opts, address);
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
