/**
 * Message ownership: who wrote each recent chat message, learnt where records are consumed, so
 * that an edit or a delete is judged from Kafka alone and never from the request. Edits change
 * no entry: they neither transfer a message nor end it (an edit of a deleted one is refused by
 * its route, from `deletion`).
 *
 * Every replica feeds it the same records in the same partition order (its live records and
 * its warm-up read from `HISTORY_MAX_AGE_MS` back), so every replica, one started after the
 * message was posted included, holds the same owner for a message whose Kafka timestamp lies
 * within `windowMs` (= `HISTORY_MAX_AGE_MS`) of now. The first `message` record of an id in a
 * room owns it: a later record reusing the id (a repeat, or someone else's) does not take it
 * over. A `delete` record marks the entry deleted (the first one: what a retried delete answers with).
 *
 * Bounded two ways, like src/dispatch/dedup.ts: entries whose message is older than the window (against
 * the newest timestamp of their partition) are dropped, and past `maxEntries` entries in all the
 * oldest of the partition holding the most go first (counted as `evicted`). A lookup of an entry
 * older than the window against the wall clock finds nothing, so that a replica that still holds
 * it answers as one started later would.
 */

/** Where a record is: topic slot (0 chat), partition, offset. */
export interface RecordPosition {
  slot: number;
  partition: number;
  offset: number;
}

export interface LedgerEntry {
  /** The `author` header of the first `message` record with this id (a token `sub`), or null: nobody's. */
  readonly author: string | null;
  /** The message record. */
  readonly message: RecordPosition;
  /** Kafka timestamp of the message record (ms since the epoch). */
  readonly timestamp: number;
  /** The first `delete` record of the message, once one was consumed. */
  deletion: RecordPosition | null;
}

export interface LedgerLimits {
  /** Milliseconds: how long after its Kafka timestamp a message stays known (HISTORY_MAX_AGE_MS). */
  windowMs: number;
  /** Entries held in all partitions together. */
  maxEntries: number;
}

export interface LedgerStats {
  /** Entries held now. */
  readonly entries: number;
  /** Entries dropped before their window ended because the ledger was full. */
  readonly evicted: number;
}

/** About 150 bytes an entry plus its key: some 40 MB when full. */
export const DEFAULT_LEDGER_MAX_ENTRIES = 200_000;

/** The ledger key of a message: its channel (`room:NAME`) and id; neither holds a line break. */
export function ledgerKey(channel: string, messageId: string): string {
  return `${channel}\n${messageId}`;
}

class PartitionEntries {
  /** Map order: order of consumption (offset order), so the window is pruned from the front. */
  readonly entries = new Map<string, LedgerEntry>();
  newest = -Infinity;
}

export class MessageLedger {
  readonly #limits: LedgerLimits;
  readonly #partitions = new Map<string, PartitionEntries>();
  /** Which partition holds each key: a lookup does not scan every partition. */
  readonly #where = new Map<string, PartitionEntries>();
  #evicted = 0;

  constructor(limits: Partial<LedgerLimits> & { windowMs: number }) {
    this.#limits = { maxEntries: DEFAULT_LEDGER_MAX_ENTRIES, ...limits };
  }

  get stats(): LedgerStats {
    return { entries: this.#where.size, evicted: this.#evicted };
  }

  /** A consumed `message` record (delivered, not a skipped repeat): the first of its key owns it. */
  recordMessage(key: string, author: string | null, position: RecordPosition, timestamp: number): void {
    const partition = this.#partitionOf(position);
    if (timestamp > partition.newest) partition.newest = timestamp;
    if (!this.#where.has(key)) {
      partition.entries.set(key, { author, message: position, timestamp, deletion: null });
      this.#where.set(key, partition);
    }
    this.#prune(partition);
    while (this.#where.size > this.#limits.maxEntries && this.#evictOne());
  }

  /** A consumed `delete` record: marks the message deleted (a delete of an unknown message changes nothing). */
  recordDelete(key: string, position: RecordPosition, timestamp: number): void {
    const partition = this.#partitionOf(position);
    if (timestamp > partition.newest) partition.newest = timestamp;
    const entry = this.#where.get(key)?.entries.get(key);
    if (entry !== undefined && entry.deletion === null) entry.deletion = position;
    this.#prune(partition);
  }

  /** The message's entry when its Kafka timestamp is within the window before `now` (ms since the epoch). */
  lookup(key: string, now: number): LedgerEntry | undefined {
    const entry = this.#where.get(key)?.entries.get(key);
    return entry === undefined || entry.timestamp < now - this.#limits.windowMs ? undefined : entry;
  }

  #partitionOf(position: RecordPosition): PartitionEntries {
    const name = `${position.slot}:${position.partition}`;
    let partition = this.#partitions.get(name);
    if (partition === undefined) {
      partition = new PartitionEntries();
      this.#partitions.set(name, partition);
    }
    return partition;
  }

  #prune(partition: PartitionEntries): void {
    const cutoff = partition.newest - this.#limits.windowMs;
    for (const [key, entry] of partition.entries) {
      if (entry.timestamp >= cutoff) break;
      this.#drop(partition, key);
    }
  }

  /** The ledger is full: the busiest partition's oldest entry goes. */
  #evictOne(): boolean {
    let busiest: PartitionEntries | undefined;
    for (const partition of this.#partitions.values()) {
      if (busiest === undefined || partition.entries.size > busiest.entries.size) busiest = partition;
    }
    const oldest = busiest?.entries.keys().next();
    if (busiest === undefined || oldest === undefined || oldest.done === true) return false;
    this.#drop(busiest, oldest.value);
    this.#evicted += 1;
    return true;
  }

  #drop(partition: PartitionEntries, key: string): void {
    partition.entries.delete(key);
    this.#where.delete(key);
  }
}
