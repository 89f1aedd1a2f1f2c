import type { Logger } from '../logger.ts';
import type { Config } from '../config.ts';
import { KafkaBus, type SideTopicOptions } from './kafka.ts';
import { kafkaConnectionOptions } from './kafka-connection.ts';
import { MemoryBus } from './memory.ts';
import type { EventBus } from './types.ts';

export type { EventBus } from './types.ts';

/**
 * Kafka when brokers are configured, otherwise the embedded single-instance bus; `topics`: every
 * channel kind's. `sideTopics`: topics consumed besides them that are no channel kind's (the
 * presence topic), with how Kafka creates and reads them.
 */
export function createBus(config: Config, topics: readonly string[], logger: Logger, sideTopics: Record<string, SideTopicOptions> = {}): EventBus {
  if (config.kafkaBrokers === null) {
    logger.warn(
      'KAFKA_BROKERS is not set: running on the embedded in-memory bus (one instance, nothing persisted). ' +
        'Set KAFKA_BROKERS=host:port[,host:port] to use Kafka (npm run kafka starts a local broker).',
    );
    return new MemoryBus({ partitions: config.topicPartitions, topics: [...topics, ...Object.keys(sideTopics)] });
  }
  return new KafkaBus({
    brokers: config.kafkaBrokers,
    clientId: config.kafkaClientId,
    groupId: `${config.consumerGroupPrefix}-${config.instanceId}`,
    topics: [...topics, ...Object.keys(sideTopics)],
    sideTopics,
    partitions: config.topicPartitions,
    replicationFactor: config.topicReplicationFactor,
    publishTimeoutMs: config.publishTimeoutMs,
    consumerStuckMs: config.kafkaConsumerStuckMs,
    warmUpMs: config.historyMaxAgeMs,
    connection: kafkaConnectionOptions(config.kafkaSecurity),
    shardPartitions: config.shardPartitions,
    logger: logger.child({ component: 'kafka' }),
  });
}
