import type { SideTopicOptions } from '../bus/kafka.ts';
import { EXPIRY_PERIODS } from './service.ts';

/**
 * How the presence topic is created and read (README, "Presence"). Compacted, so the latest
 * statement per (channel, replica) is what stays; `delete` as well, so statements of replicas
 * long gone (a killed replica never sends its empty statements) are removed after an hour
 * rather than kept forever; short segments, so compaction and deletion reach them (Kafka
 * cleans only closed segments). At startup a replica reads back only as far as a statement can
 * still be alive: older ones are expired anyway.
 */
export function presenceSideTopic(topic: string, restateMs: number): Record<string, SideTopicOptions> {
  return {
    [topic]: {
      configEntries: [
        { name: 'cleanup.policy', value: 'compact,delete' },
        { name: 'retention.ms', value: String(Math.max(3_600_000, 10 * EXPIRY_PERIODS * restateMs)) },
        { name: 'segment.ms', value: '600000' },
      ],
      warmUpMs: EXPIRY_PERIODS * restateMs,
    },
  };
}
