import type { BusRecord, RangeReader, RangeResult } from '../bus/types.ts';
import type { ChannelRegistry } from '../channels/kind.ts';
import { decodeRecord, type DecodedEvent } from '../channels/records.ts';
import type { Logger } from '../logger.ts';
import { rateLimitedWarn } from '../rate-limited-log.ts';
import { LONGEST_HISTORY_SPAN_MS, TickerHistory, type PriceUpdate } from './chart-history.ts';

/** The price a `price_update` event carries (null for any other event). */
export function priceUpdateOf(event: DecodedEvent): (PriceUpdate & { symbol: string }) | null {
  if (event.kind.name !== 'ticker' || event.type !== 'price_update') return null;
  // The data was built by decodeRecord from a value that passed the price_update schema.
  const { price, currency } = JSON.parse(event.data) as { price: number; currency: string };
  return { symbol: event.name, price, currency, ts: event.timestamp };
}

/** Where this replica's consumer began a ticker partition: everything from there on is recorded live. */
export interface TickerPartitionStart {
  partition: number;
  /** The first offset the consumer reads (its warm-up start): the backfill stops just before it. */
  offset: number;
}

export type BackfillState = 'waiting' | 'reading' | 'done' | 'failed' | 'stopped';

export interface TickerBackfillOptions {
  history: TickerHistory;
  reader: RangeReader;
  /** The ticker kind's topic, and the registry its records are decoded with. */
  topic: string;
  registry: ChannelRegistry;
  /** True once the bus has started: its partition starts are then final. */
  ready(): boolean;
  partitionStarts(): readonly TickerPartitionStart[];
  /** Most records read in all; past it only the most recent ones are read. */
  maxRecords: number;
  logger: Logger;
  /** Records per read: between pages, resumes reading the same partition get their turn. */
  pageSize?: number;
  /** Waits between attempts of a failed Kafka request; after the last one the backfill gives up. */
  retryDelaysMs?: readonly number[];
  readyPollMs?: number;
  now?: () => number;
}

interface PartitionRange {
  partition: number;
  from: number;
  to: number;
}

const recordsIn = (ranges: readonly PartitionRange[]): number => ranges.reduce((sum, range) => sum + range.to - range.from, 0);

/** Binary search on time stops once the bounds are this close. */
const CUTOFF_PRECISION_MS = 1000;

class Stopped extends Error {}

/**
 * Fills the chart history with what the ticker topic holds from the longest window ago up to
 * where this replica's consumer started each partition: the live observer records everything
 * from there on, so the two meet without a gap or an overlap. Runs once, in the background,
 * after the bus is ready (readiness never waits for it), reading at most `maxRecords` records:
 * when the window holds more, it starts later (the most recent prices matter most for a chart).
 * Kafka errors are retried a few times with backoff, then it gives up with a warning, keeping
 * what it has read; records that break the contract are skipped and counted.
 */
export class TickerBackfill {
  state: BackfillState = 'waiting';
  readonly stats = {
    recordsRead: 0,
    recordsSkipped: 0,
    /** Symbols whose chart got older prices. */
    symbols: 0,
    /** The time the backfill read from (later than the longest window when capped), once known. */
    since: null as number | null,
  };
  readonly #options: TickerBackfillOptions;
  readonly #now: () => number;
  readonly #warnSkipped: (context: object, message: string) => void;
  #stopped = false;
  #timer: NodeJS.Timeout | null = null;
  #wake: (() => void) | null = null;

  constructor(options: TickerBackfillOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#warnSkipped = rateLimitedWarn(options.logger);
  }

  /** True until the backfill has finished, given up or been stopped: charts may still grow older points. */
  get inProgress(): boolean {
    return this.state === 'waiting' || this.state === 'reading';
  }

