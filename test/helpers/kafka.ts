import { Kafka, logLevel, Partitioners, type Message, type Producer, type RecordMetadata } from 'kafkajs';
import { kafkaBrokers } from './gateway.ts';

/** A plain kafkajs producer, as an upstream service would use, for tests that write to Kafka directly. */
export async function rawProducer(): Promise<{ send(topic: string, messages: Message[]): Promise<RecordMetadata[]>; close(): Promise<void> }> {
  if (kafkaBrokers === undefined) throw new Error('KAFKA_BROKERS is not set: run the tests with `npm test`');
  const kafka = new Kafka({ clientId: 'test-upstream', brokers: kafkaBrokers, logLevel: logLevel.NOTHING });
  const producer: Producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  return {
    send: (topic, messages) => producer.send({ topic, acks: -1, messages }),
    close: () => producer.disconnect(),
  };
}
