/**
 * The bus is what carries events between producers and every gateway replica: Kafka in
 * production, an in-memory stand-in when no brokers are configured. Both hand the gateway the
 * same records (raw key, value and headers, with a Kafka-style position), so decoding,
 * validation and fan-out run one code path whichever bus is underneath.
 */

export interface Position {
  topic: string;
  partition: number;
  /** Kafka offsets are 64-bit; kept as decimal strings as kafkajs does. */
  offset: string;
}

export interface BusRecord extends Position {
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, Buffer | string | undefined>;
  /** Milliseconds since the epoch (the Kafka record timestamp). */
  timestamp: number;
}

export interface OutgoingRecord {
  topic: string;
  key: string;
  value: string;
  headers: Record<string, string>;
}

export type RecordsHandler = (records: readonly BusRecord[]) => void;

export interface BusReadiness {
  ready: boolean;
  /** Why not ready, for /readyz and logs. */
  reason?: string;
}

export interface PartitionPosition {
  topic: string;
  partition: number;
  /** The next offset this replica will consume. */
  next: string;
  /** The partition's end offset as last seen (next = highWatermark means caught up). */
  highWatermark: string;
}

export interface EventBus {
  readonly kind: 'kafka' | 'memory';
  /**
   * Connects and starts delivering records published from now on to `onRecords`. Resolves
   * once the bus is ready; keeps retrying in the background until then.
   */
  start(onRecords: RecordsHandler): Promise<void>;
  /** Resolves with the record's position once the bus has durably accepted it. */
  publish(record: OutgoingRecord): Promise<Position>;
  readiness(): BusReadiness;
  /** Where this replica's consumer stands in each partition (for lag metrics and status). */
  partitionPositions(): PartitionPosition[];
  close(): Promise<void>;
}

/** The bus could not accept a record in time; the HTTP layer answers 503. */
export class BusUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BusUnavailableError';
  }
}
