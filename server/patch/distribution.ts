/**
 * Patches travelling through Redis, so every server sharing a Redis prefix knows every patch.
 *
 *   <prefix>:patch:<sha256>      the signed package (JSON), content-addressed
 *   <prefix>:patches:<game>      list of package ids in version order
 *   <prefix>:patch-announce      pub/sub channel: the id of each new package
 *
 * Every package is verified against this server's trusted keys when it is uploaded, when it is
 * announced, and when a starting server loads the stored ones; a package that fails is refused
 * (upload) or skipped with an error in the log, and changes nothing.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { MoonpatchError } from '../errors/errors.ts';
import type { GameRegistry } from '../sandbox/games.ts';
import { verifyPatch } from './package.ts';
import { bundleGameOffThread } from '../sandbox/off-thread-bundler.ts';
import { buildPatchVersion, type GameVersion } from './versions.ts';

export class PatchDistribution {
  private readonly known = new Set<string>();
  private subscriber: Redis | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly games: GameRegistry,
    private readonly trustedKeys: readonly string[],
    private readonly log: Logger,
  ) {}

  private key(id: string): string {
    return `${this.prefix}:patch:${id}`;
  }

  private listKey(game: string): string {
    return `${this.prefix}:patches:${game}`;
  }

  private get channel(): string {
    return `${this.prefix}:patch-announce`;
  }

  /** Load every stored package (startup), then follow announcements of new ones. */
  async start(): Promise<void> {
    for (const game of this.games.names()) {
      for (const id of await this.redis.lrange(this.listKey(game), 0, -1)) await this.adopt(id);
    }
    this.subscriber = this.redis.duplicate();
    this.subscriber.on('message', (_channel: string, id: string) => void this.adopt(id));
    this.subscriber.on('error', () => {}); // the main connection logs Redis trouble
    await this.subscriber.subscribe(this.channel);
  }

  stop(): void {
    this.subscriber?.disconnect();
  }

  /**
   * Accept a signed patch from the admin API: verify, build, store, announce. Returns the new
   * version. A package already stored returns its version again.
   */
  async upload(signed: unknown): Promise<{ id: string; game: string; version: number; bundle: string }> {
    const { id, pkg } = verifyPatch(signed, this.trustedKeys);
    if (this.known.has(id)) {
      const v = this.games.get(pkg.game).versions.find((x) => x.number === pkg.manifest.version)!;
      return { id, game: pkg.game, version: v.number, bundle: v.bundle.version };
    }
    const version = await this.build(pkg.game, pkg.manifest, pkg.files, id);
    // Stored first, then listed and announced: a server that hears of it can always fetch it.
    await this.redis.set(this.key(id), JSON.stringify(signed));
    await this.redis.rpush(this.listKey(pkg.game), id);
    this.games.addVersion(version);
    this.known.add(id);
    await this.redis.publish(this.channel, id);
    this.log.info({ game: pkg.game, version: version.number, bundle: version.bundle.version, patch: id }, 'patch uploaded');
    return { id, game: pkg.game, version: version.number, bundle: version.bundle.version };
  }

  private async build(game: string, manifest: Parameters<typeof buildPatchVersion>[1], files: Record<string, string>, id: string): Promise<GameVersion> {
    const versions = this.games.get(game).versions;
    const prev = versions[versions.length - 1]!;
    try {
      // Off the main thread: every room on this server ticks on while it builds (otherwise a
      // 35-77 ms block for the arena, on every server of the cluster that hears of the patch).
      return await buildPatchVersion(prev, manifest, new Map(Object.entries(files)), `patch ${id.slice(0, 12)}`, bundleGameOffThread);
    } catch (e) {
      if (e instanceof MoonpatchError) throw e;
      throw new MoonpatchError('BAD_FIELD', (e as Error).message);
    }
  }

  /** A package stored or announced by another server: verify and add it, or log why not. */
  private async adopt(id: string): Promise<void> {
    if (this.known.has(id)) return;
    try {
      const raw = await this.redis.get(this.key(id));
      if (!raw) throw new MoonpatchError('BAD_FIELD', 'announced patch is not stored');
      const { pkg } = verifyPatch(JSON.parse(raw), this.trustedKeys);
      const version = await this.build(pkg.game, pkg.manifest, pkg.files, id);
      this.games.addVersion(version);
      this.known.add(id);
      this.log.info({ game: pkg.game, version: version.number, patch: id }, 'patch adopted from redis');
    } catch (e) {
      this.log.error({ patch: id, err: e }, 'stored patch refused; it is not available on this server');
    }
  }
}
