import t from 'tap';
import type { Message } from 'kafkajs';
import { kafkaTopics, postJson, requiredKafkaBrokers, startGateway, uniqueName } from '../helpers/gateway.ts';
import { createTestTopics, rawProducer } from '../helpers/kafka.ts';
import { until } from '../helpers/sse-client.ts';

type History = { symbol: string; window: string; bucketMs: number; currency: string | null; points: { ts: number; price: number }[]; backfilling: boolean };

const MINUTE = 60_000;
const BUCKET = 5 * MINUTE;

async function historyOf(url: string, symbol: string, window: string): Promise<History> {
  const response = await fetch(`${url}/tickers/${symbol}/history?window=${window}`);
  if (response.status !== 200) throw new Error(`history answered ${response.status}`);
  return (await response.json()) as History;
}

/** One price per 5 min bucket (the 24 h window's bucket) over the last 20 hours, mid-bucket, ending a few minutes ago. */
function twentyHours(): number[] {
  const first = Math.floor((Date.now() - 20 * 60 * MINUTE) / BUCKET) * BUCKET + MINUTE;
  return Array.from({ length: 240 }, (_, i) => first + i * BUCKET);
}

function price(symbol: string, value: number, timestamp: number): Message {
  return {
    key: symbol,
    value: JSON.stringify({ price: value, currency: 'USD' }),
    headers: { 'event-type': 'price_update' },
    timestamp: String(timestamp),
  };
}

const brokers = requiredKafkaBrokers();

t.test('a fresh replica charts the last 24 h read back from Kafka, then continues live', async (t) => {
  const topics = kafkaTopics();
  await createTestTopics(t, [{ topic: topics.tickerTopic, numPartitions: 3 }]);
  const symbols = [uniqueName('A'), uniqueName('B'), uniqueName('C')];
  const times = twentyHours();
  const producer = await rawProducer(t);
  const messages: Message[] = [];
  times.forEach((time, i) => {
    for (const [s, symbol] of symbols.entries()) {
      // Two prices per bucket: the chart shows the last one.
      messages.push(price(symbol, 1000 * s + i + 0.5, time - 30_000), price(symbol, 1000 * s + i + 1, time));
    }
    if (i === 100) messages.push({ key: symbols[0]!, value: 'not json', headers: { 'event-type': 'price_update' }, timestamp: String(time) });
  });
  await producer.send(topics.tickerTopic, messages);

  // The warm-up (the live consumer's start) covers the last 30 minutes; the backfill the rest.
  const gateway = await startGateway(t, { kafkaBrokers: brokers, ...topics, historyMaxAgeMs: 30 * MINUTE });
  let chart: History | undefined;
  await until(async () => {
    chart = await historyOf(gateway.url, symbols[0]!, '24h');
    return !chart.backfilling;
  }, 60_000, 'the backfill to finish');
  t.match(chart, { window: '24h', bucketMs: BUCKET, currency: 'USD', backfilling: false });
  t.same(chart!.points, times.map((ts, i) => ({ ts, price: i + 1 })), 'the last price of every 5 min bucket of 20 hours, no gap, oldest first');
  const status = (await (await fetch(`${gateway.url}/status`)).json()) as { chartHistory: { symbols: number; backfill: Record<string, unknown> } };
  t.match(status.chartHistory, { symbols: 3, backfill: { state: 'done', recordsSkipped: 1, symbols: 3 } }, '/status tells how the backfill went');
  t.ok((status.chartHistory.backfill.recordsRead as number) > 0);
  for (const [s, symbol] of symbols.entries()) {
    if (s === 0) continue;
    const other = await historyOf(gateway.url, symbol, '24h');
    t.same(other.points.map((point) => point.price), times.map((_, i) => 1000 * s + i + 1), `${symbol}: full too`);
  }
  const hour = await historyOf(gateway.url, symbols[0]!, '1h');
  const lastHour = times.filter((time) => time - 30_000 > Date.now() - 60 * MINUTE);
  t.same(
    hour.points.map((point) => point.price).slice(-2 * lastHour.length),
    lastHour.flatMap((_, j) => [240 - lastHour.length + j + 0.5, 240 - lastHour.length + j + 1]),
    'the 1 h window has its own 12 s buckets',
  );

  t.equal((await postJson(`${gateway.url}/tickers/${symbols[0]}/prices`, { price: 5000, currency: 'USD' })).status, 202);
  await until(async () => (await historyOf(gateway.url, symbols[0]!, '24h')).points.at(-1)?.price === 5000, 20_000, 'the live price');
  const live = await historyOf(gateway.url, symbols[0]!, '24h');
  t.same(live.points.map((point) => point.price), [...times.map((_, i) => i + 1), 5000], 'the live price continues the backfilled line');
});

t.test('TICKER_BACKFILL_MAX_RECORDS bounds the records read, keeping the most recent', async (t) => {
  const topics = kafkaTopics();
  await createTestTopics(t, [{ topic: topics.tickerTopic, numPartitions: 1 }]);
  const symbol = uniqueName('CAP');
  const times = twentyHours();
  const producer = await rawProducer(t);
  await producer.send(topics.tickerTopic, times.map((time, i) => price(symbol, i + 1, time)));

  const gateway = await startGateway(t, { kafkaBrokers: brokers, ...topics, historyMaxAgeMs: MINUTE, tickerBackfillMaxRecords: 100 });
  let chart: History | undefined;
  await until(async () => {
    chart = await historyOf(gateway.url, symbol, '24h');
    return !chart.backfilling;
  }, 60_000, 'the backfill to finish');
  t.same(chart!.points.map((point) => point.price), times.slice(-100).map((_, i) => 140 + i + 1), 'the 100 most recent prices');
});

t.test('TICKER_BACKFILL_MAX_RECORDS=0 turns the backfill off', async (t) => {
  const topics = kafkaTopics();
  await createTestTopics(t, [{ topic: topics.tickerTopic, numPartitions: 1 }]);
  const symbol = uniqueName('OFF');
  const producer = await rawProducer(t);
  await producer.send(topics.tickerTopic, twentyHours().map((time, i) => price(symbol, i + 1, time)));
  const gateway = await startGateway(t, { kafkaBrokers: brokers, ...topics, historyMaxAgeMs: MINUTE, tickerBackfillMaxRecords: 0 });
  t.match(await historyOf(gateway.url, symbol, '24h'), { backfilling: false, points: [] });
});
