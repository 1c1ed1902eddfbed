/**
 * A client's copy of a room's world, rebuilt from snapshot and delta frames.
 *
 * Records (see docs/state.md): key `table` holds a table's value, or `{}` when the table is an
 * object table whose entries are records `table/entry`. Applying a frame: deletions first,
 * then table-level sets, then entry-level sets, so a frame describes a consistent final state
 * whatever order its keys came in. Last, field patches are assigned onto records the view
 * already has (a patch never names a record the same frame sets or deletes).
 */
import type { Value } from '../server/protocol/messages.ts';

export type WorldTree = Record<string, Value>;

export class WorldView {
  /** Tables by name: the world as the scripts see it. */
  world: WorldTree = {};
  tick = 0;
  version = '';

  applySnapshot(tick: number, version: string, set: Record<string, Value>): void {
    this.world = {};
    this.applySets(set);
    this.tick = tick;
    this.version = version;
  }

  applyDelta(tick: number, version: string, set: Record<string, Value>, del: string[], patch?: Record<string, Record<string, Value>>): void {
    for (const key of del) {
      const slash = key.indexOf('/');
      if (slash < 0) delete this.world[key];
      else {
        const table = this.world[key.slice(0, slash)];
        if (isObjectTable(table)) delete table[key.slice(slash + 1)];
      }
    }
    this.applySets(set);
    if (patch) this.applyPatches(patch);
    this.tick = tick;
    this.version = version;
  }

  private applyPatches(patch: Record<string, Record<string, Value>>): void {
    for (const key of Object.keys(patch)) {
      const slash = key.indexOf('/');
      const table = slash < 0 ? this.world : this.world[key.slice(0, slash)];
      if (!isObjectTable(table)) continue;
      const record = table[slash < 0 ? key : key.slice(slash + 1)];
      // The server patches only records every client in step already has; a view that lacks
      // one missed a frame, and the next snapshot puts it right.
      if (!isObjectTable(record)) continue;
      const fields = patch[key]!;
      for (const f of Object.keys(fields)) if (f !== '__proto__') record[f] = fields[f]!;
    }
  }

  private applySets(set: Record<string, Value>): void {
    const entries: [string, Value][] = [];
    for (const key of Object.keys(set)) {
      const slash = key.indexOf('/');
      if (slash >= 0) {
        entries.push([key, set[key]!]);
        continue;
      }
      const v = set[key]!;
      const isMarker = isObjectTable(v) && Object.keys(v).length === 0;
      // The marker of an object table keeps the entries the client already has.
      if (isMarker && isObjectTable(this.world[key])) continue;
      this.world[key] = isMarker ? {} : v;
    }
    for (const [key, v] of entries) {
      const slash = key.indexOf('/');
      const name = key.slice(0, slash);
      let table = this.world[name];
      if (!isObjectTable(table)) {
        table = {};
        this.world[name] = table;
      }
      table[key.slice(slash + 1)] = v;
    }
  }
}

function isObjectTable(v: unknown): v is Record<string, Value> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
