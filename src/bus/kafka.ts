import { createRequire } from 'node:module';
import {
  AssignerProtocol,
  Kafka,
  logLevel as KafkaLogLevel,
  Partitioners,
  type Admin,
  type Consumer,
  type EachBatchPayload,
  type LogEntry,
  type PartitionAssigner,
  type KafkaConfig,
} from 'kafkajs';
import type { Logger } from '../logger.ts';
import { topicExists, type KafkaConnectionOptions } from './kafka-connection.ts';
import { busRecordOf, KafkaRangeReader, offsetAtTime } from './kafka-range-reader.ts';
import { PublishQueue } from './publish-queue.ts';
import { ReplaceableProducer } from './kafka-producer.ts';
import { partitionForKey } from './partitioner.ts';
import { RangeReaderThread, type RangeReaderThreadInit } from './range-reader-thread.ts';
import { formatPartitionSet, ShardMap } from './shards.ts';
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
  /** Publishes queued for Kafka (abandoned ones until dropped) beyond this answer 503 at once. */
  maxPendingPublishes?: number;
  /** At startup the consumer starts this far back in time, to fill the history. */
  warmUpMs: number;
  /**
   * Milliseconds a started consumer may go without joining its group or advancing, while Kafka
   * answers this replica and holds records it has not read, before it counts as stuck: not
   * ready, and replaced by a fresh consumer. Default 60000.
   */
  consumerStuckMs?: number;
  /** TLS and SASL (src/bus/kafka-connection.ts). */
  connection?: KafkaConnectionOptions;
  /**
   * kafkajs's request timeout (ms, default 10000) and retries (default 8, from 300 ms up to
   * 5 s apart) for every client of the bus. Tests shorten them to provoke timeouts.
   */
  timings?: Pick<KafkaConfig, 'requestTimeout' | 'retry'>;
  /**
   * Sharded mode (src/bus/shards.ts): consume only these partitions of every topic (SHARD_PARTITIONS).
   * Absent or null: every partition.
   */
  shardPartitions?: readonly number[] | null;
  logger: Logger;
  /**
   * Topics of `topics` that are not channel kinds' (the presence topic): created with these
   * topic configs when missing, read back `warmUpMs` at startup instead of the history's
   * warm-up, and never read by resumes.
   */
  sideTopics?: Record<string, SideTopicOptions>;
}

export interface SideTopicOptions {
  /** Topic configs for its creation (e.g. `cleanup.policy`). */
  configEntries?: Array<{ name: string; value: string }>;
  /** How far back (ms) it is read at startup. */
  warmUpMs: number;
}

/** The topic has fewer partitions than SHARD_PARTITIONS names: a configuration error, shown by /readyz. */
export class ShardLayoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ShardLayoutError';
  }
}

/**
 * A kafkajs partition assigner that hands every member of the group exactly `partitions` of
 * each subscribed topic (those the topic has). kafkajs 2.2.4 has no `assign()`: this keeps
 * the subscribe/group machinery (joins, heartbeats, seeks on join, the fetch loop) while the
 * consumer fetches only the shard's partitions. The group is this replica's own, so its
 * members are this process's current consumer and, for a session timeout after a crash, the
 * one it replaced: both get the whole set, so the live one never waits for the dead one to
 * expire (the bus ignores a replaced consumer's records). `wholeTopics`: topics every member
 * gets whole (side topics such as presence, which are not sharded by channel).
 */
export function shardAssigner(partitions: readonly number[], wholeTopics: ReadonlySet<string> = new Set()): PartitionAssigner {
  return ({ cluster }) => ({
    name: 'KafkaSseGatewayShard',
    version: 1,
    async assign({ members, topics }) {
      const assignment: Record<string, number[]> = {};
      for (const topic of topics) {
        const existing = cluster.findTopicPartitionMetadata(topic).map((metadata) => metadata.partitionId);
        // Side topics (presence) are the cluster's, not a shard's: every replica reads all of them.
        assignment[topic] = wholeTopics.has(topic) ? existing.sort((a, b) => a - b) : partitions.filter((partition) => existing.includes(partition));
      }
      return members.map(({ memberId }) => ({
        memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 1, assignment, userData: Buffer.alloc(0) }),
      }));
    },
    protocol({ topics }) {
      return { name: 'KafkaSseGatewayShard', metadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData: Buffer.alloc(0) }) };
    },
  });
}

