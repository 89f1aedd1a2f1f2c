/**
 * The chaos run's bookkeeping: what Kafka holds (the truth) against what each subscriber
 * received. Pure functions, so the counting itself is unit-tested (test/unit/chaos-accounting.unit.ts).
 *
 * Every message the run publishes carries a logical sequence number `seq` at the start of its
 * text (`c<seq> …`), unique per publish *intent*: a publisher retrying one message keeps its
 * seq. So `seq` is what a user would call "the same message": two records with one seq are one
 * message shown twice, whatever their ids.
 */

/** One chat record read back from Kafka. */
export interface TruthRecord {
  room: string;
  seq: number;
  /** The message id in the record value. */
  id: string;
  /** The record's Kafka timestamp (ms), to tell in which phase a lost message was published. */
  timestamp?: number;
}

/** What Kafka holds for the rooms the run tracks. */
export interface Truth {
  /** Per room, each seq once, in Kafka order (partition offset order; a room is on one partition). */
  rooms: Map<string, number[]>;
  /** Per room, seq → its index in `rooms`. */
  index: Map<string, Map<number, number>>;
  /** Records read. */
  records: number;
  /** Records repeating a (room, id) already held: a retried write that landed twice with one id. */
  repeatedIds: number;
  /** The first few such ids (`k…` = the run's Kafka producer, `h…` = HTTP with client ids, else the gateway's own). */
  repeatedIdSamples: string[];
  /** Seqs held under two or more different ids: a message retried without an id, written twice. */
  duplicatedPublishes: number;
  /** Every seq held, any room. */
  seqs: Set<number>;
  /** Seqs Kafka holds in more than one record (any ids), with their record count. */
  copies: Map<number, number>;
  /** Seq → Kafka timestamp of its first record (when given). */
  timestamps: Map<number, number>;
}

/**
 * Builds the truth from records in Kafka order. Records of one room must be in offset order
 * (they are when read partition by partition, since a room's key pins it to one partition).
 */
export function buildTruth(records: Iterable<TruthRecord>): Truth {
  const rooms = new Map<string, number[]>();
  const index = new Map<string, Map<number, number>>();
  const idsBySeq = new Map<number, Set<string>>();
  const idsByRoom = new Map<string, Set<string>>();
  const seqs = new Set<number>();
  const copies = new Map<number, number>();
  const timestamps = new Map<number, number>();
  let count = 0;
  let repeatedIds = 0;
  const repeatedIdSamples: string[] = [];
  for (const record of records) {
    count += 1;
    let roomIds = idsByRoom.get(record.room);
    if (roomIds === undefined) idsByRoom.set(record.room, (roomIds = new Set()));
    if (roomIds.has(record.id)) {
      repeatedIds += 1;
      if (repeatedIdSamples.length < 5) repeatedIdSamples.push(`${record.room}/${record.id}`);
    }
    roomIds.add(record.id);
    let ids = idsBySeq.get(record.seq);
    if (ids === undefined) idsBySeq.set(record.seq, (ids = new Set()));
    ids.add(record.id);
    let order = rooms.get(record.room);
    let positions = index.get(record.room);
    if (order === undefined || positions === undefined) {
      rooms.set(record.room, (order = []));
      index.set(record.room, (positions = new Map()));
    }
    if (!positions.has(record.seq)) {
      positions.set(record.seq, order.length);
      order.push(record.seq);
      if (record.timestamp !== undefined) timestamps.set(record.seq, record.timestamp);
    } else {
      copies.set(record.seq, (copies.get(record.seq) ?? 1) + 1);
    }
    seqs.add(record.seq);
  }
  let duplicatedPublishes = 0;
  for (const ids of idsBySeq.values()) if (ids.size > 1) duplicatedPublishes += 1;
  return { rooms, index, records: count, repeatedIds, repeatedIdSamples, duplicatedPublishes, seqs, copies, timestamps };
}

/** What one subscriber received: per room, the seqs in the order they arrived. */
export interface Received {
  rooms: readonly string[];
  received: ReadonlyMap<string, readonly number[]>;
}

export interface ClientScore {
  /** Messages of its rooms in Kafka it never received. */
  lost: number;
  /** Receipts of a message it had already received. */
  duplicated: number;
  /** Of those, receipts of a second record Kafka holds for the message (a publish written twice). */
  duplicatedFromKafkaCopies: number;
  /** Receipts that came after a later message of the same room. */
  outOfOrder: number;
  /** Receipts of a message Kafka does not hold for that room (should never happen). */
  unknown: number;
  /** The first message it lost (Kafka order), to start an investigation from. */
  firstLost?: { room: string; seq: number };
  /** Per room: how many it lost. */
  lostByRoom: Record<string, number>;
  /** The messages it lost, in Kafka order per room. */
  lostSeqs: number[];
}

/** Scores one subscriber against the truth. Cost: O(messages received + messages of its rooms). */
export function scoreClient(truth: Truth, client: Received): ClientScore {
  const score: ClientScore = { lost: 0, duplicated: 0, duplicatedFromKafkaCopies: 0, outOfOrder: 0, unknown: 0, lostByRoom: {}, lostSeqs: [] };
  for (const room of client.rooms) {
    const order = truth.rooms.get(room) ?? [];
    const positions = truth.index.get(room) ?? new Map<number, number>();
    const seen = new Set<number>();
    const repeats = new Map<number, number>();
    let highest = -1;
    for (const seq of client.received.get(room) ?? []) {
      if (seen.has(seq)) {
        score.duplicated += 1;
        const receipts = (repeats.get(seq) ?? 1) + 1;
        repeats.set(seq, receipts);
        if (receipts <= (truth.copies.get(seq) ?? 1)) score.duplicatedFromKafkaCopies += 1;
        continue;
      }
      seen.add(seq);
      const position = positions.get(seq);
      if (position === undefined) {
        score.unknown += 1;
        continue;
      }
      if (position < highest) score.outOfOrder += 1;
      else highest = position;
    }
    let lostHere = 0;
    for (const seq of order) {
      if (seen.has(seq)) continue;
      lostHere += 1;
      score.lostSeqs.push(seq);
      score.firstLost ??= { room, seq };
    }
    if (lostHere > 0) score.lostByRoom[room] = lostHere;
    score.lost += lostHere;
  }
  return score;
}

/** How many of `truth`'s messages of `rooms` the client has not received yet (for the settle wait). */
export function missingCount(truth: Truth, rooms: readonly string[], seen: (room: string) => ReadonlySet<number> | undefined): number {
  let missing = 0;
  for (const room of rooms) {
    const have = seen(room);
    for (const seq of truth.rooms.get(room) ?? []) if (have === undefined || !have.has(seq)) missing += 1;
  }
  return missing;
}

/** The seq of a run's message text `c<seq> …`, or undefined for any other text. */
export function seqOfText(text: unknown): number | undefined {
  if (typeof text !== 'string' || text.charCodeAt(0) !== 99 /* c */) return undefined;
  const end = text.indexOf(' ');
  const seq = Number(end === -1 ? text.slice(1) : text.slice(1, end));
  return Number.isSafeInteger(seq) && seq >= 0 ? seq : undefined;
}

/** The text of the message with this seq, padded to about `bytes` characters. */
export function textOfSeq(seq: number, bytes = 0): string {
  const head = `c${seq}`;
  return bytes > head.length + 1 ? `${head} ${'x'.repeat(bytes - head.length - 1)}` : head;
}
