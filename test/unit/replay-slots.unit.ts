import t from 'tap';
import { pino } from 'pino';
import type { BusRecord, RangeReader, RangeResult } from '../../src/bus/types.ts';
import { partitionForKey } from '../../src/bus/partitioner.ts';
import { channelRegistry, chatMessageRecord } from '../../src/channels/contract.ts';
import { SseParser } from '../../src/client/sse-parser.ts';
import { CursorCodec } from '../../src/connection/cursor.ts';
import { ReplaySlots } from '../../src/connection/replay-turns.ts';
import { Subscription, type SubscriptionSink } from '../../src/connection/subscription.ts';
import { Dispatcher } from '../../src/dispatch/dispatcher.ts';
import { Hub } from '../../src/hub/hub.ts';
import { RecentEvents } from '../../src/hub/recent-events.ts';

/**
 * REPLAY_MAX_CONCURRENT at the subscription: deep replays (past their first page) of different
 * partitions wait for a slot and go on one after the other, oldest first; replays of a partition
 * being read go on with it; each delivers every event once, in order; a stream that closes while
 * waiting leaves the line. Kafka is a fake that logs every page read, so the order is exact.
 */

const topics = { chat: 'chat', ticker: 'ticker' };
const PARTITIONS = 6;
const PAGE = 5;
const GAP = 30;

/** Kafka as a range reader sees it, logging each page read (partition, from). */
class LoggingKafka implements RangeReader {
  readonly log: BusRecord[] = [];
  readonly reads: Array<{ partition: number; from: number }> = [];

  async read(topic: string, partition: number, from: number, to: number, key: string | readonly string[], limit: number): Promise<RangeResult> {
    this.reads.push({ partition, from });
    // An answer a turn of the event loop later, as a read of Kafka (I/O) is: a replay cannot
    // run through every page of its gap within one turn, which the tests below watch turn by turn.
    await new Promise((resolve) => setImmediate(resolve));
    const keys = new Set(typeof key === 'string' ? [key] : key);
    const records: BusRecord[] = [];
    let next = from;
    for (const record of this.log) {
      const offset = Number(record.offset);
      if (record.topic !== topic || record.partition !== partition || offset < from || offset >= to) continue;
      if (records.length >= limit) return { expired: false, records, complete: false, next };
      next = offset + 1;
      if (keys.has(record.key!.toString('utf8'))) records.push(record);
    }
    return { expired: false, records, complete: true, next: to };
  }

  readAll(): Promise<RangeResult> {
    throw new Error('not used');
  }

  async offsetForTime(): Promise<number | null> {
    return null;
  }

  async endOffset(topic: string, partition: number): Promise<number | null> {
    return this.log.filter((record) => record.topic === topic && record.partition === partition).length;
  }
}

function setup(slots: ReplaySlots) {
  const hub = new Hub();
  const history = new RecentEvents({ maxEventsPerChannel: 2, maxAgeMs: 60_000, maxTotalEvents: 10_000 });
  const codec = new CursorCodec('unit-test-secret-0123456789', topics);
  const dispatcher = new Dispatcher(hub, history, codec, channelRegistry(topics), pino({ level: 'silent' }));
  dispatcher.onPartitionsStart(
    [topics.chat, topics.ticker].flatMap((topic) => Array.from({ length: PARTITIONS }, (_, partition) => ({ topic, partition, offset: '0', time: Date.now() }))),
  );
  const kafka = new LoggingKafka();
  const next = new Map<number, number>();
  /** Feeds `count` events of each room, interleaved, to Kafka and the replica. */
  const publish = (rooms: string[], count: number): void => {
    const batch: BusRecord[] = [];
    for (let index = 0; index < count; index++) {
      for (const room of rooms) {
        const { record } = chatMessageRecord(topics, room, { user: 'u', text: `${room}-${index}` });
        const partition = partitionForKey(room, PARTITIONS);
        const offset = next.get(partition) ?? 0;
        next.set(partition, offset + 1);
        batch.push({ topic: record.topic, partition, offset: String(offset), key: Buffer.from(record.key), value: Buffer.from(record.value), headers: record.headers, timestamp: Date.now() });
      }
    }
    kafka.log.push(...batch);
    dispatcher.onRecords(batch);
  };
  const context = { hub, history, dispatcher, codec, rangeReader: kafka, maxReplayEvents: PAGE, maxPendingEvents: 1000, lagThresholdMs: 60_000, replaySlots: slots };
  return { codec, kafka, publish, context };
}

