import { Kafka, logLevel, Partitioners, type Admin, type ITopicConfig, type Message, type Producer, type RecordMetadata } from 'kafkajs';
import type { Teardowns } from './fixture.ts';
import { requiredKafkaBrokers } from './gateway.ts';

/**
 * A plain kafkajs producer, as an upstream service would use, for tests that write to Kafka
 * directly; connected to the test broker, disconnected when `t` ends.
 */
export async function rawProducer(t: Teardowns): Promise<{ send(topic: string, messages: Message[]): Promise<RecordMetadata[]>; close(): Promise<void> }> {
  const kafka = new Kafka({ clientId: 'test-upstream', brokers: requiredKafkaBrokers(), logLevel: logLevel.NOTHING });
  const producer: Producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  t.teardown(() => producer.disconnect());
  await producer.connect();
  return {
    send: (topic, messages) => producer.send({ topic, acks: -1, messages }),
    close: () => producer.disconnect(),
  };
}

/** A kafkajs admin client on `brokers` (the test broker by default), disconnected when `t` ends. */
export async function kafkaAdmin(t: Teardowns, brokers: string[] = requiredKafkaBrokers()): Promise<Admin> {
  const admin = new Kafka({ clientId: 'test-admin', brokers, logLevel: logLevel.NOTHING }).admin();
  t.teardown(() => admin.disconnect());
  await admin.connect();
  return admin;
}

/**
 * Creates `topics` on the test broker (when missing) and resolves once every partition of
 * each has a leader, as a test that produces or consumes next needs. kafkajs's own
 * `createTopics({ waitForLeaders: true })` gives up with UNKNOWN_TOPIC_OR_PARTITION when the
 * broker's metadata lags the controller's (KRaft applies a creation asynchronously), which a
 * loaded machine made happen in full runs; here that is waited out, up to `timeoutMs`.
 * Rejects naming the topics still without leaders after that.
 */
export async function createTestTopics(t: Teardowns, topics: ITopicConfig[], timeoutMs = 30_000): Promise<void> {
  const admin = await kafkaAdmin(t);
  await admin.createTopics({ topics }).catch((error: unknown) => {
    // Retriable (metadata lagging): whether the topics exist is checked below.
    // (kafkajs's error classes are not named exports of its CommonJS build: its `retriable` flag.)
    if ((error as { retriable?: unknown } | null)?.retriable !== true) throw error;
  });
  const names = topics.map((topic) => topic.topic);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const led = await admin
      .fetchTopicMetadata({ topics: names })
      .then((metadata) => metadata.topics.every((topic) => topic.partitions.length > 0 && topic.partitions.every((partition) => partition.leader >= 0)))
      .catch(() => false);
    if (led) return;
    if (Date.now() > deadline) throw new Error(`topics ${names.join(', ')} have no leader for every partition after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
