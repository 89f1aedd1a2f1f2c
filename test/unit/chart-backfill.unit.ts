import t from 'tap';
import { channelRegistry } from '../../src/channels/contract.ts';
import type { BusRecord, RangeReader, RangeResult } from '../../src/bus/types.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import type { Logger } from '../../src/logger.ts';
import { TickerBackfill } from '../../src/charts/chart-backfill.ts';
import { HISTORY_WINDOW_NAMES, TickerHistory } from '../../src/charts/chart-history.ts';

const NOW = 1_800_000_000_000;
const MINUTE = 60_000;
const topics = { chat: 'chat', ticker: 'ticker' };

const prices = (history: TickerHistory, symbol: string, window: '5m' | '1h' | '24h') =>
  history.read(symbol, window).points.map((point) => point.price);

t.test('backfill into an empty history builds what recording the same prices would', async (t) => {
  const recorded = new TickerHistory({ now: () => NOW });
  const backfilled = new TickerHistory({ now: () => NOW });
  const updates = Array.from({ length: 500 }, (_, i) => ({ price: i + 1, currency: 'USD', ts: NOW - 20 * MINUTE + i * 2_345 }));
  for (const update of updates) recorded.record('BTC', update);
  t.equal(backfilled.backfill('BTC', updates), true);
  for (const window of HISTORY_WINDOW_NAMES) t.same(backfilled.read('BTC', window), recorded.read('BTC', window), window);
});

t.test('backfilled prices go under the live ones: live wins a shared bucket, and keeps the currency', async (t) => {
  const history = new TickerHistory({ now: () => NOW });
  // Live from one minute ago; the first live price shares a 5 min bucket with the last backfilled one.
  const liveStart = Math.floor((NOW - MINUTE) / (5 * MINUTE)) * 5 * MINUTE + 1_000;
  history.record('ETH', { price: 100, currency: 'EUR', ts: liveStart });
  history.record('ETH', { price: 101, currency: 'EUR', ts: liveStart + 2_000 });
  t.equal(
    history.backfill('ETH', [
      { price: 1, currency: 'USD', ts: liveStart - 3 * 5 * MINUTE },
      { price: 2, currency: 'USD', ts: liveStart - 2 * 5 * MINUTE },
      { price: 3, currency: 'USD', ts: liveStart - 500 },
    ]),
    true,
  );
  t.same(prices(history, 'ETH', '24h'), [1, 2, 101], 'older buckets first; the shared bucket keeps the live price');
  t.same(prices(history, 'ETH', '5m'), [3, 100, 101], 'a finer window keeps both sides of the boundary');
  t.equal(history.read('ETH', '24h').currency, 'EUR', 'the currency of the latest (live) update');
  history.record('ETH', { price: 102, currency: 'EUR', ts: liveStart + 4_000 });
  t.same(prices(history, 'ETH', '5m'), [3, 100, 101, 102], 'live updates continue after a backfill');
  t.equal(history.lateUpdates, 0, 'backfilled prices are not late updates');
});

t.test('a backfill keeps each window bounded, the newest buckets winning', async (t) => {
  const history = new TickerHistory({ now: () => NOW });
  history.record('X', { price: 9999, currency: 'USD', ts: NOW });
  const updates = Array.from({ length: 3000 }, (_, i) => ({ price: i + 1, currency: 'USD', ts: NOW - 3000_000 + i * 1000 }));
  history.backfill('X', updates);
  const points = history.read('X', '5m').points;
  t.ok(points.length <= 301, `at most ~300 points (got ${points.length})`);
  t.equal(points.at(-1)?.price, 9999);
  t.equal(points.at(-2)?.price, 3000, 'the newest backfilled price right before the live one');
});

t.test('a new symbol is added as the least recently updated, and only while there is room', async (t) => {
  const history = new TickerHistory({ maxSymbols: 2, now: () => NOW });
  history.record('LIVE', { price: 1, currency: 'USD', ts: NOW - 1000 });
  t.equal(history.backfill('OLD', [{ price: 5, currency: 'USD', ts: NOW - 10 * MINUTE }]), true);
  t.same(history.symbols(), ['OLD', 'LIVE']);
  t.equal(history.backfill('NOROOM', [{ price: 5, currency: 'USD', ts: NOW - 10 * MINUTE }]), false, 'never displaces a live symbol');
  history.record('NEW', { price: 1, currency: 'USD', ts: NOW });
  t.same(history.symbols(), ['LIVE', 'NEW'], 'the backfilled symbol is forgotten first');
  t.equal(history.backfill('NONE', []), false, 'nothing to add');
});