/** A client: the texts of the events it received, in order. */
function client(): { sink: SubscriptionSink; texts: string[] } {
  const parser = new SseParser();
  const texts: string[] = [];
  return {
    texts,
    sink: {
      write: (frame) => {
        for (const message of parser.feed(frame.toString('utf8'))) if (message.event === 'message') texts.push((JSON.parse(message.data) as { text: string }).text);
      },
      end: () => undefined,
    },
  };
}

function roomOn(partition: number, prefix: string): string {
  for (let k = 0; ; k++) if (partitionForKey(`${prefix}${k}`, PARTITIONS) === partition) return `${prefix}${k}`;
}

t.test('with one slot, deep replays of three partitions read their pages one replay after the other (past the first page), each delivering every event once, in order', async (t) => {
  const slots = new ReplaySlots(1);
  const { codec, kafka, publish, context } = setup(slots);
  const rooms = [roomOn(0, 'a'), roomOn(1, 'b'), roomOn(2, 'c')];
  publish(rooms, GAP);
  const clients = rooms.map(() => client());
  const subscriptions = rooms.map((room, index) => new Subscription(context, [{ kind: 'room', name: room }], clients[index]!.sink));
  const from = (room: string) => codec.encode([{ slot: 0, partition: partitionForKey(room, PARTITIONS), next: 0 }]);
  await Promise.all(subscriptions.map((subscription, index) => subscription.start({ kind: 'cursor', id: from(rooms[index]!) })));

  rooms.forEach((room, index) => t.same(clients[index]!.texts, Array.from({ length: GAP }, (_, i) => `${room}-${i}`), `${room}: every event once, in order`));
  // Past each replay's first page, the reads of a partition come in one run: no other partition's in between.
  const firstPages = new Set<number>();
  const deep = kafka.reads.filter(({ partition }) => firstPages.has(partition) || !firstPages.add(partition));
  const runs = deep.map(({ partition }) => partition).filter((partition, index, all) => index === 0 || all[index - 1] !== partition);
  t.equal(runs.length, rooms.length, `one run of reads per partition (${JSON.stringify(kafka.reads.map(({ partition }) => partition))})`);
  t.equal(slots.active, 0, 'every slot given back');
  t.equal(slots.waiting, 0);
});

t.test('replays of the partition being read go on with it; a stream that closes while waiting leaves the line and the others complete', async (t) => {
  const slots = new ReplaySlots(1);
  const { codec, kafka, publish, context } = setup(slots);
  // Two rooms on partition 3 (they share the slot), one on partition 4 (it waits), one on 5 (it closes while waiting).
  const rooms = [roomOn(3, 'x'), roomOn(3, 'y'), roomOn(4, 'z'), roomOn(5, 'w')];
  publish(rooms, GAP);
  const clients = rooms.map(() => client());
  const subscriptions = rooms.map((room, index) => new Subscription(context, [{ kind: 'room', name: room }], clients[index]!.sink));
  const from = (room: string) => codec.encode([{ slot: 0, partition: partitionForKey(room, PARTITIONS), next: 0 }]);
  const started = subscriptions.map((subscription, index) => subscription.start({ kind: 'cursor', id: from(rooms[index]!) }));
  // Once the rooms of partition 3 have the slot, the others wait: close partition 5's stream then.
  for (let turn = 0; turn < 1000 && !(slots.waiting > 0 && kafka.reads.filter(({ partition }) => partition === 3).length > 2); turn++) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  t.ok(slots.waiting > 0, 'some replays wait for the slot');
  subscriptions[3]!.close();
  await Promise.all(started);
  for (const index of [0, 1, 2]) t.same(clients[index]!.texts, Array.from({ length: GAP }, (_, i) => `${rooms[index]}-${i}`), `${rooms[index]}: every event once, in order`);
  t.ok(clients[3]!.texts.length < GAP, 'the closed one stopped');
  const deepOf = (partition: number) => kafka.reads.filter((read) => read.partition === partition).length;
  t.ok(deepOf(3) > 1 && deepOf(4) > 1, 'both partitions were read deep');
  // The two rooms of partition 3 were read side by side: partition 4's deep reads all came after them.
  const lastOf3 = kafka.reads.map(({ partition }) => partition).lastIndexOf(3);
  const deepReadsOf4 = kafka.reads.map(({ partition }, index) => ({ partition, index })).filter(({ partition }) => partition === 4).slice(1);
  t.ok(deepReadsOf4.every(({ index }) => index > lastOf3), 'partition 4 waited for partition 3 to be done');
  t.equal(slots.active, 0, 'every slot given back');
  t.equal(slots.waiting, 0, 'nobody left in line');
});
