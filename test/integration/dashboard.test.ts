/**
 * The live ops dashboard (/dashboard) in a real headless browser against a real in-process
 * server: the latency chart fills with points, the rooms table lists a room a client opened, and
 * a patch pushed during the test shows as a chart marker and in the events list; a second server
 * on the same Redis shows with its rooms and its own latency line.
 */
import { randomBytes } from 'node:crypto';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MoonpatchClient } from '../../client/client.ts';
import { EXPEL_AFTER_STOPS } from '../../server/room/stopped-ticks.ts';
import { openBrowserPage } from '../helpers/browser.ts';
import { FIXTURE_GAMES, FIXTURE_PATCHES, startTestServer, testClient, waitFor } from '../helpers/server.ts';

const WAIT = { timeout: 30_000 };

describe('ops dashboard in a headless browser', () => {
  let server: Awaited<ReturnType<typeof startTestServer>>;
  let browser: Browser;
  let page: Page;
  let client: MoonpatchClient | undefined;
  const room = `dash-${randomBytes(4).toString('hex')}`;
  let pageErrors: string[] = [];

  beforeAll(async () => {
    server = await startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe' });
    client = testClient(server.url, { room, game: 'probe', name: 'x' });
    await client.connect();
    ({ browser, page, pageErrors } = await openBrowserPage());
  });

  afterAll(async () => {
    client?.close();
    await browser?.close();
    await server?.close();
  });

  it('serves the data as JSON', async () => {
    const res = await fetch(`http://127.0.0.1:${server.port}/dashboard/data`);
    expect(res.status).toBe(200);
    const data = (await res.json()) as { now: number; series: unknown[]; events: unknown[]; rooms: { room: string }[] };
    expect(typeof data.now).toBe('number');
    expect(Array.isArray(data.series)).toBe(true);
    expect(Array.isArray(data.events)).toBe(true);
    expect(data.rooms.map((r) => r.room)).toContain(room);
  });

  it("lists the rooms of another server on the same Redis, named by that server's node id, and charts its latency", async () => {
    const other = await startTestServer({ scriptsDir: FIXTURE_GAMES, patchesDir: FIXTURE_PATCHES, defaultGame: 'probe', redisPrefix: server.prefix, nodeId: 'dash-other', takeover: false });
    try {
      const elsewhere = `${room}-b`;
      await other.rooms.open(elsewhere, 'probe');
      type Data = { node: string; rooms: { room: string; node: string }[]; servers: { node: string; series: { t: number; p99: number; ticks: number }[] }[] };
      let data: Data | undefined;
      await waitFor(async () => {
        data = (await (await fetch(`http://127.0.0.1:${server.port}/dashboard/data`)).json()) as Data;
        return data.rooms.some((r) => r.room === elsewhere && r.node === 'dash-other') && data.servers.some((s) => s.node === 'dash-other' && s.series.length > 0);
      }, "the other server's room and latency on this dashboard");
      // Its latency is its own: seconds in which it committed ticks, as its beats reported them.
      const theirs = data!.servers.find((s) => s.node === 'dash-other')!;
      expect(theirs.series.every((p) => p.ticks > 0 && p.p99 > 0)).toBe(true);
      expect(data!.servers.map((s) => s.node)).not.toContain(data!.node);

      await page.goto(`http://127.0.0.1:${server.port}/dashboard`);
      await page.waitForFunction(() => Number(document.body.dataset.servers) >= 1, undefined, WAIT);
      // Its lateness too, from its beats.
      await page.waitForFunction(() => Number(document.body.dataset.serversLate) >= 1, undefined, WAIT);
      expect(await page.locator('#servers-legend').textContent()).toContain('dash-other');
    } finally {
      await other.close();
    }
  });

  it('charts tick latency, lists the room and marks a patch pushed live', async () => {
    const res = await page.goto(`http://127.0.0.1:${server.port}/dashboard`);
    expect(res?.status()).toBe(200);
    await page.waitForFunction(() => Number(document.body.dataset.points) > 0, undefined, WAIT);
    await page.waitForFunction((r) => document.querySelector(`#rooms tr[data-room="${r}"]`) !== null, room, WAIT);
    // By its id, not its text: the first test's other server ran a room whose id starts with this one's.
    const row = page.locator(`#rooms tr[data-room="${room}"]`);
    expect(await row.textContent()).toContain('probe');
    expect(await row.textContent()).toContain(`:${server.port}`); // the server running it (node id)
    expect(await row.locator('td').nth(8).textContent()).toMatch(/^\d+\.\d%$/); // its CPU, as a share of a core

    expect((await server.rooms.applyVersion(room, 2)).ok).toBe(true);
    await page.waitForFunction(() => Number(document.body.dataset.markers) >= 1, undefined, WAIT);
    await page.waitForFunction(() => document.getElementById('events')!.textContent!.includes('patch-applied'), undefined, WAIT);
    await page.waitForFunction((r) => document.querySelector(`#rooms tr[data-room="${r}"]`)?.textContent?.includes('v2') ?? false, room, WAIT);
    // The event names the version by its number beside its hash, as the command line does.
    const hash = server.rooms.get(room)!.version;
    expect(await page.locator('#events li', { hasText: 'patch-applied' }).first().textContent()).toContain(`${room} v2 ${hash}`);
    await page.waitForFunction((r) => document.querySelector(`#rooms tr[data-room="${r}"]`)?.textContent?.includes('applied') ?? false, room, WAIT);
    expect(await row.locator('td').nth(9).textContent()).toMatch(new RegExp(`^applied → v2 ${hash} @\\d+$`));

    // The canvas holds more than its background: lines, grid, labels and the marker.
    const drawn = await page.evaluate(() => {
      const canvas = document.getElementById('chart') as HTMLCanvasElement;
      const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
      const [r0, g0, b0] = [data[0]!, data[1]!, data[2]!];
      let other = 0;
      let green = 0;
      for (let i = 0; i < data.length; i += 4) {
        const [r, g, b] = [data[i]!, data[i + 1]!, data[i + 2]!];
        if (r !== r0 || g !== g0 || b !== b0) other++;
        if (g > 150 && r < 120 && b < 160) green++;
      }
      return { other, green };
    });
    expect(drawn.other).toBeGreaterThan(500);
    expect(drawn.green).toBeGreaterThan(10);

    // Inputs the scripts refuse (a hook that throws) show as one counted entry, not one each.
    for (let i = 0; i < 3; i++) client!.send({ op: 'throw' });
    await page.waitForFunction(() => document.getElementById('events')!.textContent!.includes('3 events refused by the scripts: SCRIPT_ERROR'), undefined, WAIT);
    expect(await page.locator('#events li', { hasText: 'refused by the scripts' }).count()).toBe(1);

    // A tick stopped in a player's input hook names them; a third one expels them. (In a room of
    // its own: the first one is on watch after its patch, where nobody is charged.)
    const loopRoom = `${room}-loops`;
    const looper = testClient(server.url, { room: loopRoom, game: 'probe', name: 'looper', autoReconnect: false });
    await looper.connect();
    const refused = new Set<number>();
    looper.on('error', (e) => e.seq !== undefined && refused.add(e.seq));
    for (let i = 0; i < EXPEL_AFTER_STOPS; i++) {
      const seq = looper.send({ op: 'loop' });
      await page.waitForFunction((s) => document.getElementById('events')!.textContent!.includes(s), `stopped in player ${looper.playerId}'s input ${seq}`, WAIT);
      if (i < EXPEL_AFTER_STOPS - 1) {
        await waitFor(() => refused.has(seq), 'the loop refused');
        const t = server.rooms.get(loopRoom)!.tick;
        await waitFor(() => server.rooms.get(loopRoom)!.tick > t + 1, 'a tick committed in between');
      }
    }
    const expelled = page.locator('#events li', { hasText: 'player-expelled' });
    await expelled.first().waitFor(WAIT);
    expect(await expelled.first().textContent()).toMatch(/player-expelled .* — your inputs stopped 3 ticks in 60 s \(CPU_BUDGET_EXCEEDED\)/);
    expect(await page.locator('#events li', { hasText: /tick undefined/ }).count()).toBe(0);

    await page.waitForTimeout(1200); // one more poll so the screenshot shows a few seconds of data
    await page.screenshot({ path: '/tmp/moonpatch-dashboard.png' });
    expect(pageErrors).toEqual([]);
  });
});