t.test('updates() hands over every point: a history rebuilt from them charts the same', async (t) => {
  const source = new TickerHistory({ now: () => NOW });
  for (let i = 0; i < 5000; i++) source.record('S', { price: i, currency: 'CHF', ts: NOW - 23 * 60 * MINUTE + i * 16_000 });
  const copy = new TickerHistory({ now: () => NOW });
  copy.backfill('S', source.updates('S'));
  for (const window of HISTORY_WINDOW_NAMES) t.same(copy.read('S', window), source.read('S', window), window);
  t.same(source.updates('unknown'), []);
});

/** A ticker topic in memory: offsets from 0, with the RangeReader semantics of the Kafka one. */
class FakeReader implements RangeReader {
  failures = 0;
  reads: Array<{ partition: number; from: number; to: number; limit: number }> = [];
  constructor(readonly partitions: BusRecord[][]) {}

  read(): Promise<RangeResult> {
    throw new Error('the backfill reads every key');
  }

  async readAll(_topic: string, partition: number, from: number, to: number, limit: number): Promise<RangeResult> {
    if (this.failures > 0) {
      this.failures -= 1;
      throw new Error('broker unreachable');
    }
    this.reads.push({ partition, from, to, limit });
    const inRange = this.partitions[partition]!.filter((record) => Number(record.offset) >= from && Number(record.offset) < to);
    return { expired: false, records: inRange.slice(0, limit), complete: inRange.length <= limit };
  }

  async offsetForTime(_topic: string, partition: number, timestamp: number): Promise<number | null> {
    const records = this.partitions[partition]!;
    const found = records.find((record) => record.timestamp >= timestamp);
    return found === undefined ? records.length : Number(found.offset);
  }
}

function priceRecord(partition: number, offset: number, symbol: string, price: number, timestamp: number): BusRecord {
  return {
    topic: 'ticker',
    partition,
    offset: String(offset),
    key: Buffer.from(symbol),
    value: Buffer.from(JSON.stringify({ price, currency: 'USD' })),
    headers: { 'event-type': 'price_update' },
    timestamp,
  };
}

/** One record every 5 minutes (one per 24h bucket), `count` of them ending 10 minutes ago. */
function partitionOf(partition: number, symbol: string, count: number): BusRecord[] {
  const last = Math.floor((NOW - 10 * MINUTE) / (5 * MINUTE)) * 5 * MINUTE + 1000;
  return Array.from({ length: count }, (_, i) => priceRecord(partition, i, symbol, i + 1, last - (count - 1 - i) * 5 * MINUTE));
}

function capturingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  const logger = {
    warnings,
    error: () => {},
    warn: (_context: unknown, message?: string) => warnings.push(message ?? ''),
    info: () => {},
    debug: () => {},
    trace: () => {},
    child: () => logger,
  };
  // The fake accepts pino's call shapes loosely; only the warnings' messages are asserted.
  return logger as unknown as Logger & { warnings: string[] };
}

function backfillOf(reader: FakeReader, history: TickerHistory, overrides: Partial<ConstructorParameters<typeof TickerBackfill>[0]> = {}) {
  const logger = capturingLogger();
  const backfill = new TickerBackfill({
    history,
    reader,
    topic: topics.ticker,
    registry: channelRegistry(topics),
    ready: () => true,
    // The consumer started at the last 2 records of each partition: those are the live ones.
    partitionStarts: () => reader.partitions.map((records, partition) => ({ partition, offset: records.length - 2 })),
    maxRecords: 200_000,
    logger,
    pageSize: 50,
    retryDelaysMs: [1, 1, 1],
    readyPollMs: 1,
    now: () => NOW,
    ...overrides,
  });
  return { backfill, logger };
}

t.test('TickerBackfill reads every partition from 24 h ago up to the consumer start, in pages', async (t) => {
  // A: 33 hours of prices, 5 minutes apart; B: a short series with a record that breaks the contract.
  const partitions = [partitionOf(0, 'A', 400), partitionOf(1, 'B', 30)];
  partitions[1]![3]!.value = Buffer.from('not json');
  const inWindow = partitions[0]!.filter((record) => record.timestamp >= NOW - 24 * 60 * MINUTE && Number(record.offset) < 398);
  t.ok(inWindow.length > 280 && inWindow.length < 290);
  const reader = new FakeReader(partitions);
  const history = new TickerHistory({ now: () => NOW });
  const { backfill, logger } = backfillOf(reader, history);
  t.equal(backfill.inProgress, true);
  await backfill.run();
  t.equal(backfill.state, 'done');
  t.equal(backfill.inProgress, false);
  t.same(prices(history, 'A', '24h'), inWindow.map((record) => Number(record.offset) + 1), 'A: the last 24 h up to the consumer start');
  t.same(prices(history, 'B', '24h'), [1, 2, 3, ...Array.from({ length: 24 }, (_, i) => i + 5)], 'B: without the bad record');
  t.match(backfill.stats, { recordsRead: inWindow.length + 28, recordsSkipped: 1, symbols: 2 });
  t.ok(reader.reads.every((read) => read.limit <= 50), 'pages of at most pageSize');
  t.ok(reader.reads.every((read) => read.to === partitions[read.partition]!.length - 2), 'never past the consumer start');
  t.match(logger.warnings, [/skipped a record/]);
});

