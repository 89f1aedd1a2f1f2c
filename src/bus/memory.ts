import type { BusConsumer, BusReadiness, BusRecord, EventBus, OutgoingRecord, PartitionPosition, Position } from './types.ts';
import { partitionForKey } from './partitioner.ts';

/**
 * The embedded bus for a single instance without Kafka: same records, same positions
 * (partition by key hash, per-partition offsets), delivered in batches like a consumer's
 * fetch, so everything above the bus behaves as it does on Kafka.
 */
export class MemoryBus implements EventBus {
  readonly kind = 'memory';
  readonly #partitions: number;
  readonly #nextOffsets = new Map<string, bigint[]>();
  readonly #topics: readonly string[];
  #consumer: BusConsumer | null = null;
  #pending: BusRecord[] = [];
  #flushScheduled = false;
  #closed = false;

  constructor(options: { partitions: number; topics: readonly string[] }) {
    this.#partitions = options.partitions;
    this.#topics = options.topics;
    for (const topic of options.topics) this.#nextOffsets.set(topic, new Array<bigint>(options.partitions).fill(0n));
  }

  async start(consumer: BusConsumer): Promise<void> {
    const now = Date.now();
    consumer.onPartitionsStart(
      this.#topics.flatMap((topic) =>
        Array.from({ length: this.#partitions }, (_, partition) => ({ topic, partition, offset: '0', time: now })),
      ),
    );
    this.#consumer = consumer;
  }

  async publish(record: OutgoingRecord): Promise<Position> {
    if (this.#closed) throw new Error('bus is closed');
    const partition = partitionForKey(record.key, this.#partitions);
    let offsets = this.#nextOffsets.get(record.topic);
    if (offsets === undefined) {
      offsets = new Array<bigint>(this.#partitions).fill(0n);
      this.#nextOffsets.set(record.topic, offsets);
    }
    const offset = offsets[partition] ?? 0n;
    offsets[partition] = offset + 1n;
    const position: Position = { topic: record.topic, partition, offset: offset.toString() };
    this.#pending.push({
      ...position,
      key: Buffer.from(record.key, 'utf8'),
      value: Buffer.from(record.value, 'utf8'),
      headers: { ...record.headers },
      timestamp: Date.now(),
    });
    this.#scheduleFlush();
    return position;
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      const batch = this.#pending;
      this.#pending = [];
      if (!this.#closed) this.#consumer?.onRecords(batch);
    });
  }

  readiness(): BusReadiness {
    if (this.#closed) return { ready: false, reason: 'closed' };
    return this.#consumer === null ? { ready: false, reason: 'not started' } : { ready: true };
  }

  partitionPositions(): PartitionPosition[] {
    const positions: PartitionPosition[] = [];
    for (const [topic, offsets] of this.#nextOffsets) {
      offsets.forEach((next, partition) => {
        // Published records are handed over on the next turn: nothing can lag behind for longer.
        positions.push({ topic, partition, next: next.toString(), highWatermark: next.toString() });
      });
    }
    return positions;
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}
