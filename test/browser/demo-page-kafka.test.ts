import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import type { Page } from 'playwright-core';
import { badgeChanges, launchChromium, openPage, waitForBadge } from '../helpers/browser.ts';
import type { Teardowns } from '../helpers/fixture.ts';
import { kafkaTopics, postJson, requiredKafkaBrokers, startGateway, startReplicaPair, uniqueName, type TestGateway } from '../helpers/gateway.ts';
import { rawProducer } from '../helpers/kafka.ts';
import { until } from '../helpers/sse-client.ts';
import { PROJECT_ROOT_ENV, toolSkipReason } from '../../scripts/test-tools.ts';
import { freePort } from '../helpers/server-process.ts';
import { startHaproxy } from '../helpers/haproxy.ts';

/**
 * The demo page in a real browser (Debian's chromium, driven by playwright-core), against real
 * gateway replicas on a real Kafka. Each test leaves a screenshot in test-artifacts/.
 */

// Written into the project itself, also when npm test runs this file from its compiled copy.
const projectRoot = process.env[PROJECT_ROOT_ENV] ?? fileURLToPath(new URL('../../', import.meta.url));
const artifacts = join(projectRoot, 'test-artifacts');

async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

const DESKTOP = { width: 1100, height: 640 };
const PHONE = { width: 390, height: 844 };

/** The chart's axis labels as shown. */
async function axisLabels(page: Page): Promise<{ prices: string[]; times: string[] }> {
  return {
    prices: await page.locator('#chart .price-tick').allTextContents(),
    times: await page.locator('#chart .time-tick').allTextContents(),
  };
}

/** Nothing sticks out sideways: no horizontal scrolling on a phone. */
function fitsWidth(page: Page): Promise<boolean> {
  return page.evaluate('document.documentElement.scrollWidth <= window.innerWidth');
}

function messageTexts(page: Page): Promise<string[]> {
  return page.locator('#messages li .text').allTextContents();
}

async function waitForText(page: Page, text: string): Promise<void> {
  await page.locator('#messages li .text').getByText(text, { exact: true }).first().waitFor();
}

async function say(page: Page, text: string): Promise<void> {
  await page.fill('#text', text);
  await page.click('#post-form button[type="submit"]');
}


/** A local HAProxy in front of the replicas, set up for SSE as in docker-compose.kafka.yml; stopped when `t` ends. */
async function startBalancer(t: Teardowns, backends: TestGateway[]): Promise<{ url: string }> {
  const port = await freePort();
  const servers = backends.map((gateway, index) => {
    const { hostname, port: backendPort } = new URL(gateway.url);
    // Quick checks, but a check that is merely slow on a loaded machine (tap runs four files at
    // once) must not mark a healthy replica down: two failures, each allowed 2 s, as deploy/ does.
    return `  server replica${index} ${hostname}:${backendPort} check inter 300 fall 2 rise 1`;
  });
  const config = [
    'global',
    '  maxconn 256',
    'defaults',
    '  mode http',
    '  timeout connect 2s',
    '  timeout client 120s',
    '  timeout server 120s',
    '  timeout tunnel 120s',
    '  timeout check 2s',
    // A GET that meets a stopped or closing replica is retried on the next one.
    '  retries 3',
    '  option redispatch 1',
    '  retry-on conn-failure empty-response 503',
    'frontend web',
    `  bind 127.0.0.1:${port}`,
    '  default_backend gateways',
    'backend gateways',
    // Everything goes to the first replica while it is up: the test knows which one to stop.
    '  balance first',
    '  option httpchk GET /readyz',
    ...servers,
    '',
  ].join('\n');
  return startHaproxy(t, config, port);
}

