import t from 'tap';
import { HISTORY_WINDOWS, TickerHistory } from '../../src/charts/chart-history.ts';
import { postJson, startGateway, uniqueName } from '../helpers/gateway.ts';
import { until } from '../helpers/sse-client.ts';

t.test('keeps the last price per bucket, oldest first, for each window', async (t) => {
  const now = 1_800_000_000_000;
  const history = new TickerHistory({ now: () => now });
  const start = now - 60_000;
  history.record('BTC', { price: 1, currency: 'USD', ts: start });
  history.record('BTC', { price: 2, currency: 'USD', ts: start + 400 });
  history.record('BTC', { price: 3, currency: 'USD', ts: start + 1_000 });
  history.record('BTC', { price: 4, currency: 'EUR', ts: start + 30_000 });

  const fiveMinutes = history.read('BTC', '5m');
  t.equal(fiveMinutes.bucketMs, HISTORY_WINDOWS['5m'].bucketMs);
  t.equal(fiveMinutes.currency, 'EUR', 'the currency of the latest update');
  t.same(fiveMinutes.points.map((point) => point.price), [2, 3, 4], 'one point per 1 s bucket, the last one wins');

  const hour = history.read('BTC', '1h');
  t.same(hour.points.map((point) => point.price), [3, 4], '12 s buckets');
  t.same(history.read('BTC', '24h').points.map((point) => point.price), [4], 'all in one 5 min bucket');
});

t.test('a window holds only its span, and a bounded number of points however many updates', async (t) => {
  let now = 1_800_000_000_000;
  const history = new TickerHistory({ now: () => now });
  for (let i = 0; i < 2000; i++) {
    now += 500;
    history.record('ETH', { price: i + 1, currency: 'USD', ts: now });
  }
  const points = history.read('ETH', '5m').points;
  t.ok(points.length <= 301, `at most ~300 points (got ${points.length})`);
  t.ok(points.every((point) => point.ts > now - 5 * 60_000), 'nothing older than 5 minutes');
  t.equal(points.at(-1)?.price, 2000, 'ends with the latest price');
  now += 10 * 60_000;
  t.same(history.read('ETH', '5m').points, [], 'empty once the last update is older than the window');
  t.equal(history.read('ETH', '1h').points.at(-1)?.price, 2000, 'still inside the hour');
});

t.test('late updates are dropped, not drawn backwards', async (t) => {
  const now = 1_800_000_000_000;
  const history = new TickerHistory({ now: () => now });
  history.record('X', { price: 1, currency: 'USD', ts: now - 10_000 });
  history.record('X', { price: 2, currency: 'USD', ts: now - 20_000 });
  t.same(history.read('X', '5m').points.map((point) => point.price), [1]);
  t.equal(history.lateUpdates, 1);
});

t.test('keeps at most maxSymbols symbols, forgetting the least recently updated', async (t) => {
  const now = 1_800_000_000_000;
  const history = new TickerHistory({ maxSymbols: 2, now: () => now });
  history.record('A', { price: 1, currency: 'USD', ts: now - 3000 });
  history.record('B', { price: 1, currency: 'USD', ts: now - 2000 });
  history.record('A', { price: 2, currency: 'USD', ts: now - 1000 });
  history.record('C', { price: 1, currency: 'USD', ts: now });
  t.equal(history.symbolCount, 2);
  t.same(history.read('B', '5m').points, [], 'B was the least recently updated');
  t.equal(history.read('A', '5m').points.length, 2);
  t.equal(history.read('C', '5m').currency, 'USD');
  t.equal(history.read('unknown', '5m').currency, null);
});

t.test('GET /tickers/:symbol/history serves what the gateway has seen, per window (embedded bus: nothing to read back)', async (t) => {
  const gateway = await startGateway(t);
  const symbol = uniqueName('SYM');
  for (const price of [10, 11, 12]) {
    t.equal((await postJson(`${gateway.url}/tickers/${symbol}/prices`, { price, currency: 'USD' })).status, 202);
  }
  type History = { symbol: string; window: string; bucketMs: number; currency: string; points: { ts: number; price: number }[]; backfilling: boolean };
  let body: History | undefined;
  await until(async () => {
    const response = await fetch(`${gateway.url}/tickers/${symbol}/history?window=1h`);
    body = (await response.json()) as History;
    return response.status === 200 && body?.points.at(-1)?.price === 12;
  });
  t.match(body, { symbol, window: '1h', bucketMs: 12_000, currency: 'USD', backfilling: false });
  t.ok(body!.points.length >= 1 && body!.points.length <= 3);
  t.ok(body!.points.every((point) => typeof point.ts === 'number' && Math.abs(point.ts - Date.now()) < 60_000));

  const defaulted = await fetch(`${gateway.url}/tickers/${symbol}/history`);
  t.equal(defaulted.status, 200);
  t.equal(((await defaulted.json()) as History).window, '5m', 'the window defaults to 5m');

  const empty = await fetch(`${gateway.url}/tickers/${uniqueName('NONE')}/history?window=24h`);
  t.equal(empty.status, 200);
  t.same(((await empty.json()) as History).points, [], 'a symbol never seen has an empty history');
});

t.test('history parameters are validated', async (t) => {
  const gateway = await startGateway(t);
  const badWindow = await fetch(`${gateway.url}/tickers/BTC/history?window=7d`);
  t.equal(badWindow.status, 400);
  t.match(await badWindow.json(), { statusCode: 400, message: /window/ });
  const badSymbol = await fetch(`${gateway.url}/tickers/${'x'.repeat(65)}/history`);
  t.equal(badSymbol.status, 400);
});
