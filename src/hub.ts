import type { StoredEvent } from './history.ts';

/**
 * The local fan-out point of one replica. Keyed by channel: one entry per active room or
 * symbol holding its subscribers, so publishing touches only that channel's subscribers and
 * twenty thousand connections never mean twenty thousand listeners on one emitter.
 */

/** A live event: what the history keeps, plus the frame streams of its one channel share. */
export interface HubEvent extends StoredEvent {
  /**
   * The whole frame for streams of this one channel: its `id:` is the same for all of them,
   * so it is built once, on first use, and shared.
   */
  readonly frame: Buffer;
}

export interface Subscriber {
  /** Receives the event shared by every subscriber of the channel; must not modify it. */
  deliver(event: HubEvent): void;
}

export class Hub {
  readonly #channels = new Map<string, Set<Subscriber>>();

  /** Returns the function that removes this subscription (idempotent). */
  subscribe(channel: string, subscriber: Subscriber): () => void {
    let subscribers = this.#channels.get(channel);
    if (subscribers === undefined) {
      subscribers = new Set();
      this.#channels.set(channel, subscribers);
    }
    subscribers.add(subscriber);
    return () => this.#unsubscribe(channel, subscriber);
  }

  #unsubscribe(channel: string, subscriber: Subscriber): void {
    const subscribers = this.#channels.get(channel);
    if (subscribers === undefined) return;
    subscribers.delete(subscriber);
    if (subscribers.size === 0) this.#channels.delete(channel);
  }

  hasSubscribers(channel: string): boolean {
    return this.#channels.has(channel);
  }

  /** Hands `event` to every subscriber of its channel; returns how many received it. */
  publish(event: HubEvent): number {
    const subscribers = this.#channels.get(event.channel);
    if (subscribers === undefined) return 0;
    for (const subscriber of subscribers) subscriber.deliver(event);
    return subscribers.size;
  }

  get channelCount(): number {
    return this.#channels.size;
  }

  subscriberCount(channel: string): number {
    return this.#channels.get(channel)?.size ?? 0;
  }
}
