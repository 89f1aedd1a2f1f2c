import { chromium, type Browser, type Page } from 'playwright-core';
import type { Teardowns } from './fixture.ts';

/** Debian's chromium (installed by `npm test`, scripts/test-tools.ts); a browser is never downloaded. */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * How long a page may take to show what a test waits for (ms). Generous on purpose: on a
 * 2-core machine running the broker, the gateways, HAProxy and four other test files, a page
 * that opens streams through a balancer took more than 20 s to show "live" in full runs,
 * although nothing was wrong. A page that never gets there still fails, with what it showed.
 */
export const PAGE_TIMEOUT_MS = 45_000;

/** A headless chromium that reaches nothing but the pages it is sent to, closed when `t` ends. */
export async function launchChromium(t: Teardowns): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.teardown(() => browser.close());
  return browser;
}

/**
 * A page of `browser` at `url`, closed when `t` ends, that records every change of the demo
 * page's connection badge (`#badge[data-state]`) with its time, for `waitForBadge` to report.
 * `beforeLoad` is browser-side script run before the page's own (e.g. to set localStorage).
 */
export async function openPage(
  t: Teardowns,
  browser: Browser,
  url: string,
  options: { viewport?: { width: number; height: number }; beforeLoad?: string } = {},
): Promise<Page> {
  const page = await browser.newPage({ ...(options.viewport ? { viewport: options.viewport } : {}), locale: 'en-US' });
  t.teardown(() => page.close());
  page.setDefaultTimeout(PAGE_TIMEOUT_MS);
  // (Browser-side code as strings: the tests are type-checked without the DOM library.)
  await page.addInitScript(`
    ${options.beforeLoad ?? ''}
    window.badgeChanges = [];
    document.addEventListener('DOMContentLoaded', () => {
      const badge = document.getElementById('badge');
      if (!badge) return;
      const record = () => {
        if (window.badgeChanges.at(-1)?.state !== badge.dataset.state) window.badgeChanges.push({ state: badge.dataset.state, at: performance.now() });
      };
      record();
      new MutationObserver(record).observe(badge, { attributes: true, attributeFilter: ['data-state'] });
    });
  `);
  await page.goto(url);
  return page;
}

/** The badge's states so far, each with its time (ms since the page started). */
export function badgeChanges(page: Page): Promise<Array<{ state: string; at: number }>> {
  return page.evaluate('window.badgeChanges');
}

/**
 * Resolves when the page's badge shows `state` (one of `selectors`' states: "live" means every
 * stream of the page is open). Fails after PAGE_TIMEOUT_MS with every state the badge showed
 * meanwhile, which says which stream stalled and how (connecting, disconnected…).
 */
export async function waitForBadge(page: Page, ...states: string[]): Promise<void> {
  try {
    await page.waitForSelector(states.map((state) => `#badge[data-state="${state}"]`).join(', '));
  } catch (err) {
    const seen = (await badgeChanges(page).catch(() => [])).map((change) => `${change.state}@${Math.round(change.at)}`);
    throw new Error(`the badge never said "${states.join('" or "')}"; it said ${seen.join(' → ')}`, { cause: err });
  }
}
