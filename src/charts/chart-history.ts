/**
 * Per-symbol price history for charts, kept in memory by each replica: for every window the
 * last price seen in each time bucket, so a chart opened now is full at once and then continues
 * with live `price_update` events. Memory is bounded twice: a fixed number of buckets per window,
 * and a cap on the number of symbols (the least recently updated one is forgotten first).
 * Prices published before this replica started are merged in afterwards with `backfill`
 * (src/charts/chart-backfill.ts reads them back from Kafka), under the live ones.
 */

export const HISTORY_WINDOWS = {
  // About 300 points each: enough for a smooth line on any screen, small enough to send at once.
  '5m': { spanMs: 5 * 60_000, bucketMs: 1_000 },
  '1h': { spanMs: 60 * 60_000, bucketMs: 12_000 },
  '24h': { spanMs: 24 * 60 * 60_000, bucketMs: 5 * 60_000 },
} as const;

export type HistoryWindow = keyof typeof HISTORY_WINDOWS;

export const HISTORY_WINDOW_NAMES = Object.keys(HISTORY_WINDOWS) as HistoryWindow[];

/** One price as published: `ts` is its Kafka timestamp. */
export interface PriceUpdate {
  price: number;
  currency: string;
  ts: number;
}

export interface PricePoint {
  /** The time of the last update in this bucket (ms since the epoch). */
  ts: number;
  price: number;
}

export interface PriceHistory {
  symbol: string;
  window: HistoryWindow;
  bucketMs: number;
  /** The currency of the latest update, or null when the symbol has no history here. */
  currency: string | null;
  /** Oldest first, at most one per bucket, only those inside the window. */
  points: PricePoint[];
}

export interface TickerHistoryOptions {
  /** Symbols kept at most; the least recently updated beyond this are forgotten. */
  maxSymbols?: number;
  now?: () => number;
}

/** The buckets of one window, oldest first; `bucket` is `floor(ts / bucketMs)` of each point. */
interface Series {
  buckets: number[];
  points: PricePoint[];
}

interface SymbolHistory {
  currency: string;
  series: Record<HistoryWindow, Series>;
}

function bucketCapacity(window: HistoryWindow): number {
  const { spanMs, bucketMs } = HISTORY_WINDOWS[window];
  return Math.ceil(spanMs / bucketMs) + 1;
}

function emptySymbol(currency: string): SymbolHistory {
  return {
    currency,
    series: { '5m': { buckets: [], points: [] }, '1h': { buckets: [], points: [] }, '24h': { buckets: [], points: [] } },
  };
}

/** The longest window: how far back a chart can reach, and so how far back a backfill reads. */
export const LONGEST_HISTORY_SPAN_MS = Math.max(...Object.values(HISTORY_WINDOWS).map((window) => window.spanMs));

export class TickerHistory {
  readonly maxSymbols: number;
  readonly #now: () => number;
  /** Insertion order is update order: the first key is the least recently updated symbol. */
  readonly #symbols = new Map<string, SymbolHistory>();
  /** Updates older than the newest bucket of their window: kept out, counted. */
  lateUpdates = 0;

  constructor(options: TickerHistoryOptions = {}) {
    this.maxSymbols = options.maxSymbols ?? 1000;
    this.#now = options.now ?? Date.now;
  }

  get symbolCount(): number {
    return this.#symbols.size;
  }

  /** The symbols kept, least recently updated first. */
  symbols(): string[] {
    return [...this.#symbols.keys()];
  }

  /** Records a price; within a bucket the last one received wins. */
  record(symbol: string, update: PriceUpdate): void {
    let history = this.#symbols.get(symbol);
    if (history === undefined) {
      history = emptySymbol(update.currency);
    } else {
      this.#symbols.delete(symbol);
    }
    this.#symbols.set(symbol, history);
    while (this.#symbols.size > this.maxSymbols) {
      const oldest = this.#symbols.keys().next().value;
      if (oldest === undefined) break;
      this.#symbols.delete(oldest);
    }
    history.currency = update.currency;
    for (const window of HISTORY_WINDOW_NAMES) this.#add(window, history.series[window], update, true);
  }

  /**
   * Merges prices published before everything recorded so far for the symbol (read back from
   * Kafka while live prices keep arriving), in the order they were published. The result is
   * what `record` would have built had it seen them first: per bucket the last price wins, so
   * a live price beats a backfilled one in the same bucket, and each window keeps its bound.
   * A symbol new to this history is added as the least recently updated one, and only while
   * there is room: live symbols are never forgotten for older ones. False when not added.
   */
  backfill(symbol: string, updates: readonly PriceUpdate[]): boolean {
    const last = updates.at(-1);
    if (last === undefined) return this.#symbols.has(symbol);
    const merged = emptySymbol(last.currency);
    for (const update of updates) {
      for (const window of HISTORY_WINDOW_NAMES) this.#add(window, merged.series[window], update, false);
    }
    const live = this.#symbols.get(symbol);
    if (live !== undefined) {
      merged.currency = live.currency;
      for (const window of HISTORY_WINDOW_NAMES) {
        for (const point of live.series[window].points) this.#add(window, merged.series[window], point, false);
      }
      // In place: the symbol keeps its position in the update order.
      live.series = merged.series;
      return true;
    }
    if (this.#symbols.size >= this.maxSymbols) return false;
    const others = [...this.#symbols];
    this.#symbols.clear();
    this.#symbols.set(symbol, merged);
    for (const [name, history] of others) this.#symbols.set(name, history);
    return true;
  }

  /**
   * Every point kept for the symbol, across windows, oldest first (each with the symbol's
   * currency): handing them to another history's `backfill` rebuilds the same charts there.
   */
  updates(symbol: string): PriceUpdate[] {
    const history = this.#symbols.get(symbol);
    if (history === undefined) return [];
    const byTime = new Map<number, number>();
    for (const window of HISTORY_WINDOW_NAMES) {
      // The last update of a coarse bucket is also the last of its finer bucket: equal times are one update.
      for (const point of history.series[window].points) byTime.set(point.ts, point.price);
    }
    return [...byTime]
      .sort(([a], [b]) => a - b)
      .map(([ts, price]) => ({ price, currency: history.currency, ts }));
  }

  #add(window: HistoryWindow, series: Series, update: { price: number; ts: number }, live: boolean): void {
    const bucket = Math.floor(update.ts / HISTORY_WINDOWS[window].bucketMs);
    const last = series.buckets.length - 1;
    const lastBucket = series.buckets[last];
    const point = { ts: update.ts, price: update.price };
    if (lastBucket === bucket) {
      series.points[last] = point;
    } else if (lastBucket === undefined || bucket > lastBucket) {
      series.buckets.push(bucket);
      series.points.push(point);
      // Bounded: one shift per new bucket, over a few hundred entries at most.
      if (series.buckets.length > bucketCapacity(window)) {
        series.buckets.shift();
        series.points.shift();
      }
    } else {
      // A producer clock running behind: charts are drawn forwards, so the point is dropped.
      if (live && window === '5m') this.lateUpdates += 1;
    }
  }

  /** The points of the last `window` up to now; at most a few hundred, whatever the traffic. */
  read(symbol: string, window: HistoryWindow): PriceHistory {
    const { spanMs, bucketMs } = HISTORY_WINDOWS[window];
    const history = this.#symbols.get(symbol);
    if (history === undefined) return { symbol, window, bucketMs, currency: null, points: [] };
    const since = this.#now() - spanMs;
    const points = history.series[window].points.filter((point) => point.ts > since).map((point) => ({ ...point }));
    return { symbol, window, bucketMs, currency: history.currency, points };
  }
}
