import type { StoredEvent } from './history.ts';

/**
 * The local fan-out point of one replica. Keyed by channel: one entry per active room or
 * symbol holding its subscribers, so publishing touches only that channel's subscribers and
 * twenty thousand connections never mean twenty thousand listeners on one emitter.
 *
 * Streams of one channel get their events in batches: everything published for the channel
 * until `flush()` (the dispatcher flushes once per batch of consumed records) reaches each of
 * them in one call, with one frame for the whole batch, built once and shared. Under load a
 * subscriber then costs one socket write per batch instead of one per event. Streams of several
 * channels get each event at once, in publish order: their ids hold one position per partition,
 * and channels sharing a partition must interleave in partition order.
 */

/** A live event: what the history keeps, plus the frame streams of its one channel share. */
export interface HubEvent extends StoredEvent {
  /**
   * The whole frame for streams of this one channel: its `id:` is the same for all of them,
   * so it is built once, on first use, and shared.
   */
  readonly frame: Buffer;
}

/** The events of one channel published since the last flush, in order (one partition). */
export class HubBatch {
  readonly events: HubEvent[] = [];
  #frame: Buffer | undefined;

  constructor(readonly channel: string) {}

  get first(): HubEvent {
    return this.events[0]!;
  }

  get last(): HubEvent {
    return this.events[this.events.length - 1]!;
  }

  /** Every event's shared frame back to back: what a stream of this channel alone is sent. */
  get frame(): Buffer {
    if (this.#frame === undefined) {
      this.#frame = this.events.length === 1 ? this.first.frame : Buffer.concat(this.events.map((event) => event.frame));
    }
    return this.#frame;
  }
}

/** Receives what is shared by every subscriber of the channel; must not modify it. */
export type Subscriber = { deliverBatch(batch: HubBatch): void } | { deliverEvent(event: HubEvent): void };

interface ChannelSubscribers {
  batched: Set<Subscriber & { deliverBatch(batch: HubBatch): void }>;
  each: Set<Subscriber & { deliverEvent(event: HubEvent): void }>;
  size: number;
}

export class Hub {
  readonly #channels = new Map<string, ChannelSubscribers>();
  #batches = new Map<string, HubBatch>();

  /** Returns the function that removes this subscription (idempotent). */
  subscribe(channel: string, subscriber: Subscriber): () => void {
    let subscribers = this.#channels.get(channel);
    if (subscribers === undefined) {
      subscribers = { batched: new Set(), each: new Set(), size: 0 };
      this.#channels.set(channel, subscribers);
    }
    const set: Set<Subscriber> = 'deliverBatch' in subscriber ? subscribers.batched : subscribers.each;
    if (!set.has(subscriber)) {
      set.add(subscriber);
      subscribers.size += 1;
    }
    return () => this.#unsubscribe(channel, subscriber);
  }

  #unsubscribe(channel: string, subscriber: Subscriber): void {
    const subscribers = this.#channels.get(channel);
    if (subscribers === undefined) return;
    const set: Set<Subscriber> = 'deliverBatch' in subscriber ? subscribers.batched : subscribers.each;
    if (set.delete(subscriber)) subscribers.size -= 1;
    if (subscribers.size === 0) this.#channels.delete(channel);
  }

  hasSubscribers(channel: string): boolean {
    return this.#channels.has(channel);
  }

  /**
   * Hands `event` to its channel's per-event subscribers, and queues it for the batched ones
   * until the next `flush()`; returns how many receive it. Nothing is queued for a channel
   * nobody watches.
   */
  publish(event: HubEvent): number {
    const subscribers = this.#channels.get(event.channel);
    if (subscribers === undefined) return 0;
    for (const subscriber of subscribers.each) subscriber.deliverEvent(event);
    if (subscribers.batched.size > 0) {
      let batch = this.#batches.get(event.channel);
      if (batch === undefined) {
        batch = new HubBatch(event.channel);
        this.#batches.set(event.channel, batch);
      }
      batch.events.push(event);
    }
    return subscribers.size;
  }

  /** Hands every queued batch to the subscribers of its channel. */
  flush(): void {
    if (this.#batches.size === 0) return;
    const batches = this.#batches;
    this.#batches = new Map();
    for (const batch of batches.values()) {
      const subscribers = this.#channels.get(batch.channel);
      if (subscribers !== undefined) for (const subscriber of subscribers.batched) subscriber.deliverBatch(batch);
    }
  }

  get channelCount(): number {
    return this.#channels.size;
  }

  subscriberCount(channel: string): number {
    return this.#channels.get(channel)?.size ?? 0;
  }
}
