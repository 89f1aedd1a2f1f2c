import type { RecordMetadata, TopicMessages } from 'kafkajs';
import type { OutgoingRecord, Position } from './types.ts';

/** How a PublishQueue sends: kafkajs's `producer.sendBatch`, with `acks: -1`. */
export type SendBatch = (topicMessages: TopicMessages[]) => Promise<RecordMetadata[]>;

/**
 * The partition Kafka's default partitioner gives `record` (murmur2 of its key over the topic's
 * partition count: src/bus/partitioner.ts). Throws when the topic's partition count is unknown.
 */
export type PartitionOf = (record: OutgoingRecord) => number;

export interface PublishQueueLimits {
  /** Sends under way at once, each to one partition (kafkajs's per-broker lock serialises those to the same broker). */
  sendsInFlight: number;
  /** Records in one send, at most. */
  recordsPerSend: number;
  /**
   * Bytes of keys and values in one send, at most (a record larger than this goes alone). Under
   * the broker's default `message.max.bytes` (1 MiB), which bounds a partition's record batch;
   * a topic configured lower refuses a batch as too large, which then goes again in halves
   * (see PublishQueue).
   */
  bytesPerSend: number;
}

/**
 * Sends under way: 64, far more than brokers (kafkajs queues a broker's behind its lock, as it
 * did one send per publish), so that partitions whose leader is unreachable hold a few
 * slots while the others go on.
 */
export const DEFAULT_PUBLISH_QUEUE_LIMITS: PublishQueueLimits = { sendsInFlight: 64, recordsPerSend: 500, bytesPerSend: 512 * 1024 };

interface Queued {
  record: OutgoingRecord;
  partition: number;
  bytes: number;
  abandoned: boolean;
  resolve(position: Position): void;
  reject(error: unknown): void;
}

/** Kafka's refusals of a record batch for its size (protocol error codes 10 and 18): nothing of it was written. */
const BATCH_TOO_LARGE = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);

/** Whether a send failed as a refusal for size: nothing of it was written, and the producer's sequence numbers stand. */
export function refusedForSize(error: unknown): boolean {
  return BATCH_TOO_LARGE.has((error as { type?: unknown } | null)?.type as string);
}

/**
 * The replica's publishes, sent to Kafka in as few produce requests as the producer allows, and
 * never two at once to one partition.
 *
 * Why batches: kafkajs's idempotent producer sends one request per broker at a time (a lock per
 * broker keeps its sequence numbers in order: kafkajs/src/producer/eosManager), so publishes
 * sent one by one wait a round trip each behind each other: 40 concurrent POSTs to a room took
 * 40 round trips, and on a loaded machine the last ones waited past PUBLISH_TIMEOUT_MS (503).
 * Here a publish goes out at once while its partition has no send under way and fewer than
 * `sendsInFlight` sends are under way; the partition's publishes that arrive meanwhile go
 * together in its next send, as the Java producer's accumulator does (a linger without a timer:
 * an idle replica adds no delay). Order per partition, so per key, is the order of `enqueue` calls.
 *
 * Why one send per partition at a time: when a produce request fails (a timeout included, when
 * the broker may well have written it), kafkajs winds the partition's sequence number back and
 * releases the broker's lock before it retries (kafkajs/src/producer/sendMessages.js). A second
 * send to the same partition waiting on that lock then goes out with the first one's sequence
 * number; the broker takes it for a retry of the first (same producer id, same sequence numbers)
 * and acknowledges it with the first one's offset without writing it, and the first one's retry
 * is written as new: one acknowledged publish missing from Kafka, another written twice (chaos
 * run 16, docs/CHAOS.md). With one send per partition nothing else uses the partition's sequence
 * numbers while kafkajs retries; after a send that failed for good the caller must not send to
 * Kafka with that producer again (KafkaBus replaces it), since its numbers may now repeat
 * written ones.
 *
 * One partition per send, so per produce request: when a request fails, kafkajs winds back the
 * sequence numbers of every partition in it, also of partitions the broker had written. A batch
 * refused as too large is sent again in halves, so that one record's refusal ends as its own.
 */
export class PublishQueue {
  readonly #send: SendBatch;
  readonly #limits: PublishQueueLimits;
  readonly #partitionOf: PartitionOf;
  /** Waiting publishes per topic and partition, in the order they began waiting. */
  readonly #waiting = new Map<string, Queued[]>();
  /** Topic partitions with a send under way. */
  readonly #sending = new Set<string>();
  /** Records waiting (abandoned ones included, until dropped) or being sent. */
  #size = 0;
  /** Per topic, bytes a send may carry after the topic refused a batch as too large (half the refused one). */
  readonly #topicBytes = new Map<string, number>();

  constructor(send: SendBatch, partitionOf: PartitionOf, limits: PublishQueueLimits = DEFAULT_PUBLISH_QUEUE_LIMITS) {
    this.#send = send;
    this.#partitionOf = partitionOf;
    this.#limits = limits;
  }