const require = createRequire(import.meta.url);
/**
 * kafkajs's table of Kafka protocol errors: the messages of the retriable ones (a coordinator
 * loading, a leader moving, ...) are what its connections log at error level while it retries.
 */
const RETRIABLE_PROTOCOL_MESSAGES = new Set(
  (require('kafkajs/src/protocol/error') as { errorCodes: Array<{ message: string; retriable: boolean }> }).errorCodes
    .filter((code) => code.retriable)
    .map((code) => code.message),
);

/**
 * kafkajs log lines that are expected while it retries (a broker unreachable or restarting, a
 * group rebalancing, a consumer crash this bus restarts; replicas starting together racing to
 * create the same topics, which `ensureTopics` checks and rethrows if it truly failed): they go
 * to debug, and the bus itself logs the state change once at warn. Anything else keeps kafkajs's level.
 */
const EXPECTED_KAFKAJS_LOG =
  /^(Connection error|Connection timeout|Failed to connect|Crash: |Restarting the consumer|The group is rebalancing|The coordinator is not aware of this member|Consumer is not aware of all assigned partitions|Caught error when (disconnecting|stopping) the consumer|Limiting retries for the idempotent producer|Topic has been updated|Failed to send messages|Topic creation errors)/;
const UNREACHABLE = /^(Connection error|Connection timeout|Failed to connect)|ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN/;
const GROUP_MEMBERSHIP_ERROR = /rebalanc|coordinator|member|generation|leader|not available|timed out|timeout/i;

function isExpectedKafkajsLog(message: string, context: Record<string, unknown>): boolean {
  if (EXPECTED_KAFKAJS_LOG.test(message)) return true;
  // Logged by each retry of a request (the caller sees the final error, if any).
  if (context.retryCount !== undefined) return true;
  if (message.startsWith('Response ')) {
    const error = typeof context.error === 'string' ? context.error : '';
    // The answer's error itself may be an expected one (CreateTopics' "Topic creation errors"
    // when replicas starting together race to create the topics: #ensureTopics checks again).
    return RETRIABLE_PROTOCOL_MESSAGES.has(error) || GROUP_MEMBERSHIP_ERROR.test(error) || EXPECTED_KAFKAJS_LOG.test(error);
  }
  return false;
}

/** A reason with broker addresses and numbers taken out: the "state" logged once, not per retry. */
function troubleState(reason: string): string {
  // Every way of failing to reach a broker (each client, each broker of the list) is one state.
  if (UNREACHABLE.test(reason)) return `unreachable ${/\bE[A-Z]{3,}\b/.exec(reason)?.[0] ?? ''}`;
  return reason.replace(/\[[0-9a-fA-F:]+\]:\d+|[\w.-]+:\d{1,5}\b/g, '<broker>').replace(/\d+/g, 'N');
}

