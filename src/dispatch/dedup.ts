/**
 * Idempotent publishing: which consumed records repeat a message id seen shortly before in the
 * same channel, so that a publisher's retry (after a 503, "outcome unknown") reaches browsers
 * once.
 *
 * The rule, applied where records are consumed so that it comes from Kafka and not from one
 * replica's memory: a record whose id key (channel, event type, message id) an earlier record of
 * the same partition carried, with a Kafka timestamp at most `windowMs` before it (or later), is
 * a repeat and is skipped. Every replica reads a partition in the same order, so every replica
 * that has read the records of the window before a record gives it the same verdict; a replica
 * started later learns the ids of the window from its warm-up read (it starts
 * `HISTORY_MAX_AGE_MS` back, and the window is never longer).
 *
 * Bounded two ways: ids older than the window (against the newest timestamp of their partition)
 * are forgotten, and past `maxIds` ids in all the oldest ids of the partition holding the most
 * are forgotten first (counted as `evicted`): a repeat of an evicted id is delivered again.
 * The offsets of skipped repeats are kept too (at most `maxSkippedOffsets`, oldest forgotten
 * first) so that a record read back again (a consumer restart, a resume reading Kafka) gets the
 * same verdict as when it was consumed.
 */

export interface DedupLimits {
  /** Milliseconds: a repeat later than this after the previous record with its id is delivered. 0 turns the table off. */
  windowMs: number;
  /** Ids held in all partitions together. */
  maxIds: number;
  /** Offsets of skipped repeats remembered for records read back again. */
  maxSkippedOffsets: number;
}

export interface DedupStats {
  /** Ids held now. */
  readonly ids: number;
  /** Records skipped as repeats since startup. */
  readonly repeatsSkipped: number;
  /** Ids forgotten before their window ended because the table was full. */
  readonly evicted: number;
}

/** Where the first record of an id is: what a publish retry answers with instead of writing again. */
export interface FirstRecord {
  slot: number;
  partition: number;
  offset: number;
}

interface Entry {
  /** Offset of the record that was delivered (the first with this id in its window). */
  readonly offset: number;
  /** Newest timestamp of a record with this id, delivered or skipped (ms since the epoch). */
  lastSeen: number;
  /** Highest offset of a record with this id: one at or below it is being read again. */
  lastOffset: number;
}

class PartitionIds {
  /** Map order: least recently seen first, so the window is pruned from the front. */
  readonly ids = new Map<string, Entry>();
  newest = -Infinity;

  constructor(
    readonly slot: number,
    readonly partition: number,
  ) {}
}

export const DEFAULT_DEDUP_MAX_IDS = 200_000;
export const DEFAULT_DEDUP_MAX_SKIPPED_OFFSETS = 100_000;

/**
 * The id key of a record: what two records must share to be one message (for an edit, one
 * edit: its `messageId` here is `editDedupId(message id, edit id)`, src/channels/records.ts).
 */
export function dedupKey(channel: string, type: string, messageId: string): string {
  // Neither a channel nor an event type nor a message id can hold a line break.
  return `${channel}\n${type}\n${messageId}`;
}

export class DedupTable {
  readonly #limits: DedupLimits;
  readonly #partitions = new Map<string, PartitionIds>();
  /** `slot:partition@offset` of skipped repeats, oldest first. */
  readonly #skipped = new Set<string>();
  #ids = 0;
  #repeatsSkipped = 0;
  #evicted = 0;

  constructor(limits: Partial<DedupLimits> & { windowMs: number }) {
    this.#limits = {
      maxIds: DEFAULT_DEDUP_MAX_IDS,
      maxSkippedOffsets: DEFAULT_DEDUP_MAX_SKIPPED_OFFSETS,
      ...limits,
    };
  }

  get enabled(): boolean {
    return this.#limits.windowMs > 0;
  }

  get stats(): DedupStats {
    return { ids: this.#ids, repeatsSkipped: this.#repeatsSkipped, evicted: this.#evicted };
  }

  /**
   * The verdict on a consumed record carrying id key `key` (see `dedupKey`): true when it is a
   * repeat, to be skipped. Records must be handed in partition order; one read again (offset
   * not past what was seen) gets the verdict it had.
   */
  judge(slot: number, partition: number, key: string, offset: number, timestamp: number): boolean {
    if (!this.enabled) return false;
    if (this.#skipped.has(skippedKey(slot, partition, offset))) return true;
    const ids = this.#partitionIds(slot, partition);
    const entry = ids.ids.get(key);
    if (entry !== undefined && offset <= entry.lastOffset) return false;
    if (timestamp > ids.newest) ids.newest = timestamp;
    let repeat = false;
    if (entry !== undefined && entry.lastSeen >= timestamp - this.#limits.windowMs) {
      repeat = true;
      entry.lastSeen = Math.max(entry.lastSeen, timestamp);
      entry.lastOffset = offset;
      ids.ids.delete(key);
      ids.ids.set(key, entry);
      this.#remember(skippedKey(slot, partition, offset));
      this.#repeatsSkipped += 1;
    } else {
      if (entry !== undefined) ids.ids.delete(key);
      else this.#ids += 1;
      ids.ids.set(key, { offset, lastSeen: timestamp, lastOffset: offset });
    }
    this.#prune(ids);
    while (this.#ids > this.#limits.maxIds && this.#evictOne());
    return repeat;
  }

  /** True when the record at this position was skipped as a repeat (and is still remembered). */
  wasSkipped(slot: number, partition: number, offset: number): boolean {
    return this.#skipped.has(skippedKey(slot, partition, offset));
  }

  /**
   * The first record of id key `key` when one was consumed within the window before `now`
   * (ms since the epoch): a publish retry of it is answered without writing again.
   */
  firstRecord(key: string, now: number): FirstRecord | undefined {
    if (!this.enabled) return undefined;
    for (const ids of this.#partitions.values()) {
      const entry = ids.ids.get(key);
      if (entry !== undefined && entry.lastSeen >= now - this.#limits.windowMs) {
        return { slot: ids.slot, partition: ids.partition, offset: entry.offset };
      }
    }
    return undefined;
  }

  #partitionIds(slot: number, partition: number): PartitionIds {
    const name = `${slot}:${partition}`;
    let ids = this.#partitions.get(name);
    if (ids === undefined) {
      ids = new PartitionIds(slot, partition);
      this.#partitions.set(name, ids);
    }
    return ids;
  }

  #prune(ids: PartitionIds): void {
    const cutoff = ids.newest - this.#limits.windowMs;
    for (const [key, entry] of ids.ids) {
      if (entry.lastSeen >= cutoff) break;
      ids.ids.delete(key);
      this.#ids -= 1;
    }
  }

  /** The table is full: the busiest partition's least recently seen id goes. */
  #evictOne(): boolean {
    let busiest: PartitionIds | undefined;
    for (const ids of this.#partitions.values()) if (busiest === undefined || ids.ids.size > busiest.ids.size) busiest = ids;
    const oldest = busiest?.ids.keys().next();
    if (busiest === undefined || oldest === undefined || oldest.done === true) return false;
    busiest.ids.delete(oldest.value);
    this.#ids -= 1;
    this.#evicted += 1;
    return true;
  }

  #remember(position: string): void {
    this.#skipped.add(position);
    if (this.#skipped.size > this.#limits.maxSkippedOffsets) {
      const oldest = this.#skipped.values().next();
      if (oldest.done !== true) this.#skipped.delete(oldest.value);
    }
  }
}

function skippedKey(slot: number, partition: number, offset: number): string {
  return `${slot}:${partition}@${offset}`;
}
