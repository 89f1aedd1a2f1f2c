import t from 'tap';
import { testsAtATime } from './helpers/one-process.ts';
import { startKafka } from '../scripts/kafka/kafka.ts';
import { kafkaTopics, postJson, requiredKafkaBrokers, startGateway, uniqueName } from './helpers/gateway.ts';
import { scrape, value } from './helpers/metrics.ts';
import { messageTexts, openStream, until } from './helpers/sse-client.ts';
import { spawnServer } from './helpers/server-process.ts';

const brokers = requiredKafkaBrokers();

/** The replicas of one deployment share the secret their ids are sealed with. */
const SHARED_CURSOR_SECRET = 'lifecycle-test-cursor-secret';

testsAtATime(2);

t.test('SIGTERM: not ready, streams drained over the window, exit 0; clients resume on another replica without loss', async (t) => {
  const topics = kafkaTopics();
  const server = await spawnServer(t, {
    KAFKA_BROKERS: brokers.join(','),
    CHAT_TOPIC: topics.chatTopic,
    TICKER_TOPIC: topics.tickerTopic,
    DRAIN_WINDOW_MS: '1500',
    SSE_RETRY_MS: '500',
    CURSOR_SECRET: SHARED_CURSOR_SECRET,
  });
  const { url } = server;
  const other = await startGateway(t, { kafkaBrokers: brokers, ...topics, cursorSecret: SHARED_CURSOR_SECRET });

  const room = uniqueName('room');
  const clients = await Promise.all(Array.from({ length: 8 }, () => openStream(t, `${url}/events/${room}`)));
  await until(() => clients.every((client) => client.lastEventId() !== ''), 5000, 'initial ids');
  let published = 0;
  let stop = false;
  const publishing = (async () => {
    while (!stop && published < 400) {
      const posted = await postJson(`${other.url}/rooms/${room}/messages`, { user: 'p', text: `n${published}` });
      if (posted.status === 202) published += 1;
    }
  })();
  await until(() => published >= 20, 20000, 'some events published');
  const endedAt: number[] = [];
  for (const client of clients) void client.ended.then(() => endedAt.push(Date.now()));
  server.kill('SIGTERM');
  await until(async () => (await fetch(`${url}/readyz`).then((r) => r.status, () => 503)) === 503, 3000, 'not ready at once');
  t.equal(await server.exited, 0, 'exit code 0');
  t.ok(Math.max(...endedAt) - Math.min(...endedAt) >= 500, 'streams ended spread over the drain window');
  stop = true;
  await publishing;
  const resumed = await Promise.all(clients.map((client) => openStream(t, `${other.url}/events/${room}`, { 'last-event-id': client.lastEventId() })));
  const expected = Array.from({ length: published }, (_, i) => `n${i}`);
  for (const [index, client] of clients.entries()) {
    await until(() => messageTexts(client.events).length + messageTexts(resumed[index]!.events).length >= published, 20000, 'all events');
    t.same([...messageTexts(client.events), ...messageTexts(resumed[index]!.events)], expected, `client ${index}: every event once`);
  }
});

t.test('broker stopped and restarted mid-stream: streams stay open, /readyz stays 200 (degraded), publish answers 503, delivery resumes', async (t) => {
  const cluster = await startKafka();
  t.teardown(() => cluster.stop());
  const gateway = await startGateway(t, { kafkaBrokers: cluster.brokers, ...kafkaTopics(), publishTimeoutMs: 1500, heartbeatMs: 300 });
  const room = uniqueName('room');
  const stream = await openStream(t, `${gateway.url}/events/${room}`);
  t.equal((await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'a', text: 'before' })).status, 202);
  await until(() => messageTexts(stream.events).includes('before'), 10000, 'first event');

  await cluster.stopNode(0);
  const started = Date.now();
  const refused = await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'a', text: 'during' });
  t.equal(refused.status, 503, 'publish refused while the broker is down');
  t.ok(Date.now() - started < 5000, 'quickly');
  // Kafka down is trouble every replica shares: taking them all out of the load balancer
  // would turn every reconnect into a 503 that makes EventSource give up. Ready, degraded.
  let readiness = { status: 0, body: { status: '', reason: '' } };
  await until(async () => {
    const response = await fetch(`${gateway.url}/readyz`);
    readiness = { status: response.status, body: (await response.json()) as typeof readiness.body };
    return readiness.status !== 200 || readiness.body.status === 'degraded';
  }, 60000, '/readyz reports the trouble');
  t.equal(readiness.status, 200, `/readyz stays 200: ${JSON.stringify(readiness.body)}`);
  t.match(readiness.body, { status: 'degraded', reason: /Kafka/ });
  const comments = stream.comments();
  await until(() => stream.comments() > comments + 1, 5000, 'heartbeats keep the stream alive');

  await cluster.startNode(0);
  await until(async () => (await fetch(`${gateway.url}/readyz`)).status === 200, 90000, 'ready again');
  // Retried until accepted, with one message id as a client should: an attempt answered 503 may
  // still reach Kafka (its acknowledgement was what timed out), and the id makes that harmless.
  await until(async () => (await postJson(`${gateway.url}/rooms/${room}/messages`, { id: 'after-1', user: 'a', text: 'after' })).status === 202, 30000, 'publish works');
  await until(() => messageTexts(stream.events).includes('after'), 30000, 'delivery resumed on the same stream');
  t.equal(messageTexts(stream.events).filter((text) => text === 'after').length, 1);

  const { samples } = await scrape(gateway.url);
  t.ok((value(samples, 'sse_gateway_kafka_client_errors_total', { kind: 'publish_failed' }) ?? 0) > 0, 'the refused publish is counted');
  // Whether the consumer gives up (crash) or rides the outage out on its own retries depends on
  // how long the broker takes to come back, and a crash may come after delivery resumed (the
  // old consumer failing a late request): its fresh successor then joins a moment later. So
  // wait for the counts to settle, then check they agree and add up.
  let counts = { crashes: 0, reconnects: 0, status: { reconnects: -1, crashes: -1 } };
  await until(async () => {
    const { samples: now } = await scrape(gateway.url);
    const status = (await (await fetch(`${gateway.url}/status`)).json()) as { bus: { clientErrors: Record<string, number>; reconnects: number } };
    counts = {
      crashes: value(now, 'sse_gateway_kafka_client_errors_total', { kind: 'consumer_crash' }) ?? 0,
      reconnects: value(now, 'sse_gateway_kafka_reconnects_total') ?? 0,
      status: { reconnects: status.bus.reconnects, crashes: status.bus.clientErrors.consumer_crash ?? 0 },
    };
    return (counts.crashes === 0 || counts.reconnects > 0) && counts.status.reconnects === counts.reconnects && counts.status.crashes === counts.crashes;
  }, 30000, 'a crashed consumer is counted back in its group, on /metrics and /status alike').catch(() => undefined);
  const { crashes, reconnects } = counts;
  t.ok(crashes === 0 || reconnects > 0, `a consumer that crashed (${crashes}) is counted back in its group (${reconnects})`);
  t.equal(counts.status.reconnects, reconnects, '/status shows the same reconnects');
  t.equal(counts.status.crashes, crashes, '/status shows the same client errors');
});
