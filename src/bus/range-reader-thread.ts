import { Worker } from 'node:worker_threads';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KafkaConfig, LogEntry } from 'kafkajs';
import type { Logger } from '../logger.ts';
import { nothingToRead } from './kafka-range-reader.ts';
import type { RangeReader, RangeResult } from './types.ts';
import { PackedRecordPage, type PackedRecords } from './record-page.ts';

/**
 * What the range reader's thread is started with: plain data only (it crosses to a worker
 * thread by structured clone), so kafkajs's client options without their `logCreator`.
 */
export interface RangeReaderThreadInit {
  client: Omit<KafkaConfig, 'logCreator' | 'logLevel' | 'socketFactory' | 'sasl'> & { sasl?: { mechanism: string; username: string; password: string } };
  groupId: string;
  topics: string[];
}

/** A `read` page asked for `paged`, as the thread answers it: its records packed (src/bus/record-page.ts). */
export interface PackedResult {
  packed: PackedRecords;
  complete: boolean;
  next?: number;
}

/** A call of the thread's RangeReader, by method name and arguments. */
export type RangeReaderCall =
  | { id: number; method: 'read'; args: Parameters<RangeReader['read']> }
  | { id: number; method: 'readAll'; args: Parameters<RangeReader['readAll']> };

/** Fetch counts of the thread's reads (see KafkaRangeReader.stats). */
export interface RangeReaderStats {
  batches: number;
  records: number;
}

/** Messages from the thread: answers, log lines and kafkajs's own log entries. */
export type RangeReaderThreadMessage =
  | { id: number; ok: true; value: unknown; stats: RangeReaderStats }
  | { id: number; ok: false; message: string; stats: RangeReaderStats }
  | { log: 'error' | 'warn' | 'info' | 'debug'; fields: Record<string, unknown>; message: string }
  | { kafkajs: Pick<LogEntry, 'level' | 'namespace' | 'label' | 'log'> }
  | { requestTimeout: true }
  | { closed: true };

export interface RangeReaderThreadOptions extends RangeReaderThreadInit {
  logger: Logger;
  /** kafkajs's log entries of the thread's clients, as the bus handles its own (readiness, counters). */
  onKafkaLog(entry: Pick<LogEntry, 'level' | 'namespace' | 'label' | 'log'>): void;
  /** A request of the thread's clients timed out (counted as the bus's own `request_timeout`). */
  onRequestTimeout(): void;
  /**
   * Answers the offset questions on the calling thread: they are one small admin request each,
   * and a replica that only asks them (the chart backfill of an empty window, a resume within
   * the in-memory history) never starts the thread (~0.2–0.6 CPU-s and a kafkajs client).
   */
  offsets: Required<Pick<RangeReader, 'offsetForTime' | 'endOffset'>>;
}

/** How long `close()` waits for the thread to disconnect from Kafka before it is terminated. */
const CLOSE_TIMEOUT_MS = 5000;

/**
 * The replica's reads of past ranges (KafkaRangeReader), run on a worker thread of their own.
 *
 * Why a thread: a deep resume reads Kafka fetch by fetch, and kafkajs decodes each whole
 * response (every room's records of the partition, most not asked for) synchronously, then
 * drops the cut record batch at its end by throwing; on the event loop that serves live
 * streams this was 0.6–3.2 s of held loop and its garbage per ten deep replays (docs/
 * BENCHMARKS.md). Here only the records asked for cross over, as one structured clone per
 * page, and the decoding's garbage is collected in the thread's own heap. The thread is
 * started on the first call and again after it died (a call then fails, and its caller
 * retries, as after any failed read).
 */
export class RangeReaderThread implements RangeReader {
  readonly #options: RangeReaderThreadOptions;
  #worker: Worker | null = null;
  #nextId = 0;
  readonly #pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  #closing: Promise<void> | null = null;
  /** Batches and records the thread fetched and decoded, as of its latest answer. */
  stats: RangeReaderStats = { batches: 0, records: 0 };

  constructor(options: RangeReaderThreadOptions) {
    this.#options = options;
  }

