/**
 * `npm run chaos`: does "no lost, no duplicated events" hold under real faults?
 *
 * Three gateway replicas (real processes) behind HAProxy configured from deploy/haproxy.cfg, on
 * a three-node Kafka (replication 3, min ISR 2), ≥ 100 spec-conformant EventSource subscribers
 * (single-room and multi-room streams), publishing straight to Kafka and over HTTP (with
 * retries) while faults run in sequence: a replica kill -9 and restart, a rolling SIGTERM of
 * every replica, a broker kill -9 (the group coordinator, which also leads test partitions)
 * and restart, and clients away for a multi-megabyte gap that come back with their last id.
 *
 * The truth is what Kafka holds at the end, read back from the beginning. Prints one JSON
 * summary on stdout (progress on stderr) and exits 0 when every subscriber received every
 * message of its rooms exactly once and in order and none gave up; 1 when the promise broke;
 * 2 when the run itself could not complete (setup failure, time budget). See docs/CHAOS.md.
 *
 * Bounded: CHAOS_MAX_S (default 240) wall time, loopback only; every process it starts runs
 * under a watchdog that kills it if this runner dies, and is stopped at the end.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel, Partitioners, type Producer } from 'kafkajs';
import { startKafka, type KafkaCluster } from '../kafka/kafka.ts';
import { partitionForKey } from '../../src/bus/partitioner.ts';
import { buildTruth, missingCount, scoreClient, seqOfText, textOfSeq, type ClientScore, type Truth, type TruthRecord } from './accounting.ts';
import { freePort, killAll, localHaproxyConfig, Supervised, type Exit } from './processes.ts';
import { Subscriber } from './subscriber.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${name} must be a whole number, got ${raw}`);
  return value;
}

const settings = {
  maxSeconds: envInt('CHAOS_MAX_S', 240),
  subscribers: envInt('CHAOS_SUBSCRIBERS', 120),
  rooms: envInt('CHAOS_ROOMS', 24),
  /** Messages straight to Kafka per second, and over HTTP per second (two publishers). */
  kafkaRate: envInt('CHAOS_KAFKA_RATE', 20),
  httpRate: envInt('CHAOS_HTTP_RATE', 16),
  /** The deep gap: this many messages to the away clients' room, as many to other rooms of its partition. */
  gapEvents: envInt('CHAOS_GAP_EVENTS', 10_000),
  gapTextBytes: 220,
  /** How long the away clients get to receive the whole gap. */
  gapWaitS: envInt('CHAOS_GAP_WAIT_S', 40),
  partitions: 6,
  /** Gateway settings the run shortens to fit its time budget (the rest are the defaults). */
  drainWindowMs: envInt('CHAOS_DRAIN_WINDOW_MS', 2000),
  shutdownTimeoutMs: envInt('CHAOS_SHUTDOWN_TIMEOUT_MS', 15000),
};

const startedAt = Date.now();
const deadline = startedAt + settings.maxSeconds * 1000;
/** What cleanup needs at the end (stopping three JVMs, three replicas, HAProxy). */
const CLEANUP_RESERVE_MS = 20_000;
/** What reading Kafka back and letting subscribers settle needs after the last fault. */
const FINISH_RESERVE_MS = 35_000;
const elapsedS = (): number => Math.round((Date.now() - startedAt) / 100) / 10;
const remainingMs = (): number => deadline - CLEANUP_RESERVE_MS - Date.now();
const log = (message: string): void => {
  process.stderr.write(`[chaos ${elapsedS().toFixed(1).padStart(5)}s] ${message}\n`);
};

const runDir = join(ROOT, 'test-artifacts', 'chaos', new Date(startedAt).toISOString().replace(/[:.]/g, '-'));
mkdirSync(runDir, { recursive: true });

const CHAT_TOPIC = 'chaos-chat';
const TICKER_TOPIC = 'chaos-ticker';
const DEEP_ROOM = 'deep';
const PROBE_ROOM = 'chaos-probe';
const CURSOR_SECRET = randomBytes(24).toString('base64url');

// ---------------------------------------------------------------------------------------------
// Run report (filled in as the run goes; printed at the end, also when it is cut short)

interface FaultRecord {
  name: string;
  startS: number;
  endS?: number;
  [detail: string]: unknown;
}

const report = {
  faults: [] as FaultRecord[],
  problems: [] as string[],
  shutdowns: [] as Array<{ replica: number; signal: string; exitCode: number; ms: number; withinDrainPlus5s: boolean }>,
  publish: {
    kafka: { sent: 0, acknowledged: 0, failed: 0, errors: {} as Record<string, number> },
    http: { messages: 0, acknowledged: 0, attempts: 0, retried: 0, gaveUp: 0, statuses: {} as Record<string, number>, clientMessageIds: false },
    gap: { events: 0, fillerEvents: 0, bytes: 0, ms: 0 },
  },
  deepGap: [] as Array<{ client: string; events: number; deliveredMs: number | null; receivedOfGap: number }>,
  readiness: [] as Array<{ phase: string; samples: number; minReadyReplicas: number; lbUnavailableSamples: number }>,
  /** Settings of deploy/haproxy.cfg the local config had to change besides addresses. */
  haproxyChanges: [] as string[],
  setupS: 0,
};
const acknowledged = new Set<number>();
/** How each acknowledged publish went (`kafka` or `http` + the replica's status line), for the summary's samples of acknowledged publishes missing from Kafka. */
const acknowledgedHow = new Map<number, string>();
let nextSeq = 0;

