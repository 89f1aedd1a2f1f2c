import type { Logger } from './logger.ts';
import type { BusRecord, RecordsHandler } from './bus/types.ts';
import { decodeRecord, type DecodedEvent, type Topics } from './events.ts';
import { eventIdOf } from './event-id.ts';
import type { Hub } from './hub.ts';
import { eventFrame } from './sse-frame.ts';
import { rateLimitedWarn } from './rate-limited-log.ts';

export interface DispatchStats {
  recordsConsumed: number;
  recordsSkipped: number;
  /** One per event per subscriber it was handed to. */
  deliveries: number;
}

/** Told of every valid event once (not per subscriber): metrics, chart history. */
export type EventObserver = (event: DecodedEvent, record: BusRecord, subscribers: number) => void;

export interface Dispatcher {
  handle: RecordsHandler;
  stats: DispatchStats;
  observe(observer: EventObserver): void;
}

/**
 * Turns consumed records into SSE frames on the hub: each record is decoded and validated
 * once, its frame built once, and a record that breaks the contract is skipped, counted and
 * logged, never thrown: one bad producer must not stop the stream for everyone.
 */
export function createDispatcher(hub: Hub, topics: Topics, logger: Logger): Dispatcher {
  const stats: DispatchStats = { recordsConsumed: 0, recordsSkipped: 0, deliveries: 0 };
  const observers: EventObserver[] = [];
  const warnSkipped = rateLimitedWarn(logger);
  const handleOne = (record: BusRecord): void => {
    stats.recordsConsumed += 1;
    const decoded = decodeRecord(record, topics);
    if (!decoded.ok) {
      stats.recordsSkipped += 1;
      warnSkipped(
        { topic: record.topic, partition: record.partition, offset: record.offset, reason: decoded.reason },
        'skipped a record that does not match the contract',
      );
      return;
    }
    const { event } = decoded;
    let subscribers = 0;
    if (hub.hasSubscribers(event.channel)) {
      const frame = eventFrame({ id: eventIdOf(record), event: event.type, data: event.data });
      subscribers = hub.publish(event.channel, frame);
      stats.deliveries += subscribers;
    }
    for (const observer of observers) observer(event, record, subscribers);
  };
  return {
    stats,
    observe: (observer) => {
      observers.push(observer);
    },
    handle: (records) => {
      for (const record of records) handleOne(record);
    },
  };
}
