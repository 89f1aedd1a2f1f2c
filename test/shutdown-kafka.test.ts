import t from 'tap';
import { startKafka } from '../scripts/kafka/kafka.ts';
import { kafkaTopics } from './helpers/gateway.ts';
import { openStream } from './helpers/sse-client.ts';
import { spawnServer } from './helpers/server-process.ts';

/**
 * A replica told to stop while its broker is down (as during a broker's recovery) exits 0 soon
 * after the drain window: disconnecting from Kafka then waits on a broker that does not answer
 * (kafkajs retries for tens of seconds), and shutdown must not wait for it past its bound.
 */
const DRAIN_WINDOW_MS = 1000;
const EXIT_WITHIN_MS = DRAIN_WINDOW_MS + 2000 + 5000 + 1000;

t.test('SIGTERM while the broker is down: exit 0 soon after the drain', { timeout: 240000 }, async (t) => {
  const cluster = await startKafka();
  t.teardown(() => cluster.stop());
  t.comment('broker started');
  const topics = kafkaTopics();
  const server = await spawnServer(t, {
    KAFKA_BROKERS: cluster.brokers.join(','),
    CHAT_TOPIC: topics.chatTopic,
    TICKER_TOPIC: topics.tickerTopic,
    DRAIN_WINDOW_MS: String(DRAIN_WINDOW_MS),
    SHUTDOWN_TIMEOUT_MS: '60000',
    CURSOR_SECRET: 'shutdown-test-cursor-secret',
  });
  const stream = await openStream(t, `${server.url}/events/lobby`);
  await cluster.stopNode(0);
  t.comment('replica ready, broker stopped');

  const { code, tookMs } = await server.terminate();
  t.equal(code, 0, 'exit code 0');
  t.ok(tookMs < EXIT_WITHIN_MS, `exited ${tookMs} ms after SIGTERM (within DRAIN_WINDOW_MS ${DRAIN_WINDOW_MS} + a few seconds)`);
  await stream.ended;
  t.match(stream.text(), /retry: \d+\n\n$/, 'the open stream was drained with a reconnect delay');
});