t.test('TickerBackfill reads at most maxRecords, the most recent ones', async (t) => {
  const reader = new FakeReader([partitionOf(0, 'A', 200), partitionOf(1, 'B', 100)]);
  const history = new TickerHistory({ now: () => NOW });
  const { backfill } = backfillOf(reader, history, { maxRecords: 60 });
  await backfill.run();
  t.equal(backfill.stats.recordsRead, 60);
  // Records 5 minutes apart on both partitions: a common cutoff keeps the last 30 of each.
  t.same(prices(history, 'A', '24h'), Array.from({ length: 30 }, (_, i) => i + 169));
  t.same(prices(history, 'B', '24h'), Array.from({ length: 30 }, (_, i) => i + 69));
  t.ok(backfill.stats.since! > NOW - 24 * 60 * MINUTE, 'started later than the 24 h window');
});

t.test('TickerBackfill with maxRecords 0 reads nothing', async (t) => {
  const reader = new FakeReader([partitionOf(0, 'A', 20)]);
  const history = new TickerHistory({ now: () => NOW });
  const { backfill } = backfillOf(reader, history, { maxRecords: 0 });
  await backfill.run();
  t.equal(backfill.state, 'done');
  t.same(reader.reads, []);
  t.equal(history.symbolCount, 0);
});

t.test('TickerBackfill retries Kafka errors, then gives up with a warning, keeping what it read', async (t) => {
  const recovering = new FakeReader([partitionOf(0, 'A', 120)]);
  recovering.failures = 2;
  const history = new TickerHistory({ now: () => NOW });
  const { backfill, logger } = backfillOf(recovering, history);
  await backfill.run();
  t.equal(backfill.state, 'done');
  t.equal(history.read('A', '24h').points.length, 118);
  t.equal(logger.warnings.filter((warning) => /retrying/.test(warning)).length, 2);

  const failing = new FakeReader([partitionOf(0, 'A', 120)]);
  const partial = new TickerHistory({ now: () => NOW });
  const second = backfillOf(failing, partial);
  const readAll = failing.readAll.bind(failing);
  failing.readAll = async (...args) => {
    if (failing.reads.length === 1) failing.failures = 100;
    return readAll(...args);
  };
  await second.backfill.run();
  t.equal(second.backfill.state, 'failed');
  t.equal(second.backfill.inProgress, false);
  t.match(second.logger.warnings.at(-1), /gave up/);
  t.equal(partial.read('A', '24h').points.length, 50, 'the first page is kept');
});

t.test('TickerBackfill waits for the bus, and stops when told', async (t) => {
  let ready = false;
  const reader = new FakeReader([partitionOf(0, 'A', 20)]);
  const history = new TickerHistory({ now: () => NOW });
  const { backfill } = backfillOf(reader, history, { ready: () => ready });
  const running = backfill.run();
  await new Promise((resolve) => setTimeout(resolve, 20));
  t.equal(backfill.state, 'waiting');
  t.same(reader.reads, [], 'nothing read before the bus is ready');
  ready = true;
  await running;
  t.equal(backfill.state, 'done');

  const stopped = backfillOf(reader, new TickerHistory(), { ready: () => false });
  const waiting = stopped.backfill.run();
  stopped.backfill.stop();
  await waiting;
  t.equal(stopped.backfill.state, 'stopped');
});

t.test('TICKER_BACKFILL_MAX_RECORDS is validated', async (t) => {
  t.equal(loadConfig({}).tickerBackfillMaxRecords, 200_000);
  t.equal(loadConfig({ TICKER_BACKFILL_MAX_RECORDS: '0' }).tickerBackfillMaxRecords, 0);
  t.throws(() => loadConfig({ TICKER_BACKFILL_MAX_RECORDS: '-1' }), ConfigError);
  t.throws(() => loadConfig({ TICKER_BACKFILL_MAX_RECORDS: 'lots' }), { message: /TICKER_BACKFILL_MAX_RECORDS/ });
  t.throws(() => loadConfig({ TICKER_BACKFILL_MAX_RECORDS: '1000000000' }), { message: /TICKER_BACKFILL_MAX_RECORDS/ });
});