// ---------------------------------------------------------------------------------------------
// HAProxy

function haproxyBinary(): string {
  for (const path of ['/usr/sbin/haproxy', '/usr/bin/haproxy', '/usr/local/sbin/haproxy']) if (existsSync(path)) return path;
  if (process.getuid?.() === 0) {
    log('haproxy is missing: apt-get install -y haproxy');
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', timeout: 120_000 });
    spawnSync('apt-get', ['install', '-y', '-qq', 'haproxy'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: 180_000 });
    if (existsSync('/usr/sbin/haproxy')) return '/usr/sbin/haproxy';
  }
  throw new SetupError('haproxy is not installed (Debian: `apt-get install -y haproxy` as root, or scripts/install-chromium.sh)');
}

class SetupError extends Error {}

// ---------------------------------------------------------------------------------------------
// Gateway replicas

class Replica {
  proc: Supervised | undefined;
  generation = 0;
  instanceId = '';

  constructor(
    readonly index: number,
    readonly port: number,
    private readonly brokers: string[],
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.generation += 1;
    this.instanceId = `chaos-${this.index}-${this.generation}-${randomBytes(3).toString('hex')}`;
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      TMPDIR: process.env.TMPDIR,
      NODE_ENV: 'production',
      PORT: String(this.port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      INSTANCE_ID: this.instanceId,
      KAFKA_BROKERS: this.brokers.join(','),
      CHAT_TOPIC,
      TICKER_TOPIC,
      TOPIC_PARTITIONS: String(settings.partitions),
      TOPIC_REPLICATION_FACTOR: '3',
      CURSOR_SECRET,
      DRAIN_WINDOW_MS: String(settings.drainWindowMs),
      SHUTDOWN_TIMEOUT_MS: String(settings.shutdownTimeoutMs),
      // deploy/haproxy.cfg does not forward the client address, so every stream and publish
      // reaches a replica from HAProxy's one address: per-IP limits would cap the whole
      // deployment (100 streams per replica by default). See docs/CHAOS.md.
      MAX_STREAMS_PER_IP: '100000',
      PUBLISH_RATE_PER_IP: '1000000',
    };
    const logFile = join(runDir, `replica-${this.index}.${this.generation}.log`);
    this.proc = await Supervised.start(
      `replica ${this.index}`,
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'server.ts')],
      { ...env, NODE_OPTIONS: '' },
      logFile,
      join(runDir, `replica-${this.index}.pid`),
      ROOT,
    );
  }

  async readyz(): Promise<number> {
    try {
      const response = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(1500) });
      await response.arrayBuffer();
      return response.status;
    } catch {
      return 0;
    }
  }

  /** Waits for /readyz 200 (the process must stay up). */
  async waitReady(timeoutMs: number): Promise<number> {
    const begin = Date.now();
    for (;;) {
      if (this.proc === undefined || !this.proc.running) throw new SetupError(`replica ${this.index} exited (code ${this.proc?.exit?.code}) before it was ready; log in ${runDir}`);
      if ((await this.readyz()) === 200) return Date.now() - begin;
      if (Date.now() - begin > timeoutMs) throw new SetupError(`replica ${this.index} not ready after ${timeoutMs} ms; log in ${runDir}`);
      await sleep(200);
    }
  }
}

/** Waits until HAProxy routes to `replica` (a fresh replica has the fewest connections, so leastconn picks it once it is up). */
async function waitRoutedTo(lbUrl: string, replicas: Replica[], timeoutMs: number): Promise<number> {
  const begin = Date.now();
  const want = new Set(replicas.map((r) => r.instanceId));
  while (want.size > 0) {
    try {
      const response = await fetch(`${lbUrl}/status`, { signal: AbortSignal.timeout(2000) });
      if (response.status === 200) want.delete(((await response.json()) as { instanceId?: string }).instanceId ?? '');
      else await response.arrayBuffer();
    } catch {
      // not answering yet
    }
    if (want.size === 0) break;
    if (context.haproxy !== undefined && !context.haproxy.running) throw new SetupError(`HAProxy exited (code ${context.haproxy.exit?.code}); see haproxy.log in ${runDir}`);
    if (Date.now() - begin > timeoutMs) {
      report.problems.push(`HAProxy did not route to ${[...want].join(', ')} within ${timeoutMs} ms`);
      break;
    }
    await sleep(250);
  }
  return Date.now() - begin;
}

// ---------------------------------------------------------------------------------------------
// Readiness sampling (how many replicas are ready, and whether the LB has a backend at all)

class ReadinessSampler {
  private phase = 'setup';
  private current = { samples: 0, minReadyReplicas: 3, lbUnavailableSamples: 0 };
  private running = true;
  private readonly done: Promise<void>;

  constructor(
    private readonly replicas: Replica[],
    private readonly lbUrl: string,
  ) {
    this.done = this.loop();
  }

  enter(phase: string): void {
    this.flush();
    this.phase = phase;
  }

  private flush(): void {
    if (this.current.samples > 0) report.readiness.push({ phase: this.phase, ...this.current });
    this.current = { samples: 0, minReadyReplicas: 3, lbUnavailableSamples: 0 };
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const [statuses, lb] = await Promise.all([
        Promise.all(this.replicas.map((r) => r.readyz())),
        fetch(`${this.lbUrl}/healthz`, { signal: AbortSignal.timeout(1500) })
          .then(async (r) => {
            await r.arrayBuffer();
            return r.status;
          })
          .catch(() => 0),
      ]);
      this.current.samples += 1;
      this.current.minReadyReplicas = Math.min(this.current.minReadyReplicas, statuses.filter((s) => s === 200).length);
      if (lb !== 200) this.current.lbUnavailableSamples += 1;
      await sleep(500);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
    this.flush();
  }
}

