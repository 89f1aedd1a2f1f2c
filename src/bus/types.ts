/**
 * The bus is what carries events between producers and every gateway replica: Kafka in
 * production, an in-memory stand-in when no brokers are configured. Both hand the gateway the
 * same records (raw key, value and headers, with a Kafka-style position), so decoding,
 * validation and fan-out run one code path whichever bus is underneath.
 */

export interface Position {
  topic: string;
  partition: number;
  /** Kafka offsets are 64-bit; kept as decimal strings as kafkajs does. */
  offset: string;
}

/**
 * A record header's value as kafkajs hands it over: bytes (a string where the gateway made the
 * record itself), null for a header Kafka holds with a null value, and an array for a name the
 * record repeats (Kafka allows both; the Java producer writes them).
 */
export type HeaderValue = Buffer | string | null | undefined | Array<Buffer | string>;

export interface BusRecord extends Position {
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, HeaderValue>;
  /** Milliseconds since the epoch (the Kafka record timestamp). */
  timestamp: number;
}

export interface OutgoingRecord {
  topic: string;
  key: string;
  value: string;
  headers: Record<string, string>;
}

export type RecordsHandler = (records: readonly BusRecord[]) => void;

export interface PartitionStart {
  topic: string;
  partition: number;
  /** The first offset this replica will consume. */
  offset: string;
  /** Every record from this time on will be consumed (the warm-up window's start). */
  time: number;
  /**
   * The partition's end offset when this replica started: records before it are the warm-up
   * (history being filled), records from it on arrive live. Absent: every record is live.
   */
  liveFrom?: string;
}

/** What the bus feeds: records in partition order, and first where each partition starts. */
export interface BusConsumer {
  onPartitionsStart(starts: readonly PartitionStart[]): void;
  /**
   * How many partitions `topic` has, told before its starts. Only needed when the starts do not
   * cover every partition (sharded mode, src/bus/shards.ts): where murmur2 puts a channel
   * depends on the topic's count, not on the partitions this replica reads.
   */
  onTopicPartitions?(topic: string, count: number): void;
  onRecords: RecordsHandler;
}

/**
 * One page of a range read. `next`: where the next page starts (every record below it was
 * looked at; with a key filter it can be past the last record returned); `to` once complete.
 */
export type RangeResult = { expired: true } | { expired: false; records: BusRecord[]; page?: RecordPage; complete: boolean; next?: number };

/**
 * A page of records made one at a time when asked for (src/bus/record-page.ts): a page from the
 * range reader's thread arrives as a few typed arrays whatever its length, so that it does not
 * hold thousands of objects while a replay writes it.
 */
export interface RecordPage {
  readonly length: number;
  /** The offset of record `index` (0 ≤ index < length), without making the record. */
  offsetAt(index: number): number;
  /** Record `index`, made now: its key, value and header values are views of the page's bytes. */
  record(index: number): BusRecord;
}

/** Reads past ranges of a partition for resumes older than the in-memory history. */
export interface RangeReader {
  /**
   * Records of `partition` with `from <= offset < to` whose key is `key` (or one of `key`), at
   * most `limit` of them (`complete: false` when there were more). `expired` when `from` is
   * older than the partition's retention. `paged`: the caller reads `page` when there is one
   * (the range reader's thread answers so), and `records` is then empty.
   */
  read(topic: string, partition: number, from: number, to: number, key: string | readonly string[], limit: number, paged?: boolean): Promise<RangeResult>;
  /** The same for every key: one page of a bulk read (the chart history's backfill). */
  readAll(topic: string, partition: number, from: number, to: number, limit: number): Promise<RangeResult>;
  /** The first offset at or after `timestamp`, null when the bus cannot tell. */
  offsetForTime(topic: string, partition: number, timestamp: number): Promise<number | null>;
  /**
   * The partition's end offset (the offset its next record gets), null for an unknown
   * partition; asked afresh when a cached answer is below `atLeast`. Rejects when Kafka does
   * not answer in time.
   */
  endOffset?(topic: string, partition: number, atLeast?: number): Promise<number | null>;
}

export interface BusReadiness {
  ready: boolean;
  /** Why not ready; when ready, what is degraded (the replica still serves). For /readyz, /status and logs. */
  reason?: string;
}

export interface PartitionPosition {
  topic: string;
  partition: number;
  /** The next offset this replica will consume. */
  next: string;
  /** The partition's end offset as last seen (next = highWatermark means caught up). */
  highWatermark: string;
}

/** Kinds of Kafka client trouble counted by the bus: a small fixed set, safe as a metric label. */
export const BUS_CLIENT_ERROR_KINDS = ['consumer_crash', 'request_timeout', 'publish_failed'] as const;
export type BusClientErrorKind = (typeof BUS_CLIENT_ERROR_KINDS)[number];

/** Counters of the bus client's own trouble since startup, read by /metrics and /status. */
export interface BusClientStats {
  /**
   * `consumer_crash`: the consumer stopped on an error (it is restarted); `request_timeout`: a
   * broker did not answer a request of the producer, consumer or admin client in time;
   * `publish_failed`: a publish was rejected or not acknowledged in time.
   */
  readonly clientErrors: Readonly<Record<BusClientErrorKind, number>>;
  /** Times the client got back to the brokers after losing them (consumer back in its group, producer reconnected). */
  readonly reconnects: number;
}

export interface EventBus {
  readonly kind: 'kafka' | 'memory';
  /**
   * Connects and starts delivering records published from now on to `onRecords`. Resolves
   * once the bus is ready; keeps retrying in the background until then.
   */
  start(consumer: BusConsumer): Promise<void>;
  /** Resolves with the record's position once the bus has durably accepted it. */
  publish(record: OutgoingRecord): Promise<Position>;
  readiness(): BusReadiness;
  /** Where this replica's consumer stands in each partition (for lag metrics and status). */
  partitionPositions(): PartitionPosition[];
  /** Present when the bus keeps more than the in-memory history (Kafka). */
  readonly rangeReader?: RangeReader;
  /** Present when the bus talks to brokers through a client that can fail and reconnect (Kafka). */
  readonly stats?: BusClientStats;
  close(): Promise<void>;
}

/** The bus could not accept a record in time; the HTTP layer answers 503. */
export class BusUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BusUnavailableError';
  }
}

/** `promise`, or a BusUnavailableError once `milliseconds` have passed: no Kafka call may hang a caller. */
export function withTimeout<T>(promise: Promise<T>, milliseconds: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BusUnavailableError(message)), milliseconds);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
