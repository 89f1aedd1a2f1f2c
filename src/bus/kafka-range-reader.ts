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
  keys: ReadonlySet<string> | null;
  limit: number;
  /** The next offset to read: records below it were read already (or are stale). */
  cursor: number;
  scanned: number;
  records: BusRecord[];
  resolve(result: RangeResult): void;
  reject(error: Error): void;
}

/** The reads of one partition: one at a time holds the consumer's position, the others wait their turn. */
interface PartitionReads {
  topic: string;
  partition: number;
  active: RangeRequest | null;
  waiting: RangeRequest[];
  /** Fetched for now (holds one of the `MAX_PARTITIONS_FETCHED` fetch slots); else waiting for one, paused. */
  fetching: boolean;
  /** Fires when the active read got no batch for `timeoutMs` while fetched for. */
  stall: NodeJS.Timeout | null;
}

export interface RangeReaderOptions {
  kafka: Kafka;
  admin: () => Admin | null;
  groupId: string;
  topics: string[];
  logger: Logger;
  /** Most records one request may scan (other rooms' records included) before it returns a page. */
  maxScannedRecords?: number;
  /** A read that gets no batch for this long fails (the caller retries). */
  timeoutMs?: number;
  /** How long a partition's low and end offsets are taken from the last answer. */
  offsetsCacheMs?: number;
}

/**
 * kafkajs decodes a whole fetch response and hands its batches on in one go, without giving
 * the event loop back: everything fetched for range reads holds live streams for as long as it
 * takes to decode (bench deep-resume: ~0.3 ms per KB on a loaded 2-core machine, so 1 MB held
 * the loop ~280 ms). So a fetch is kept small: at most this per partition (one read's turn,
 * before the next read on the partition gets its own). Each fetch is a round trip to the
 * broker: at 64 KB one client's 20,000-event replay (40,000 records) took 2.5–4.1 s on the
 * loaded machine; 128 KB was no faster there, and kafkajs decoding showed up in the loop's held
 * stretches again (1.5 s in a minute against 13 ms)...
 */
const MAX_BYTES_PER_PARTITION = 64 * 1024;
/**
 * ...for one partition at a time; reads of further partitions wait for the fetch slot, first
 * come first served, and a partition gives it up after each batch while others wait. One, not
 * several: Kafka returns a record batch larger than the limit whole (else no progress), but only
 * for the first partition of a fetch that has data; the next ones get a cut batch, which
 * kafkajs drops, so with producers' batches over the limit a second partition in the same fetches
 * would make no progress for as long as the first has reads. The floor of one decode is thus
 * one producer batch.
 */
const MAX_PARTITIONS_FETCHED = 1;
const MAX_BYTES_PER_FETCH = MAX_BYTES_PER_PARTITION * MAX_PARTITIONS_FETCHED;

/**
 * The answer to a read that needs no fetch: an empty range (`from >= to`, complete) or no room
 * for records (`limit <= 0`, not complete unless the range is empty); null when there is
 * something to read. One rule for the reader and for RangeReaderThread, which answers these
 * without starting its thread.
 */
export function nothingToRead(from: number, to: number, limit: number): RangeResult | null {
  return from >= to || limit <= 0 ? { expired: false, records: [], complete: from >= to, next: from } : null;
}

/**
 * Reads past ranges of partitions: for resumes older than the in-memory history, and the chart
 * history's backfill at startup. One consumer shared by every read of the replica (kafkajs has
 * no group-less fetch): its partitions stay paused, and a read seeks one partition, resumes it,
 * takes what each fetch brings and moves the consumer's position past it (so a range larger
 * than one fetch is read fetch after fetch), and pauses the partition when done.
 *
 * Fairness: reads of the same partition take turns of one batch each, so a short resume waits
 * for at most one fetch of every deep read ahead of it, never for a whole deep read; partitions
 * take turns for the fetch slots the same way. A fetched batch serves every read of the
 * partition whose position lies inside it, not only the one it was fetched for: clients that
 * resume from about the same place (a replica went away) are served by one read of Kafka. A read
 * returns at most `limit` records (a page) with `next`, where the next page starts.
 */