// ---------------------------------------------------------------------------------------------
// Publishers

function bump(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}

class Publishers {
  private running = true;
  private readonly loops: Promise<void>[] = [];
  private producer: Producer | undefined;

  constructor(
    private readonly kafka: Kafka,
    private readonly lbUrl: string,
    private readonly rooms: string[],
  ) {}

  private room(): string {
    return this.rooms[Math.floor(Math.random() * this.rooms.length)]!;
  }

  start(): void {
    if (settings.kafkaRate > 0) this.loops.push(this.kafkaLoop(1000 / settings.kafkaRate));
    const httpLoops = settings.httpRate > 0 ? 2 : 0;
    for (let i = 0; i < httpLoops; i++) this.loops.push(this.httpLoop((1000 * httpLoops) / settings.httpRate));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    await this.producer?.disconnect().catch(() => undefined);
  }

  /**
   * Straight to Kafka, as an upstream service would: kafkajs, acks=all, the default
   * (murmur2) partitioner, idempotent so that its own retries do not write a record twice. A
   * send that fails is not retried by the run (its outcome is unknown; Kafka's content decides).
   */
  private async kafkaLoop(intervalMs: number): Promise<void> {
    const stats = report.publish.kafka;
    while (this.running) {
      const began = Date.now();
      const seq = nextSeq++;
      const room = this.room();
      try {
        this.producer ??= await this.connectProducer();
        stats.sent += 1;
        await this.producer.send({
          topic: CHAT_TOPIC,
          acks: -1,
          messages: [{ key: room, value: JSON.stringify({ id: `k${seq}`, user: 'chaos-kafka', text: textOfSeq(seq) }), headers: { 'event-type': 'message' } }],
        });
        stats.acknowledged += 1;
        acknowledged.add(seq);
        acknowledgedHow.set(seq, `kafka to ${room} at ${elapsedS()} s`);
      } catch (error) {
        stats.failed += 1;
        bump(stats.errors, error instanceof Error ? error.name : 'error');
        // A producer that failed may hold stale state (idempotence sequence numbers): start afresh.
        const stale = this.producer;
        this.producer = undefined;
        await stale?.disconnect().catch(() => undefined);
      }
      await sleep(Math.max(0, intervalMs - (Date.now() - began)));
    }
  }

  private async connectProducer(): Promise<Producer> {
    const producer = this.kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    return producer;
  }

  /**
   * Over HTTP through HAProxy, as a browser or service would: a 503, 502, 504, 429 or network
   * error means the outcome is unknown, so it retries (with the same client message id when the
   * gateway accepts one, else without: then a retry may write the message twice).
   */
  private async httpLoop(intervalMs: number): Promise<void> {
    const stats = report.publish.http;
    while (this.running) {
      const began = Date.now();
      const seq = nextSeq++;
      const room = this.room();
      stats.messages += 1;
      const body = JSON.stringify({ user: 'chaos-http', text: textOfSeq(seq), ...(stats.clientMessageIds ? { id: `h${seq}` } : {}) });
      const giveUpAt = Date.now() + 30_000;
      for (let attempt = 1; ; attempt++) {
        stats.attempts += 1;
        if (attempt > 1) stats.retried += 1;
        let status = 0;
        try {
          const response = await fetch(`${this.lbUrl}/rooms/${room}/messages`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body,
            signal: AbortSignal.timeout(10_000),
          });
          status = response.status;
          await response.arrayBuffer();
        } catch (error) {
          bump(stats.statuses, error instanceof Error && error.name === 'TimeoutError' ? 'timeout' : 'network-error');
        }
        if (status !== 0) bump(stats.statuses, String(status));
        if (status === 202) {
          stats.acknowledged += 1;
          acknowledged.add(seq);
          acknowledgedHow.set(seq, `http to ${room}, attempt ${attempt}, at ${elapsedS()} s`);
          break;
        }
        const retryable = status === 0 || status === 429 || status === 502 || status === 503 || status === 504;
        if (!retryable) {
          report.problems.push(`HTTP publish of c${seq} answered ${status}: not retried`);
          break;
        }
        if (Date.now() > giveUpAt || !this.running) {
          stats.gaveUp += 1;
          break;
        }
        await sleep(Math.min(1000, 150 * attempt));
      }
      await sleep(Math.max(0, intervalMs - (Date.now() - began)));
    }
  }
}

/**
 * Does the gateway accept a client-supplied message id (`id` in the body) for idempotent
 * retries? A probe message to a room no subscriber watches: yes when the 202 names our id.
 */
