import type { Producer, RecordMetadata, TopicMessages } from 'kafkajs';
import type { Logger } from '../logger.ts';
import { refusedForSize } from './publish-queue.ts';

export interface ProducerEvents {
  /** The current producer connected (its first connect, or a replacement's). */
  onConnect(): void;
  /** The current producer lost its connection to the brokers. */
  onDisconnect(): void;
  /** A request of the current producer was not answered in time. */
  onRequestTimeout(): void;
}

/** Milliseconds between attempts to connect a replacement producer while Kafka does not answer. */
const REPLACE_RETRY_MS = 1000;

/**
 * kafkajs's idempotent producer, replaced by a fresh one (a new producer id from Kafka, its
 * sequence numbers from 0) after any send that failed with an unknown outcome.
 *
 * Why: a failed produce request may have been written (a timeout while the broker waited for
 * its replicas), yet kafkajs winds the partition's sequence number back (kafkajs/src/producer/
 * sendMessages.js). The next, different batch to that partition then carries the written
 * batch's sequence numbers, and the broker answers it as a duplicate of that batch, with its
 * offset, without writing it: an acknowledged publish missing from Kafka. The Java producer
 * avoids this by bumping its epoch after such a failure (KIP-360); kafkajs does not, so the
 * producer is replaced. Sends already under way on the old producer finish there (their own
 * retries repeat their own sequence numbers, which is what idempotence is for); the old
 * producer is disconnected once they have. The failed send answers at once; every send
 * started from then on, the failed partition's next one included (PublishQueue sends one at a
 * time per partition, so it starts after the failed one answered), waits for the new producer.
 * While no new producer can connect, `connected` is false: publishing answers 503 at once.
 */
export class ReplaceableProducer {
  readonly #create: () => Producer;
  readonly #events: ProducerEvents;
  readonly #logger: Logger;
  #current: Producer;
  #connected = false;
  #closed = false;
  /** The replacement under way, if any: sends wait for it. */
  #replacing: Promise<void> | null = null;
  /** Sends under way per producer: a replaced one is disconnected when its count reaches 0. */
  readonly #inFlight = new Map<Producer, number>();
  /** Replaced producers not yet disconnected. */
  readonly #retired = new Set<Producer>();
  /** Producers this one disconnected (replaced, or fresh ones that failed to connect): their events are no outage. */
  readonly #letGo = new WeakSet<Producer>();
  #replacements = 0;
  /** Resolves when `disconnect` is called: sends waiting for a replacement stop waiting. */
  readonly #whenClosed: Promise<void>;
  #markClosed!: () => void;

  /** `create` makes an idempotent kafkajs producer (not connected). */
  constructor(create: () => Producer, events: ProducerEvents, logger: Logger) {
    this.#create = create;
    this.#events = events;
    this.#logger = logger;
    this.#current = this.#wire(create());
    this.#whenClosed = new Promise<void>((resolve) => (this.#markClosed = resolve));
  }

  /** Whether the current producer is connected: publishing answers 503 at once when not. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Producers replaced since startup after a send with an unknown outcome. */
  get replacements(): number {
    return this.#replacements;
  }

