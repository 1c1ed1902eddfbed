/**
 * The play page in a real headless browser (Debian's chromium driven by playwright-core)
 * against a real in-process server: the page joins, draws, sends keyboard input the server
 * acts on, and sees a second player who joined with the Node client.
 */
import { randomBytes } from 'node:crypto';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MoonpatchClient } from '../../client/client.ts';
import { openBrowserPage } from '../helpers/browser.ts';
import { startTestServer, testClient } from '../helpers/server.ts';

const WAIT = { timeout: 30_000 };

/** What the page exposes on window (see web/play.ts). */
type PageWindow = typeof globalThis & {
  moonpatch: { client: { playerId: string; world: { players?: Record<string, { x: number; y: number }> } } | null; ready: boolean };
};

describe('play page in a headless browser', () => {
  let server: Awaited<ReturnType<typeof startTestServer>>;
  let browser: Browser;
  let page: Page;
  let bot: MoonpatchClient | undefined;
  const room = `play-${randomBytes(4).toString('hex')}`;
  let pageErrors: string[] = [];

  beforeAll(async () => {
    server = await startTestServer();
    ({ browser, page, pageErrors } = await openBrowserPage());
  });

  afterAll(async () => {
    bot?.leave();
    await browser?.close();
    await server?.close();
  });

  /** The page's own player's x, as the page's client last saw it. */
  const myX = () =>
    page.evaluate(() => {
      const c = (window as PageWindow).moonpatch.client!;
      return c.world.players![c.playerId]!.x;
    });

  it('joins, draws the arena and moves the player with the keyboard', async () => {
    const res = await page.goto(`http://127.0.0.1:${server.port}/?room=${room}&name=tester`);
    expect(res?.status()).toBe(200);
    await page.click('#join');
    await page.waitForSelector('body[data-state=joined]', WAIT);
    expect(await page.evaluate(() => (window as PageWindow).moonpatch.ready)).toBe(true);
    await page.waitForFunction(() => {
      const c = (window as PageWindow).moonpatch.client;
      return c !== null && c.world.players?.[c.playerId] !== undefined;
    }, undefined, WAIT);
    await page.waitForFunction(() => Number(document.getElementById('tick')!.textContent) > 0, undefined, WAIT);
    expect(await page.textContent('#version')).not.toBe('–');

    // The canvas shows more than the empty arena (dark floor, grid and border, all with every
    // channel below 0x70): bright pixels are items, players and names.
    await page.waitForFunction(() => {
      const canvas = document.getElementById('arena') as HTMLCanvasElement;
      const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
      let bright = 0;
      for (let i = 0; i < data.length; i += 4) if (Math.max(data[i]!, data[i + 1]!, data[i + 2]!) > 150) bright++;
      return bright > 200;
    }, undefined, WAIT);

    // Spawn points are random: if there is not much room to the right, walk left first.
    if ((await myX()) > 700) {
      await page.keyboard.down('a');
      await page.waitForFunction(() => {
        const c = (window as PageWindow).moonpatch.client!;
        return c.world.players![c.playerId]!.x < 600;
      }, undefined, WAIT);
      await page.keyboard.up('a');
    }
    const before = await myX();
    await page.keyboard.down('d');
    await page.waitForTimeout(1000);
    await page.keyboard.up('d');
    await page.waitForFunction((x0) => {
      const c = (window as PageWindow).moonpatch.client!;
      return c.world.players![c.playerId]!.x > x0 + 20;
    }, before, WAIT);
    expect(await myX()).toBeGreaterThan(before);
  });

  it('shows a second player who joined with the Node client', async () => {
    bot = testClient(server.url, { room, game: 'arena', name: 'bot' });
    await bot.connect();
    await page.waitForFunction(() => Object.keys((window as PageWindow).moonpatch.client!.world.players ?? {}).length === 2, undefined, WAIT);
    await page.waitForFunction(() => document.getElementById('players')!.textContent === '2', undefined, WAIT);
    expect(await page.locator('#scores li').count()).toBe(2);
    expect(await page.textContent('#scores')).toContain('bot');
    await page.waitForTimeout(300); // let the interpolation settle for the screenshot
    await page.screenshot({ path: '/tmp/moonpatch-play.png' });
    expect(pageErrors).toEqual([]);
  });
});
