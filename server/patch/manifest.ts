/**
 * A patch's manifest (`patch.json`): its version, schema, description and the files it deletes.
 * Its own module, apart from versions.ts, so that reading one (the command line signing a
 * patch, a server checking an upload's signature) does not load the bundler and TypeScript.
 */
import { ConfigError } from '../errors/errors.ts';

export interface PatchManifest {
  version: number;
  schema: number;
  description: string;
  /** Files of the previous version this patch removes. */
  delete?: string[];
}

export function parsePatchManifest(raw: unknown, where: string): PatchManifest {
  const r = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  const int = (f: string) => {
    const v = r[f];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new ConfigError(`${where}: ${f}`, 'must be a positive integer');
    return v;
  };
  const version = int('version');
  const schema = int('schema');
  const description = typeof r.description === 'string' ? r.description : '';
  const del = r.delete;
  if (del !== undefined && (!Array.isArray(del) || del.some((d) => typeof d !== 'string'))) {
    throw new ConfigError(`${where}: delete`, 'must be a list of file paths');
  }
  return { version, schema, description, delete: del as string[] | undefined };
}

