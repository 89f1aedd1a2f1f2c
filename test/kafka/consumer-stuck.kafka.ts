/**
 * Readiness of a replica whose own consumer cannot serve: Kafka answers and holds records the
 * consumer does not read. Here another member in the replica's group (what a second replica
 * started with the same INSTANCE_ID would be) takes partitions from it. After
 * KAFKA_CONSUMER_STUCK_MS /readyz answers 503 naming the partitions; once the consumer reads
 * them again it answers 200.
 */
import t from 'tap';
import { Kafka, logLevel } from 'kafkajs';
import { kafkaTopics, requiredKafkaBrokers, startGateway, uniqueName } from '../helpers/gateway.ts';
import { until } from '../helpers/sse-client.ts';

const brokers = requiredKafkaBrokers();

t.test('a consumer not advancing on partitions Kafka holds records in: 503 after KAFKA_CONSUMER_STUCK_MS, 200 once it reads them', async (t) => {
  const topics = kafkaTopics();
  const instanceId = uniqueName('test');
  const gateway = await startGateway(t, { kafkaBrokers: brokers, ...topics, instanceId, topicPartitions: 2, kafkaConsumerStuckMs: 3000 });
  const kafka = new Kafka({ clientId: 'test-intruder', brokers, logLevel: logLevel.NOTHING });
  const producer = kafka.producer();
  await producer.connect();
  t.teardown(() => producer.disconnect());
  const intruder = kafka.consumer({ groupId: `${gateway.config.consumerGroupPrefix}-${instanceId}`, sessionTimeout: 10000, heartbeatInterval: 1000 });
  await intruder.connect();
  let intruderJoined = false;
  intruder.on(intruder.events.GROUP_JOIN, () => {
    intruderJoined = true;
  });
  await intruder.subscribe({ topics: [topics.chatTopic, topics.tickerTopic] });
  await intruder.run({ eachMessage: async () => undefined });
  await until(() => intruderJoined, 30000, 'the intruder in the group');

  let reply = { status: 0, body: { status: '', reason: '' } };
  const readyz = async (): Promise<typeof reply> => {
    const response = await fetch(`${gateway.url}/readyz`);
    reply = { status: response.status, body: (await response.json()) as typeof reply.body };
    return reply;
  };
  const record = (partition: number) => ({ key: 'room', partition, value: JSON.stringify({ id: 'x', user: 'u', text: 't' }), headers: { 'event-type': 'message' } });
  await until(async () => {
    await producer.send({ topic: topics.chatTopic, messages: [record(0), record(1)] });
    return (await readyz()).status === 503;
  }, 40000, '/readyz 503').catch(() => undefined);
  t.equal(reply.status, 503, 'not ready while records wait on partitions it does not read');
  t.match(reply.body.reason, /not advanced .* on .*chat-/, `the reason names them: ${reply.body.reason}`);

  await intruder.disconnect();
  await until(async () => (await readyz()).status === 200, 60000, '/readyz 200 again').catch(() => undefined);
  t.equal(reply.status, 200, `ready again once its consumer reads every partition: ${JSON.stringify(reply.body)}`);
});
