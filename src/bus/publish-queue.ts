import { Partitioners, type ICustomPartitioner, type Message, type RecordMetadata, type TopicMessages } from 'kafkajs';
import type { OutgoingRecord, Position } from './types.ts';

/** How a PublishQueue sends: kafkajs's `producer.sendBatch`, with `acks: -1`. */
export type SendBatch = (topicMessages: TopicMessages[]) => Promise<RecordMetadata[]>;

export interface PublishQueueLimits {
  /** Sends under way at once (kafkajs's per-broker lock serialises the ones to the same broker). */
  sendsInFlight: number;
  /** Records in one send, at most. */
  recordsPerSend: number;
  /**
   * Bytes of keys and values in one send, at most (a record larger than this goes alone). Kept
   * well under the broker's `message.max.bytes` (1 MiB by default), which bounds each
   * partition's record batch in the request.
   */
  bytesPerSend: number;
}

export const DEFAULT_PUBLISH_QUEUE_LIMITS: PublishQueueLimits = { sendsInFlight: 5, recordsPerSend: 500, bytesPerSend: 512 * 1024 };

interface Queued {
  record: OutgoingRecord;
  message: Message;
  bytes: number;
  abandoned: boolean;
  resolve(position: Position): void;
  reject(error: unknown): void;
}

/**
 * kafkajs's DefaultPartitioner (murmur2 of the key, as the Java client), which also remembers
 * the partition it chose for each message object: a send of many records answers one base
 * offset per partition, and each record's offset is that base plus its place among the
 * records sent to the partition (kafkajs keeps their order: one record batch per partition).
 */
export function recordingPartitioner(): { createPartitioner: ICustomPartitioner; partitionOf(message: Message): number | undefined } {
  const chosen = new WeakMap<Message, number>();
  return {
    createPartitioner: () => {
      const partitioner = Partitioners.DefaultPartitioner();
      return (args) => {
        const partition = partitioner(args);
        chosen.set(args.message, partition);
        return partition;
      };
    },
    partitionOf: (message) => chosen.get(message),
  };
}

/**
 * The replica's publishes, sent to Kafka in as few produce requests as the producer allows.
 *
 * Why: kafkajs's idempotent producer sends one request per broker at a time (a lock per broker
 * keeps its sequence numbers in order: kafkajs/src/producer/eosManager), so publishes sent one
 * by one wait a round trip each behind each other: 40 concurrent POSTs took 40 round trips to
 * the same broker, and on a loaded machine the last ones waited past PUBLISH_TIMEOUT_MS (503).
 * Here a publish goes out at once while fewer than `sendsInFlight` sends are under way; the ones
 * that arrive meanwhile go together in the next send, as the Java producer's accumulator does
 * (a linger without a timer: an idle replica adds no delay). Order per partition is the order
 * of `enqueue` calls, as with one send per record.
 */
export class PublishQueue {
  readonly #send: SendBatch;
  readonly #partitionOf: (message: Message) => number | undefined;
  readonly #limits: PublishQueueLimits;
  readonly #queue: Queued[] = [];
  #inFlight = 0;

  constructor(send: SendBatch, partitionOf: (message: Message) => number | undefined, limits: PublishQueueLimits = DEFAULT_PUBLISH_QUEUE_LIMITS) {
    this.#send = send;
    this.#partitionOf = partitionOf;
    this.#limits = limits;
  }

  /**
   * Queues `record` for the next send. `position` resolves with where Kafka wrote it, or rejects
   * with the send's error (outcome unknown: kafkajs retried, then gave up). `abandon()` (the
   * publisher stopped waiting) keeps a record that has not gone out yet from going out at all.
   */
  enqueue(record: OutgoingRecord): { position: Promise<Position>; abandon(): void } {
    let entry!: Queued;
    const position = new Promise<Position>((resolve, reject) => {
      const message: Message = { key: record.key, value: record.value, headers: record.headers };
      entry = { record, message, bytes: Buffer.byteLength(record.key) + Buffer.byteLength(record.value), abandoned: false, resolve, reject };
    });
    this.#queue.push(entry);
    this.#pump();
    return { position, abandon: () => void (entry.abandoned = true) };
  }

  #pump(): void {
    while (this.#inFlight < this.#limits.sendsInFlight) {
      const batch = this.#take();
      if (batch.length === 0) return;
      this.#inFlight += 1;
      void this.#sendBatch(batch);
    }
  }

  /** A send answered: the next one goes out before its publishers hear back (who may publish again). */
  #sendDone(): void {
    this.#inFlight -= 1;
    this.#pump();
  }

  /** The next send's records: the queue's head, within the limits, skipping abandoned ones. */
  #take(): Queued[] {
    const batch: Queued[] = [];
    let bytes = 0;
    while (this.#queue.length > 0 && batch.length < this.#limits.recordsPerSend) {
      const next = this.#queue[0]!;
      if (next.abandoned) {
        this.#queue.shift();
        next.reject(new Error('abandoned before it was sent'));
        continue;
      }
      if (batch.length > 0 && bytes + next.bytes > this.#limits.bytesPerSend) break;
      batch.push(this.#queue.shift()!);
      bytes += next.bytes;
    }
    return batch;
  }

  async #sendBatch(batch: Queued[]): Promise<void> {
    const byTopic = new Map<string, Queued[]>();
    for (const entry of batch) {
      const entries = byTopic.get(entry.record.topic);
      if (entries === undefined) byTopic.set(entry.record.topic, [entry]);
      else entries.push(entry);
    }
    let answers: RecordMetadata[];
    try {
      answers = await this.#send([...byTopic].map(([topic, entries]) => ({ topic, messages: entries.map((entry) => entry.message) })));
    } catch (error) {
      this.#sendDone();
      for (const entry of batch) entry.reject(error);
      return;
    }
    this.#sendDone();
    const baseOffsets = new Map(answers.map((answer) => [`${answer.topicName}:${answer.partition}`, answer.baseOffset]));
    for (const [topic, entries] of byTopic) {
      const placed = new Map<number, number>();
      for (const entry of entries) {
        const partition = this.#partitionOf(entry.message);
        const base = partition === undefined ? undefined : baseOffsets.get(`${topic}:${partition}`);
        if (partition === undefined || base === undefined) {
          entry.reject(new Error('Kafka returned no offset for the record'));
          continue;
        }
        const index = placed.get(partition) ?? 0;
        placed.set(partition, index + 1);
        entry.resolve({ topic, partition, offset: String(BigInt(base) + BigInt(index)) });
      }
    }
  }
}
