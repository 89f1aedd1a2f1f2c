import {
  Kafka,
  Partitioners,
  logLevel as KafkaLogLevel,
  type Admin,
  type Consumer,
  type EachBatchPayload,
  type LogEntry,
  type Producer,
} from 'kafkajs';
import type { Logger } from '../logger.ts';
import type { KafkaConnectionOptions } from './kafka-connection.ts';
import { busRecordOf, KafkaRangeReader, offsetAtTime } from './kafka-range-reader.ts';
import {
  BusUnavailableError,
  withTimeout,
  type BusClientErrorKind,
  type BusClientStats,
  type BusConsumer,
  type BusReadiness,
  type BusRecord,
  type EventBus,
  type OutgoingRecord,
  type PartitionPosition,
  type PartitionStart,
  type Position,
} from './types.ts';

export interface KafkaBusOptions {
  brokers: string[];
  clientId: string;
  /** This replica's own consumer group: every replica must receive every partition. */
  groupId: string;
  topics: string[];
  partitions: number;
  replicationFactor: number;
  publishTimeoutMs: number;
  /** Publishes waiting for an acknowledgement beyond this answer 503 at once. */
  maxPendingPublishes?: number;
  /** At startup the consumer starts this far back in time, to fill the history. */
  warmUpMs: number;
  /** TLS and SASL (src/bus/kafka-connection.ts). */
  connection?: KafkaConnectionOptions;
  logger: Logger;
}

function kafkaLogCreator(logger: Logger) {
  return () =>
    ({ level, log }: LogEntry): void => {
      const { message, ...context } = log;
      const child = { kafkajs: context };
      if (level === KafkaLogLevel.ERROR) logger.error(child, message);
      else if (level === KafkaLogLevel.WARN) logger.warn(child, message);
      else if (level === KafkaLogLevel.INFO) logger.debug(child, message);
      else logger.trace(child, message);
    };
}

const RETRY_DELAYS_MS = [500, 1000, 2000, 5000];

/**
 * Kafka as the bus. One idempotent producer (acks from all in-sync replicas) and one
 * consumer in a group of its own: a shared group would split partitions between replicas and
 * a client would miss every room whose partition another replica owns.
 */
