/**
 * Patches travelling through Redis, so every server sharing a Redis prefix knows every patch.
 *
 *   <prefix>:patch:<sha256>      the signed package (JSON), content-addressed
 *   <prefix>:patches:<game>      list of package ids in version order
 *   <prefix>:patch-versions:<game>  hash: version number -> the package id that holds it
 *   <prefix>:patch-announce      pub/sub channel: the id of each new package
 *
 * Every package is verified against this server's trusted keys when it is uploaded, when it is
 * announced, and when a starting server loads the stored ones; a package that fails is refused
 * (upload) or skipped with an error in the log, and changes nothing.
 *
 * A version number is claimed in Redis (HSETNX) before a package is listed or announced, so two
 * servers given different patches with the same number at the same moment cannot both keep
 * theirs: the first claim wins and the other upload is refused as PATCH_VERSION_TAKEN. Within
 * one server, uploads and adoptions run one at a time (`serially`), so a version is added once.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { MoonpatchError } from '../errors/errors.ts';
import type { GameRegistry } from '../sandbox/games.ts';
import { verifyPatch, type PatchPackage } from './package.ts';
import { bundleGameOffThread } from '../sandbox/off-thread-bundler.ts';
import { buildPatchVersion, type GameVersion } from './versions.ts';

export class PatchDistribution {
  private readonly known = new Set<string>();
  private subscriber: Redis | null = null;
  /** The tail of this server's uploads and adoptions; each runs after the one before it. */
  private queue: Promise<unknown> = Promise.resolve();

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

  private claimsKey(game: string): string {
    return `${this.prefix}:patch-versions:${game}`;
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
    this.subscriber.on('message', (_channel: string, id: string) => void this.serially(() => this.adopt(id)));
    this.subscriber.on('error', () => {}); // the main connection logs Redis trouble
    await this.subscriber.subscribe(this.channel);
  }

  stop(): void {
    this.subscriber?.disconnect();
  }

  /**
   * Run after every upload and adoption already started on this server. Builds are awaited, so
   * without this two uploads of the same number would both find it free, and an announcement
   * heard mid-upload would build the same package twice.
   */
  private serially<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => {});
    return run;
  }

  /**
   * Accept a signed patch from the admin API: verify, build, store, announce. Returns the new
   * version. A package already stored returns its version again; so does a package that builds
   * to a version this server already has (the same patch loaded from its patches folder).
   */
  async upload(signed: unknown): Promise<{ id: string; game: string; version: number; bundle: string }> {
    const { id, pkg } = verifyPatch(signed, this.trustedKeys);
    return this.serially(async () => {
      if (this.known.has(id)) {
        const v = this.games.version(pkg.game, pkg.manifest.version);
        return { id, game: pkg.game, version: v.number, bundle: v.bundle.version };
      }
      const { version, loaded } = await this.build(pkg.game, pkg.manifest, pkg.files, id);
      // Stored first, then claimed, listed and announced: a server that hears of it can always
      // fetch it. Also when this server loaded it from disk: a server without that folder needs it.
      await this.redis.set(this.key(id), JSON.stringify(signed));
      const holder = await this.claim(pkg.game, version.number, id);
      if (holder !== id) await this.refuseUnlessSameBuild(pkg, version, holder);
      if (!loaded) this.games.addVersion(version);
      this.known.add(id);
      if (holder === id) await this.redis.publish(this.channel, id);
      this.log.info({ game: pkg.game, version: version.number, bundle: version.bundle.version, patch: id, alreadyLoaded: loaded }, 'patch uploaded');
      return { id, game: pkg.game, version: version.number, bundle: version.bundle.version };
    });
  }

  /**
   * Claim version `number` of `game` for package `id` and list it; answers the id that holds the
   * number, which is `id` unless another package claimed it first. Claiming again with the
   * holder's own id lists it if a crash came between its claim and its listing.
   */
  private async claim(game: string, number: number, id: string): Promise<string> {
    if ((await this.redis.hsetnx(this.claimsKey(game), String(number), id)) === 0) {
      const holder = await this.redis.hget(this.claimsKey(game), String(number));
      if (holder !== id) return holder!;
      if ((await this.redis.lpos(this.listKey(game), id)) !== null) return id;
    }
    await this.redis.rpush(this.listKey(game), id);
    return id;
  }

  /**
   * Another package claimed this number first (another server's upload, or one this server has
   * not adopted yet). The same files and schema build the same version, so that is not a
   * conflict: the version is kept, and the holder's announcement finds it known. Anything else
   * is PATCH_VERSION_TAKEN; this package stays stored but unlisted, which no server loads.
   */
  private async refuseUnlessSameBuild(ours: PatchPackage, version: GameVersion, holder: string): Promise<void> {
    const game = ours.game;
    const theirs = await this.storedPackage(holder).catch(() => null);
    if (theirs && sameBuildInputs(theirs, ours)) {
      this.known.add(holder);
      return;
    }
    const last = this.games.get(game).versions.at(-1)!.number;
    throw new MoonpatchError(
      'PATCH_VERSION_TAKEN',
      `another patch took ${game} v${version.number} first (patch ${holder.slice(0, 12)}${theirs ? `: ${theirs.manifest.description}` : ''}), and this one builds to another version; give it version ${Math.max(last, version.number) + 1}`,
    );
  }

  /**
   * Build a package on top of the version before it. When the game already has a version with
   * its number (most often the same patch, loaded from this server's patches folder), that
   * version is the answer if the build is the same (`loaded`), and PATCH_VERSION_TAKEN if not:
   * two different builds must never share a number, since rooms and pins name versions by it.
   */
  private async build(game: string, manifest: Parameters<typeof buildPatchVersion>[1], files: Record<string, string>, id: string): Promise<{ version: GameVersion; loaded: boolean }> {
    const versions = this.games.get(game).versions;
    const last = versions[versions.length - 1]!;
    const taken = versions.find((v) => v.number === manifest.version);
    const prev = (taken && versions.find((v) => v.number === manifest.version - 1)) || last;
    let built: GameVersion;
    try {
      // Off the main thread: every room on this server ticks on while it builds (otherwise a
      // 35-77 ms block for the arena, on every server of the cluster that hears of the patch).
      built = await buildPatchVersion(prev, manifest, new Map(Object.entries(files)), `patch ${id.slice(0, 12)}`, bundleGameOffThread);
    } catch (e) {
      if (e instanceof MoonpatchError) throw e;
      throw new MoonpatchError('BAD_FIELD', (e as Error).message);
    }
    if (!taken) return { version: built, loaded: false };
    if (built.bundle.version === taken.bundle.version && built.schema === taken.schema) return { version: taken, loaded: true };
    throw new MoonpatchError(
      'PATCH_VERSION_TAKEN',
      `${game} already has a v${taken.number} (schema ${taken.schema}, build ${taken.bundle.version}: ${taken.description}) and this patch builds to another (schema ${built.schema}, build ${built.bundle.version}); give it version ${last.number + 1}`,
    );
  }

  /** The stored package `id`, verified; throws when it is not stored, not JSON or not trusted. */
  private async storedPackage(id: string): Promise<PatchPackage> {
    const raw = await this.redis.get(this.key(id));
    if (!raw) throw new MoonpatchError('BAD_FIELD', `patch ${id.slice(0, 12)} is not stored`);
    return verifyPatch(JSON.parse(raw), this.trustedKeys).pkg;
  }

  /** A package stored or announced by another server: verify and add it, or log why not. */
  private async adopt(id: string): Promise<void> {
    if (this.known.has(id)) return;
    try {
      const pkg = await this.storedPackage(id);
      const { version, loaded } = await this.build(pkg.game, pkg.manifest, pkg.files, id);
      if (!loaded) this.games.addVersion(version);
      this.known.add(id);
      this.log.info({ game: pkg.game, version: version.number, patch: id, alreadyLoaded: loaded }, loaded ? 'stored patch is a version this server already has (the same build)' : 'patch adopted from redis');
    } catch (e) {
      this.log.error({ patch: id, err: e }, 'stored patch refused; it is not available on this server');
    }
  }
}

/**
 * Two packages of the same game and version number (they claimed the same one) that differ at
 * most in their description build the same version.
 */
function sameBuildInputs(a: PatchPackage, b: PatchPackage): boolean {
  const names = Object.keys(a.files);
  const deleted = (p: PatchPackage) => JSON.stringify([...(p.manifest.delete ?? [])].sort());
  return (
    a.manifest.schema === b.manifest.schema &&
    deleted(a) === deleted(b) &&
    names.length === Object.keys(b.files).length &&
    names.every((n) => b.files[n] === a.files[n])
  );
}
