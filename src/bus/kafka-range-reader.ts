import type { Admin, Batch, Consumer, EachBatchPayload, Kafka, KafkaMessage } from 'kafkajs';
import type { Logger } from '../logger.ts';
import { withTimeout, type BusRecord, type RangeReader, type RangeResult } from './types.ts';

/** A kafkajs message as the bus hands records on. */
export function busRecordOf(batch: Pick<Batch, 'topic' | 'partition'>, message: KafkaMessage): BusRecord {
  return {
    topic: batch.topic,
    partition: batch.partition,
    offset: message.offset,
    key: message.key,
    value: message.value,
    headers: (message.headers ?? {}) as BusRecord['headers'],
    timestamp: Number(message.timestamp),
  };
}

type PartitionEnds = Array<{ partition: number; low: string; high: string }>;
type PartitionTimeOffsets = Array<{ partition: number; offset: string }>;

/**
 * Where reading a partition from a time begins: the first offset at or after it, or the end
 * when nothing is that recent (Kafka answers -1). `low` is the oldest offset still retained.
 */
export function offsetAtTime(byTime: PartitionTimeOffsets, ends: PartitionEnds, partition: number): { offset: number; low: number } | null {
  const end = ends.find((entry) => entry.partition === partition);
  if (end === undefined) return null;
  const found = Number(byTime.find((entry) => entry.partition === partition)?.offset ?? -1);
  return { offset: found < 0 ? Number(end.high) : found, low: Number(end.low) };
}

interface RangeRequest {
  to: number;
  /** null: every key. */
  key: string | null;
  limit: number;
  /** The next offset expected: older (stale) records are ignored. */
  cursor: number;
  scanned: number;
  records: BusRecord[];
  finish(result: RangeResult | Error): void;
}

export interface RangeReaderOptions {
  kafka: Kafka;
  admin: () => Admin | null;
  groupId: string;
  topics: string[];
  logger: Logger;
  /** Most records one request may scan (other rooms' records included) before it stops. */
  maxScannedRecords?: number;
  timeoutMs?: number;
}

/**
 * Reads past ranges of partitions: for resumes older than the in-memory history, and the chart
 * history's backfill at startup (in pages, so resumes get their turn in between). One consumer
 * shared by every resume of the replica (kafkajs has no group-less fetch): its partitions stay
 * paused, and a request seeks one partition, resumes it until the range is read, and pauses it
 * again. Requests on the same partition take turns; different partitions read concurrently.
 */
export class KafkaRangeReader implements RangeReader {
  readonly #options: RangeReaderOptions;
  readonly #active = new Map<string, RangeRequest>();
  readonly #queues = new Map<string, Promise<unknown>>();
  #consumer: Consumer | null = null;
  #starting: Promise<Consumer> | null = null;
  #closed = false;

  constructor(options: RangeReaderOptions) {
    this.#options = options;
  }

  read(topic: string, partition: number, from: number, to: number, key: string, limit: number): Promise<RangeResult> {
    return this.#read(topic, partition, from, to, key, limit);
  }

  readAll(topic: string, partition: number, from: number, to: number, limit: number): Promise<RangeResult> {
    return this.#read(topic, partition, from, to, null, limit);
  }

  async #read(topic: string, partition: number, from: number, to: number, key: string | null, limit: number): Promise<RangeResult> {
    if (from >= to || limit <= 0) return { expired: false, records: [], complete: from >= to };
    const admin = this.#admin();
    const offsets = await admin.fetchTopicOffsets(topic);
    const low = Number(offsets.find((entry) => entry.partition === partition)?.low ?? 0);
    if (from < low) return { expired: true };
    const queueKey = `${topic}:${partition}`;
    const previous = this.#queues.get(queueKey) ?? Promise.resolve();
    const turn = previous.catch(() => {}).then(() => this.#readNow(topic, partition, from, to, key, limit));
    this.#queues.set(queueKey, turn);
    try {
      return await turn;
    } finally {
      if (this.#queues.get(queueKey) === turn) this.#queues.delete(queueKey);
    }
  }

  async offsetForTime(topic: string, partition: number, timestamp: number): Promise<number | null> {
    const admin = this.#admin();
    const [byTime, ends] = await Promise.all([admin.fetchTopicOffsetsByTimestamp(topic, timestamp), admin.fetchTopicOffsets(topic)]);
    const start = offsetAtTime(byTime, ends, partition);
    // Events from that time already deleted: the stream cannot start there.
    return start === null || start.offset < start.low ? null : start.offset;
  }

  #admin(): Admin {
    const admin = this.#options.admin();
    if (admin === null) throw new Error('Kafka is not connected');
    return admin;
  }