  /**
   * Publishes queued and not yet answered, abandoned ones included until they are dropped:
   * what a caller bounds (KafkaBus: `maxPendingPublishes`), since an abandoned publish is
   * dropped only when its key's turn comes.
   */
  get size(): number {
    return this.#size;
  }

  /**
   * Queues `record` for its partition's next send. `position` resolves with where Kafka wrote
   * it, or rejects with the send's error (outcome unknown: kafkajs retried, then gave up).
   * `abandon()` (the publisher stopped waiting) keeps a record that has not gone out yet from
   * going out at all; its `position` then rejects. Throws what `partitionOf` throws.
   */
  enqueue(record: OutgoingRecord): { position: Promise<Position>; abandon(): void } {
    const partition = this.#partitionOf(record);
    let entry!: Queued;
    const position = new Promise<Position>((resolve, reject) => {
      entry = { record, partition, bytes: Buffer.byteLength(record.key) + Buffer.byteLength(record.value), abandoned: false, resolve, reject };
    });
    this.#size += 1;
    void position.then(
      () => (this.#size -= 1),
      () => (this.#size -= 1),
    );
    const key = `${record.topic}\0${partition}`;
    const waiting = this.#waiting.get(key);
    if (waiting === undefined) this.#waiting.set(key, [entry]);
    else waiting.push(entry);
    this.#pump();
    return { position, abandon: () => void (entry.abandoned = true) };
  }

  #pump(): void {
    while (this.#sending.size < this.#limits.sendsInFlight) {
      const next = this.#take();
      if (next === null) return;
      this.#sending.add(next.key);
      void this.#sendBatch(next.key, next.batch);
    }
  }

  /** The next send: the longest-waiting partition without a send under way, its records within the limits. */
  #take(): { key: string; batch: Queued[] } | null {
    for (const [key, waiting] of this.#waiting) {
      if (this.#sending.has(key)) continue;
      const batch: Queued[] = [];
      let bytes = 0;
      const maxBytes = this.#topicBytes.get(waiting[0]?.record.topic ?? '') ?? this.#limits.bytesPerSend;
      while (waiting.length > 0 && batch.length < this.#limits.recordsPerSend) {
        const next = waiting[0]!;
        if (next.abandoned) {
          waiting.shift();
          dropAbandoned(next);
          continue;
        }
        if (batch.length > 0 && bytes + next.bytes > maxBytes) break;
        batch.push(waiting.shift()!);
        bytes += next.bytes;
      }
      // To the back of the line, with whatever is left.
      this.#waiting.delete(key);
      if (waiting.length > 0) this.#waiting.set(key, waiting);
      if (batch.length > 0) return { key, batch };
    }
    return null;
  }

  async #sendBatch(key: string, batch: Queued[]): Promise<void> {
    try {
      await this.#sendSplitting(batch);
    } finally {
      this.#sending.delete(key);
      this.#pump();
    }
  }

  /**
   * Sends `batch` (one partition's records, in order) and answers each record. A batch the topic
   * refuses as too large wrote nothing: its halves go in turn (each split again if refused),
   * leaving out publishes abandoned meanwhile, and the topic's later batches stay under half
   * the refused size. Any other failure fails the batch's publishes (outcome unknown).
   */
  async #sendSplitting(batch: Queued[]): Promise<void> {
    try {
      await this.#sendRecords(batch);
    } catch (error) {
      if (batch.length === 1 || !refusedForSize(error)) {
        for (const entry of batch) entry.reject(error);
        return;
      }
      const { topic } = batch[0]!.record;
      const refused = batch.reduce((sum, entry) => sum + entry.bytes, 0);
      this.#topicBytes.set(topic, Math.min(this.#topicBytes.get(topic) ?? Infinity, Math.max(1, Math.floor(refused / 2))));
      const left: Queued[] = [];
      for (const entry of batch) {
        if (entry.abandoned) dropAbandoned(entry);
        else left.push(entry);
      }
      const half = Math.ceil(left.length / 2);
      if (half > 0) await this.#sendSplitting(left.slice(0, half));
      if (left.length > half) await this.#sendSplitting(left.slice(half));
    }
  }

  /**
   * Sends records of one partition (named in each message, so that kafkajs's partitioner cannot
   * place them elsewhere), then answers each with its offset: the partition's base offset plus its place.
   */
  async #sendRecords(batch: Queued[]): Promise<void> {
    const { topic } = batch[0]!.record;
    const { partition } = batch[0]!;
    const answers = await this.#send([{ topic, messages: batch.map(({ record }) => ({ key: record.key, value: record.value, headers: record.headers, partition })) }]);
    const answer = answers.find((candidate) => candidate.topicName === topic && candidate.partition === partition);
    if (answers.length !== 1 || answer?.baseOffset === undefined) throw new Error('Kafka returned no offset for the records');
    const base = BigInt(answer.baseOffset);
    for (const [index, entry] of batch.entries()) entry.resolve({ topic, partition: answer.partition, offset: String(base + BigInt(index)) });
  }
}

/** A publish whose publisher stopped waiting, left out before it was sent. */
function dropAbandoned(entry: Queued): void {
  entry.reject(new Error('abandoned before it was sent'));
}
