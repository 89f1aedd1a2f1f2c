import t from 'tap';
import { roomUrl, subscribe } from '../../src/client/index.ts';
import { kafkaTopics, postJson, requiredKafkaBrokers, startGateway, uniqueName } from '../helpers/gateway.ts';
import { until } from '../helpers/sse-client.ts';

// The typed client against gateway replicas on Kafka (test/embedded/client.embedded.ts: everything else).

t.test('against the gateway: reconnects to a replica that restarts on the same port', async (t) => {
  // On Kafka: the restarted replica reads the same log, so the client's last id still means something there.
  const first = await startGateway(t, { kafkaBrokers: requiredKafkaBrokers(), ...kafkaTopics(), sseRetryMs: 100 });
  const port = new URL(first.url).port;
  const room = uniqueName('room');
  const stream = subscribe(roomUrl(first.url, room));
  t.teardown(() => stream.close());
  const texts: string[] = [];
  stream.on('message', (message) => texts.push(message.text));
  await until(() => stream.state === 'open', 5000, 'open');
  await postJson(`${first.url}/rooms/${room}/messages`, { user: 'ann', text: 'before' });
  await until(() => texts.length === 1, 5000, 'first message');
  await first.close();
  await until(() => stream.state === 'reconnecting', 5000, 'reconnecting');

  // startGateway picks a free port; the second gateway must take over the first one's.
  await startGateway(t, { ...first.config, instanceId: uniqueName('test') }, { port: Number(port) });
  await until(() => stream.state === 'open', 10_000, 'reopened');
  await postJson(`${first.url}/rooms/${room}/messages`, { user: 'ann', text: 'after' });
  await until(() => texts.length === 2, 5000, 'second message');
  t.same(texts, ['before', 'after']);
});
