import type { BusConsumer, BusRecord, PartitionStart } from './bus/types.ts';
import { positionKey, type CursorCodec, type TopicSlot } from './cursor.ts';
import { decodeRecord, type DecodedEvent, type Topics } from './events.ts';
import type { History, StoredEvent } from './history.ts';
import type { Hub, HubEvent } from './hub.ts';
import type { Logger } from './logger.ts';
import { rateLimitedWarn } from './rate-limited-log.ts';
import { bodyFrame, withId } from './sse-frame.ts';

export interface DispatchStats {
  recordsConsumed: number;
  recordsSkipped: number;
  /** One per event per subscriber it was handed to. */
  deliveries: number;
}

/**
 * Told of every valid event once (not per subscriber): metrics, chart history. `live` is false
 * for the warm-up records read at startup to fill the history (old, so not a latency sample).
 */
export type EventObserver = (event: DecodedEvent, record: BusRecord, subscribers: number, live: boolean) => void;

/** Where this replica began reading a partition, and from which offset its records are live. */
export interface PartitionStartInfo {
  offset: number;
  time: number;
  liveFrom: number;
}

/** The id a stream of one channel shows after the event at `offset`: its position is just past it. */
export function singleChannelEventId(codec: CursorCodec, slot: TopicSlot, partition: number, offset: number): string {
  return codec.encode([{ slot, partition, next: offset + 1 }]);
}

/** An event as the history keeps it and the hub hands it on: its frame body built once. */
class DispatchedEvent implements HubEvent {
  readonly channel: string;
  readonly partition: number;
  readonly offset: number;
  readonly timestamp: number;
  readonly #type: string;
  readonly #data: string;
  #body: Buffer | undefined;
  #frame: Buffer | undefined;

  constructor(
    readonly slot: TopicSlot,
    record: BusRecord,
    event: DecodedEvent,
    private readonly codec: CursorCodec,
  ) {
    this.channel = event.channel;
    this.partition = record.partition;
    this.offset = Number(record.offset);
    this.timestamp = record.timestamp;
    this.#type = event.type;
    this.#data = event.data;
  }

  /** Built on first use, once: most events of busy topics are in rooms nobody watches or resumes. */
  get body(): Buffer {
    this.#body ??= bodyFrame(this.#type, this.#data);
    return this.#body;
  }

  get frame(): Buffer {
    this.#frame ??= withId(singleChannelEventId(this.codec, this.slot, this.partition, this.offset), this.body);
    return this.#frame;
  }
}

/**
 * Turns consumed records into events: each record is decoded and validated once, its frame
 * body built once, kept in the history and handed to the hub. A record that breaks the contract
 * is skipped, counted and logged, never thrown: one bad producer must not stop the stream for
 * everyone. It also tracks how far this replica has read each partition: the position a new
 * stream starts from.
 */
export class Dispatcher implements BusConsumer {
  readonly stats: DispatchStats = { recordsConsumed: 0, recordsSkipped: 0, deliveries: 0 };
  readonly #observers: EventObserver[] = [];
  readonly #next = new Map<string, number>();
  readonly #starts = new Map<string, PartitionStartInfo>();
  readonly #partitionCounts: [number, number] = [0, 0];
  readonly #warnSkipped: (context: object, message: string) => void;

  constructor(
    private readonly hub: Hub,
    private readonly history: History,
    private readonly codec: CursorCodec,
    readonly topics: Topics,
    logger: Logger,
  ) {
    this.#warnSkipped = rateLimitedWarn(logger);
  }

  observe(observer: EventObserver): void {
    this.#observers.push(observer);
  }

  slotOf(topic: string): TopicSlot | undefined {
    return topic === this.topics.chat ? 0 : topic === this.topics.ticker ? 1 : undefined;
  }

  topicOf(slot: TopicSlot): string {
    return slot === 0 ? this.topics.chat : this.topics.ticker;
  }

  /** The next offset this replica will read in the partition, once it knows. */
  nextOffset(slot: TopicSlot, partition: number): number | undefined {
    return this.#next.get(positionKey(slot, partition));
  }

  /** Where this replica began reading the partition (its warm-up start), once it knows. */
  partitionStart(slot: TopicSlot, partition: number): PartitionStartInfo | undefined {
    return this.#starts.get(positionKey(slot, partition));
  }

  partitionCount(slot: TopicSlot): number {
    return this.#partitionCounts[slot];
  }

  onPartitionsStart(starts: readonly PartitionStart[]): void {
    for (const start of starts) {
      const slot = this.slotOf(start.topic);
      if (slot === undefined) continue;
      const offset = Number(start.offset);
      const key = positionKey(slot, start.partition);
      this.#next.set(key, offset);
      this.#starts.set(key, { offset, time: start.time, liveFrom: start.liveFrom === undefined ? offset : Number(start.liveFrom) });
      this.#partitionCounts[slot] = Math.max(this.#partitionCounts[slot], start.partition + 1);
      this.history.coverPartitionFrom(slot, start.partition, offset, start.time);
    }
  }

  /** Decodes a record read outside the live flow (a resume reading Kafka) the same way. */
  toStored(record: BusRecord): StoredEvent | null {
    const slot = this.slotOf(record.topic);
    const decoded = decodeRecord(record, this.topics);
    return slot === undefined || !decoded.ok ? null : new DispatchedEvent(slot, record, decoded.event, this.codec);
  }

  readonly onRecords = (records: readonly BusRecord[]): void => {
    for (const record of records) this.#handle(record);
    // Subscribers get the batch's events of their channel in one go (one write each). Still
    // the same turn: a stream subscribing now cannot fall between position and delivery.
    this.hub.flush();
  };

  #handle(record: BusRecord): void {
    this.stats.recordsConsumed += 1;
    const slot = this.slotOf(record.topic);
    const offset = Number(record.offset);
    const key = slot === undefined ? null : positionKey(slot, record.partition);
    // Records read again after a consumer restart never move the position back.
    if (key !== null && offset + 1 > (this.#next.get(key) ?? 0)) this.#next.set(key, offset + 1);
    const decoded = decodeRecord(record, this.topics);
    if (slot === undefined || key === null || !decoded.ok) {
      this.stats.recordsSkipped += 1;
      this.#warnSkipped(
        { topic: record.topic, partition: record.partition, offset: record.offset, reason: decoded.ok ? 'unknown topic' : decoded.reason },
        'skipped a record that does not match the contract',
      );
      return;
    }
    const { event } = decoded;
    const dispatched = new DispatchedEvent(slot, record, event, this.codec);
    this.history.append(dispatched);
    const subscribers = this.hub.publish(dispatched);
    this.stats.deliveries += subscribers;
    const live = offset >= (this.#starts.get(key)?.liveFrom ?? 0);
    for (const observer of this.#observers) observer(event, record, subscribers, live);
  }
}
