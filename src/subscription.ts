import type { RangeReader } from './bus/types.ts';
import { positionKey, SLOT_OF_KIND, type CursorCodec, type CursorEntry, type TopicSlot } from './cursor.ts';
import { channelKey, type ChannelKind } from './events.ts';
import { partitionForKey } from './bus/partitioner.ts';
import type { Dispatcher } from './dispatcher.ts';
import type { History, StoredEvent } from './history.ts';
import type { Hub, HubBatch, HubEvent, Subscriber } from './hub.ts';
import { bodyFrame, idOnlyFrame, withId } from './sse-frame.ts';

/**
 * One stream's subscription: where it starts (live, a resume cursor, or a point in time),
 * the replay of what it missed (from memory, else from Kafka), and the hand-over to live
 * events without a gap or a duplicate.
 *
 * The hand-over works because the dispatcher is synchronous: subscribing to the hub and
 * reading the replica's position happen in the same turn, so every event at or past that
 * position arrives live, and everything before it comes from the replay. Live events that
 * arrive while an asynchronous replay runs wait in a bounded queue, and anything already
 * delivered (by offset, per partition) is skipped: a client resuming on a replica that is
 * behind the one it left sees no event twice.
 */

export interface ChannelRef {
  kind: ChannelKind;
  name: string;
}

export type StartFrom = { kind: 'live' } | { kind: 'cursor'; id: string } | { kind: 'time'; timestamp: number };

export type ResetReason = 'invalid-id' | 'expired' | 'unknown-position' | 'since-unavailable' | 'unavailable';

/**
 * Why a stream ended, for its end-of-stream log line: the client went away, it fell too far
 * behind (`overflow`: its socket buffer; `queue-full`: live events held during its replay), the
 * replica drains, the token expired, a resume page was sent (the client reconnects for the
 * rest), the stream failed to start.
 */
export type StreamEndReason = 'client-left' | 'overflow' | 'queue-full' | 'drain' | 'auth-expired' | 'replay-page' | 'start-failed';

export interface SubscriptionSink {
  /**
   * Writes `frame`, which holds `events` SSE events. `conflateKey` is set on ticker prices, which
   * a client that is behind may skip for a newer one: then only `latest` (the frame of the last
   * event in `frame`, when it holds several) needs keeping.
   */
  write(frame: Buffer, events?: number, conflateKey?: string, latest?: Buffer): void;
  /** Ends the stream (after `lastFrame`); the client reconnects and resumes from its last id. */
  end(lastFrame?: Buffer, reason?: StreamEndReason): void;
  /** Resolves once the client has taken what was written: a replay goes at the client's pace. */
  whenWritable?(): Promise<void>;
}

/** How many replayed events are written between two checks of the client's pace. */
const REPLAY_STRIDE = 16;

export interface SubscriptionContext {
  hub: Hub;
  history: History;
  dispatcher: Dispatcher;
  codec: CursorCodec;
  rangeReader: RangeReader | undefined;
  /** Most events one resume replays; past it the stream ends and the client resumes again. */
  maxReplayEvents: number;
  /** Most live events held while a replay runs; past it the stream ends (the client resumes). */
  maxPendingEvents: number;
  /** A replay starting further back than this tells the client `lag`, then `live`. */
  lagThresholdMs: number;
  now?: () => number;
}

interface Channel {
  key: string;
  kind: ChannelKind;
  name: string;
  slot: TopicSlot;
  partition: number;
}

export interface SubscriptionOutcome {
  resumedFrom: 'live' | 'memory' | 'kafka';
  resets: ResetReason[];
  replayed: number;
}

/** Ticker prices may be conflated for a client that is behind; chat events never are. */
function conflateKey(event: { slot: TopicSlot; channel: string }): string | undefined {
  return event.slot === 1 ? event.channel : undefined;
}

export class Subscription {
  readonly #context: SubscriptionContext;
  readonly #channels: Channel[];
  readonly #sink: SubscriptionSink;
  readonly #cursor = new Map<string, CursorEntry>();
  #pending: HubEvent[] | null = [];
  /** The cursor entry when the stream reads one partition: live batches then go out as shared. */
  #single: CursorEntry | undefined;
  #unsubscribes: Array<() => void> = [];
  #closed = false;

  constructor(context: SubscriptionContext, channels: readonly ChannelRef[], sink: SubscriptionSink) {
    this.#context = context;
    this.#sink = sink;
    this.#channels = channels.map(({ kind, name }) => {
      const slot = SLOT_OF_KIND[kind];
      const partitions = Math.max(1, context.dispatcher.partitionCount(slot));
      return { key: channelKey(kind, name), kind, name, slot, partition: partitionForKey(name, partitions) };
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const unsubscribe of this.#unsubscribes) unsubscribe();
    this.#unsubscribes = [];
    this.#pending = null;
  }

