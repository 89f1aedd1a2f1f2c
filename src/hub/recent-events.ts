import { positionKey, type TopicSlot } from '../connection/cursor.ts';

/**
 * Recent events per channel, so a reconnecting client resumes from memory on any replica.
 * Bounded four ways: events per channel, age, events in all, and bytes in all. The store also
 * knows from which offset its view of each channel is complete, so it can tell "nothing happened
 * since" from "I no longer know": the second sends the resume to Kafka.
 */

/**
 * Bytes an event costs the history besides its text and Buffers (`heldBytes`): the event object
 * and its small strings (channel, type), the JS objects around its body and frame Buffers, its
 * slot in the channel's ring. Measured on Node 20: 0.8-1 KB an event for a chat message of 64
 * characters with its body and frame built (heap + external after GC, 20,000 events, less their
 * text and Buffers); rounded up.
 */
export const EVENT_OVERHEAD_BYTES = 1024;

export interface StoredEvent {
  channel: string;
  slot: TopicSlot;
  partition: number;
  offset: number;
  timestamp: number;
  /** The `event:` and `data:` lines and the closing blank line: the frame without its id. */
  body: Buffer;
  /**
   * Bytes of text and Buffers the event holds while the history keeps it, counting those it
   * builds on first use (a frame body, a shared frame with its `id:` line) and the text they are
   * built from; the same value for the event's whole life. Absent: `body`'s length (the event
   * holds its body and nothing else).
   */
  readonly heldBytes?: number;
}

/** What one event counts against `maxTotalBytes`, in bytes: what it holds plus EVENT_OVERHEAD_BYTES. */
export function eventBytes(event: StoredEvent): number {
  return (event.heldBytes ?? event.body.byteLength) + EVENT_OVERHEAD_BYTES;
}

export interface RecentEventsLimits {
  maxEventsPerChannel: number;
  maxAgeMs: number;
  maxTotalEvents: number;
  /**
   * Bytes in all (each event counted by `eventBytes`), beside `maxTotalEvents`: whichever is
   * reached first evicts, in the same order (HISTORY_MAX_TOTAL_BYTES; see `Config`). Absent: no
   * byte bound (tests of other things; the gateway always sets it).
   */
  maxTotalBytes?: number;
  /** Per kind (its slot), a bound of its own instead of maxEventsPerChannel (a declaration's `historyMaxEvents`). */
  maxEventsPerSlot?: ReadonlyMap<number, number>;
}

interface Coverage {
  /** Every event from this offset on has been seen. */
  offset: number;
  /** …and every event from this time on. */
  time: number;
}

/** A log starts this small and doubles up to its capacity: most channels are quiet. */
const INITIAL_LOG_SLOTS = 8;

class ChannelLog {
  entries: (StoredEvent | undefined)[];
  start = 0;
  size = 0;
  /** Dropped so far: every event below `offset`, all with timestamps up to `time`. */
  readonly dropped: Coverage = { offset: 0, time: -Infinity };

  constructor(
    readonly capacity: number,
    readonly slot: TopicSlot,
    public partition: number,
  ) {
    this.entries = new Array(Math.min(capacity, INITIAL_LOG_SLOTS));
  }

  at(index: number): StoredEvent {
    return this.entries[(this.start + index) % this.entries.length]!;
  }

  get full(): boolean {
    return this.size === this.capacity;
  }

  /** Appends to a log that is not full (the caller drops its oldest first). */
  push(event: StoredEvent): void {
    if (this.size === this.entries.length) this.#grow();
    this.entries[(this.start + this.size) % this.entries.length] = event;
    this.size += 1;
    this.partition = event.partition;
  }

  #grow(): void {
    const entries = new Array<StoredEvent | undefined>(Math.min(this.capacity, this.entries.length * 2));
    for (let index = 0; index < this.size; index++) entries[index] = this.at(index);
    this.entries = entries;
    this.start = 0;
  }

  /** Drops the oldest entry (the log is not empty) and returns it. */
  dropOldest(): StoredEvent {
    const oldest = this.at(0);
    this.entries[this.start] = undefined;
    this.start = (this.start + 1) % this.entries.length;
    this.size -= 1;
    this.dropped.offset = oldest.offset + 1;
    this.dropped.time = Math.max(this.dropped.time, oldest.timestamp);
    return oldest;
  }

  /** Index of the first entry with offset >= `offset` (binary search: offsets only grow). */
  firstAtOrAfter(offset: number): number {
    let low = 0;
    let high = this.size;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (this.at(middle).offset < offset) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}

export class RecentEvents {
  readonly #limits: RecentEventsLimits;
  /** Map order is the order channels last received an event: the first is the stalest. */
  readonly #channels = new Map<string, ChannelLog>();
  /** Per partition: from where (offset and time) this replica's view is complete. */
  readonly #partitions = new Map<string, Coverage>();
  readonly #maxTotalBytes: number;
  #total = 0;
  /** The held events' `eventBytes`, summed. */
  #bytes = 0;

  constructor(limits: RecentEventsLimits) {
    this.#limits = limits;
    this.#maxTotalBytes = limits.maxTotalBytes ?? Infinity;
  }

  get totalEvents(): number {
    return this.#total;
  }

  /** Bytes held in all, as `maxTotalBytes` counts them (`eventBytes`): never above it after an append. */
  get totalBytes(): number {
    return this.#bytes;
  }

  get channelCount(): number {
    return this.#channels.size;
  }