const brokers = requiredKafkaBrokers();
const noChromium = toolSkipReason('chromium');
if (noChromium !== false) {
  // Not a failure: `npm test` installs chromium where it can and says why it could not.
  t.test('the demo page in chromium', { skip: noChromium }, () => {});
} else {
  const browser = await launchChromium(t);

  t.test('the page is served at / with its script and stylesheet', async (t) => {
    const gateway = await startGateway(t);
    for (const [path, type] of [['/', 'text/html'], ['/app.js', 'javascript'], ['/style.css', 'text/css']] as const) {
      const response = await fetch(`${gateway.url}${path}`);
      t.equal(response.status, 200, path);
      t.match(response.headers.get('content-type'), type);
    }
    const missing = await fetch(`${gateway.url}/nope.html`);
    t.equal(missing.status, 404);
    t.match(await missing.json(), { statusCode: 404 }, 'unknown paths still get the JSON 404');
  });

  t.test("two pages on two replicas of one Kafka see each other's messages", async (t) => {
    const [a, b] = await startReplicaPair(t);
    const query = `?room=${uniqueName('room')}&symbol=${uniqueName('SYM')}`;
    const onA = await openPage(t, browser, `${a.url}/${query}`, { viewport: DESKTOP });
    const onB = await openPage(t, browser, `${b.url}/${query}`, { viewport: DESKTOP });
    await onA.fill('#user', 'ann');
    await onB.fill('#user', 'bob');
    await waitForBadge(onA, 'live');
    await waitForBadge(onB, 'live');

    await say(onA, 'hello from replica A');
    await waitForText(onB, 'hello from replica A');
    await say(onB, 'hello from replica B');
    await waitForText(onA, 'hello from replica B');
    await waitForText(onB, 'hello from replica B');
    t.same(await messageTexts(onA), ['hello from replica A', 'hello from replica B']);
    t.same(await messageTexts(onB), ['hello from replica A', 'hello from replica B']);
    t.same(await onA.locator('#messages li').nth(0).locator('button').allTextContents(), ['edit', 'delete'], 'ann may edit and delete her own message');
    t.equal(await onA.locator('#messages li').nth(1).locator('button').count(), 0, "but not bob's");

    onA.once('dialog', (dialog) => void dialog.accept('hello, edited'));
    await onA.locator('#messages li').nth(0).locator('button.edit').click();
    await waitForText(onB, 'hello, edited');
    t.same(await messageTexts(onB), ['hello, edited', 'hello from replica B'], "ann's edit reaches bob's page on the other replica");
    t.same(await onB.locator('#messages li .edited').allTextContents(), ['edited'], 'marked "edited"');
    await onA.locator('#messages li .edited').waitFor();

    await onA.locator('#messages li').nth(0).locator('button.delete').click();
    await onB.locator('#messages li').nth(1).waitFor({ state: 'detached' });
    t.same(await messageTexts(onB), ['hello from replica B'], "ann's delete reaches bob's page on the other replica");
    await screenshot(onA, 'two-replicas-page-a');
    await screenshot(onB, 'two-replicas-page-b');
  });

  t.test('the chart shows history, then live points', async (t) => {
    const topics = kafkaTopics();
    const gateway = await startGateway(t, { kafkaBrokers: brokers, ...topics });
    const symbol = uniqueName('SYM');
    // An upstream service's prices over the last few minutes, with their own timestamps.
    const producer = await rawProducer(t);
    const now = Date.now();
    const past = Array.from({ length: 24 }, (_, i) => ({
      key: symbol,
      value: JSON.stringify({ price: 100 + 10 * Math.sin(i / 3), currency: 'USD' }),
      headers: { 'event-type': 'price_update' },
      timestamp: String(now - 240_000 + i * 10_000),
    }));
    await producer.send(topics.tickerTopic, past);
    await until(
      async () => ((await (await fetch(`${gateway.url}/tickers/${symbol}/history?window=5m`)).json()) as { points: unknown[] }).points.length === 24,
      20_000,
      'the gateway to have the history',
    );

    const page = await openPage(t, browser, `${gateway.url}/?room=${uniqueName('room')}&symbol=${symbol}&window=5m`, { viewport: DESKTOP });
    await page.waitForSelector('#chart[data-points="24"]');
    t.equal(await page.textContent('#currency'), 'USD');
    t.equal(await page.textContent('#last-price'), (100 + 10 * Math.sin(23 / 3)).toLocaleString('en-US', { maximumFractionDigits: 2 }));
    await waitForBadge(page, 'live');
    await screenshot(page, 'chart-history');

    t.equal((await postJson(`${gateway.url}/tickers/${symbol}/prices`, { price: 123.45, currency: 'USD' })).status, 202);
    await page.waitForSelector('#chart[data-points="25"]');
    t.equal(await page.textContent('#last-price'), '123.45', 'the live price');
    const line = await page.getAttribute('#line', 'points');
    t.equal(line?.trim().split(/\s+/).length, 25, 'the line has the history and the live point');
    const desktop = await axisLabels(page);
    t.ok(desktop.prices.length >= 3, `price axis labels: ${desktop.prices.join(' ')}`);
    t.ok(desktop.prices.every((label) => /^[\d,.]+$/.test(label)), 'prices');
    t.ok(desktop.times.length >= 4 && desktop.times.length <= 6, `a time label a minute over 5 minutes: ${desktop.times.join(' ')}`);
    t.ok(desktop.times.every((label) => /^\d{1,2}:\d{2}( [AP]M)?$/.test(label)), 'local times');
    t.notOk(
      await page.evaluate(`(() => {
        const chart = document.getElementById('chart').getBoundingClientRect();
        return [...document.querySelectorAll('#chart .tick')].some((label) => { const box = label.getBoundingClientRect(); return box.right > chart.right || box.left < chart.left; });
      })()`),
      'every label inside the chart',
    );
    await screenshot(page, 'chart-live');

    await page.setViewportSize(PHONE);
    // Redrawn at the new size (the drawing's coordinates are the chart's CSS pixels).
    await page.waitForFunction(`(() => { const chart = document.getElementById('chart'); return chart.getAttribute('viewBox').split(' ')[2] === String(chart.clientWidth); })()`);
    t.ok(await fitsWidth(page), 'at phone width nothing scrolls sideways');
    const phone = await axisLabels(page);
    t.ok(phone.prices.length >= 3 && phone.times.length >= 2, `the axes at phone width: ${phone.prices.join(' ')} / ${phone.times.join(' ')}`);
    const overlap = await page.evaluate(`(() => {
      const chart = document.getElementById('chart').getBoundingClientRect();
      const boxes = [...document.querySelectorAll('#chart .time-tick')].map((label) => label.getBoundingClientRect());
      return boxes.some((box, i) => (i > 0 && box.left < boxes[i - 1].right + 4) || box.right > chart.right || box.left < chart.left);
    })()`);
    t.notOk(overlap, 'time labels stay apart and inside the chart at phone width');
    await screenshot(page, 'chart-phone');
    await page.setViewportSize(DESKTOP);

    const room = new URL(page.url()).searchParams.get('room')!;
    for (const [user, text] of [['ann', 'BTC looks lively today'], ['bob', 'that spike at the end!']] as const) {
      t.equal((await postJson(`${gateway.url}/rooms/${room}/messages`, { user, text })).status, 202);
      await waitForText(page, text);
    }
    await screenshot(page, 'overview');
    // The README's picture, refreshed on request: UPDATE_SCREENSHOT=1 npm test -- test/browser/demo-page-kafka.test.ts
    if (process.env.UPDATE_SCREENSHOT === '1') await page.screenshot({ path: join(projectRoot, 'docs', 'screenshot.png') });
  });

  t.test('a page opened on a room shows its recent history, then stays live', async (t) => {
    // Pages of two events: the history comes in several replay pages on the page's one stream.
    const gateway = await startGateway(t, { kafkaBrokers: brokers, ...kafkaTopics(), resumeMaxEvents: 2, sseRetryMs: 300 });
    const room = uniqueName('room');
    const earlier = ['one', 'two', 'three', 'four', 'five'];
    for (const text of earlier) t.equal((await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'ann', text })).status, 202);
    const deleted = await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'ann', text: 'oops' });
    t.equal((await fetch(`${gateway.url}/rooms/${room}/messages/${deleted.body.id}`, { method: 'DELETE' })).status, 202);

    const page = await openPage(t, browser, `${gateway.url}/?room=${room}&symbol=${uniqueName('SYM')}`, { viewport: PHONE });
    await waitForText(page, 'five');
    await page.waitForFunction(`window.badgeChanges.at(-1)?.state === 'live' && document.querySelectorAll('#messages li').length === 5`);
    t.same(await messageTexts(page), earlier, 'the history on load, in order, once, without the deleted message');
    t.ok(await fitsWidth(page), 'at phone width nothing scrolls sideways');
    await screenshot(page, 'history-phone');

    t.equal((await badgeChanges(page)).at(-1)!.state, 'live');

    t.equal((await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'bob', text: 'six' })).status, 202);
    await waitForText(page, 'six');
    t.same(await messageTexts(page), [...earlier, 'six'], 'then live');
  });

  t.test(
    'a page whose replica is stopped reconnects to the other and shows every message published meanwhile exactly once',
    { skip: toolSkipReason('haproxy') },
    async (t) => {
      const topics = kafkaTopics();
      const a = await startGateway(t, { kafkaBrokers: brokers, ...topics, sseRetryMs: 2000 });
      const b = await startGateway(t, { kafkaBrokers: brokers, ...topics, sseRetryMs: 2000 });
      const balancer = await startBalancer(t, [a, b]);

      const room = uniqueName('room');
      const page = await openPage(t, browser, `${balancer.url}/?room=${room}&symbol=${uniqueName('SYM')}`, { viewport: DESKTOP });
      await waitForBadge(page, 'live');
      // `balance first` sends it to the first replica HAProxy saw healthy: usually A, B when A's
      // first check came late. The one serving the page is stopped; the other takes over.
      const [serving, other] = a.app.openStreamCount() > 0 ? [a, b] : [b, a];
      t.ok(serving.app.openStreamCount() > 0 && other.app.openStreamCount() === 0, 'the page streams from one replica');
      await say(page, 'before');
      await waitForText(page, 'before');

      const servingClosed = serving.close();
      await waitForBadge(page, 'reconnecting');
      const meanwhile = Array.from({ length: 5 }, (_, i) => `meanwhile ${i}`);
      for (const text of meanwhile) {
        t.equal((await postJson(`${other.url}/rooms/${room}/messages`, { user: 'bob', text })).status, 202);
      }
      t.equal(await page.getAttribute('#badge', 'data-state'), 'reconnecting', 'all were published while the page was away');
      await servingClosed;

      await waitForBadge(page, 'resumed', 'live');
      t.ok(other.app.openStreamCount() > 0, 'the page now streams from the other replica');
      await say(page, 'after');
      await waitForText(page, 'after');
      await screenshot(page, 'failover');
      t.same(await messageTexts(page), ['before', ...meanwhile, 'after'], 'every message, once, in order');

      // The badge says "resumed" for at least 3 s after the resume, then "live".
      await waitForBadge(page, 'live');
      const changes = await badgeChanges(page);
      const lastResumed = changes.findLastIndex((change) => change.state === 'resumed');
      t.ok(lastResumed > 0, `the page resumed: ${changes.map((change) => change.state).join(' → ')}`);
      const shown = changes[lastResumed + 1]!.at - changes[lastResumed]!.at;
      t.ok(shown >= 2990, `'resumed' stayed ${Math.round(shown)} ms`);
    },
  );
}
