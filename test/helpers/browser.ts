/**
 * A real headless Chromium (Debian's, driven by playwright-core) with one page whose script
 * errors and logged errors are collected, for the browser tests.
 */
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** The flags this sandbox needs; without the network ones Chromium retries closed hosts. */
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export async function openBrowserPage(): Promise<{ browser: Browser; page: Page; pageErrors: string[] }> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  // Errors the page logs or the browser logs for it (a resource that 404s, a refused socket).
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(`console: ${m.text()}${m.location().url ? ` (${m.location().url})` : ''}`);
  });
  return { browser, page, pageErrors };
}