  async start(from: StartFrom): Promise<SubscriptionOutcome> {
    const { hub, dispatcher } = this.#context;
    const subscriber: Subscriber =
      this.#channels.length === 1
        ? { deliverBatch: (batch: HubBatch) => this.#onLive(batch.events, batch) }
        : { deliverEvent: (event: HubEvent) => this.#onLive([event], undefined) };
    this.#unsubscribes = this.#channels.map((channel) => hub.subscribe(channel.key, subscriber));
    // Same turn as subscribing: everything from here on arrives live.
    const liveFrom = new Map(this.#channels.map((channel) => [channel.key, dispatcher.nextOffset(channel.slot, channel.partition)]));

    const resets = new Set<ResetReason>();
    const starts = await this.#startOffsets(from, liveFrom, resets);
    if (this.#closed) return { resumedFrom: 'live', resets: [...resets], replayed: 0 };

    // Channels sharing a partition share its cursor entry: it starts at the earliest of them.
    for (const channel of this.#channels) {
      const start = starts.get(channel.key) ?? liveFrom.get(channel.key);
      if (start === undefined) continue;
      const key = positionKey(channel.slot, channel.partition);
      const entry = this.#cursor.get(key);
      if (entry === undefined || start < entry.next) this.#setEntry(key, { slot: channel.slot, partition: channel.partition, next: start });
    }
    const replay = await this.#replay(starts, liveFrom, resets);
    if (this.#closed) return { resumedFrom: 'live', resets: [...resets], replayed: 0 };

    for (const reason of resets) this.#sink.write(bodyFrame('reset', JSON.stringify({ reason })));
    const now = this.#context.now?.() ?? Date.now();
    const oldest = replay.events[0]?.timestamp;
    const lagging = oldest !== undefined && now - oldest > this.#context.lagThresholdMs;
    if (lagging) this.#sink.write(bodyFrame('lag', JSON.stringify({ behindMs: now - oldest })));
    for (let index = 0; index < replay.events.length; index++) {
      this.#emit(replay.events[index]!);
      if (index % REPLAY_STRIDE === REPLAY_STRIDE - 1 && this.#sink.whenWritable !== undefined) {
        await this.#sink.whenWritable();
        if (this.#closed) return { resumedFrom: replay.source, resets: [...resets], replayed: index + 1 };
      }
    }
    for (const [channel, to] of replay.completeUpTo) this.#advance(channel.slot, channel.partition, to);
    if (this.#cursor.size > 0) this.#sink.write(idOnlyFrame(this.#cursorId()));

    if (!replay.complete) {
      // More to replay than one resume may send: the client reconnects from here for the rest.
      this.#sink.end(undefined, 'replay-page');
      this.close();
      return { resumedFrom: replay.source, resets: [...resets], replayed: replay.events.length };
    }
    const pending = this.#pending ?? [];
    this.#pending = null;
    for (const event of pending) this.#emit(event);
    if (lagging) this.#sink.write(bodyFrame('live', '{}'));
    return { resumedFrom: replay.source, resets: [...resets], replayed: replay.events.length };
  }

  async #startOffsets(from: StartFrom, liveFrom: Map<string, number | undefined>, resets: Set<ResetReason>): Promise<Map<string, number>> {
    const starts = new Map<string, number>();
    if (from.kind === 'cursor') {
      const entries = this.#context.codec.decode(from.id);
      if (entries === null) {
        resets.add('invalid-id');
        return starts;
      }
      const byPosition = new Map(entries.map((entry) => [positionKey(entry.slot, entry.partition), entry.next]));
      for (const channel of this.#channels) {
        const next = byPosition.get(positionKey(channel.slot, channel.partition));
        if (next === undefined) resets.add('unknown-position');
        else starts.set(channel.key, next);
      }
    } else if (from.kind === 'time') {
      const { history, rangeReader, dispatcher } = this.#context;
      for (const channel of this.#channels) {
        const current = liveFrom.get(channel.key);
        let offset = current === undefined ? null : history.offsetAtTime(channel.key, channel.slot, channel.partition, from.timestamp, current);
        if (offset === null && rangeReader !== undefined) {
          offset = await rangeReader
            .offsetForTime(dispatcher.topicOf(channel.slot), channel.partition, from.timestamp)
            .catch(() => null);
        }
        if (offset === null) resets.add('since-unavailable');
        else starts.set(channel.key, offset);
      }
    }
    return starts;
  }

  async #replay(
    starts: Map<string, number>,
    liveFrom: Map<string, number | undefined>,
    resets: Set<ResetReason>,
  ): Promise<{ events: StoredEvent[]; completeUpTo: Map<Channel, number>; complete: boolean; source: SubscriptionOutcome['resumedFrom'] }> {
    const { history, rangeReader, dispatcher, maxReplayEvents } = this.#context;
    let events: StoredEvent[] = [];
    const completeUpTo = new Map<Channel, number>();
    /** Per partition, where an unfinished channel's replay stopped: nothing at or past it may be sent. */
    const cuts = new Map<string, number>();
    const cutAt = (channel: Channel, offset: number) => {
      const key = positionKey(channel.slot, channel.partition);
      cuts.set(key, Math.min(offset, cuts.get(key) ?? offset));
    };
    let source: SubscriptionOutcome['resumedFrom'] = 'live';
    for (const channel of this.#channels) {
      const from = starts.get(channel.key);
      const to = liveFrom.get(channel.key);
      if (from === undefined || to === undefined || from >= to) continue;
      const budget = Math.max(0, maxReplayEvents - events.length);
      const remembered = history.range(channel.key, channel.slot, channel.partition, from, to);
      if (remembered !== null) {
        if (source === 'live') source = 'memory';
        events.push(...remembered.slice(0, budget));
        if (remembered.length > budget) cutAt(channel, remembered[budget]!.offset);
        else completeUpTo.set(channel, to);
        continue;
      }
      if (rangeReader === undefined) {
        resets.add('expired');
        completeUpTo.set(channel, to);
        continue;
      }
      source = 'kafka';
      try {
        const result = await rangeReader.read(dispatcher.topicOf(channel.slot), channel.partition, from, to, channel.name, budget);
        if (result.expired) {
          // The gap cannot be filled: the client is told to reload, and continues live.
          resets.add('expired');
          completeUpTo.set(channel, to);
          continue;
        }
        const last = result.records[result.records.length - 1];
        for (const record of result.records) {
          const stored = dispatcher.toStored(record);
          if (stored !== null && stored.channel === channel.key) events.push(stored);
        }
        if (result.complete) completeUpTo.set(channel, to);
        else cutAt(channel, last === undefined ? from : Number(last.offset) + 1);
      } catch {
        // Kafka could not be read now: the stream ends and the client retries from here.
        cutAt(channel, from);
      }
    }
    const complete = cuts.size === 0;
    if (!complete) events = events.filter((event) => event.offset < (cuts.get(positionKey(event.slot, event.partition)) ?? Infinity));
    // Kafka orders events within a partition only; so does the replay.
    if (this.#channels.length > 1) events.sort((a, b) => a.slot - b.slot || a.partition - b.partition || a.offset - b.offset);
    return { events, completeUpTo: complete ? completeUpTo : new Map(), complete, source };
  }

  #onLive(events: readonly HubEvent[], batch: HubBatch | undefined): void {
    if (this.#pending === null) {
      if (batch !== undefined) this.#deliverBatch(batch);
      else for (const event of events) this.#emit(event);
      return;
    }
    if (this.#pending.length + events.length > this.#context.maxPendingEvents) {
      this.#sink.end(undefined, 'queue-full');
      this.close();
      return;
    }
    for (const event of events) this.#pending.push(event);
  }

  #deliverBatch(batch: HubBatch): void {
    const entry = this.#single;
    // A stream whose cursor is this one partition shows exactly the shared frames' ids: the
    // batch goes out as it is, one write, nothing built for this stream alone.
    if (entry !== undefined && batch.first.offset >= entry.next) {
      const { last } = batch;
      entry.next = last.offset + 1;
      this.#sink.write(batch.frame, batch.events.length, conflateKey(last), last.frame);
      return;
    }
    for (const event of batch.events) this.#emit(event);
  }

  #emit(event: HubEvent | StoredEvent): void {
    const { slot, partition, offset } = event;
    const entry = this.#cursor.get(positionKey(slot, partition));
    if (entry !== undefined && offset < entry.next) return;
    this.#advance(slot, partition, offset + 1);
    // With one partition the id is the one every stream shows: the event's shared frame.
    const frame = this.#single !== undefined && 'frame' in event ? event.frame : withId(this.#cursorId(), event.body);
    this.#sink.write(frame, 1, conflateKey(event));
  }

  /** Moves the stream's position in a partition forward (never back). */
  #advance(slot: TopicSlot, partition: number, next: number): void {
    const key = positionKey(slot, partition);
    const entry = this.#cursor.get(key);
    if (entry === undefined) this.#setEntry(key, { slot, partition, next });
    else if (next > entry.next) entry.next = next;
  }

  #setEntry(key: string, entry: CursorEntry): void {
    this.#cursor.set(key, entry);
    this.#single = this.#cursor.size === 1 ? entry : undefined;
  }

  #cursorId(): string {
    return this.#context.codec.encode(this.#cursor.values());
  }
}