/** Whether kafkajs marks the error (or what caused it) as one a retry may fix. */
function isRetriable(error: unknown): boolean {
  for (let cause = error, depth = 0; cause instanceof Error && depth < 5; cause = cause.cause, depth++) {
    if ((cause as { retriable?: unknown }).retriable === true || RETRIABLE_PROTOCOL_MESSAGES.has(cause.message)) return true;
  }
  return false;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const RETRY_DELAYS_MS = [500, 1000, 2000, 5000];
/** A fresh consumer must have joined its group within this, or it is replaced by another. */
const JOIN_TIMEOUT_MS = 30000;
/** How long a kafkajs error keeps showing as the degraded reason of a ready replica. */
const RECENT_ERROR_MS = 15000;
/** Retriable errors while starting are logged at info for this long, then at warn. */
const START_GRACE_MS = 15000;
/** Each Kafka client gets this long to disconnect on close. */
const CLOSE_TIMEOUT_MS = 3000;

/**
 * Kafka as the bus. One idempotent producer (acks from all in-sync replicas) and one
 * consumer in a group of its own: a shared group would split partitions between replicas and
 * a client would miss every room whose partition another replica owns. In sharded mode
 * (`shardPartitions`) the consumer is still alone in its group but assigned only those
 * partitions (`shardAssigner`), and positions, readiness and lag cover only them.
 *
 * Where the consumer reads is this replica's own business, never the group's committed
 * offsets: the bus knows, per partition, the next offset it has handed on (`#positions`) and
 * seeks there on every join, whether kafkajs rejoined by itself (a coordinator moved) or a
 * fresh consumer replaced one that crashed. Records before that position are dropped, so a
 * broker loss that Kafka survives loses and repeats nothing. No offsets are committed.
 */
export class KafkaBus implements EventBus {
  readonly kind = 'kafka';
  readonly #options: KafkaBusOptions;
  readonly #logger: Logger;
  readonly #kafka: Kafka;
  readonly #producer: ReplaceableProducer;
  #consumer: Consumer | null = null;
  #admin: Admin | null = null;
  #consumerJoined = false;
  /** True once the bus has started (its first consumer joined): from then on it only degrades. */
  #started = false;
  /** Why the bus has not started yet: the latest error, shown by /readyz at once. */
  #startTrouble: string;
  /** The latest error kafkajs logged, and when: the degraded reason of a ready replica. */
  #lastClientError: { message: string; at: number } | null = null;
  /** Why the consumer is out of its group (set on a crash, cleared on a join). */
  #consumerTrouble: { message: string; since: number } | null = null;
  /** Set when the consumer is stuck (see `consumerStuckMs`): the one reason a started replica is not ready. */
  #stuck: string | null = null;
  /** Last time a consumer joined its group (or the bus started). */
  #joinedAt = 0;
  /** Per partition, the last time records were handed on from it or it was seen caught up. */
  readonly #advancedAt = new Map<string, number>();
  /** The trouble last logged at warn (its state, see troubleState), null once recovered. */
  #warnedTrouble: string | null = null;
  /** Per partition, the end offset seen at startup: ready once the consumer has read up to it. */
  readonly #catchUpTargets = new Map<string, number>();
  readonly rangeReader: RangeReaderThread;
  /** Sharded mode: the partitions this replica consumes; null = all. */
  readonly #shard: ShardMap | null;
  readonly #publishQueue: PublishQueue;
  /** Partitions per topic, seen at startup: where the default partitioner puts a key (publishes name it). */
  readonly #partitionCounts = new Map<string, number>();
  /** Per partition, the next offset to hand on: where every (re)joined consumer starts. */
  readonly #positions = new Map<string, PartitionPosition>();
  #closed = false;
  #retryTimer: NodeJS.Timeout | null = null;
  #healthTimer: NodeJS.Timeout | null = null;
  #checkingHealth = false;
  #restarting = false;
  #busConsumer: BusConsumer | null = null;
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


  /** Whether this replica consumes the partition: all of them unsharded, and always all of a side topic's (presence is cluster-wide). */
  #consumes(topic: string, partition: number): boolean {
    return this.#shard === null || this.#options.sideTopics?.[topic] !== undefined || this.#shard.owns(partition);
  }

  constructor(options: KafkaBusOptions) {
    this.#options = options;
    this.#logger = options.logger;
    this.#startTrouble = `connecting to ${options.brokers.join(',')}`;
    this.#shard = options.shardPartitions === undefined || options.shardPartitions === null ? null : new ShardMap(options.shardPartitions);
    const client = {
      clientId: options.clientId,
      brokers: options.brokers,
      connectionTimeout: 3000,
      requestTimeout: 10000,
      retry: { initialRetryTime: 300, maxRetryTime: 5000, retries: 8 },
      ...options.timings,
      ...options.connection,
    };
    this.#kafka = new Kafka({ ...client, logLevel: KafkaLogLevel.INFO, logCreator: () => (entry) => this.#kafkajsLog(entry) });
    this.#producer = new ReplaceableProducer(
      () =>
        this.#kafka.producer({
          idempotent: true,
          maxInFlightRequests: 5,
          allowAutoTopicCreation: false,
          createPartitioner: Partitioners.DefaultPartitioner,
        }),
      {
        onConnect: () => {
          if (this.#producerLost === true) this.#stats.reconnects += 1;
          this.#producerLost = false;
        },
        onDisconnect: () => {
          if (this.#producerLost === false && !this.#closed) this.#producerLost = true;
        },
        onRequestTimeout: () => this.#countError('request_timeout'),
      },
      this.#logger,
    );
    this.#publishQueue = new PublishQueue((topicMessages) => this.#producer.sendBatch(topicMessages), (record) => this.#partitionOf(record));
    // On a thread of its own, with its own client: decoding what deep resumes fetch never holds live streams.
    this.rangeReader = new RangeReaderThread({
      client: { ...client, ...(client.sasl === undefined ? {} : { sasl: { ...client.sasl } }) } as RangeReaderThreadInit['client'],
      groupId: `${options.groupId}-reader`,
      topics: options.topics.filter((topic) => options.sideTopics?.[topic] === undefined),
      logger: options.logger,
      onKafkaLog: (entry) => this.#kafkajsLog(entry as LogEntry),
      onRequestTimeout: () => this.#countError('request_timeout'),
      // Offsets from the bus's own admin; this reader never fetches records (its consumer never starts).
      offsets: new KafkaRangeReader({ kafka: this.#kafka, admin: () => this.#admin, groupId: `${options.groupId}-reader`, topics: [], logger: options.logger }),
    });
  }

  /** The partition Kafka's default partitioner gives the record's key (murmur2, as kafkajs's and Java's). */
  #partitionOf(record: OutgoingRecord): number {
    const count = this.#partitionCounts.get(record.topic);
    if (count === undefined) throw new BusUnavailableError(`the partitions of topic ${record.topic} are not known yet`);
    return partitionForKey(record.key, count);
  }

  /** Client errors and reconnects since startup (read at scrape time by /metrics, and by /status). */
  get stats(): BusClientStats {
    return this.#stats;
  }

  get #consumerStuckMs(): number {
    return this.#options.consumerStuckMs ?? 60000;
  }

  #countError(kind: BusClientErrorKind): void {
    if (!this.#closed) this.#stats.clientErrors[kind] += 1;
  }

  /** kafkajs's log lines: expected retry chatter to debug; every error remembered as the latest reason. */
  #kafkajsLog({ level, log }: LogEntry): void {
    const { message, ...context } = log;
    const child = { kafkajs: context };
    if (level === KafkaLogLevel.ERROR && !this.#closed) {
      const reason = typeof context.error === 'string' && !message.includes(context.error) ? `${message}: ${context.error}` : message;
      // A ready replica shows brokers it cannot reach, not the routine of a group rebalancing.
      if (!this.#started || UNREACHABLE.test(reason) || !isExpectedKafkajsLog(message, context)) this.#lastClientError = { message: reason, at: Date.now() };
      if (!this.#started) {
        this.#startTrouble = `${reason}; retrying`;
        // Said at once when the brokers cannot be reached; other errors while starting (a
        // coordinator loading on a fresh cluster) are normal unless the start attempt fails.
        if (UNREACHABLE.test(reason)) this.#noteTrouble('Kafka not reachable yet; retrying', reason);
      }
    }
    if ((level === KafkaLogLevel.ERROR || level === KafkaLogLevel.WARN) && isExpectedKafkajsLog(message, context)) {
      this.#logger.debug(child, message);
    } else if (level === KafkaLogLevel.ERROR) this.#logger.error(child, message);
    else if (level === KafkaLogLevel.WARN) this.#logger.warn(child, message);
    else if (level === KafkaLogLevel.INFO) this.#logger.debug(child, message);
    else this.#logger.trace(child, message);
  }

  /** Logs trouble with Kafka at warn once per state, not once per retry. */
  #noteTrouble(summary: string, reason: string): void {
    const state = `${summary}|${troubleState(reason)}`;
    if (state === this.#warnedTrouble || this.#closed) return;
    this.#warnedTrouble = state;
    this.#logger.warn({ reason }, summary);
  }

  #noteRecovered(message: string): void {
    if (this.#warnedTrouble === null) return;
    this.#warnedTrouble = null;
    this.#logger.info(message);
  }

  async start(consumer: BusConsumer): Promise<void> {
    this.#busConsumer = consumer;
    const firstAttemptAt = Date.now();
    for (let attempt = 0; !this.#closed; attempt++) {
      try {
        await this.#startOnce(consumer);
        this.#started = true;
        this.#joinedAt = Date.now();
        this.#lastClientError = null;
        const checkEvery = Math.min(5000, Math.max(250, Math.floor(this.#consumerStuckMs / 4)));
        this.#healthTimer = setInterval(() => void this.#checkConsumer(), checkEvery);
        this.#healthTimer.unref();
        this.#noteRecovered('Kafka reachable');
        this.#logger.info(
          {
            brokers: this.#options.brokers,
            groupId: this.#options.groupId,
            topics: this.#options.topics,
            ...(this.#shard === null ? {} : { shardPartitions: formatPartitionSet(this.#shard.partitions) }),
          },
          'Kafka bus ready',
        );
        return;
      } catch (error) {
        if (this.#closed) return;
        const delay = RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)]!;
        const reason = messageOf(error);
        this.#startTrouble = `${reason}; retrying`;
        if (error instanceof ShardLayoutError) {
          // A configuration error, not Kafka trouble: said at error level, once per state; it is
          // checked again on each retry (partitions may be added to the topic meanwhile).
          if (this.#warnedTrouble !== `shard|${reason}`) this.#logger.error({ reason }, 'SHARD_PARTITIONS does not fit the topic: this replica stays unready');
          this.#warnedTrouble = `shard|${reason}`;
        } else if (isRetriable(error) && !UNREACHABLE.test(reason) && Date.now() - firstAttemptAt < START_GRACE_MS) {
          // A fresh cluster or fresh topics answer "coordinator loading" or "not the leader" for
          // a few seconds: normal, so info; warn once it lasts, or when Kafka is unreachable.
          this.#logger.info({ reason }, 'Kafka not ready yet; retrying');
        } else this.#noteTrouble('Kafka not reachable yet; retrying', reason);
        await this.#disposeConsumer();
        await new Promise<void>((resolve) => {
          this.#retryTimer = setTimeout(resolve, delay);
        });
      }
    }
  }

  async #startOnce(busConsumer: BusConsumer): Promise<void> {
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
      const side = this.#options.sideTopics?.[topic];
      const from = side === undefined ? warmUpFrom : Date.now() - side.warmUpMs;
      const [ends, byTime] = await Promise.all([
        admin.fetchTopicOffsets(topic),
        admin.fetchTopicOffsetsByTimestamp(topic, from),
      ]);
      if (this.#shard !== null && side === undefined) {
        const problem = this.#shard.layoutProblem(topic, ends.length);
        if (problem !== null) throw new ShardLayoutError(problem);
      }
      busConsumer.onTopicPartitions?.(topic, ends.length);
      this.#partitionCounts.set(topic, ends.length);
      for (const { partition, high } of ends) {
        // Sharded: positions, catch-up targets (readiness) and lag only for the partitions consumed.
        if (!this.#consumes(topic, partition)) continue;
        const start = offsetAtTime(byTime, ends, partition)!;
        const offset = Math.max(start.offset, start.low);
        starts.push({ topic, partition, offset: String(offset), time: from, liveFrom: String(high) });
        this.#catchUpTargets.set(`${topic}:${partition}`, Number(high));
      }
    }
    for (const { topic, partition, offset } of starts) {
      this.#positions.set(`${topic}:${partition}`, { topic, partition, next: offset, highWatermark: offset });
    }
    busConsumer.onPartitionsStart(starts);
    // Not awaited past its first try: a producer that cannot connect yet (see
    // connectOrKeepTrying) makes the replica degraded (publishing answers 503), not unready.
    await this.#producer.connectOrKeepTrying();
    await this.#runConsumer(busConsumer);
  }

  /**
   * A fresh kafkajs consumer (one that crashed may not be reusable), wired to this bus: it
   * seeks to this replica's positions on every join and hands on only records at or after
   * them. Events of a consumer that has been replaced are ignored.
   */
  #newConsumer(): Consumer {
    const consumer = this.#kafka.consumer({
      groupId: this.#options.groupId,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: 500,
      // The group's only member: a crashed predecessor that could not leave holds up the next
      // join until its session expires, so keep that short.
      sessionTimeout: 10000,
      rebalanceTimeout: 20000,
      heartbeatInterval: 2000,
      ...(this.#shard === null ? {} : { partitionAssigners: [shardAssigner(this.#shard.partitions, new Set(Object.keys(this.#options.sideTopics ?? {})))] }),
      // This bus restarts a crashed consumer itself, with a fresh one (see #restartConsumer).
      retry: { initialRetryTime: 300, maxRetryTime: 5000, retries: 8, restartOnFailure: async () => false },
    });
    this.#consumer = consumer;
    let joinedOnce = false;
    const current = (): boolean => consumer === this.#consumer && !this.#closed;
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      if (!current()) return;
      for (const [topic, partitions] of Object.entries(payload.memberAssignment)) {
        for (const partition of partitions) {
          const position = this.#positions.get(`${topic}:${partition}`);
          // Always: after a rejoin kafkajs would start from the committed offsets (none here).
          if (position !== undefined) consumer.seek({ topic, partition, offset: position.next });
        }
      }
      joinedOnce = true;
      this.#consumerJoined = true;
      this.#consumerTrouble = null;
      this.#joinedAt = Date.now();
      // Stuck out of the group: over. Stuck on a partition: until it advances (#checkConsumer).
      if (this.#stuck?.includes('out of its group')) this.#stuck = null;
      if (this.#consumerLost === true) this.#stats.reconnects += 1;
      this.#consumerLost = false;
    });
    consumer.on(consumer.events.REQUEST_TIMEOUT, () => this.#countError('request_timeout'));
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (!current()) return;
      this.#consumerJoined = false;
      this.#countError('consumer_crash');
      if (this.#consumerLost === false) this.#consumerLost = true;
      const reason = messageOf(payload.error);
      this.#consumerTrouble = { message: reason, since: this.#consumerTrouble?.since ?? Date.now() };
      // Before its first join the caller (start or a restart) sees the failure and retries.
      if (joinedOnce) {
        this.#noteTrouble('Kafka consumer stopped on an error; a fresh one continues from where it was', reason);
        this.#restartConsumer();
      }
    });
    consumer.on(consumer.events.STOP, () => {
      if (current()) this.#consumerJoined = false;
    });
    return consumer;
  }

  async #runConsumer(busConsumer: BusConsumer): Promise<void> {
    const consumer = this.#newConsumer();
    const joined = new Promise<void>((resolve, reject) => {
      const removeJoin = consumer.on(consumer.events.GROUP_JOIN, () => {
        removeJoin();
        removeCrash();
        resolve();
      });
      const removeCrash = consumer.on(consumer.events.CRASH, ({ payload }) => {
        removeJoin();
        removeCrash();
        reject(payload.error);
      });
    });
    joined.catch(() => undefined); // awaited below; connect() may fail first
    await consumer.connect();
    // fromBeginning only matters for a partition this replica has no position in (one added
    // to the topic since it started): read it whole rather than skip what it holds.
    await consumer.subscribe({ topics: this.#options.topics, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: true,
      eachBatch: async ({ batch }: EachBatchPayload) => {
        if (consumer !== this.#consumer || this.#closed) return;
        // Sharded: the assigner gives only owned partitions; a broker-side surprise must not leak others in.
        if (!this.#consumes(batch.topic, batch.partition)) return;
        const key = `${batch.topic}:${batch.partition}`;
        this.#advancedAt.set(key, Date.now());
        const position = this.#positions.get(key);
        // A batch fetched from before this replica's position (a fetch in flight across a
        // rejoin) must not hand an event on twice.
        const from = position === undefined ? null : BigInt(position.next);
        const messages = from === null ? batch.messages : batch.messages.filter((message) => BigInt(message.offset) >= from);
        const last = messages[messages.length - 1];
        if (last === undefined) {
          if (position !== undefined) position.highWatermark = batch.highWatermark;
          return;
        }
        this.#positions.set(key, {
          topic: batch.topic,
          partition: batch.partition,
          next: (BigInt(last.offset) + 1n).toString(),
          highWatermark: batch.highWatermark,
        });
        const records: BusRecord[] = messages.map((message) => busRecordOf(batch, message));
        // Synchronous hand-off: nothing here waits for a client socket, so heartbeats keep flowing.
        busConsumer.onRecords(records);
      },
    });
    await withTimeout(joined, JOIN_TIMEOUT_MS, 'the Kafka consumer did not join its group in time');
  }

  /** Stops and forgets the current consumer (bounded: a broker that is gone must not hang this). */
  async #disposeConsumer(): Promise<void> {
    const consumer = this.#consumer;
    this.#consumer = null;
    this.#consumerJoined = false;
    if (consumer !== null) await this.#safely(() => withTimeout(consumer.disconnect(), 10000, 'consumer disconnect timed out'));
  }

  /** Replaces the consumer with a fresh one after a delay that grows with each failed attempt. */
  #restartConsumer(): void {
    if (this.#closed || this.#restarting || this.#busConsumer === null) return;
    const busConsumer = this.#busConsumer;
    this.#restarting = true;
    const delay = RETRY_DELAYS_MS[Math.min(this.#restarts, RETRY_DELAYS_MS.length - 1)]!;
    this.#restarts += 1;
    this.#retryTimer = setTimeout(() => {
      void (async () => {
        try {
          await this.#disposeConsumer();
          if (this.#closed) return;
          await this.#runConsumer(busConsumer);
          this.#restarts = 0;
          this.#restarting = false;
          this.#noteRecovered('Kafka consumer back in its group; it continues from where it was');
        } catch (error) {
          this.#restarting = false;
          if (this.#closed) return;
          const reason = messageOf(error);
          this.#consumerTrouble = { message: reason, since: this.#consumerTrouble?.since ?? Date.now() };
          this.#noteTrouble('Kafka consumer could not rejoin its group; retrying', reason);
          await this.#disposeConsumer();
          this.#restartConsumer();
        }
      })();
    }, delay);
  }

  /**
   * Runs every few seconds once started. The consumer is stuck when Kafka answers this replica
   * and either the consumer has been out of its group for `consumerStuckMs`, or a partition
   * holds records past this replica's position that it has not advanced on for that long
   * (since the last join). When Kafka does not answer, the trouble is Kafka's, shared by every
   * replica, and the replica stays ready. A stuck consumer is replaced, and /readyz answers 503
   * until the trouble is gone.
   */
  async #checkConsumer(): Promise<void> {
    if (!this.#started || this.#closed || this.#checkingHealth) return;
    const now = Date.now();
    const limit = this.#consumerStuckMs;
    // A join restarts the clock, except while stuck: then only records handed on count.
    const since = (key: string): number =>
      this.#stuck === null ? Math.max(this.#joinedAt, this.#advancedAt.get(key) ?? 0) : (this.#advancedAt.get(key) ?? 0);
    if (this.#stuck !== null) {
      // Checked every time until it is over.
    } else if (this.#consumerJoined) {
      let oldest = now;
      for (const key of this.#positions.keys()) oldest = Math.min(oldest, since(key));
      if (now - oldest < limit) return;
    } else if (now - (this.#consumerTrouble?.since ?? this.#joinedAt) < limit) return;
    const admin = this.#admin;
    if (admin === null) return;
    this.#checkingHealth = true;
    try {
      const behind: string[] = [];
      const stalled: string[] = [];
      try {
        for (const topic of this.#options.topics) {
          const ends = await withTimeout(admin.fetchTopicOffsets(topic), 10000, 'Kafka did not answer');
          for (const { partition, high } of ends) {
            if (!this.#consumes(topic, partition)) continue;
            const key = `${topic}:${partition}`;
            const position = this.#positions.get(key);
            if (position !== undefined && BigInt(position.next) >= BigInt(high)) {
              this.#advancedAt.set(key, Date.now()); // seen caught up: as good as advancing
              continue;
            }
            behind.push(`${topic}/${partition}`);
            if (Date.now() - since(key) >= limit) stalled.push(`${topic}/${partition}`);
          }
        }
      } catch {
        this.#stuck = null; // Kafka does not answer this replica: its trouble, not this consumer's
        return;
      }
      if (this.#closed) return;
      if (this.#consumerJoined) {
        if (stalled.length === 0) {
          this.#stuck = null;
          return;
        }
        this.#stuck = `the Kafka consumer has not advanced for ${Math.round(limit / 1000)} s or more on ${stalled.join(', ')} although Kafka holds newer records there`;
      } else {
        const seconds = Math.round((Date.now() - (this.#consumerTrouble?.since ?? this.#joinedAt)) / 1000);
        this.#stuck = `the Kafka consumer has been out of its group for ${seconds} s although Kafka answers`;
      }
      this.#noteTrouble('Kafka consumer stuck; replacing it', this.#stuck);
      if (this.#consumerJoined) {
        // Joined but not fetching: replace it (one out of its group is being replaced already).
        this.#consumerJoined = false;
        this.#restartConsumer();
      } else if (!this.#restarting) this.#restartConsumer();
    } finally {
      this.#checkingHealth = false;
    }
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

  /** Which of `topics` are missing from the cluster, asked topic by topic (see `topicExists`). */
  async #missingTopics(admin: Admin, topics: readonly string[]): Promise<string[]> {
    const exists = await Promise.all(topics.map((topic) => topicExists(admin, topic)));
    return topics.filter((_, index) => !exists[index]);
  }

  async #ensureTopics(admin: Admin): Promise<void> {
    const missing = await this.#missingTopics(admin, this.#options.topics);
    if (missing.length === 0) return;
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((topic) => ({
          topic,
          numPartitions: this.#options.partitions,
          replicationFactor: this.#options.replicationFactor,
          ...(this.#options.sideTopics?.[topic]?.configEntries ? { configEntries: this.#options.sideTopics[topic].configEntries } : {}),
        })),
      });
      this.#logger.info({ topics: missing, partitions: this.#options.partitions }, 'created missing topics');
    } catch (error) {
      // Another replica may have created them in the meantime.
      if ((await this.#missingTopics(admin, missing)).length > 0) throw error;
    }
  }

  async publish(record: OutgoingRecord): Promise<Position> {
    if (this.#closed) throw new BusUnavailableError('the gateway is shutting down');
    if (!this.#producer.connected) throw new BusUnavailableError('Kafka is not connected');
    // The queue's size counts abandoned publishes (503 already answered) too, until their room's turn.
    if (this.#publishQueue.size >= (this.#options.maxPendingPublishes ?? 10000)) {
      throw new BusUnavailableError('too many publishes waiting for Kafka');
    }
    try {
      const sent = this.#publishQueue.enqueue(record);
      try {
        return await withTimeout(sent.position, this.#options.publishTimeoutMs, 'Kafka did not acknowledge in time');
      } catch (error) {
        sent.abandon();
        throw error;
      }
    } catch (error) {
      this.#countError('publish_failed');
      if (error instanceof BusUnavailableError) throw error;
      throw new BusUnavailableError('Kafka rejected the record', { cause: error });
    }
  }

  /**
   * Not ready: before the bus has started (with the latest reason at once), while warming up
   * the history, when the consumer is stuck (see `consumerStuckMs`), and once closing. Once
   * started, Kafka trouble that every replica shares (a broker lost, the consumer rejoining)
   * leaves it ready, with the trouble as `reason`: open streams stay, history is served, and
   * the consumer continues from where it was.
   */
  readiness(): BusReadiness {
    if (this.#closed) return { ready: false, reason: 'shutting down' };
    if (!this.#started) return { ready: false, reason: `Kafka: ${this.#startTrouble}` };
    if (this.#stuck !== null) return { ready: false, reason: this.#stuck };
    const behind = this.#catchingUp();
    if (behind > 0) return { ready: false, reason: `warming up the history: ${behind} partitions still catching up` };
    const degraded = this.#degraded();
    return degraded === null ? { ready: true } : { ready: true, reason: degraded };
  }

  /** What a ready replica lacks just now, or null. */
  #degraded(): string | null {
    if (!this.#consumerJoined) {
      const trouble = this.#consumerTrouble;
      const seconds = trouble === null ? 0 : Math.round((Date.now() - trouble.since) / 1000);
      return `degraded: the Kafka consumer is rejoining its group (${seconds} s${trouble === null ? '' : `: ${trouble.message}`}); streams stay open and continue where they were`;
    }
    if (!this.#producer.connected) return 'degraded: the Kafka producer is disconnected; publishing answers 503';
    const error = this.#lastClientError;
    if (error !== null && Date.now() - error.at < RECENT_ERROR_MS) return `degraded: Kafka client error ${Math.round((Date.now() - error.at) / 1000)} s ago: ${error.message}`;
    return null;
  }

  partitionPositions(): PartitionPosition[] {
    return [...this.#positions.values()];
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    if (this.#healthTimer !== null) clearInterval(this.#healthTimer);
    const admin = this.#admin;
    const consumer = this.#consumer;
    this.#consumer = null;
    // Bounded: brokers that are gone or recovering must not hold up the shutdown.
    const bounded = (action: () => Promise<unknown>) => this.#safely(() => withTimeout(action(), CLOSE_TIMEOUT_MS, 'Kafka disconnect timed out'));
    await Promise.all([
      consumer === null ? undefined : bounded(() => consumer.disconnect()),
      bounded(() => this.#producer.disconnect()),
      bounded(() => this.rangeReader.close()),
    ]);
    this.#admin = null;
    if (admin) await bounded(() => admin.disconnect());
  }

  async #safely(action: () => Promise<unknown>): Promise<void> {
    try {
      await action();
    } catch (error) {
      this.#logger.debug({ err: error }, 'ignored error while disconnecting from Kafka');
    }
  }
}