  read(topic: string, partition: number, from: number, to: number, key: string | readonly string[], limit: number, paged = false): Promise<RangeResult> {
    const empty = nothingToRead(from, to, limit);
    if (empty !== null) return Promise.resolve(empty);
    return this.#call<RangeResult | PackedResult>({ method: 'read', args: [topic, partition, from, to, key, limit, paged] }).then((result) =>
      'packed' in result ? { expired: false, records: [], page: new PackedRecordPage(result.packed), complete: result.complete, ...(result.next === undefined ? {} : { next: result.next }) } : withBuffers(result),
    );
  }

  readAll(topic: string, partition: number, from: number, to: number, limit: number): Promise<RangeResult> {
    const empty = nothingToRead(from, to, limit);
    if (empty !== null) return Promise.resolve(empty);
    return this.#call<RangeResult>({ method: 'readAll', args: [topic, partition, from, to, limit] }).then(withBuffers);
  }

  offsetForTime(topic: string, partition: number, timestamp: number): Promise<number | null> {
    return this.#options.offsets.offsetForTime(topic, partition, timestamp);
  }

  endOffset(topic: string, partition: number, atLeast?: number): Promise<number | null> {
    return this.#options.offsets.endOffset(topic, partition, atLeast);
  }

  #call<T>(call: DistributiveOmit<RangeReaderCall, 'id'>): Promise<T> {
    if (this.#closing !== null) return Promise.reject(new Error('closing'));
    const worker = this.#start();
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      worker.postMessage({ ...call, id } as RangeReaderCall);
    });
  }

  #start(): Worker {
    if (this.#worker !== null) return this.#worker;
    const { logger, onKafkaLog, onRequestTimeout, offsets, ...init } = this.#options;
    const [entry, options] = workerEntry();
    const worker = new Worker(entry, { ...options, workerData: init satisfies RangeReaderThreadInit });
    // The thread never keeps the process alive on its own: the bus closes it.
    worker.unref();
    worker.on('message', (message: RangeReaderThreadMessage) => {
      if ('id' in message) {
        const pending = this.#pending.get(message.id);
        this.#pending.delete(message.id);
        this.stats = message.stats;
        if (message.ok) pending?.resolve(message.value);
        else pending?.reject(new Error(message.message));
      } else if ('log' in message) logger[message.log](message.fields, message.message);
      else if ('kafkajs' in message) onKafkaLog(message.kafkajs);
      else if ('requestTimeout' in message) onRequestTimeout();
    });
    const died = (reason: string): void => {
      if (this.#worker !== worker) return;
      this.#worker = null;
      for (const pending of this.#pending.values()) pending.reject(new Error(`the range reader's thread ${reason}`));
      this.#pending.clear();
    };
    worker.on('error', (error) => {
      logger.error({ err: error }, "the Kafka range reader's thread failed; the next read starts a new one");
      died(`failed: ${error.message}`);
    });
    worker.on('exit', (code) => died(`exited (code ${code})`));
    this.#worker = worker;
    return worker;
  }

  /** Fails the reads under way, disconnects the thread's clients (bounded) and ends the thread. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const worker = this.#worker;
      if (worker === null) return;
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.postMessage({ close: true });
      const timer = setTimeout(() => void worker.terminate(), CLOSE_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    })();
    return this.#closing;
  }
}

/**
 * The thread's module, beside this one in the same form: .js when built; .ts when run through
 * tsx (`npm run dev`, the tests), whose loader hooks a worker thread does not inherit, so the
 * thread registers them first.
 */
function workerEntry(): [string | URL, { eval?: true }] {
  const here = fileURLToPath(import.meta.url);
  const entry = new URL(`./range-reader-worker${extname(here)}`, import.meta.url);
  if (extname(here) !== '.ts') return [entry, {}];
  return [`import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => tsx.register()).then(() => import(${JSON.stringify(entry.href)}))`, { eval: true }];
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/**
 * Structured clone hands Buffers over as plain Uint8Arrays: the records' keys, values and
 * headers become Buffers again (views of the same bytes, no copy).
 */
function withBuffers(result: RangeResult): RangeResult {
  if (result.expired) return result;
  for (const record of result.records) {
    record.key = asBuffer(record.key);
    record.value = asBuffer(record.value);
    for (const name of Object.keys(record.headers)) {
      const value = record.headers[name];
      record.headers[name] = Array.isArray(value) ? value.map(asBuffer) : asBuffer(value);
    }
  }
  return result;
}

function asBuffer<T extends Buffer | string | null | undefined>(value: T): T {
  const bytes: unknown = value;
  return (bytes instanceof Uint8Array && !Buffer.isBuffer(bytes) ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) : value) as T;
}
