import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../app.ts';
import { configWith, type Config } from '../../src/config.ts';
import type { EventBus } from '../../src/bus/types.ts';
import { until } from './sse-client.ts';

export interface TestGateway {
  app: FastifyInstance;
  url: string;
  config: Config;
  close(): Promise<void>;
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** The brokers `npm test` started (or was given); undefined when tap runs without it. */
export const kafkaBrokers = process.env.KAFKA_BROKERS?.split(',');

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

/** A gateway listening on 127.0.0.1 on a free port, ready (its bus started) when this resolves. */
export async function startGateway(
  overrides: Partial<Config> = {},
  options: { bus?: EventBus; waitReady?: boolean } = {},
): Promise<TestGateway> {
  const config = configWith({
    port: 0,
    host: '127.0.0.1',
    logLevel: 'silent',
    instanceId: uniqueName('test'),
    ...overrides,
  });
  const app = await buildApp({ config, ...(options.bus ? { bus: options.bus } : {}) });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  const url = `http://127.0.0.1:${address.port}`;
  if (options.waitReady !== false) {
    await until(async () => (await fetch(`${url}/readyz`)).status === 200, 60000, `${url}/readyz`);
  }
  return { app, url, config, close: () => app.close() };
}

/**
 * Two replicas of one deployment: the same fresh Kafka topics, each replica its own consumer
 * group; both closed when the test ends.
 */
export async function startReplicaPair(
  t: { teardown(fn: () => unknown): void },
  overrides: Partial<Config> = {},
): Promise<[TestGateway, TestGateway]> {
  const shared = { kafkaBrokers: requiredKafkaBrokers(), ...kafkaTopics(), ...overrides };
  const a = await startGateway(shared);
  t.teardown(() => a.close());
  const b = await startGateway(shared);
  t.teardown(() => b.close());
  return [a, b];
}

// any: tests index into whatever JSON a reply carries and assert on it.
export async function postJson(url: string, body: unknown): Promise<{ status: number; headers: Headers; body: any }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, body: await response.json() };
}