export class KafkaRangeReader implements RangeReader {
  readonly #options: RangeReaderOptions;
  readonly #partitions = new Map<string, PartitionReads>();
  /** Partitions with an active read waiting for a fetch slot, in the order they asked. */
  readonly #slotQueue: PartitionReads[] = [];
  #slotsUsed = 0;
  readonly #offsets = new Map<string, { at: number; ends: Promise<PartitionEnds> }>();
  /** Batches and records kafkajs fetched and decoded for range reads (records: every record of the batches, read or not). */
  readonly stats = { batches: 0, records: 0 };
  #consumer: Consumer | null = null;
  #starting: Promise<Consumer> | null = null;
  #closed = false;

  constructor(options: RangeReaderOptions) {
    this.#options = options;
  }

  get #timeoutMs(): number {
    return this.#options.timeoutMs ?? 15000;
  }

  read(topic: string, partition: number, from: number, to: number, key: string | readonly string[], limit: number): Promise<RangeResult> {
    return this.#read(topic, partition, from, to, new Set(typeof key === 'string' ? [key] : key), limit);
  }

  readAll(topic: string, partition: number, from: number, to: number, limit: number): Promise<RangeResult> {
    return this.#read(topic, partition, from, to, null, limit);
  }

  async endOffset(topic: string, partition: number, atLeast?: number): Promise<number | null> {
    let end = await this.#partitionOffsets(topic, partition, false);
    // A cached end may be older than a record the caller has seen: ask again before saying it is past the end.
    if (end !== null && atLeast !== undefined && end.high < atLeast) end = await this.#partitionOffsets(topic, partition, true);
    return end?.high ?? null;
  }

  /** The partition's oldest retained offset and end offset; from a cache younger than `offsetsCacheMs` unless `fresh`. */
  async #partitionOffsets(topic: string, partition: number, fresh: boolean): Promise<{ low: number; high: number } | null> {
    const now = Date.now();
    let cached = this.#offsets.get(topic);
    if (fresh || cached === undefined || now - cached.at > (this.#options.offsetsCacheMs ?? 1000)) {
      const ends = withTimeout(this.#admin().fetchTopicOffsets(topic), this.#timeoutMs, 'Kafka did not answer the offsets in time');
      cached = { at: now, ends };
      this.#offsets.set(topic, cached);
      // A failed answer is not kept: the next caller asks again.
      ends.catch(() => {
        if (this.#offsets.get(topic) === cached) this.#offsets.delete(topic);
      });
    }
    const entry = (await cached.ends).find((candidate) => candidate.partition === partition);
    return entry === undefined ? null : { low: Number(entry.low), high: Number(entry.high) };
  }

  async #read(topic: string, partition: number, from: number, to: number, keys: ReadonlySet<string> | null, limit: number): Promise<RangeResult> {
    const empty = nothingToRead(from, to, limit);
    if (empty !== null) return empty;
    let offsets = await this.#partitionOffsets(topic, partition, false);
    if (from < (offsets?.low ?? 0)) return { expired: true };
    if (offsets !== null && offsets.high < to) offsets = await this.#partitionOffsets(topic, partition, true);
    // Nothing exists past the partition's end (a topic recreated under a running replica): no fetch would ever bring it.
    if (offsets !== null && offsets.high < to) to = Math.max(from, offsets.high);
    if (from >= to) return { expired: false, records: [], complete: true, next: to };
    // The reader's consumer joins its group on first use: bounded too, so a resume never hangs on it.
    const consumer = await withTimeout(this.#start(), this.#timeoutMs, 'the Kafka range reader did not start in time');
    if (this.#closed) throw new Error('closing');
    return new Promise<RangeResult>((resolve, reject) => {
      const request: RangeRequest = { to, keys, limit, cursor: from, scanned: 0, records: [], resolve, reject };
      const partitionKey = `${topic}:${partition}`;
      let reads = this.#partitions.get(partitionKey);
      if (reads === undefined) {
        reads = { topic, partition, active: null, waiting: [], fetching: false, stall: null };
        this.#partitions.set(partitionKey, reads);
      }
      if (reads.active === null) this.#activate(consumer, reads, request);
      else reads.waiting.push(request);
    });
  }

  /** Gives `request` the partition: the consumer reads on from the request's cursor (once the partition has a fetch slot). */
  #activate(consumer: Consumer, reads: PartitionReads, request: RangeRequest): void {
    reads.active = request;
    if (reads.fetching) {
      consumer.seek({ topic: reads.topic, partition: reads.partition, offset: String(request.cursor) });
      reads.stall?.refresh();
    } else {
      this.#slotQueue.push(reads);
      this.#grantSlots(consumer);
    }
  }

  /** Partitions waiting for a fetch slot get the free ones, in the order they asked. */
  #grantSlots(consumer: Consumer): void {
    while (this.#slotsUsed < MAX_PARTITIONS_FETCHED && this.#slotQueue.length > 0) {
      const reads = this.#slotQueue.shift()!;
      const request = reads.active;
      if (request === null) continue;
      reads.fetching = true;
      this.#slotsUsed += 1;
      consumer.seek({ topic: reads.topic, partition: reads.partition, offset: String(request.cursor) });
      consumer.resume([{ topic: reads.topic, partitions: [reads.partition] }]);
      reads.stall = setTimeout(() => this.#onStall(consumer, reads), this.#timeoutMs);
    }
  }

  /** The partition is no longer fetched for (its reads are done, or its turn is over). */
  #releaseSlot(consumer: Consumer, reads: PartitionReads): void {
    if (!reads.fetching) return;
    reads.fetching = false;
    this.#slotsUsed -= 1;
    if (reads.stall !== null) clearTimeout(reads.stall);
    reads.stall = null;
    consumer.pause([{ topic: reads.topic, partitions: [reads.partition] }]);
  }

  /** The active read is over (done or failed): the next waiting read gets the partition, or it is paused. */
  #next(consumer: Consumer, reads: PartitionReads): void {
    const next = reads.waiting.shift();
    if (next !== undefined) {
      this.#activate(consumer, reads, next);
      return;
    }
    reads.active = null;
    this.#releaseSlot(consumer, reads);
    const queued = this.#slotQueue.indexOf(reads);
    if (queued >= 0) this.#slotQueue.splice(queued, 1);
    this.#partitions.delete(`${reads.topic}:${reads.partition}`);
    this.#grantSlots(consumer);
  }

  /**
   * No batch for the active read in `timeoutMs`. Either its offsets were deleted meanwhile (the
   * fetch was out of range: the result is `expired`) or Kafka is not answering (an error: the
   * caller retries from where it is).
   */
  #onStall(consumer: Consumer, reads: PartitionReads): void {
    const request = reads.active;
    reads.stall = null;
    if (request === null) return;
    // The partition goes to the back of the line: reads of other partitions are not held up by it.
    this.#releaseSlot(consumer, reads);
    this.#next(consumer, reads);
    this.#partitionOffsets(reads.topic, reads.partition, true).then(
      (offsets) => {
        if (offsets !== null && request.cursor < offsets.low) request.resolve({ expired: true });
        else request.reject(new Error('reading Kafka took too long'));
      },
      (error: unknown) => request.reject(error instanceof Error ? error : new Error(String(error))),
    );
  }

  #onBatch({ batch, isStale }: EachBatchPayload, consumer: Consumer): void {
    this.stats.batches += 1;
    this.stats.records += batch.messages.length;
    const reads = this.#partitions.get(`${batch.topic}:${batch.partition}`);
    const request = reads?.active;
    // Fetched before the partition was given to the active read (a seek is pending), or for a read that ended.
    if (reads === undefined || request == null || !reads.fetching || isStale()) return;
    // kafkajs's Batch has `fetchedOffset` (the offset the fetch asked for) but its typings omit it.
    const fetchedOffset = Number((batch as Batch & { fetchedOffset?: string }).fetchedOffset ?? request.cursor);
    if (fetchedOffset !== request.cursor) {
      // Not where the active read stands: read again from there.
      consumer.seek({ topic: batch.topic, partition: batch.partition, offset: String(request.cursor) });
      return;
    }
    // Offsets can skip (transaction markers, compaction): the batch's end still tells progress.
    const batchEnd = Number(batch.lastOffset()) + 1;
    // The batch holds every record from the fetched offset to its end: each read standing in
    // that range takes its share (the active one, and waiting ones at about the same place).
    this.#take(request, batch, batchEnd);
    for (const waiting of reads.waiting) {
      if (waiting.cursor >= fetchedOffset && waiting.cursor < batchEnd) this.#take(waiting, batch, batchEnd);
    }
    reads.stall?.refresh();
    if (reads.waiting.some((waiting) => this.#done(waiting))) {
      reads.waiting = reads.waiting.filter((waiting) => {
        if (!this.#done(waiting)) return true;
        this.#resolve(waiting);
        return false;
      });
    }
    if (this.#done(request)) {
      this.#resolve(request);
      this.#next(consumer, reads);
    } else if (reads.waiting.length > 0) {
      // Its turn is over: the reads waiting for this partition go first, it continues after them.
      reads.waiting.push(request);
      this.#activate(consumer, reads, reads.waiting.shift()!);
    } else {
      consumer.seek({ topic: batch.topic, partition: batch.partition, offset: String(request.cursor) });
    }
    if (reads.fetching && this.#slotQueue.length > 0) {
      // Other partitions wait for a fetch slot: this one goes to the back of the line.
      this.#releaseSlot(consumer, reads);
      this.#slotQueue.push(reads);
      this.#grantSlots(consumer);
    }
  }

  /** Takes the records of `batch` from the read's position on, up to its end, its limit or its scan budget. */
  #take(request: RangeRequest, batch: Batch, batchEnd: number): void {
    const maxScanned = this.#options.maxScannedRecords ?? 50_000;
    let consumedAll = true;
    for (const message of batch.messages) {
      const offset = Number(message.offset);
      if (offset < request.cursor) continue;
      if (offset >= request.to) break;
      if (request.records.length >= request.limit || request.scanned >= maxScanned) {
        consumedAll = false;
        break;
      }
      request.cursor = offset + 1;
      request.scanned += 1;
      if (request.keys === null || (message.key !== null && request.keys.has(message.key.toString('utf8')))) {
        request.records.push(busRecordOf(batch, message));
      }
    }
    if (consumedAll && batchEnd > request.cursor) request.cursor = Math.min(batchEnd, request.to);
  }

  /** The read has its page: its range is read, or its limit or scan budget reached. */
  #done(request: RangeRequest): boolean {
    return request.cursor >= request.to || request.records.length >= request.limit || request.scanned >= (this.#options.maxScannedRecords ?? 50_000);
  }

  #resolve(request: RangeRequest): void {
    request.resolve({ expired: false, records: request.records, complete: request.cursor >= request.to, next: request.cursor });
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

  #start(): Promise<Consumer> {
    if (this.#consumer !== null) return Promise.resolve(this.#consumer);
    this.#starting ??= (async () => {
      const { kafka, groupId, topics, logger } = this.#options;
      // A short wait when idle: a read that resumes a partition is fetched for within it.
      const consumer = kafka.consumer({
        groupId,
        maxWaitTimeInMs: 20,
        maxBytesPerPartition: MAX_BYTES_PER_PARTITION,
        maxBytes: MAX_BYTES_PER_FETCH,
        allowAutoTopicCreation: false,
        retry: { retries: 3 },
      });
      await consumer.connect();
      await consumer.subscribe({ topics, fromBeginning: false });
      const joined = new Promise<void>((resolve) => {
        const remove = consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
          // Idle until a read asks: nothing is read that nobody needs.
          consumer.pause(Object.entries(payload.memberAssignment).map(([topic, partitions]) => ({ topic, partitions })));
          remove();
          resolve();
        });
      });
      try {
        await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: async (payload) => this.#onBatch(payload, consumer) });
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
    for (const reads of this.#partitions.values()) {
      if (reads.stall !== null) clearTimeout(reads.stall);
      for (const request of [reads.active, ...reads.waiting]) request?.reject(new Error('closing'));
    }
    this.#partitions.clear();
    this.#slotQueue.length = 0;
    this.#slotsUsed = 0;
    await this.#consumer?.disconnect().catch(() => {});
  }
}
