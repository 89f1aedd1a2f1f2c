import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Writable } from 'node:stream';
import { configWith, type Config } from '../../src/config.ts';
import type { EventBus } from '../../src/bus/types.ts';
import type { Teardowns } from './fixture.ts';
import { until } from './sse-client.ts';

export interface TestGateway {
  app: FastifyInstance;
  url: string;
  config: Config;
  /** The gateway's log lines (pino's JSON, parsed), in order; none at the default level `silent`. */
  logs: LogLine[];
  /** Closes the gateway (idempotent: the fixture's teardown calls it again). */
  close(): Promise<void>;
}

/** One pino log line: `level` is pino's number (20 debug, 30 info, 40 warn, 50 error). */
export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** The brokers `npm test` started (or was given); undefined when tap runs without it. */
const kafkaBrokers = process.env.KAFKA_BROKERS?.split(',');

/**
 * For Kafka tests: the test broker's addresses. Without them the test file fails (it does not
 * skip): `npm test` always starts a broker, so a missing one is a broken setup, not an option.
 */
export function requiredKafkaBrokers(): string[] {
  if (kafkaBrokers === undefined) throw new Error('KAFKA_BROKERS is not set: run the tests with `npm test`, which starts a broker');
  return kafkaBrokers;
}

export function kafkaTopics(): Pick<Config, 'chatTopic' | 'tickerTopic'> {
  return { chatTopic: uniqueName('chat'), tickerTopic: uniqueName('ticker') };
}

/**
 * A gateway listening on 127.0.0.1 on a free port, ready (its bus started) when this resolves
 * (unless `waitReady: false`); closed when `t` ends. Logs with the server's own logger options
 * at `overrides.logLevel` (default `silent`) into `logs` instead of stdout.
 */
export async function startGateway(
  t: Teardowns,
  overrides: Partial<Config> = {},
  options: {
    bus?: EventBus;
    waitReady?: boolean;
    readyTimeoutMs?: number;
    /** The port to listen on (default: a free one), e.g. to restart a replica where clients reconnect. */
    port?: number;
    /** Called after the app is built and before it listens: to add a test-only route. */
    beforeListen?: (app: FastifyInstance) => void;
  } = {},
): Promise<TestGateway> {
  const config = configWith({
    port: 0,
    host: '127.0.0.1',
    logLevel: 'silent',
    instanceId: uniqueName('test'),
    ...overrides,
  });
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logs.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  // Imported here, not at the top: files that use only this module's small helpers (uniqueName,
  // postJson) then do not load the whole gateway (~2 CPU-s a process under tsx's loader).
  const { buildApp, loggerOptions } = await import('../../app.ts');
  const logger = { ...(loggerOptions(config) as object), stream: sink };
  const app = await buildApp({ config, logger, ...(options.bus ? { bus: options.bus } : {}) });
  let closing: Promise<void> | undefined;
  const close = () => (closing ??= app.close());
  t.teardown(close);
  options.beforeListen?.(app);
  await app.listen({ port: options.port ?? 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  const url = `http://127.0.0.1:${address.port}`;
  if (options.waitReady !== false) {
    await until(async () => (await fetch(`${url}/readyz`)).status === 200, options.readyTimeoutMs ?? 60000, `${url}/readyz`);
  }
  return { app, url, config, logs, close };
}

/**
 * Two replicas of one deployment: the same fresh Kafka topics, each replica its own consumer
 * group; both closed when the test ends.
 */
export async function startReplicaPair(
  t: Teardowns,
  overrides: Partial<Config> = {},
): Promise<[TestGateway, TestGateway]> {
  const shared = { kafkaBrokers: requiredKafkaBrokers(), ...kafkaTopics(), ...overrides };
  return [await startGateway(t, shared), await startGateway(t, shared)];
}

// any: tests index into whatever JSON a reply carries and assert on it.
export async function postJson(url: string, body: unknown): Promise<{ status: number; headers: Headers; body: any }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  try {
    return { status: response.status, headers: response.headers, body: JSON.parse(text) };
  } catch {
    // Not the gateway's JSON (e.g. a load balancer's own error page): say what came back.
    throw new Error(`POST ${url} answered ${response.status} with a body that is not JSON: ${text.slice(0, 200)}`);
  }
}
