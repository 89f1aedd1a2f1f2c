import t from 'tap';
import { presenceTopic } from '../../src/config.ts';
import { kafkaTopics, postJson, requiredKafkaBrokers, startGateway, uniqueName } from '../helpers/gateway.ts';
import { createTestTopics, rawProducer } from '../helpers/kafka.ts';
import { scrape, value, type Sample } from '../helpers/metrics.ts';
import { openStream, until } from '../helpers/sse-client.ts';

// Metrics that only a Kafka bus has (test/embedded/metrics.embedded.ts: the rest, on the embedded bus).

const brokers = requiredKafkaBrokers();
t.test('on Kafka: every record consumed is counted, invalid ones as skipped, and consumer lag returns to zero', async (t) => {
  const topics = kafkaTopics();
  const gateway = await startGateway(t, { kafkaBrokers: brokers, ...topics, topicPartitions: 2 });
  const room = uniqueName('room');
  const stream = await openStream(t, `${gateway.url}/events/${room}`);
  const producer = await rawProducer(t);

  const message = (i: number) => ({
    key: room,
    value: JSON.stringify({ id: `m${i}`, user: 'svc', text: `n${i}` }),
    headers: { 'event-type': 'message' },
  });
  await producer.send(topics.chatTopic, [message(0), message(1)]);
  await producer.send(topics.chatTopic, [{ key: room, value: 'not json', headers: { 'event-type': 'message' } }]);
  const [last] = await producer.send(topics.chatTopic, [message(2)]);
  t.equal((await postJson(`${gateway.url}/tickers/ETH/prices`, { price: 2, currency: 'EUR' })).status, 202);
  await stream.waitForEvents(3);

  let samples: Sample[] = [];
  await until(async () => {
    samples = (await scrape(gateway.url)).samples;
    return value(samples, 'sse_gateway_records_consumed_total') === 5;
  }, 30000, 'all five records to be consumed');
  t.equal(value(samples, 'sse_gateway_records_skipped_total'), 1, 'the record that is not JSON');
  t.equal(value(samples, 'sse_gateway_events_total', { type: 'message' }), 3);
  t.equal(value(samples, 'sse_gateway_events_total', { type: 'price_update' }), 1);
  t.equal(value(samples, 'sse_gateway_events_delivered_total'), 3);
  t.equal(value(samples, 'sse_gateway_bus_info', { kind: 'kafka' }), 1);
  t.equal(value(samples, 'sse_gateway_bus_ready'), 1);
  // Every partition the replica consumes: the channel topics' and the presence topic's (README, "Presence").
  const presence = presenceTopic(gateway.config);
  let lags: Sample[] = [];
  await until(async () => {
    lags = (await scrape(gateway.url)).samples.filter((sample) => sample.name === 'sse_gateway_consumer_lag_records');
    return lags.length === 6 && lags.every((sample) => sample.value === 0);
  }, 30000, 'caught up everywhere');
  t.same(
    lags.map((sample) => `${sample.labels.topic}/${sample.labels.partition}`).sort(),
    [`${topics.chatTopic}/0`, `${topics.chatTopic}/1`, `${topics.tickerTopic}/0`, `${topics.tickerTopic}/1`, `${presence}/0`, `${presence}/1`].sort(),
    'one series per consumed partition',
  );
  t.same(lags.map((sample) => sample.value), [0, 0, 0, 0, 0, 0], 'caught up everywhere');

  const status = (await (await fetch(`${gateway.url}/status`)).json()) as {
    bus: { kind: string; brokers: string[]; ready: boolean };
    partitions: Array<{ topic: string; partition: number; next: string; lag: number }>;
  };
  t.match(status.bus, { kind: 'kafka', brokers, ready: true });
  const roomPartition = status.partitions.find(
    (position) => position.topic === topics.chatTopic && position.partition === last?.partition,
  );
  t.equal(roomPartition?.next, String(BigInt(last?.baseOffset ?? '-2') + 1n), "the room's partition is consumed past its last record");
  t.equal(roomPartition?.lag, 0);
});

t.test('on Kafka: end-to-end latency counts only live records, not the warm-up read at startup', async (t) => {
  const topics = kafkaTopics();
  await createTestTopics(t, [topics.chatTopic, topics.tickerTopic].map((topic) => ({ topic, numPartitions: 2 })));
  const producer = await rawProducer(t);
  const room = uniqueName('room');
  const message = (text: string) => ({
    key: room,
    value: JSON.stringify({ id: text, user: 'svc', text }),
    headers: { 'event-type': 'message' },
  });
  const warmUp = 6;
  const live = 4;
  await producer.send(topics.chatTopic, Array.from({ length: warmUp }, (_, i) => message(`old${i}`)));

  const gateway = await startGateway(t, { kafkaBrokers: brokers, ...topics, topicPartitions: 2 });
  let samples: Sample[] = [];
  await until(async () => {
    samples = (await scrape(gateway.url)).samples;
    return value(samples, 'sse_gateway_records_consumed_total') === warmUp;
  }, 30000, 'the warm-up records to be consumed');
  t.equal(value(samples, 'sse_gateway_end_to_end_latency_seconds_count'), 0, 'no latency sample for warm-up records');

  const stream = await openStream(t, `${gateway.url}/events/${room}`);
  for (let i = 0; i < live; i++) {
    t.equal((await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'ann', text: `live${i}` })).status, 202);
  }
  await stream.waitForEvents(live);
  await until(async () => {
    samples = (await scrape(gateway.url)).samples;
    return value(samples, 'sse_gateway_records_consumed_total') === warmUp + live;
  }, 30000, 'the live records to be consumed');
  t.equal(value(samples, 'sse_gateway_events_total', { type: 'message' }), warmUp + live, 'warm-up and live events both consumed');
  t.equal(value(samples, 'sse_gateway_end_to_end_latency_seconds_count'), live, 'one latency sample per live record only');
});
