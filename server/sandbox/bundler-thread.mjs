// The thread that bundles games for server/sandbox/off-thread-bundler.ts (which says why).
// Plain JavaScript because a worker thread does not get the TypeScript loader the server runs
// under: it registers tsx itself, then loads the real bundler (bundler.ts), so what it builds
// is byte for byte what the main thread would build.
import { parentPort } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { bundleGame } = await import('./bundler.ts');
// Loaded (~1.5 s here): builds are sent from now on, each timed from when it is sent.
parentPort.postMessage({ ready: true });

parentPort.on('message', async (m) => {
  try {
    const bundle = await bundleGame({ name: m.name, entry: m.entry, files: new Map(m.files) });
    parentPort.postMessage({ id: m.id, bundle });
  } catch (e) {
    // A BuildError (the designer's mistake) is rebuilt on the main thread from its parts.
    const build = e && e.code === 'BUILD_FAILED' && Array.isArray(e.details);
    parentPort.postMessage({ id: m.id, error: { build, summary: build ? e.summary : String(e?.message ?? e), details: build ? e.details : [] } });
  }
});