  async #readNow(topic: string, partition: number, from: number, to: number, key: string | null, limit: number): Promise<RangeResult> {
    // The reader's consumer joins its group on first use: bounded too, so a resume never hangs on it.
    const consumer = await withTimeout(this.#start(), this.#options.timeoutMs ?? 15000, 'the Kafka range reader did not start in time');
    const requestKey = `${topic}:${partition}`;
    return new Promise<RangeResult>((resolve, reject) => {
      const timer = setTimeout(() => request.finish(new Error('reading Kafka took too long')), this.#options.timeoutMs ?? 15000);
      const request: RangeRequest = {
        to,
        key,
        limit,
        cursor: from,
        scanned: 0,
        records: [],
        finish: (result) => {
          if (this.#active.get(requestKey) !== request) return;
          clearTimeout(timer);
          this.#active.delete(requestKey);
          consumer.pause([{ topic, partitions: [partition] }]);
          if (result instanceof Error) reject(result);
          else resolve(result);
        },
      };
      this.#active.set(requestKey, request);
      consumer.seek({ topic, partition, offset: String(from) });
      consumer.resume([{ topic, partitions: [partition] }]);
    });
  }

  #onBatch({ batch }: EachBatchPayload): void {
    const request = this.#active.get(`${batch.topic}:${batch.partition}`);
    if (request === undefined) return;
    const maxScanned = this.#options.maxScannedRecords ?? 200_000;
    for (const message of batch.messages) {
      const offset = Number(message.offset);
      if (offset < request.cursor) continue;
      if (offset >= request.to) break;
      request.cursor = offset + 1;
      request.scanned += 1;
      if (request.key === null || message.key?.toString('utf8') === request.key) {
        request.records.push(busRecordOf(batch, message));
        if (request.records.length >= request.limit) break;
      }
      if (request.scanned >= maxScanned) break;
    }
    // Offsets can skip (transaction markers, compaction): the batch's end still tells progress.
    const batchEnd = Number(batch.lastOffset()) + 1;
    if (batch.messages.length > 0 && batchEnd > request.cursor && batchEnd <= request.to && request.records.length < request.limit) {
      request.cursor = batchEnd;
    }
    if (request.cursor >= request.to) request.finish({ expired: false, records: request.records, complete: true });
    else if (request.records.length >= request.limit || request.scanned >= maxScanned) {
      request.finish({ expired: false, records: request.records, complete: false });
    }
  }

  #start(): Promise<Consumer> {
    if (this.#consumer !== null) return Promise.resolve(this.#consumer);
    this.#starting ??= (async () => {
      const { kafka, groupId, topics, logger } = this.#options;
      const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 100, allowAutoTopicCreation: false, retry: { retries: 3 } });
      await consumer.connect();
      await consumer.subscribe({ topics, fromBeginning: false });
      const joined = new Promise<void>((resolve) => {
        const remove = consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
          // Idle until a resume asks: nothing is read that nobody needs.
          consumer.pause(Object.entries(payload.memberAssignment).map(([topic, partitions]) => ({ topic, partitions })));
          remove();
          resolve();
        });
      });
      try {
        await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: async (payload) => this.#onBatch(payload) });
        await withTimeout(joined, 60000, 'the Kafka range reader did not join its group in time');
      } catch (error) {
        // The next read starts over with a fresh consumer.
        logger.warn({ err: error, groupId }, 'Kafka range reader failed to start');
        await consumer.disconnect().catch(() => {});
        throw error;
      }
      if (this.#closed) {
        await consumer.disconnect();
        throw new Error('closed');
      }
      logger.debug({ groupId }, 'Kafka range reader ready');
      this.#consumer = consumer;
      return consumer;
    })();
    this.#starting.catch(() => {
      this.#starting = null;
    });
    return this.#starting;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const request of [...this.#active.values()]) request.finish(new Error('closing'));
    await this.#consumer?.disconnect().catch(() => {});
  }
}