export class KafkaBus implements EventBus {
  readonly kind = 'kafka';
  readonly #options: KafkaBusOptions;
  readonly #logger: Logger;
  readonly #kafka: Kafka;
  readonly #producer: Producer;
  readonly #consumer: Consumer;
  #admin: Admin | null = null;
  #producerConnected = false;
  #consumerJoined = false;
  #startError: string | null = 'starting';
  /** Per partition, the end offset seen at startup: ready once the consumer has read up to it. */
  readonly #catchUpTargets = new Map<string, number>();
  readonly rangeReader: KafkaRangeReader;
  #pendingPublishes = 0;
  readonly #positions = new Map<string, PartitionPosition>();
  #closed = false;
  #retryTimer: NodeJS.Timeout | null = null;
  #busConsumer: BusConsumer | null = null;
  /** The first join seeks to the warm-up offsets; later joins continue from committed offsets. */
  #seeked = false;
  #restarts = 0;
  readonly #stats = {
    clientErrors: { consumer_crash: 0, request_timeout: 0, publish_failed: 0 } satisfies Record<BusClientErrorKind, number>,
    reconnects: 0,
  };
  /**
   * Per client: null until its first connect (which is no reconnect), then whether it has lost
   * the brokers since. kafkajs re-opens producer connections silently (no event), so a producer
   * outage shows as publish_failed and request_timeout rather than as a reconnect.
   */
  #producerLost: boolean | null = null;
  #consumerLost: boolean | null = null;

  constructor(options: KafkaBusOptions) {
    this.#options = options;
    this.#logger = options.logger;
    this.#kafka = new Kafka({
      clientId: options.clientId,
      brokers: options.brokers,
      logLevel: KafkaLogLevel.INFO,
      logCreator: kafkaLogCreator(options.logger),
      connectionTimeout: 3000,
      requestTimeout: 10000,
      retry: { initialRetryTime: 300, maxRetryTime: 5000, retries: 8 },
      ...options.connection,
    });
    this.#producer = this.#kafka.producer({
      idempotent: true,
      maxInFlightRequests: 5,
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    this.#consumer = this.#kafka.consumer({
      groupId: options.groupId,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: 500,
      sessionTimeout: 30000,
      heartbeatInterval: 3000,
    });
    this.rangeReader = new KafkaRangeReader({
      kafka: this.#kafka,
      admin: () => this.#admin,
      groupId: `${options.groupId}-reader`,
      topics: options.topics,
      logger: options.logger,
    });
    const { CONNECT, DISCONNECT } = this.#producer.events;
    this.#producer.on(CONNECT, () => {
      this.#producerConnected = true;
      if (this.#producerLost === true) this.#stats.reconnects += 1;
      this.#producerLost = false;
    });
    this.#producer.on(DISCONNECT, () => {
      this.#producerConnected = false;
      if (this.#producerLost === false && !this.#closed) this.#producerLost = true;
    });
    this.#consumer.on(this.#consumer.events.GROUP_JOIN, () => {
      this.#consumerJoined = true;
      if (this.#consumerLost === true) this.#stats.reconnects += 1;
      this.#consumerLost = false;
    });
    this.#producer.on(this.#producer.events.REQUEST_TIMEOUT, () => this.#countError('request_timeout'));
    this.#consumer.on(this.#consumer.events.REQUEST_TIMEOUT, () => this.#countError('request_timeout'));
    this.#consumer.on(this.#consumer.events.CRASH, ({ payload }) => {
      this.#consumerJoined = false;
      this.#countError('consumer_crash');
      if (this.#consumerLost === false) this.#consumerLost = true;
      this.#logger.error({ err: payload.error, restart: payload.restart }, 'Kafka consumer crashed');
      // kafkajs restarts by itself after retriable errors; after any other, this replica does,
      // from the committed offsets, so no event is skipped.
      if (!payload.restart && this.#busConsumer !== null && !this.#closed) this.#restartConsumer(this.#busConsumer);
    });
    this.#consumer.on(this.#consumer.events.STOP, () => {
      this.#consumerJoined = false;
    });
  }

  /** Client errors and reconnects since startup (read at scrape time by /metrics, and by /status). */
  get stats(): BusClientStats {
    return this.#stats;
  }

  #countError(kind: BusClientErrorKind): void {
    if (!this.#closed) this.#stats.clientErrors[kind] += 1;
  }

  async start(consumer: BusConsumer): Promise<void> {
    for (let attempt = 0; !this.#closed; attempt++) {
      try {
        await this.#startOnce(consumer);
        this.#startError = null;
        this.#logger.info(
          { brokers: this.#options.brokers, groupId: this.#options.groupId, topics: this.#options.topics },
          'Kafka bus ready',
        );
        return;
      } catch (error) {
        if (this.#closed) return;
        const delay = RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)]!;
        this.#startError = error instanceof Error ? error.message : String(error);
        this.#logger.warn({ err: error, retryInMs: delay }, 'Kafka bus not ready; retrying');
        await this.#safely(() => this.#consumer.disconnect());
        await new Promise<void>((resolve) => {
          this.#retryTimer = setTimeout(resolve, delay);
        });
      }
    }
  }

  #restartConsumer(busConsumer: BusConsumer): void {
    const delay = RETRY_DELAYS_MS[Math.min(this.#restarts, RETRY_DELAYS_MS.length - 1)]!;
    this.#restarts += 1;
    this.#retryTimer = setTimeout(() => {
      void (async () => {
        await this.#safely(() => this.#consumer.disconnect());
        if (this.#closed) return;
        try {
          await this.#runConsumer(busConsumer, new Map());
          this.#restarts = 0;
          this.#logger.info('Kafka consumer restarted');
        } catch (error) {
          this.#logger.warn({ err: error }, 'Kafka consumer restart failed; retrying');
          this.#restartConsumer(busConsumer);
        }
      })();
    }, delay);
  }

  async #startOnce(busConsumer: BusConsumer): Promise<void> {
    this.#busConsumer = busConsumer;
    const admin = this.#admin ?? this.#kafka.admin();
    if (this.#admin === null) {
      admin.on(admin.events.REQUEST_TIMEOUT, () => this.#countError('request_timeout'));
      await admin.connect();
      this.#admin = admin;
    }
    await this.#ensureTopics(admin);
    // Where this replica starts reading: the warm-up window's first offsets, so the history is
    // full from the start; it is ready once it has read up to the end offsets seen now. Anything
    // published after that has a higher offset and is read live.
    const warmUpFrom = Date.now() - this.#options.warmUpMs;
    const starts: PartitionStart[] = [];
    for (const topic of this.#options.topics) {
      const [ends, byTime] = await Promise.all([
        admin.fetchTopicOffsets(topic),
        admin.fetchTopicOffsetsByTimestamp(topic, warmUpFrom),
      ]);
      for (const { partition, high } of ends) {
        const start = offsetAtTime(byTime, ends, partition)!;
        const offset = Math.max(start.offset, start.low);
        starts.push({ topic, partition, offset: String(offset), time: warmUpFrom, liveFrom: String(high) });
        this.#catchUpTargets.set(`${topic}:${partition}`, Number(high));
      }
    }
    const startOffsets = new Map(starts.map((start) => [`${start.topic}:${start.partition}`, start.offset]));
    busConsumer.onPartitionsStart(starts);
    await this.#producer.connect();
    this.#producerConnected = true;
    await this.#runConsumer(busConsumer, startOffsets);
  }

  async #runConsumer(busConsumer: BusConsumer, startOffsets: Map<string, string>): Promise<void> {
    await this.#consumer.connect();
    await this.#consumer.subscribe({ topics: this.#options.topics, fromBeginning: false });
    const joined = new Promise<void>((resolve, reject) => {
      const removeJoin = this.#consumer.on(this.#consumer.events.GROUP_JOIN, ({ payload }) => {
        for (const [topic, partitions] of Object.entries(payload.memberAssignment)) {
          for (const partition of partitions) {
            const offset = startOffsets.get(`${topic}:${partition}`);
            // Only the first join seeks; after a rejoin the committed offsets continue.
            if (offset !== undefined && !this.#seeked) {
              this.#consumer.seek({ topic, partition, offset });
              this.#positions.set(`${topic}:${partition}`, { topic, partition, next: offset, highWatermark: offset });
            }
          }
        }
        this.#seeked = true;
        this.#consumerJoined = true;
        removeJoin();
        removeCrash();
        resolve();
      });
      const removeCrash = this.#consumer.on(this.#consumer.events.CRASH, ({ payload }) => {
        removeJoin();
        removeCrash();
        reject(payload.error);
      });
    });
    await this.#consumer.run({
      autoCommit: true,
      autoCommitInterval: 1000,
      eachBatchAutoResolve: true,
      eachBatch: async ({ batch }: EachBatchPayload) => {
        const records: BusRecord[] = batch.messages.map((message) => busRecordOf(batch, message));
        const last = batch.messages[batch.messages.length - 1];
        if (last !== undefined) {
          this.#positions.set(`${batch.topic}:${batch.partition}`, {
            topic: batch.topic,
            partition: batch.partition,
            next: (BigInt(last.offset) + 1n).toString(),
            highWatermark: batch.highWatermark,
          });
        }
        // Synchronous hand-off: nothing here waits for a client socket, so heartbeats keep flowing.
        busConsumer.onRecords(records);
      },
    });
    await withTimeout(joined, 60000, 'consumer did not join its group in time');
  }

  /** Partitions still short of the end offsets seen at startup. */
  #catchingUp(): number {
    let behind = 0;
    for (const [key, target] of this.#catchUpTargets) {
      const position = this.#positions.get(key);
      if (position === undefined || Number(position.next) < target) behind += 1;
      else this.#catchUpTargets.delete(key);
    }
    return behind;
  }

  async #ensureTopics(admin: Admin): Promise<void> {
    const existing = new Set(await admin.listTopics());
    const missing = this.#options.topics.filter((topic) => !existing.has(topic));
    if (missing.length === 0) return;
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((topic) => ({
          topic,
          numPartitions: this.#options.partitions,
          replicationFactor: this.#options.replicationFactor,
        })),
      });
      this.#logger.info({ topics: missing, partitions: this.#options.partitions }, 'created missing topics');
    } catch (error) {
      // Another replica may have created them in the meantime.
      const nowExisting = new Set(await admin.listTopics());
      if (missing.some((topic) => !nowExisting.has(topic))) throw error;
    }
  }

  async publish(record: OutgoingRecord): Promise<Position> {
    if (this.#closed) throw new BusUnavailableError('the gateway is shutting down');
    if (!this.#producerConnected) throw new BusUnavailableError('Kafka is not connected');
    if (this.#pendingPublishes >= (this.#options.maxPendingPublishes ?? 10000)) {
      throw new BusUnavailableError('too many publishes waiting for Kafka');
    }
    this.#pendingPublishes += 1;
    try {
      const sent = this.#producer.send({
        topic: record.topic,
        acks: -1,
        messages: [{ key: record.key, value: record.value, headers: record.headers }],
      });
      const [metadata] = await withTimeout(sent, this.#options.publishTimeoutMs, 'Kafka did not acknowledge in time');
      if (metadata === undefined || metadata.baseOffset === undefined) {
        throw new BusUnavailableError('Kafka returned no offset');
      }
      return { topic: record.topic, partition: metadata.partition, offset: metadata.baseOffset };
    } catch (error) {
      this.#countError('publish_failed');
      if (error instanceof BusUnavailableError) throw error;
      throw new BusUnavailableError('Kafka rejected the record', { cause: error });
    } finally {
      this.#pendingPublishes -= 1;
    }
  }

  readiness(): BusReadiness {
    if (this.#closed) return { ready: false, reason: 'shutting down' };
    if (this.#startError !== null) return { ready: false, reason: `Kafka: ${this.#startError}` };
    if (!this.#producerConnected) return { ready: false, reason: 'Kafka producer disconnected' };
    if (!this.#consumerJoined) return { ready: false, reason: 'Kafka consumer has not joined its group' };
    const behind = this.#catchingUp();
    if (behind > 0) return { ready: false, reason: `warming up the history: ${behind} partitions still catching up` };
    return { ready: true };
  }

  partitionPositions(): PartitionPosition[] {
    return [...this.#positions.values()];
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    const admin = this.#admin;
    await Promise.all([
      this.#safely(() => this.#consumer.disconnect()),
      this.#safely(() => this.#producer.disconnect()),
      this.#safely(() => this.rangeReader.close()),
    ]);
    this.#admin = null;
    if (admin) await this.#safely(() => admin.disconnect());
  }

  async #safely(action: () => Promise<unknown>): Promise<void> {
    try {
      await action();
    } catch (error) {
      this.#logger.debug({ err: error }, 'ignored error while disconnecting from Kafka');
    }
  }
}
