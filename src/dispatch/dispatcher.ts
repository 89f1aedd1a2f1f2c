import type { BusConsumer, BusRecord, PartitionStart, RecordsHandler } from '../bus/types.ts';
import { positionKey, type CursorCodec, type TopicSlot } from '../connection/cursor.ts';
import { DedupTable, dedupKey, type DedupStats, type FirstRecord } from './dedup.ts';
import type { ChannelRegistry } from '../channels/kind.ts';
import { channelKey, decodeRecord, type DecodedEvent } from '../channels/records.ts';
import type { RecentEvents, StoredEvent } from '../hub/recent-events.ts';
import type { Hub, HubEvent } from '../hub/hub.ts';
import type { Logger } from '../logger.ts';
import { ledgerKey, MessageLedger, type LedgerEntry, type LedgerStats } from './message-ledger.ts';
import { rateLimitedWarn } from '../rate-limited-log.ts';
import { bodyFrame, withId } from '../connection/sse-frame.ts';

export interface DispatchStats {
  recordsConsumed: number;
  /** Records breaking the contract (not counting repeats: see `duplicatesSkipped`). */
  recordsSkipped: number;
  /** Valid records dropped as the repeat of a message id seen shortly before (src/dispatch/dedup.ts). */
  duplicatesSkipped: number;
  /** One per event per subscriber it was handed to. */
  deliveries: number;
}

/**
 * Told of every valid event once (not per subscriber): metrics, chart history. `live` is false
 * for the warm-up records read at startup to fill the history (old, so not a latency sample).
 */
export type EventObserver = (event: DecodedEvent, record: BusRecord, subscribers: number, live: boolean) => void;

/** Most channels whose partition a replica remembers (~100 bytes each). */
const MAX_KNOWN_CHANNELS = 1_000_000;

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

/** Bytes of the `id: …` line `frame` puts before the body, at most (a one-position id is ~30 characters). */
const ID_LINE_BYTES = 64;

/**
 * Bytes a DispatchedEvent of this type and data holds once its body and frame are built: the data
 * text (V8 keeps a string of Latin-1 characters at one byte each, any other at two), the body
 * (`event: <type>\n`, `data: <data>\n` and a blank line: 16 bytes besides type and data, UTF-8;
 * the data is JSON, one line) and the frame (the body again, after its `id:` line).
 */
function dispatchedEventBytes(type: string, data: string): number {
  const dataBytes = Buffer.byteLength(data, 'utf8');
  const text = dataBytes === data.length ? data.length : 2 * data.length;
  const body = Buffer.byteLength(type, 'utf8') + dataBytes + 16;
  return text + body + ID_LINE_BYTES + body;
}

/** An event as the history keeps it and the hub hands it on: its frame body built once. */
class DispatchedEvent implements HubEvent {
  readonly channel: string;
  readonly partition: number;
  readonly offset: number;
  readonly timestamp: number;
  /** What the history counts against HISTORY_MAX_TOTAL_BYTES (with EVENT_OVERHEAD_BYTES): see `dispatchedEventBytes`. */
  readonly heldBytes: number;
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
    this.heldBytes = dispatchedEventBytes(event.type, event.data);
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
  readonly stats: DispatchStats = { recordsConsumed: 0, recordsSkipped: 0, duplicatesSkipped: 0, deliveries: 0 };
  readonly #observers: EventObserver[] = [];
  readonly #next = new Map<string, number>();
  readonly #starts = new Map<string, PartitionStartInfo>();
  readonly #partitionCounts = new Map<TopicSlot, number>();
  /**
   * The partition each channel's records were last seen on: where its stream is followed
   * whatever partitioner wrote the topic (README, "Channel kinds"). Bounded: past
   * MAX_KNOWN_CHANNELS the longest-known are forgotten (they are followed on every partition,
   * or where murmur2 puts them, until seen again).
   */
  readonly #channelPartitions = new Map<string, number>();
  readonly #warnSkipped: (context: object, message: string) => void;
  readonly #dedup: DedupTable;
  readonly #ledger: MessageLedger;
  readonly #logger: Logger;
  /** Topics that are no channel kind's, and who takes their records (see `sideTopic`). */
  readonly #sideTopics = new Map<string, RecordsHandler>();
  /** Callers waiting for this replica to consume a partition up to an offset (see `whenConsumed`). */
  readonly #waiters = new Set<{ key: string; offset: number; resolve: (reached: boolean) => void }>();