  /** This replica sees every record of the partition from `offset` (and from `time`) on. */
  coverPartitionFrom(slot: TopicSlot, partition: number, offset: number, time: number): void {
    this.#partitions.set(positionKey(slot, partition), { offset, time });
  }

  append(event: StoredEvent, now = Date.now()): void {
    let log = this.#channels.get(event.channel);
    // A consumer that restarts from its last commit reads some records again: keep them once.
    if (log !== undefined && log.size > 0 && log.partition === event.partition && event.offset <= log.at(log.size - 1).offset) return;
    if (log === undefined) {
      log = new ChannelLog(this.#limits.maxEventsPerSlot?.get(event.slot) ?? this.#limits.maxEventsPerChannel, event.slot, event.partition);
    } else {
      this.#channels.delete(event.channel);
    }
    this.#channels.set(event.channel, log);
    if (log.full) this.#dropOldest(log);
    log.push(event);
    this.#total += 1;
    this.#bytes += eventBytes(event);
    this.#dropOlderThan(log, now - this.#limits.maxAgeMs);
    this.#evictOverTotals();
  }

  /** Drops events past the age limit everywhere (a shared timer calls this; appends do it per channel). */
  sweep(now = Date.now()): void {
    const cutoff = now - this.#limits.maxAgeMs;
    for (const [channel, log] of this.#channels) {
      this.#dropOlderThan(log, cutoff);
      if (log.size === 0) this.#forget(channel, log);
    }
  }

  #dropOlderThan(log: ChannelLog, cutoff: number): void {
    while (log.size > 0 && log.at(0).timestamp < cutoff) this.#dropOldest(log);
  }

  /** Every drop goes through here: the log's coverage moves past the event, the totals go down. */
  #dropOldest(log: ChannelLog): void {
    const dropped = log.dropOldest();
    this.#total -= 1;
    this.#bytes -= eventBytes(dropped);
  }

  /**
   * The bounds over all channels, `maxTotalEvents` and `maxTotalBytes`, evict in one order: the
   * least recently active channel (the first in `#channels`) gives up its oldest events first,
   * and is forgotten once empty; then the next. A single channel over a bound keeps its newest
   * events. What a drop loses is then read from Kafka (or gets `reset` on the embedded bus), as
   * for any position older than the history: `range` and `offsetAtTime` no longer vouch for it.
   */
  #evictOverTotals(): void {
    while (this.#total > this.#limits.maxTotalEvents || this.#bytes > this.#maxTotalBytes) {
      const stalest = this.#channels.entries().next().value;
      if (stalest === undefined) return;
      const [channel, log] = stalest;
      // A log the age bound emptied on this append is still listed (the sweep forgets those).
      if (log.size > 0) this.#dropOldest(log);
      if (log.size === 0) this.#forget(channel, log);
    }
  }

  /**
   * Without its log nothing says what the channel lost, so its whole partition's view now
   * starts after the channel's last dropped event: conservative for the partition's other
   * channels (they fall back to Kafka sooner), never wrong.
   */
  #forget(channel: string, log: ChannelLog): void {
    this.#channels.delete(channel);
    const key = positionKey(log.slot, log.partition);
    const coverage = this.#partitions.get(key);
    if (coverage === undefined) return;
    this.#partitions.set(key, {
      offset: Math.max(coverage.offset, log.dropped.offset),
      time: Math.max(coverage.time, log.dropped.time + 1),
    });
  }

  /**
   * What the store can vouch for about a channel: complete from `offset` and from `time`. Complete
   * from offset 0 means complete from the partition's very first record: no earlier time can
   * hold anything it lacks (an embedded bus since its start, a topic younger than the warm-up).
   */
  #coverage(channel: string, slot: TopicSlot, partition: number): { log: ChannelLog | undefined; offset: number; time: number } | null {
    const partitionCoverage = this.#partitions.get(positionKey(slot, partition));
    if (partitionCoverage === undefined) return null;
    const log = this.#channels.get(channel);
    if (log !== undefined && log.partition !== partition) return null;
    const offset = Math.max(partitionCoverage.offset, log?.dropped.offset ?? 0);
    const time = offset === 0 ? -Infinity : Math.max(partitionCoverage.time, (log?.dropped.time ?? -Infinity) + 1);
    return { log, offset, time };
  }

  /**
   * The channel's events with `from <= offset < to`, or null when the store cannot vouch that
   * it holds all of them (the caller reads Kafka instead).
   */
  range(channel: string, slot: TopicSlot, partition: number, from: number, to: number): StoredEvent[] | null {
    const coverage = this.#coverage(channel, slot, partition);
    if (coverage === null || from < coverage.offset) return null;
    const { log } = coverage;
    const events: StoredEvent[] = [];
    if (log === undefined) return events;
    for (let index = log.firstAtOrAfter(from); index < log.size; index++) {
      const event = log.at(index);
      if (event.offset >= to) break;
      events.push(event);
    }
    return events;
  }

  /**
   * Where a stream of the channel starting at `timestamp` begins: the offset of its first event
   * at or after that time, `current` when there is none, null when memory cannot tell.
   */
  offsetAtTime(channel: string, slot: TopicSlot, partition: number, timestamp: number, current: number): number | null {
    const coverage = this.#coverage(channel, slot, partition);
    if (coverage === null || timestamp < coverage.time) return null;
    const { log } = coverage;
    if (log !== undefined) {
      for (let index = 0; index < log.size; index++) {
        if (log.at(index).timestamp >= timestamp) return log.at(index).offset;
      }
    }
    return current;
  }
}
