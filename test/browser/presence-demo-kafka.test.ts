import t from 'tap';
import type { Page } from 'playwright-core';
import { launchChromium, openPage } from '../helpers/browser.ts';
import { startReplicaPair, uniqueName } from '../helpers/gateway.ts';
import { toolSkipReason } from '../../scripts/test-tools.ts';

/** The demo page shows who is in the room (README, "Presence"), in chromium, across two replicas on Kafka. */

const noChromium = toolSkipReason('chromium');

async function presence(page: Page): Promise<{ count: string; names: string[] }> {
  return { count: (await page.locator('#presence-count').textContent()) ?? '', names: (await page.locator('#presence-list li').allTextContents()).sort() };
}

if (noChromium !== false) {
  t.test('the demo page shows presence', { skip: noChromium }, () => {});
} else {
  const browser = await launchChromium(t);

  t.test('two pages on two replicas list each other as in the room, and a page that leaves drops off', async (t) => {
    const [a, b] = await startReplicaPair(t, { presence: { rooms: true, intervalMs: 100, crowdStreams: 100, crowdIntervalMs: 500, restateMs: 1000, leaveGraceMs: 500, topic: null } });
    const room = uniqueName('room');
    const open = (url: string, user: string): Promise<Page> => openPage(t, browser, `${url}/?room=${room}`, { beforeLoad: `localStorage.setItem('user', ${JSON.stringify(user)})` });
    const ann = await open(a.url, 'Ann');
    const bob = await open(b.url, 'Bob');
    for (const page of [ann, bob]) {
      await page.waitForFunction(`document.querySelectorAll('#presence-list li').length === 2`);
      t.same((await presence(page)).names, ['Ann', 'Bob']);
      t.match((await presence(page)).count, /^2 here/);
    }
    await bob.close();
    await ann.waitForFunction(`document.querySelectorAll('#presence-list li').length === 1`);
    t.same((await presence(ann)).names, ['Ann'], 'Bob left');
  });
}