  /**
   * `options.dedupWindowMs`: a record repeating a message id of its channel seen at most this
   * long before is dropped (0 = never; keep it within the warm-up read, `HISTORY_MAX_AGE_MS`).
   * `options.ledgerWindowMs`: how long after its Kafka timestamp a chat message's author stays
   * known (src/dispatch/message-ledger.ts; the warm-up read, `HISTORY_MAX_AGE_MS`, so that a replica
   * started later knows the same messages). 0: no window (tests of other things).
   */
  constructor(
    private readonly hub: Hub,
    private readonly history: RecentEvents,
    private readonly codec: CursorCodec,
    readonly registry: ChannelRegistry,
    logger: Logger,
    options: { dedupWindowMs?: number; ledgerWindowMs?: number; ledgerMaxEntries?: number } = {},
  ) {
    this.#warnSkipped = rateLimitedWarn(logger);
    this.#logger = logger;
    this.#dedup = new DedupTable({ windowMs: options.dedupWindowMs ?? 0 });
    this.#ledger = new MessageLedger({
      windowMs: options.ledgerWindowMs ?? 0,
      ...(options.ledgerMaxEntries !== undefined ? { maxEntries: options.ledgerMaxEntries } : {}),
    });
  }

  /** The message ledger's counters (entries held, entries evicted by its count bound). */
  get ledgerStats(): LedgerStats {
    return this.#ledger.stats;
  }

  /**
   * Who wrote message `messageId` of the room, and whether it was deleted, when this replica
   * consumed it and its Kafka timestamp is within the ledger window before `now`; undefined
   * otherwise (never posted, not consumed yet, or older).
   */
  messageEntry(kind: string, name: string, messageId: string, now = Date.now()): LedgerEntry | undefined {
    return this.#ledger.lookup(ledgerKey(channelKey(kind, name), messageId), now);
  }

  /**
   * True when this replica consumed the record at this position and skipped it as the repeat of
   * an earlier message id (and still remembers it): such a record is not a message of its own.
   */
  wasSkippedRepeat(topic: string, partition: number, offset: number): boolean {
    const slot = this.slotOf(topic);
    return slot !== undefined && this.#dedup.wasSkipped(slot, partition, offset);
  }

  /**
   * Resolves true once this replica has consumed the partition up to `offset` (its next offset
   * is past it), false after `timeoutMs` without: a request can wait for a record it knows was
   * written to reach this replica's tables.
   */
  whenConsumed(slot: TopicSlot, partition: number, offset: number, timeoutMs: number): Promise<boolean> {
    const key = positionKey(slot, partition);
    if ((this.#next.get(key) ?? 0) > offset) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = {
        key,
        offset,
        resolve: (reached: boolean) => {
          clearTimeout(timer);
          this.#waiters.delete(waiter);
          resolve(reached);
        },
      };
      const timer = setTimeout(() => waiter.resolve(false), timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  /** The message-id table's counters (ids held, repeats skipped, ids evicted by its count bound). */
  get dedupStats(): DedupStats {
    return this.#dedup.stats;
  }

  /**
   * Where the first record of id `messageId` (a record's `dedupId`: the message id, or for an
   * edit `editDedupId(message id, edit id)`) of this type in the channel is, when this
   * replica consumed one within the dedup window before `now`: a publish retry answers with it
   * instead of writing again. Undefined when unknown (not yet consumed, or outside the window).
   */
  firstRecordOf(channel: string, type: string, messageId: string, now = Date.now()): (FirstRecord & { topic: string }) | undefined {
    const first = this.#dedup.firstRecord(dedupKey(channel, type, messageId), now);
    return first === undefined ? undefined : { ...first, topic: this.topicOf(first.slot) };
  }

  /**
   * Hands the records of `topic` (a side topic, such as the presence topic) to `handler`
   * instead of decoding them as channel events: they get no SSE id, never enter the history,
   * and are not counted as skipped. Handlers run in the consumer's turn: they must not block.
   */
  sideTopic(topic: string, handler: RecordsHandler): void {
    this.#sideTopics.set(topic, handler);
  }

  observe(observer: EventObserver): void {
    this.#observers.push(observer);
  }

  slotOf(topic: string): TopicSlot | undefined {
    return this.registry.byTopic(topic)?.slot;
  }

  /** The topic of a kind's slot; '' for a slot of no kind (ids carry only slots of the registry's kinds). */
  topicOf(slot: TopicSlot): string {
    return this.registry.bySlot(slot)?.topic ?? '';
  }

  /** The partition the channel's records were last seen on by this replica, when it saw one. */
  partitionOf(channel: string): number | undefined {
    return this.#channelPartitions.get(channel);
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
    return this.#partitionCounts.get(slot) ?? 0;
  }

  /** The topic's partition count, for a replica whose starts do not cover all of them (sharded mode). */
  onTopicPartitions(topic: string, count: number): void {
    const slot = this.slotOf(topic);
    if (slot !== undefined) this.#partitionCounts.set(slot, Math.max(this.partitionCount(slot), count));
  }

  onPartitionsStart(starts: readonly PartitionStart[]): void {
    for (const start of starts) {
      const slot = this.slotOf(start.topic);
      if (slot === undefined) continue;
      const offset = Number(start.offset);
      const key = positionKey(slot, start.partition);
      this.#next.set(key, offset);
      this.#starts.set(key, { offset, time: start.time, liveFrom: start.liveFrom === undefined ? offset : Number(start.liveFrom) });
      this.#partitionCounts.set(slot, Math.max(this.partitionCount(slot), start.partition + 1));
      this.history.coverPartitionFrom(slot, start.partition, offset, start.time);
    }
  }

  /**
   * Decodes a record read outside the live flow (a resume reading Kafka) the same way; null for
   * one that breaks the contract or that this replica skipped as a repeat when it consumed it.
   * A record this replica never consumed (before its warm-up start) cannot be judged: it is
   * returned (README, "Idempotent publishing").
   */
  toStored(record: BusRecord): StoredEvent | null {
    const slot = this.slotOf(record.topic);
    if (slot === undefined || this.#dedup.wasSkipped(slot, record.partition, Number(record.offset))) return null;
    const decoded = decodeRecord(record, this.registry);
    return !decoded.ok ? null : new DispatchedEvent(slot, record, decoded.event, this.codec);
  }

  readonly onRecords = (records: readonly BusRecord[]): void => {
    let side: Map<RecordsHandler, BusRecord[]> | undefined;
    for (const record of records) {
      const handler = this.#sideTopics.size === 0 ? undefined : this.#sideTopics.get(record.topic);
      if (handler === undefined) this.#handle(record);
      else {
        side ??= new Map();
        const batch = side.get(handler);
        if (batch === undefined) side.set(handler, [record]);
        else batch.push(record);
      }
    }
    if (side !== undefined) for (const [handler, batch] of side) handler(batch);
    // Subscribers get the batch's events of their channel in one go (one write each), now or in
    // the hub's next slices; a stream subscribing meanwhile is handed them too and keeps those
    // past its position, so none falls between position and delivery.
    this.hub.flush();
    for (const waiter of this.#waiters) {
      if ((this.#next.get(waiter.key) ?? 0) > waiter.offset) waiter.resolve(true);
    }
  };

  #learnPartition(channel: string, partition: number): void {
    const known = this.#channelPartitions.get(channel);
    if (known === partition) return;
    if (known === undefined && this.#channelPartitions.size >= MAX_KNOWN_CHANNELS) {
      const oldest = this.#channelPartitions.keys().next().value;
      if (oldest !== undefined) this.#channelPartitions.delete(oldest);
    }
    this.#channelPartitions.set(channel, partition);
  }

  #handle(record: BusRecord): void {
    this.stats.recordsConsumed += 1;
    const slot = this.slotOf(record.topic);
    const offset = Number(record.offset);
    const key = slot === undefined ? null : positionKey(slot, record.partition);
    // Records read again after a consumer restart never move the position back.
    if (key !== null && offset + 1 > (this.#next.get(key) ?? 0)) this.#next.set(key, offset + 1);
    const decoded = decodeRecord(record, this.registry);
    if (slot === undefined || key === null || !decoded.ok) {
      this.stats.recordsSkipped += 1;
      this.#warnSkipped(
        { topic: record.topic, partition: record.partition, offset: record.offset, reason: decoded.ok ? 'unknown topic' : decoded.reason },
        'skipped a record that does not match the contract',
      );
      return;
    }
    const { event } = decoded;
    if (event.dedupId !== undefined && this.#dedup.judge(slot, record.partition, dedupKey(event.channel, event.type, event.dedupId), offset, record.timestamp)) {
      this.stats.duplicatesSkipped += 1;
      this.#logger.debug({ topic: record.topic, partition: record.partition, offset: record.offset, id: event.dedupId }, 'skipped the repeat of a message id');
      return;
    }
    const ownership = event.kind.ownership;
    if (ownership !== undefined && event.messageId !== undefined) {
      const position = { slot, partition: record.partition, offset };
      const messageKey = ledgerKey(event.channel, event.messageId);
      if (event.type === ownership.created) this.#ledger.recordMessage(messageKey, event.author, position, record.timestamp);
      else if (event.type === ownership.deleted) this.#ledger.recordDelete(messageKey, position, record.timestamp);
    }
    this.#learnPartition(event.channel, record.partition);
    const dispatched = new DispatchedEvent(slot, record, event, this.codec);
    this.history.append(dispatched);
    const subscribers = this.hub.publish(dispatched);
    this.stats.deliveries += subscribers;
    const live = offset >= (this.#starts.get(key)?.liveFrom ?? 0);
    for (const observer of this.#observers) observer(event, record, subscribers, live);
  }
}
