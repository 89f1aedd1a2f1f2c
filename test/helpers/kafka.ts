import { Kafka, logLevel, Partitioners, type Admin, type Message, type Producer, type RecordMetadata } from 'kafkajs';
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