  /**
   * Connects the first producer; when it cannot, keeps trying in the background (a fresh
   * producer every REPLACE_RETRY_MS, as after a failed send) and resolves false: publishing
   * answers 503 meanwhile, and the rest of the replica (consuming, streams) need not wait. Why:
   * kafkajs's idempotent producer asks for the metadata of every topic of the cluster before it
   * can have a producer id (its `initProducerId` with no topic yet), and kafkajs fails that
   * answer while any partition of any topic has no leader: one broker down under someone else's
   * single-replica topic kept a replica starting meanwhile from starting at all. Resolves true
   * once connected; at once when connected or connecting already.
   */
  async connectOrKeepTrying(): Promise<boolean> {
    if (this.#connected) return true;
    if (this.#replacing !== null) return false;
    const first = this.#current;
    try {
      await first.connect();
      if (first === this.#current) this.#connected = true;
      return true;
    } catch (error) {
      if (this.#closed) throw error;
      this.#logger.warn({ err: error }, 'Kafka producer could not connect; publishing answers 503 while it retries');
      this.#letGo.add(first);
      void first.disconnect().catch(() => undefined);
      this.#replacing ??= this.#connectFresh();
      return false;
    }
  }

  /**
   * kafkajs `sendBatch` with `acks: -1` (every in-sync replica) on the current producer.
   * Rejects with kafkajs's error when it gave up; the producer is then being replaced (sends
   * wait for it), except after a refusal for size (which wrote nothing).
   */
  async sendBatch(topicMessages: TopicMessages[]): Promise<RecordMetadata[]> {
    while (this.#replacing !== null && !this.#closed) await Promise.race([this.#replacing, this.#whenClosed]);
    if (this.#closed) throw new Error('the Kafka producer is closed');
    const producer = this.#current;
    this.#inFlight.set(producer, (this.#inFlight.get(producer) ?? 0) + 1);
    try {
      return await producer.sendBatch({ acks: -1, topicMessages });
    } catch (error) {
      // Replaced before anything else is sent: every send, the partition's next one included,
      // waits at its start for the replacement under way. This one answers at once (outcome unknown).
      if (!refusedForSize(error) && producer === this.#current && !this.#closed) this.#replacing ??= this.#replace(producer, error);
      throw error;
    } finally {
      const left = this.#inFlight.get(producer)! - 1;
      if (left > 0) this.#inFlight.set(producer, left);
      else {
        this.#inFlight.delete(producer);
        if (this.#retired.has(producer)) this.#retire(producer);
      }
    }
  }

  /** Disconnects every producer, bounded by the caller; sends waiting for a replacement reject. */
  async disconnect(): Promise<void> {
    this.#closed = true;
    this.#connected = false;
    this.#markClosed();
    const left = new Set([this.#current, ...this.#retired].filter((producer) => !this.#letGo.has(producer)));
    await Promise.all([...left].map((producer) => producer.disconnect()));
  }

  /** Never rejects: retries until a fresh producer connects or the producer is closed. */
  async #replace(failed: Producer, cause: unknown): Promise<void> {
    this.#replacements += 1;
    this.#logger.warn(
      { err: cause },
      'Kafka producer replaced: a send failed with an unknown outcome, and its sequence numbers may repeat a written batch',
    );
    this.#retired.add(failed);
    if (!this.#inFlight.has(failed)) this.#retire(failed);
    await this.#connectFresh();
  }

  /** Never rejects: retries until a fresh producer connects or the producer is closed; ends the replacement under way. */
  async #connectFresh(): Promise<void> {
    try {
      while (!this.#closed) {
        // Not the current one until connected: its events count from then on.
        const fresh = this.#wire(this.#create());
        try {
          await fresh.connect();
          if (this.#closed) {
            // Closed while it connected: not left connected behind the bus's back.
            this.#letGo.add(fresh);
            void fresh.disconnect().catch(() => undefined);
            return;
          }
          this.#current = fresh;
          this.#connected = true;
          this.#events.onConnect();
          return;
        } catch (error) {
          if (this.#connected) {
            this.#connected = false;
            this.#events.onDisconnect();
          }
          this.#logger.warn({ err: error }, 'Kafka producer could not connect; retrying');
          this.#letGo.add(fresh);
          void fresh.disconnect().catch(() => undefined);
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([new Promise((resolve) => (timer = setTimeout(resolve, REPLACE_RETRY_MS))), this.#whenClosed]);
          clearTimeout(timer);
        }
      }
    } finally {
      this.#replacing = null;
    }
  }

  /** Disconnects a replaced producer whose sends are all done. */
  #retire(producer: Producer): void {
    this.#retired.delete(producer);
    // Possibly still the current one, while its replacement connects: its disconnect is no outage.
    this.#letGo.add(producer);
    void producer.disconnect().catch((error: unknown) => this.#logger.debug({ err: error }, 'ignored error while disconnecting a replaced Kafka producer'));
  }

  /** Passes on the producer's events while it is the current one and not let go. */
  #wire(producer: Producer): Producer {
    const { CONNECT, DISCONNECT, REQUEST_TIMEOUT } = producer.events;
    const current = () => producer === this.#current && !this.#letGo.has(producer);
    producer.on(CONNECT, () => {
      if (!current()) return;
      this.#connected = true;
      this.#events.onConnect();
    });
    producer.on(DISCONNECT, () => {
      if (!current() || this.#closed) return;
      this.#connected = false;
      this.#events.onDisconnect();
    });
    producer.on(REQUEST_TIMEOUT, () => {
      if (current()) this.#events.onRequestTimeout();
    });
    return producer;
  }
}