  /** Never rejects: every failure ends in a logged state. */
  async run(): Promise<void> {
    const { logger } = this.#options;
    const startedAt = this.#now();
    try {
      while (!this.#options.ready()) await this.#sleep(this.#options.readyPollMs ?? 250);
      this.state = 'reading';
      await this.#read();
      this.state = 'done';
      logger.info({ ...this.stats, durationMs: this.#now() - startedAt }, 'chart history read back from Kafka');
    } catch (error) {
      if (this.#stopped) {
        this.state = 'stopped';
        return;
      }
      this.state = 'failed';
      logger.warn(
        { err: error, ...this.stats },
        'gave up reading the chart history back from Kafka: charts keep what was read, and everything from the warm-up window on',
      );
    }
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#wake?.();
  }

  async #read(): Promise<void> {
    const { maxRecords, logger } = this.#options;
    const starts = this.#options.partitionStarts();
    let since = this.#now() - LONGEST_HISTORY_SPAN_MS;
    let ranges = await this.#rangesFrom(starts, since);
    if (recordsIn(ranges) > maxRecords) ({ since, ranges } = await this.#latestWithin(starts, since, maxRecords));
    this.stats.since = since;
    logger.info({ since: new Date(since).toISOString(), records: recordsIn(ranges), partitions: ranges.length }, 'reading the chart history back from Kafka');
    let budget = maxRecords;
    for (const range of ranges) {
      if (budget <= 0) break;
      budget -= await this.#readPartition(range, since, budget);
    }
  }

  /** Per partition, the offsets from `time` up to the consumer's start. */
  #rangesFrom(starts: readonly TickerPartitionStart[], time: number): Promise<PartitionRange[]> {
    const { reader, topic } = this.#options;
    return Promise.all(
      starts.map(async ({ partition, offset: to }) => {
        const from = await this.#retrying(() => reader.offsetForTime(topic, partition, time));
        return { partition, from: Math.min(from ?? to, to), to };
      }),
    );
  }

  /**
   * The earliest time from which the partitions hold at most `maxRecords` records, by binary
   * search over Kafka's offsets-by-timestamp: a few dozen small admin requests, once.
   */
  async #latestWithin(starts: readonly TickerPartitionStart[], tooEarly: number, maxRecords: number): Promise<{ since: number; ranges: PartitionRange[] }> {
    let low = tooEarly;
    let high = this.#now();
    let best = await this.#rangesFrom(starts, high);
    while (high - low > CUTOFF_PRECISION_MS) {
      const middle = Math.floor((low + high) / 2);
      const ranges = await this.#rangesFrom(starts, middle);
      if (recordsIn(ranges) <= maxRecords) {
        high = middle;
        best = ranges;
      } else {
        low = middle;
      }
    }
    return { since: high, ranges: best };
  }

  /** Reads one partition's range page by page into a history of its own, then merges it. */
  async #readPartition(range: PartitionRange, since: number, budget: number): Promise<number> {
    const { reader, topic, history } = this.#options;
    const pageSize = this.#options.pageSize ?? 5000;
    const staging = new TickerHistory({ maxSymbols: history.maxSymbols, now: this.#now });
    let cursor = range.from;
    let read = 0;
    try {
      while (cursor < range.to && read < budget) {
        const from = cursor;
        const page: RangeResult = await this.#retrying(() => reader.readAll(topic, range.partition, from, range.to, Math.min(pageSize, budget - read)));
        if (page.expired) {
          // Retention deleted the range's start meanwhile: go on from what is still there.
          const next = await this.#retrying(() => reader.offsetForTime(topic, range.partition, since));
          if (next === null || next <= cursor) break;
          cursor = next;
          continue;
        }
        for (const record of page.records) {
          read += 1;
          this.stats.recordsRead += 1;
          const update = this.#decode(record);
          if (update !== null) staging.record(update.symbol, update);
        }
        const last = page.records.at(-1);
        if (page.complete) cursor = range.to;
        else if (last !== undefined) cursor = Number(last.offset) + 1;
        else break;
      }
    } finally {
      // What was read is kept even when the rest failed: older points are better than none.
      if (!this.#stopped) this.#merge(staging);
    }
    return read;
  }

  #decode(record: BusRecord): (PriceUpdate & { symbol: string }) | null {
    const decoded = decodeRecord(record, this.#options.registry);
    const update = decoded.ok ? priceUpdateOf(decoded.event) : null;
    if (update === null) {
      this.stats.recordsSkipped += 1;
      this.#warnSkipped(
        { topic: record.topic, partition: record.partition, offset: record.offset, reason: decoded.ok ? 'not a price update' : decoded.reason },
        'chart history: skipped a record that does not match the contract',
      );
    }
    return update;
  }

  #merge(staging: TickerHistory): void {
    // Most recent first: each new symbol goes in as the least recently updated one.
    for (const symbol of staging.symbols().reverse()) {
      if (this.#options.history.backfill(symbol, staging.updates(symbol))) this.stats.symbols += 1;
    }
  }

  async #retrying<T>(request: () => Promise<T>): Promise<T> {
    const delays = this.#options.retryDelaysMs ?? [1000, 2000, 5000, 10000];
    for (let attempt = 0; ; attempt++) {
      try {
        return await request();
      } catch (error) {
        const delay = delays[attempt];
        if (this.#stopped || delay === undefined) throw error;
        this.#options.logger.warn({ err: error, retryInMs: delay }, 'reading the chart history from Kafka failed; retrying');
        await this.#sleep(delay);
      }
    }
  }

  #sleep(milliseconds: number): Promise<void> {
    if (this.#stopped) return Promise.reject(new Stopped());
    return new Promise((resolve, reject) => {
      this.#wake = () => reject(new Stopped());
      this.#timer = setTimeout(() => {
        this.#wake = null;
        resolve();
      }, milliseconds);
    });
  }
}
