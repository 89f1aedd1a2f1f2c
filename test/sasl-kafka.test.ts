import t from 'tap';
import { testsAtATime } from './helpers/one-process.ts';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { KafkaSecurityConfig } from '../src/config.ts';
import { startKafka, type KafkaCluster } from '../scripts/kafka/kafka.ts';
import { kafkaTopics, postJson, startGateway, uniqueName } from './helpers/gateway.ts';
import { openStream, until } from './helpers/sse-client.ts';
import { serverArgs, serverEnv } from './helpers/server-process.ts';

/**
 * Kafka connection security against a dedicated single broker whose client listener is
 * SASL_PLAINTEXT with SCRAM-SHA-256: the gateway streams with the right credentials and fails
 * clearly (logs, /readyz 503, exit 1 with KAFKA_FAIL_FAST) with wrong ones.
 */

const root = fileURLToPath(new URL('..', import.meta.url));
const USER = 'gateway';
const PASSWORD = `right-${uniqueName('pw')}`;
const WRONG_PASSWORD = `wrong-${uniqueName('pw')}`;

function scram(password: string, failFast = false): KafkaSecurityConfig {
  return { ssl: null, sasl: { mechanism: 'scram-sha-256', username: USER, password }, failFast };
}

/** `server.ts` as its own process on the SASL broker, with KAFKA_FAIL_FAST; `output()` is its logs so far. */
function spawnServer(password: string) {
  const topics = kafkaTopics();
  const env = {
    ...serverEnv(),
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    KAFKA_BROKERS: cluster.brokers.join(','),
    CHAT_TOPIC: topics.chatTopic,
    TICKER_TOPIC: topics.tickerTopic,
    KAFKA_SASL_MECHANISM: 'scram-sha-256',
    KAFKA_SASL_USERNAME: USER,
    KAFKA_SASL_PASSWORD: password,
    KAFKA_FAIL_FAST: 'true',
    CURSOR_SECRET: 'sasl-test-cursor-secret',
  };
  // Node itself, not the tsx wrapper: a wrapper relaying SIGTERM can report 143 for a clean exit.
  const child = spawn(process.execPath, serverArgs(), { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  return { child, output: () => output };
}

let cluster: KafkaCluster;
testsAtATime(2);

t.before(async () => {
  cluster = await startKafka({ sasl: { mechanism: 'SCRAM-SHA-256', username: USER, password: PASSWORD } });
});
t.teardown(async () => {
  await cluster?.stop();
});

t.test('right credentials: a POST reaches an SSE client through the SASL listener', async (t) => {
  const gateway = await startGateway(t, { kafkaBrokers: cluster.brokers, ...kafkaTopics(), kafkaSecurity: scram(PASSWORD) });
  const room = uniqueName('room');
  const stream = await openStream(t, `${gateway.url}/events/${room}`);
  const posted = await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'ann', text: 'over SCRAM' });
  t.equal(posted.status, 202);
  const [event] = await stream.waitForEvents(1, 30000);
  t.equal(event?.event, 'message');
  t.match(JSON.parse(event!.data), { room, user: 'ann', text: 'over SCRAM' });
});

t.test('wrong credentials: logged, /readyz 503 with the reason, publishing 503', async (t) => {
  const { url, logs } = await startGateway(
    t,
    { logLevel: 'warn', kafkaBrokers: cluster.brokers, ...kafkaTopics(), kafkaSecurity: scram(WRONG_PASSWORD) },
    { waitReady: false },
  );

  let readiness: { status: number; body: { status: string; reason?: string } } = { status: 0, body: { status: '' } };
  await until(
    async () => {
      const response = await fetch(`${url}/readyz`);
      readiness = { status: response.status, body: (await response.json()) as typeof readiness.body };
      return /SASL|authenticat/i.test(readiness.body.reason ?? '');
    },
    30000,
    '/readyz to report the authentication failure',
  );
  t.equal(readiness.status, 503);
  t.match(readiness.body.reason, /authentication failed/i);
  t.notMatch(readiness.body.reason, WRONG_PASSWORD, 'the password is not echoed');

  const posted = await postJson(`${url}/rooms/lobby/messages`, { user: 'ann', text: 'nope' });
  t.equal(posted.status, 503);

  t.ok(logs.some((line) => line.level === 40 && /authentication failed/i.test(JSON.stringify(line))), 'the failure is logged as a warning');
  t.notOk(JSON.stringify(logs).includes(WRONG_PASSWORD), 'the password never reaches the logs');
});

t.test('wrong credentials with KAFKA_FAIL_FAST: the server exits 1 at startup', async (t) => {
  const { child, output: logs } = spawnServer(WRONG_PASSWORD);
  const killer = setTimeout(() => child.kill('SIGKILL'), 60000);
  const [code] = (await new Promise((resolve) => child.on('exit', (...result) => resolve(result)))) as [number | null, string | null];
  clearTimeout(killer);
  t.equal(code, 1, 'non-zero exit');
  t.match(logs(), /"level":60[^\n]*Kafka refused the connection/, 'a fatal log line says why');
  t.match(logs(), /"sasl":\{"mechanism":"scram-sha-256","username":"gateway"\}/, 'the connection settings are logged');
  t.notOk(logs().includes(WRONG_PASSWORD), 'without the password');
});

t.test('right credentials with KAFKA_FAIL_FAST: the server keeps running', async (t) => {
  const { child, output: logs } = spawnServer(PASSWORD);
  let exitCode: number | null | undefined;
  child.on('exit', (code) => (exitCode = code));
  t.teardown(() => {
    if (exitCode === undefined) child.kill('SIGTERM');
  });
  await until(() => /Kafka bus ready/.test(logs()) || exitCode !== undefined, 60000, 'the bus to get ready');
  t.equal(exitCode, undefined, 'still running once Kafka is ready');
  const listening = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(logs());
  t.ok(listening);
  t.equal((await fetch(`${listening![1]}/readyz`)).status, 200);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'and shuts down cleanly');
});
