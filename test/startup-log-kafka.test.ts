/**
 * Issue 19 item 3: starting against Kafka says why it is not ready at once, logs a retrying
 * dependency at warn once per state (not per retry, no stack traces), and keeps the chatter of
 * a normal start out of warn and error.
 */
import t from 'tap';
import { testsAtATime } from './helpers/one-process.ts';
import { createServer } from 'node:net';
import type { Config } from '../src/config.ts';
import type { Teardowns } from './helpers/fixture.ts';
import { kafkaTopics, requiredKafkaBrokers, startGateway, type LogLine, type TestGateway } from './helpers/gateway.ts';
import { until } from './helpers/sse-client.ts';

const WARN = 40;
const ERROR = 50;

/** A gateway (not waiting for readiness) whose log lines, at info and above, are kept; closed when `t` ends. */
function gateway(t: Teardowns, overrides: Partial<Config>): Promise<TestGateway> {
  return startGateway(t, { logLevel: 'info', cursorSecret: 'startup-log-test-secret', ...overrides }, { waitReady: false });
}

/** A loopback port nothing listens on: connections to it are refused. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return address.port;
}

const kafkaLines = (logs: LogLine[], level: number) => logs.filter((line) => line.level === level && line.component === 'kafka');

testsAtATime(2);

t.test('brokers refusing connections: /readyz gives the reason at once; one warn line, none at error, no stack', async (t) => {
  // At debug, to see each of the client's connection retries (logged there, not at warn).
  const { url, logs } = await gateway(t, { logLevel: 'debug', kafkaBrokers: [`127.0.0.1:${await closedPort()}`], ...kafkaTopics() });
  let readiness = { status: 0, body: { status: '', reason: '' } };
  await until(async () => {
    const response = await fetch(`${url}/readyz`);
    readiness = { status: response.status, body: (await response.json()) as typeof readiness.body };
    return /ECONNREFUSED/.test(readiness.body.reason);
  }, 3000, '/readyz naming the refused connection').catch(() => undefined);
  t.equal(readiness.status, 503);
  t.match(readiness.body.reason, /ECONNREFUSED/, `the reason within 3 s: ${JSON.stringify(readiness.body)}`);

  // Over several of the client's retries (kafkajs counts them from 0; the backoff grows to 5 s).
  const retries = () => Math.max(-1, ...logs.map((line) => (line.kafkajs as { retryCount?: number } | undefined)?.retryCount ?? -1));
  await until(() => retries() >= 4, 30000, 'five failed connection attempts');
  t.same(logs.filter((line) => line.level >= ERROR).map((line) => line.msg), [], 'no line at error level');
  const warnings = kafkaLines(logs, WARN);
  t.equal(warnings.length, 1, `one warn line for the state: ${JSON.stringify(warnings.map((line) => line.msg))}`);
  t.match(warnings[0], { msg: /not reachable/, reason: /ECONNREFUSED/ });
  t.notOk(JSON.stringify(logs.filter((line) => line.level >= WARN)).includes('    at '), 'no stack trace at warn or above');
});

t.test('a normal start: no Kafka line at warn or error', async (t) => {
  const { url, logs } = await gateway(t, { kafkaBrokers: requiredKafkaBrokers(), ...kafkaTopics() });
  await until(async () => (await fetch(`${url}/readyz`)).status === 200, 60000, 'ready');
  t.same([...kafkaLines(logs, WARN), ...kafkaLines(logs, ERROR)].map((line) => line.msg), [], 'nothing at warn or error');
});