async function probeClientMessageIds(lbUrl: string): Promise<boolean> {
  const id = `probe-${randomBytes(6).toString('hex')}`;
  const response = await fetch(`${lbUrl}/rooms/${PROBE_ROOM}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: 'chaos-probe', text: 'probe', id }),
  });
  const text = await response.text();
  // Fastify's validator drops unknown body properties silently, so a 202 alone proves
  // nothing: the id was honoured only if the reply names it as the message's id.
  if (response.status === 202) return (JSON.parse(text) as { id?: unknown }).id === id;
  if (response.status === 400) return false;
  throw new SetupError(`publish probe answered ${response.status}: ${text.slice(0, 200)}`);
}

// ---------------------------------------------------------------------------------------------
// Kafka helpers

/** Rooms whose key lands on `room`'s partition (for the deep gap's other traffic on that partition). */
function roomsOnPartitionOf(room: string, count: number): string[] {
  const partition = partitionForKey(room, settings.partitions);
  const rooms: string[] = [];
  for (let i = 0; rooms.length < count; i++) if (partitionForKey(`filler-${i}`, settings.partitions) === partition) rooms.push(`filler-${i}`);
  return rooms;
}

/**
 * The broker to kill: the group coordinator of every gateway's consumer group (the leader of
 * __consumer_offsets, a single partition in this cluster), which also leads some of the test
 * partitions — the case the issue says a test must cover.
 */
async function coordinatorBroker(kafka: Kafka): Promise<{ node: number; ledPartitions: number[]; deepPartitionLeader: number }> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const meta = await admin.fetchTopicMetadata({ topics: ['__consumer_offsets', CHAT_TOPIC] });
    const offsets = meta.topics.find((t) => t.name === '__consumer_offsets');
    const chat = meta.topics.find((t) => t.name === CHAT_TOPIC);
    const node = offsets?.partitions.find((p) => p.partitionId === 0)?.leader;
    if (node === undefined || chat === undefined) throw new SetupError('cannot find the group coordinator');
    const deepPartition = partitionForKey(DEEP_ROOM, settings.partitions);
    return {
      node,
      ledPartitions: chat.partitions.filter((p) => p.leader === node).map((p) => p.partitionId).sort(),
      deepPartitionLeader: chat.partitions.find((p) => p.partitionId === deepPartition)?.leader ?? -1,
    };
  } finally {
    await admin.disconnect();
  }
}

/** Everything the chat topic holds, read from the beginning up to the end offsets of now. */
async function readTruth(kafka: Kafka, tracked: Set<string>): Promise<{ truth: Truth; foreign: number }> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map<number, bigint>();
  for (const p of await admin.fetchTopicOffsets(CHAT_TOPIC)) ends.set(p.partition, BigInt(p.high));
  await admin.disconnect();
  const byPartition = new Map<number, TruthRecord[]>();
  const next = new Map<number, bigint>();
  let foreign = 0;
  const consumer = kafka.consumer({ groupId: `chaos-truth-${randomBytes(4).toString('hex')}`, maxBytes: 16 * 1024 * 1024 });
  await consumer.connect();
  await consumer.subscribe({ topic: CHAT_TOPIC, fromBeginning: true });
  const complete = (): boolean => [...ends].every(([partition, end]) => end === 0n || (next.get(partition) ?? 0n) >= end);
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  await consumer.run({
    eachBatch: async ({ batch }) => {
      const list = byPartition.get(batch.partition) ?? [];
      byPartition.set(batch.partition, list);
      for (const message of batch.messages) {
        next.set(batch.partition, BigInt(message.offset) + 1n);
        const room = message.key?.toString('utf8') ?? '';
        if (!tracked.has(room)) continue;
        let value: { id?: unknown; text?: unknown };
        try {
          value = JSON.parse(message.value?.toString('utf8') ?? '') as { id?: unknown; text?: unknown };
        } catch {
          foreign += 1;
          continue;
        }
        const seq = seqOfText(value.text);
        if (seq === undefined || typeof value.id !== 'string') {
          foreign += 1;
          continue;
        }
        list.push({ room, seq, id: value.id, timestamp: Number(message.timestamp) });
      }
      if (complete()) resolveDone();
    },
  });
  if (!complete()) await Promise.race([done, sleep(Math.max(10_000, remainingMs()))]);
  const finished = complete();
  await consumer.disconnect();
  if (!finished) throw new SetupError('could not read the chat topic back to its end offsets');
  const records: TruthRecord[] = [];
  for (const partition of [...byPartition.keys()].sort((a, b) => a - b)) records.push(...byPartition.get(partition)!);
  return { truth: buildTruth(records), foreign };
}

// ---------------------------------------------------------------------------------------------
// The run

interface Context {
  cluster: KafkaCluster;
  kafka: Kafka;
  replicas: Replica[];
  haproxy: Supervised;
  lbUrl: string;
  sampler: ReadinessSampler;
  subscribers: Subscriber[];
  publishers: Publishers;
}

const context: Partial<Context> = {};
let finished = false;

function fault(name: string, details: Record<string, unknown> = {}): FaultRecord {
  const record: FaultRecord = { name, startS: elapsedS(), ...details };
  report.faults.push(record);
  context.sampler?.enter(name);
  log(`fault: ${name}`);
  return record;
}

function endFault(record: FaultRecord): void {
  record.endS = elapsedS();
  context.sampler?.enter(`after ${record.name}`);
}

/** Skips a fault that no longer fits in the time budget (the run then cannot pass). */
function fits(name: string, needMs: number): boolean {
  if (remainingMs() - FINISH_RESERVE_MS >= needMs) return true;
  report.problems.push(`skipped "${name}": ${Math.round((remainingMs() - FINISH_RESERVE_MS) / 1000)} s left, it needs ${needMs / 1000} s (CHAOS_MAX_S=${settings.maxSeconds})`);
  log(`skipping ${name}: not enough time left`);
  return false;
}

async function restartReplica(replica: Replica, record: FaultRecord, lbUrl: string): Promise<void> {
  await replica.start();
  record.readyMs = await replica.waitReady(Math.min(90_000, Math.max(5_000, remainingMs())));
  record.routedMs = await waitRoutedTo(lbUrl, [replica], 15_000);
}

async function replicaKill(ctx: Context): Promise<void> {
  const replica = ctx.replicas[0]!;
  const record = fault(`replica ${replica.index} kill -9`, { replica: replica.index });
  replica.proc!.signal('SIGKILL');
  const exit = await replica.proc!.exited;
  record.exitCode = exit.code;
  await sleep(2000);
  await restartReplica(replica, record, ctx.lbUrl);
  endFault(record);
}

async function rollingSigterm(ctx: Context): Promise<void> {
  for (const replica of ctx.replicas) {
    if (!fits(`SIGTERM replica ${replica.index}`, settings.shutdownTimeoutMs + 15_000)) return;
    const record = fault(`replica ${replica.index} SIGTERM`, { replica: replica.index });
    const began = Date.now();
    replica.proc!.signal('SIGTERM');
    const exit: Exit | undefined = await Promise.race([replica.proc!.exited, sleep(settings.shutdownTimeoutMs + 5000).then(() => undefined)]);
    const ms = Date.now() - began;
    if (exit === undefined) {
      report.problems.push(`replica ${replica.index} still running ${ms} ms after SIGTERM: killed`);
      replica.proc!.killSync();
      await replica.proc!.exited;
    }
    const code = exit?.code ?? -1;
    report.shutdowns.push({ replica: replica.index, signal: 'SIGTERM', exitCode: code, ms, withinDrainPlus5s: code === 0 && ms <= settings.drainWindowMs + 5000 });
    record.exitCode = code;
    record.exitMs = ms;
    await restartReplica(replica, record, ctx.lbUrl);
    endFault(record);
  }
}

async function brokerKill(ctx: Context): Promise<void> {
  const target = await coordinatorBroker(ctx.kafka);
  const record = fault('broker kill -9', { broker: target.node, groupCoordinator: true, leaderOfChatPartitions: target.ledPartitions, deepPartitionLeader: target.deepPartitionLeader });
  const pid = ctx.cluster.jvmPids()[target.node];
  if (pid === undefined) throw new SetupError(`broker ${target.node} has no pid`);
  process.kill(pid, 'SIGKILL');
  await sleep(8000);
  const restartBegan = Date.now();
  await ctx.cluster.startNode(target.node);
  record.restartMs = Date.now() - restartBegan;
  await sleep(5000);
  endFault(record);
}

async function deepGap(ctx: Context, away: Subscriber[], fillerRooms: string[]): Promise<void> {
  const record = fault('client away for a deep gap', { clients: away.map((s) => s.state.name) });
  const ids = away.map((s) => s.lastEventId);
  for (const subscriber of away) subscriber.leave();
  // Let the departure reach the replicas before the gap starts.
  await sleep(500);
  const producer = ctx.kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const began = Date.now();
  const gapSeqs: number[] = [];
  let bytes = 0;
  const batch = 500;
  for (let sent = 0; sent < settings.gapEvents; sent += batch / 2) {
    const messages = [];
    const seqs: number[] = [];
    for (let i = 0; i < batch; i++) {
      const seq = nextSeq++;
      const room = i % 2 === 0 ? DEEP_ROOM : fillerRooms[(sent + i) % fillerRooms.length]!;
      const value = JSON.stringify({ id: `g${seq}`, user: 'chaos-gap', text: textOfSeq(seq, settings.gapTextBytes) });
      bytes += value.length + room.length;
      if (room === DEEP_ROOM) gapSeqs.push(seq);
      seqs.push(seq);
      messages.push({ key: room, value, headers: { 'event-type': 'message' } });
    }
    await producer.send({ topic: CHAT_TOPIC, acks: -1, messages });
    for (const seq of seqs) acknowledged.add(seq);
  }
  await producer.disconnect();
  report.publish.gap = { events: gapSeqs.length, fillerEvents: settings.gapEvents * 2 - gapSeqs.length, bytes, ms: Date.now() - began };
  const last = gapSeqs[gapSeqs.length - 1]!;
  const gapSet = new Set(gapSeqs);
  log(`deep gap: ${gapSeqs.length} + ${report.publish.gap.fillerEvents} messages, ${(bytes / 1e6).toFixed(1)} MB in Kafka; clients come back`);
  const back = Date.now();
  const waitMs = Math.min(settings.gapWaitS * 1000, Math.max(5000, remainingMs() - FINISH_RESERVE_MS));
  await Promise.all(
    away.map(async (subscriber, i) => {
      await Promise.race([subscriber.connect(ids[i]), sleep(waitMs)]);
      const seen = subscriber.seen.get(DEEP_ROOM)!;
      let deliveredMs: number | null = null;
      while (Date.now() - back < waitMs) {
        if (seen.has(last)) {
          deliveredMs = Date.now() - back;
          break;
        }
        await sleep(100);
      }
      let receivedOfGap = 0;
      for (const seq of seen) if (gapSet.has(seq)) receivedOfGap += 1;
      report.deepGap.push({ client: subscriber.state.name, events: gapSeqs.length, deliveredMs, receivedOfGap });
      log(`deep gap: ${subscriber.state.name} ${deliveredMs === null ? `did not get the gap in ${waitMs} ms (${receivedOfGap}/${gapSeqs.length})` : `got it in ${deliveredMs} ms`}`);
    }),
  );
  endFault(record);
}

interface Summary {
  ok: boolean;
  verdict: string;
  durationS: number;
  settings: typeof settings;
  subscribers: Record<string, unknown>;
  kafka: Record<string, unknown>;
  publish: typeof report.publish;
  deepGap: typeof report.deepGap;
  faults: FaultRecord[];
  shutdowns: typeof report.shutdowns;
  readiness: typeof report.readiness;
  worstClients: unknown[];
  problems: string[];
  setupS: number;
  haproxyChanges: string[];
  artifacts: string;
}

/** The fault (or the quiet time after one) running `atS` seconds into the run. */
function phaseAt(atS: number): string {
  let phase = 'before the faults';
  for (const f of report.faults) {
    if (atS >= f.startS) phase = f.endS !== undefined && atS > f.endS ? `after ${f.name}` : f.name;
  }
  return phase;
}

function summarise(truth: Truth | undefined, foreign: number, aborted: string | undefined): Summary {
  const subscribers = context.subscribers ?? [];
  const scores: Array<{ subscriber: Subscriber; score: ClientScore }> = truth ? subscribers.map((subscriber) => ({ subscriber, score: scoreClient(truth, subscriber) })) : [];
  const sum = (pick: (s: ClientScore) => number): number => scores.reduce((total, { score }) => total + pick(score), 0);
  const clients = (pick: (s: ClientScore) => number): number => scores.filter(({ score }) => pick(score) > 0).length;
  const gaveUp = subscribers.filter((s) => s.gaveUp || (!s.away && s.readyState === 2));
  const resetReasons: Record<string, number> = {};
  for (const s of subscribers) for (const [reason, n] of Object.entries(s.state.resetReasons)) resetReasons[reason] = (resetReasons[reason] ?? 0) + n;
  const gaveUpStatuses: Record<string, number> = {};
  for (const s of gaveUp) bump(gaveUpStatuses, String(s.state.gaveUpStatus ?? s.state.gaveUpMessage ?? 'unknown'));
  const gaveUpDuring: Record<string, number> = {};
  for (const s of gaveUp) bump(gaveUpDuring, phaseAt(s.state.gaveUpAtS ?? 0));
  const connected = scores.filter(({ subscriber }) => !subscriber.gaveUp);
  // When each lost message was published (its Kafka timestamp), by phase of the run.
  const lostPublishedDuring = (list: typeof scores): Record<string, number> => {
    const phases: Record<string, number> = {};
    for (const { score } of list) for (const seq of score.lostSeqs) bump(phases, phaseAt(((truth?.timestamps.get(seq) ?? startedAt) - startedAt) / 1000));
    return phases;
  };
  const expected = truth ? subscribers.reduce((total, s) => total + s.rooms.reduce((n, room) => n + (truth.rooms.get(room)?.length ?? 0), 0), 0) : 0;
  const ackedMissing = truth ? [...acknowledged].filter((seq) => !truth.seqs.has(seq)) : [];
  const subscriberSummary = {
    total: subscribers.length,
    single: subscribers.filter((s) => s.state.kind === 'single').length,
    multi: subscribers.filter((s) => s.state.kind === 'multi').length,
    expectedDeliveries: expected,
    lost: sum((s) => s.lost),
    clientsWithLoss: clients((s) => s.lost),
    lostByClientsStillConnected: connected.reduce((n, { score }) => n + score.lost, 0),
    stillConnectedClientsWithLoss: connected.filter(({ score }) => score.lost > 0).length,
    lostPublishedDuring: lostPublishedDuring(scores),
    lostByStillConnectedPublishedDuring: lostPublishedDuring(connected),
    duplicated: sum((s) => s.duplicated),
    duplicatedFromKafkaCopies: sum((s) => s.duplicatedFromKafkaCopies),
    clientsWithDuplicates: clients((s) => s.duplicated),
    outOfOrder: sum((s) => s.outOfOrder),
    clientsOutOfOrder: clients((s) => s.outOfOrder),
    unknown: sum((s) => s.unknown),
    gaveUp: gaveUp.length,
    gaveUpStatuses,
    gaveUpDuring,
    gaveUpClients: gaveUp.map((sub) => sub.state.name),
    resets: subscribers.reduce((n, s) => n + s.state.resets, 0),
    clientsWithResets: subscribers.filter((s) => s.state.resets > 0).length,
    resetReasons,
    overflows: subscribers.reduce((n, s) => n + s.state.overflows, 0),
    reconnects: subscribers.reduce((n, s) => n + Math.max(0, s.state.opens - 1), 0),
    reconnectsWithoutId: subscribers.reduce((n, s) => n + s.state.reconnectsWithoutId, 0),
    unexpectedEvents: subscribers.reduce((n, s) => n + s.state.unexpected, 0),
  };
  const kafkaSummary = truth
    ? {
        records: truth.records,
        messages: [...truth.rooms.values()].reduce((n, l) => n + l.length, 0),
        duplicatedPublishes: truth.duplicatedPublishes,
        repeatedIds: truth.repeatedIds,
        repeatedIdSamples: truth.repeatedIdSamples,
        acknowledgedButMissing: ackedMissing.length,
        acknowledgedButMissingSamples: ackedMissing.slice(0, 10).map((seq) => `${seq}: ${acknowledgedHow.get(seq) ?? 'at setup'}`),
        foreignRecords: foreign,
      }
    : {};
  const worst = scores
    .filter(({ score, subscriber }) => score.lost + score.duplicated + score.outOfOrder > 0 || subscriber.gaveUp)
    .sort((a, b) => Number(a.subscriber.gaveUp) - Number(b.subscriber.gaveUp) || b.score.lost - a.score.lost || b.score.duplicated - a.score.duplicated)
    .slice(0, 8)
    .map(({ subscriber, score }) => ({
      client: subscriber.state.name,
      rooms: subscriber.rooms,
      lost: score.lost,
      lostByRoom: score.lostByRoom,
      firstLost: score.firstLost,
      lostSeqs: score.lostSeqs.length > 12 ? [...score.lostSeqs.slice(0, 12), `… ${score.lostSeqs.length - 12} more`] : score.lostSeqs,
      duplicated: score.duplicated,
      duplicatedFromKafkaCopies: score.duplicatedFromKafkaCopies,
      outOfOrder: score.outOfOrder,
      opens: subscriber.state.opens,
      reconnectsWithoutId: subscriber.state.reconnectsWithoutId,
      resets: subscriber.state.resetReasons,
      gaveUp: subscriber.gaveUp ? { atS: subscriber.state.gaveUpAtS, status: subscriber.state.gaveUpStatus, message: subscriber.state.gaveUpMessage } : undefined,
    }));
  const failures: string[] = [];
  if (subscriberSummary.lost > 0) failures.push(`${subscriberSummary.lost} messages lost by ${subscriberSummary.clientsWithLoss} clients`);
  if (subscriberSummary.duplicated > 0) failures.push(`${subscriberSummary.duplicated} duplicate receipts at ${subscriberSummary.clientsWithDuplicates} clients`);
  if (subscriberSummary.outOfOrder > 0) failures.push(`${subscriberSummary.outOfOrder} out-of-order receipts`);
  if (subscriberSummary.gaveUp > 0) failures.push(`${subscriberSummary.gaveUp} clients gave up`);
  if (truth && truth.duplicatedPublishes > 0) failures.push(`${truth.duplicatedPublishes} messages written twice to Kafka by publish retries`);
  if (ackedMissing.length > 0) failures.push(`${ackedMissing.length} acknowledged publishes missing from Kafka`);
  const incomplete = aborted ?? (report.problems.some((p) => p.startsWith('skipped')) ? 'a fault was skipped' : undefined);
  const ok = failures.length === 0 && incomplete === undefined && truth !== undefined;
  const verdict = ok ? 'pass' : incomplete !== undefined ? `incomplete: ${incomplete}${failures.length ? `; ${failures.join('; ')}` : ''}` : `fail: ${failures.join('; ')}`;
  return {
    ok,
    verdict,
    durationS: elapsedS(),
    settings,
    subscribers: subscriberSummary,
    kafka: kafkaSummary,
    publish: report.publish,
    deepGap: report.deepGap,
    faults: report.faults,
    shutdowns: report.shutdowns,
    readiness: report.readiness,
    worstClients: worst,
    problems: report.problems,
    setupS: report.setupS,
    haproxyChanges: report.haproxyChanges,
    artifacts: runDir,
  };
}

async function cleanup(): Promise<void> {
  for (const subscriber of context.subscribers ?? []) subscriber.close();
  await context.publishers?.stop().catch(() => undefined);
  await context.sampler?.stop().catch(() => undefined);
  await Promise.all((context.replicas ?? []).map((r) => r.proc?.stop(5000)));
  await context.haproxy?.stop(2000);
  await killAll();
  await context.cluster?.stop().catch((error: unknown) => log(`stopping Kafka: ${String(error)}`));
}

function finish(summary: Summary, code: number): never {
  writeFileSync(join(runDir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
  log(`${summary.verdict} (${summary.durationS} s); artifacts in ${runDir}`);
  process.exit(code);
}

async function main(): Promise<void> {
  const haproxyBin = haproxyBinary();
  log(`run dir ${runDir}`);
  log('starting a three-node Kafka…');
  const cluster = await startKafka({ nodes: 3, logFile: join(runDir, 'kafka.log') });
  context.cluster = cluster;
  const kafka = new Kafka({ clientId: 'chaos-runner', brokers: cluster.brokers, logLevel: logLevel.NOTHING, retry: { retries: 8 } });
  context.kafka = kafka;
  log(`Kafka up: ${cluster.brokers.join(',')}`);

  const replicas = await Promise.all([0, 1, 2].map(async (i) => new Replica(i, await freePort(), cluster.brokers)));
  context.replicas = replicas;
  // All three at once, as a deployment would: whichever comes first creates the topics.
  await Promise.all(
    replicas.map(async (r) => {
      await r.start();
      await r.waitReady(120_000);
    }),
  );
  log(`replicas ready on ports ${replicas.map((r) => r.port).join(', ')}`);

  const lbPort = await freePort();
  const deployed = readFileSync(join(ROOT, 'deploy', 'haproxy.cfg'), 'utf8');
  const fdLimit = Number(spawnSync('bash', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim()) || 1024;
  const haproxy = localHaproxyConfig(deployed, lbPort, replicas.map((r) => ({ name: `gateway-${r.index}`, port: r.port })), fdLimit);
  // Request logs (with HAProxy's termination state: why a request got 503) into haproxy.log:
  // logging only, no effect on routing.
  const logged = haproxy.config.replace(/^global\n/m, 'global\n  log stdout format raw local0 info\n').replace(/^defaults\n/m, 'defaults\n  log global\n');
  report.haproxyChanges = [...haproxy.replaced, 'request log to stdout (haproxy.log)'];
  const configFile = join(runDir, 'haproxy.cfg');
  writeFileSync(configFile, logged);
  const check = spawnSync(haproxyBin, ['-c', '-f', configFile], { encoding: 'utf8' });
  if (check.status !== 0) throw new SetupError(`haproxy rejects the generated config: ${check.stderr || check.stdout}`);
  context.haproxy = await Supervised.start('haproxy', haproxyBin, ['-db', '-f', configFile], { PATH: process.env.PATH }, join(runDir, 'haproxy.log'), join(runDir, 'haproxy.pid'));
  const lbUrl = `http://127.0.0.1:${lbPort}`;
  context.lbUrl = lbUrl;
  await waitRoutedTo(lbUrl, replicas, 30_000);
  log(`HAProxy on ${lbUrl} routes to all three replicas`);
  report.setupS = elapsedS();
  context.sampler = new ReadinessSampler(replicas, lbUrl);

  report.publish.http.clientMessageIds = await probeClientMessageIds(lbUrl);
  log(`publish with client message ids: ${report.publish.http.clientMessageIds ? 'accepted' : 'not accepted (retries may duplicate)'}`);

  // Subscribers: one per room round-robin for single-room streams, three rooms for multi-room
  // ones; one watcher stays on the deep room; two clients (single and multi) go away for the gap.
  const rooms = Array.from({ length: settings.rooms }, (_, i) => `r${String(i).padStart(2, '0')}`);
  const subscribers: Subscriber[] = [];
  const multiCount = Math.floor(settings.subscribers * 0.3);
  for (let i = 0; i < settings.subscribers; i++) {
    const roomsOf = i < settings.subscribers - multiCount ? [rooms[i % rooms.length]!] : [rooms[i % rooms.length]!, rooms[(i + 7) % rooms.length]!, rooms[(i + 13) % rooms.length]!];
    subscribers.push(new Subscriber(`s${i}`, [...new Set(roomsOf)], lbUrl, startedAt));
  }
  const watcher = new Subscriber('deep-watcher', [DEEP_ROOM], lbUrl, startedAt);
  const awaySingle = new Subscriber('away-single', [DEEP_ROOM], lbUrl, startedAt);
  const awayMulti = new Subscriber('away-multi', [DEEP_ROOM, rooms[5 % rooms.length]!], lbUrl, startedAt);
  subscribers.push(watcher, awaySingle, awayMulti);
  context.subscribers = subscribers;
  for (let i = 0; i < subscribers.length; i += 20) await Promise.race([Promise.all(subscribers.slice(i, i + 20).map((s) => s.connect())), sleep(20_000)]);
  const notOpen = subscribers.filter((s) => s.state.opens === 0);
  if (notOpen.length > 0) throw new SetupError(`${notOpen.length} subscribers could not connect (${notOpen[0]!.state.gaveUpMessage ?? 'no answer'})`);
  log(`${subscribers.length} subscribers connected`);

  // Messages to the deep room before the gap, so the away clients have a last id in it.
  const publishers = new Publishers(kafka, lbUrl, [...rooms, DEEP_ROOM]);
  context.publishers = publishers;
  publishers.start();
  context.sampler.enter('baseline');
  await sleep(5000);

  const ctx = context as Context;
  if (fits('replica kill -9', 30_000)) await replicaKill(ctx);
  await rollingSigterm(ctx);
  // The deep gap before the broker loss, so its delivery time measures paging, not recovery.
  const fillerRooms = roomsOnPartitionOf(DEEP_ROOM, 8);
  if (fits('client away for a deep gap', 30_000)) await deepGap(ctx, [awaySingle, awayMulti], fillerRooms);
  if (fits('broker kill -9', 45_000)) await brokerKill(ctx);

  context.sampler.enter('settle');
  log('stopping publishers, reading Kafka back');
  await publishers.stop();
  // Filler rooms too: nobody subscribes to them, but their publishes must be in Kafka as well.
  const tracked = new Set([...rooms, DEEP_ROOM, ...fillerRooms]);
  const { truth, foreign } = await readTruth(kafka, tracked);
  log(`Kafka holds ${truth.records} records of tracked rooms; waiting for subscribers to converge`);
  const settleUntil = Date.now() + Math.max(3000, Math.min(20_000, remainingMs()));
  for (;;) {
    const missing = subscribers.filter((s) => !s.gaveUp).reduce((n, s) => n + missingCount(truth, s.rooms, (room) => s.seen.get(room)), 0);
    if (missing === 0 || Date.now() > settleUntil) break;
    await sleep(250);
  }
  finished = true;
  const summary = summarise(truth, foreign, undefined);
  await cleanup();
  finish(summary, summary.ok ? 0 : summary.verdict.startsWith('incomplete') ? 2 : 1);
}

// Hard bound: whatever happens, the run ends (and cleans up) within CHAOS_MAX_S.
const hardStop = setTimeout(() => {
  if (finished) return;
  finished = true;
  log('time budget exhausted: stopping');
  const summary = summarise(undefined, 0, `time budget of ${settings.maxSeconds} s exhausted`);
  void Promise.race([cleanup(), sleep(15_000)]).finally(() => finish(summary, 2));
}, Math.max(1000, settings.maxSeconds * 1000 - CLEANUP_RESERVE_MS));
hardStop.unref();

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    if (finished) return;
    finished = true;
    log(`${signal}: stopping`);
    const summary = summarise(undefined, 0, `interrupted by ${signal}`);
    void Promise.race([cleanup(), sleep(15_000)]).finally(() => finish(summary, 2));
  });
}

main().catch(async (error: unknown) => {
  if (finished) return;
  finished = true;
  const message = error instanceof Error ? (error instanceof SetupError ? error.message : error.stack ?? error.message) : String(error);
  log(`run failed: ${message}`);
  report.problems.push(message);
  const summary = summarise(undefined, 0, `the run failed: ${message.split('\n')[0]}`);
  await Promise.race([cleanup(), sleep(15_000)]);
  finish(summary, 2);
});
