/** Reading a game's script files from disk. */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

const SOURCE_FILE = /\.(ts|js|mts|mjs)$/;

/** Every script file of a game folder, relative path -> text (recursively, no node_modules). */
export async function readGameFiles(dir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(path.join(dir, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules' && !entry.name.startsWith('.')) await walk(p);
      } else if (SOURCE_FILE.test(entry.name) && !entry.name.endsWith('.d.ts')) {
        files.set(p, await readFile(path.join(dir, p), 'utf8'));
      }
    }
  };
  await walk('');
  return files;
}
