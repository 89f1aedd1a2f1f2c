/**
 * The range reader's worker thread (started by src/bus/range-reader-thread.ts, which says why):
 * a KafkaRangeReader with its own kafkajs client and admin, answering the main thread's calls.
 * Logs and kafkajs's log entries go to the main thread, which writes them through the
 * replica's logger and bus.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Kafka, logLevel as KafkaLogLevel, type Admin } from 'kafkajs';
import type { LogFn } from 'pino';
import type { Logger } from '../logger.ts';
import { KafkaRangeReader } from './kafka-range-reader.ts';
import type { PackedResult, RangeReaderCall, RangeReaderThreadInit, RangeReaderThreadMessage } from './range-reader-thread.ts';
import { packRecords } from './record-page.ts';
import { withTimeout } from './types.ts';

const port = parentPort;
if (port === null) throw new Error('src/bus/range-reader-worker.ts runs as a worker thread (RangeReaderThread starts it)');
const init = workerData as RangeReaderThreadInit;
const post = (message: RangeReaderThreadMessage, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);

/** Log lines of the thread as pino's `(fields, message)` calls, handed to the main thread's logger. */
function logFn(level: 'error' | 'warn' | 'info' | 'debug'): LogFn {
  // any: pino's LogFn is an overloaded signature; the thread only ever calls it as (fields, message).
  return ((fields: Record<string, unknown>, message?: string) => {
    const { err, ...rest } = fields;
    // An Error crosses over as its message and stack (structured clone keeps those too, but
    // kafkajs's errors carry fields that do not clone).
    const error = err instanceof Error ? { err: { message: err.message, name: err.name, stack: err.stack } } : {};
    post({ log: level, fields: { ...rest, ...error }, message: message ?? '' });
  }) as any;
}
const logger: Logger = {
  error: logFn('error'),
  warn: logFn('warn'),
  info: logFn('info'),
  debug: logFn('debug'),
  trace: logFn('debug'),
  child: () => logger,
};

const kafka = new Kafka({
  ...init.client,
  // The bus's own client options (src/bus/kafka.ts) set these; SASL's mechanism is one kafkajs knows.
  sasl: init.client.sasl as never,
  logLevel: KafkaLogLevel.INFO,
  logCreator: () => (entry) => post({ kafkajs: { level: entry.level, namespace: entry.namespace, label: entry.label, log: { ...entry.log } } }),
});

let admin: Admin | null = null;
let adminConnecting: Promise<Admin> | null = null;
/** The thread's admin client, connected on first use (again after a failed connect). */
function connectedAdmin(): Promise<Admin> {
  adminConnecting ??= (async () => {
    const client = kafka.admin();
    client.on(client.events.REQUEST_TIMEOUT, () => post({ requestTimeout: true }));
    try {
      await withTimeout(client.connect(), 15000, 'Kafka did not answer the range reader in time');
    } catch (error) {
      adminConnecting = null;
      await client.disconnect().catch(() => {});
      throw error;
    }
    admin = client;
    return client;
  })();
  return adminConnecting;
}

const reader = new KafkaRangeReader({ kafka, admin: () => admin, groupId: init.groupId, topics: init.topics, logger });

/** An answer, and the buffers it hands over (not copied) with it. */
interface Answer {
  value: unknown;
  transfer?: ArrayBuffer[];
}

async function answer(call: RangeReaderCall): Promise<Answer> {
  await connectedAdmin();
  switch (call.method) {
    case 'read': {
      const [topic, partition, from, to, key, limit, paged] = call.args;
      const page = await reader.read(topic, partition, from, to, key, limit);
      if (paged !== true || page.expired) return { value: page };
      const { packed, transfer } = packRecords(topic, partition, page.records);
      const result: PackedResult = { packed, complete: page.complete, ...(page.next === undefined ? {} : { next: page.next }) };
      return { value: result, transfer };
    }
    case 'readAll':
      return { value: await reader.readAll(...call.args) };
  }
}

port.on('message', (message: RangeReaderCall | { close: true }) => {
  if ('close' in message) {
    void (async () => {
      await reader.close().catch(() => {});
      await admin?.disconnect().catch(() => {});
      post({ closed: true });
      port.close();
    })();
    return;
  }
  answer(message).then(
    ({ value, transfer }) => post({ id: message.id, ok: true, value, stats: { ...reader.stats } }, transfer),
    (error: unknown) => post({ id: message.id, ok: false, message: error instanceof Error ? error.message : String(error), stats: { ...reader.stats } }),
  );
});
