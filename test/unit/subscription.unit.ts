import t from 'tap';
import { channelRegistry } from '../../src/channels/contract.ts';
import { pino } from 'pino';
import type { BusRecord, RangeReader, RangeResult } from '../../src/bus/types.ts';
import { partitionForKey } from '../../src/bus/partitioner.ts';
import { CursorCodec } from '../../src/connection/cursor.ts';
import { Dispatcher } from '../../src/dispatch/dispatcher.ts';
import { chatMessageRecord } from '../../src/channels/contract.ts';
import { RecentEvents } from '../../src/hub/recent-events.ts';
import { Hub } from '../../src/hub/hub.ts';
import { SseParser } from '../../src/client/sse-parser.ts';
import { Subscription, type ChannelRef, type SubscriptionSink } from '../../src/connection/subscription.ts';

const topics = { chat: 'chat', ticker: 'ticker' };
const PARTITIONS = 6;

/** The gateway's domain wired as plugins/gateway.ts does, fed records by hand. */
function gateway(options: { historyPerChannel?: number; rangeReader?: RangeReader; maxReplayEvents?: number; maxPendingEvents?: number } = {}) {
  const hub = new Hub();
  const history = new RecentEvents({ maxEventsPerChannel: options.historyPerChannel ?? 1000, maxAgeMs: 60_000, maxTotalEvents: 10_000 });
  const codec = new CursorCodec('unit-test-secret-0123456789', topics);
  const dispatcher = new Dispatcher(hub, history, codec, channelRegistry(topics), pino({ level: 'silent' }));
  dispatcher.onPartitionsStart(
    [topics.chat, topics.ticker].flatMap((topic) =>
      Array.from({ length: PARTITIONS }, (_, partition) => ({ topic, partition, offset: '0', time: Date.now() })),
    ),
  );
  const next = new Map<number, number>();
  /** Builds the records of `messages` ([room, text] pairs) with Kafka positions, in order. */
  const records = (messages: Array<[string, string]>): BusRecord[] =>
    messages.map(([room, text]) => {
      const { record } = chatMessageRecord(topics, room, { user: 'u', text });
      const partition = partitionForKey(room, PARTITIONS);
      const offset = next.get(partition) ?? 0;
      next.set(partition, offset + 1);
      return {
        topic: record.topic,
        partition,
        offset: String(offset),
        key: Buffer.from(record.key),
        value: Buffer.from(record.value),
        headers: record.headers,
        timestamp: Date.now(),
      };
    });
  const context = {
    hub,
    history,
    dispatcher,
    codec,
    rangeReader: options.rangeReader,
    maxReplayEvents: options.maxReplayEvents ?? 100,
    maxPendingEvents: options.maxPendingEvents ?? 100,
    lagThresholdMs: 60_000,
  };
  return { dispatcher, codec, records, context };
}

/** A sink that keeps every write, and the events its bytes hold as a client parses them. */
function recordingSink() {
  const writes: Array<{ frame: Buffer; events: number }> = [];
  const parser = new SseParser();
  const texts: string[] = [];
  const sink: SubscriptionSink = {
    write: (frame, events = 1) => {
      writes.push({ frame, events });
      for (const message of parser.feed(frame.toString('utf8'))) {
        if (message.event === 'message') texts.push((JSON.parse(message.data) as { text: string }).text);
      }
    },
    end: () => {
      ended += 1;
    },
  };
  let ended = 0;
  const resets: string[] = [];
  const feed = sink.write;
  sink.write = (frame, events) => {
    const text = frame.toString('utf8');
    if (text.startsWith('event: reset')) resets.push((JSON.parse(text.split('data: ')[1]!) as { reason: string }).reason);
    feed(frame, events);
  };
  return { sink, writes, texts, resets, ended: () => ended, lastEventId: () => parser.lastEventId };
}

t.test('a stream of one room gets each batch of its events in one write of the shared frame', async (t) => {
  const { dispatcher, records, context } = gateway();
  const a = recordingSink();
  const b = recordingSink();
  const room: ChannelRef[] = [{ kind: 'room', name: 'lobby' }];
  const first = new Subscription(context, room, a.sink);
  const second = new Subscription(context, room, b.sink);
  await first.start({ kind: 'live' });
  await second.start({ kind: 'live' });
  const before = a.writes.length;
  dispatcher.onRecords(records([['lobby', 'one'], ['lobby', 'two'], ['lobby', 'three']]));
  t.equal(a.writes.length - before, 1, 'one write for the batch');
  t.equal(a.writes.at(-1)!.events, 3);
  t.equal(a.writes.at(-1)!.frame, b.writes.at(-1)!.frame, 'the very same buffer for both streams');
  t.same(a.texts, ['one', 'two', 'three']);
});

t.test('a stream of several rooms in one partition gets interleaved events in partition order, each once', async (t) => {
  const { dispatcher, codec, records, context } = gateway();
  const second = Array.from({ length: 200 }, (_, i) => `b${i}`).find((name) => partitionForKey(name, PARTITIONS) === partitionForKey('a', PARTITIONS))!;
  const client = recordingSink();
  const subscription = new Subscription(context, [{ kind: 'room', name: 'a' }, { kind: 'room', name: second }], client.sink);
  await subscription.start({ kind: 'live' });
  // One consumer batch, the two rooms interleaved as Kafka stores them.
  dispatcher.onRecords(records([['a', 'a1'], [second, 'b1'], ['a', 'a2'], [second, 'b2']]));
  t.same(client.texts, ['a1', 'b1', 'a2', 'b2'], 'in partition order, none skipped');
  const position = codec.decode(client.lastEventId());
  t.same(position, [{ slot: 0, partition: partitionForKey('a', PARTITIONS), next: 4 }], 'the id is just past the last of them');
});

/** Kafka as a range reader sees it: every record fed so far, read in pages (the page size is the limit). */
class FakeKafka implements RangeReader {
  readonly log: BusRecord[] = [];
  /** While set, reads wait for it: a replay that is under way. */
  gate: Promise<void> | null = null;
  pages = 0;

  async read(topic: string, partition: number, from: number, to: number, key: string | readonly string[], limit: number): Promise<RangeResult> {
    await this.gate;
    this.pages += 1;
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

t.test('a long replay from Kafka whose live queue overflows drops the queued events and replays them too, instead of cutting the client off', async (t) => {
  const kafka = new FakeKafka();
  const { dispatcher, codec, records, context } = gateway({ historyPerChannel: 2, rangeReader: kafka, maxReplayEvents: 5, maxPendingEvents: 3 });
  const consume = (batch: BusRecord[]) => {
    kafka.log.push(...batch);
    dispatcher.onRecords(batch);
  };
  const texts = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `t${from + i}`);
  consume(records(texts(0, 20).map((text) => ['lobby', text])));
  let release!: () => void;
  kafka.gate = new Promise((resolve) => {
    release = resolve;
  });
  const client = recordingSink();
  const partition = partitionForKey('lobby', PARTITIONS);
  const subscription = new Subscription(context, [{ kind: 'room', name: 'lobby' }], client.sink);
  // The client saw nothing of the 20: older than the history (2 events), so read from Kafka in pages of 5.
  const started = subscription.start({ kind: 'cursor', id: codec.encode([{ slot: 0, partition, next: 0 }]) });
  for (const text of texts(20, 26)) consume(records([['lobby', text]]));
  release();
  await started;
  t.equal(client.ended(), 0, 'not cut off');
  t.same(client.texts, texts(0, 26), 'the 20 missed and the 6 that arrived meanwhile, each once, in order');
  t.ok(kafka.pages >= 4, 'in pages');
  consume(records([['lobby', 'live']]));
  t.same(client.texts.at(-1), 'live', 'then live');
  t.same(client.resets, []);
});

t.test('a replay from Kafka writes its events a stride at a time (one write per 32 events), not one write per event', async (t) => {
  const kafka = new FakeKafka();
  const { dispatcher, codec, records, context } = gateway({ historyPerChannel: 2, rangeReader: kafka, maxReplayEvents: 1000 });
  const texts = Array.from({ length: 100 }, (_, i) => `r${i}`);
  const batch = records(texts.map((text) => ['lobby', text]));
  kafka.log.push(...batch);
  dispatcher.onRecords(batch);
  const client = recordingSink();
  const partition = partitionForKey('lobby', PARTITIONS);
  const subscription = new Subscription(context, [{ kind: 'room', name: 'lobby' }], client.sink);
  await subscription.start({ kind: 'cursor', id: codec.encode([{ slot: 0, partition, next: 0 }]) });
  t.same(client.texts, texts, 'every event once, in order');
  const eventWrites = client.writes.filter((write) => write.frame.toString('utf8').includes('event: message'));
  t.same(
    eventWrites.map((write) => write.events),
    [32, 32, 32, 4],
    'four writes for 100 events',
  );
  // Each event keeps its own id: a client that reconnects after any of them resumes just past it.
  const ids = eventWrites.flatMap((write) => [...write.frame.toString('utf8').matchAll(/^id: (.+)$/gm)].map((match) => match[1]!));
  t.equal(ids.length, 100);
  t.same(codec.decode(ids[41]!), [{ slot: 0, partition, next: Number(batch[41]!.offset) + 1 }]);
});

t.test('a position ahead of this replica: within Kafka it waits for the replica; past the end of the partition it gets reset beyond-end', async (t) => {
  const kafka = new FakeKafka();
  const { dispatcher, codec, records, context } = gateway({ rangeReader: kafka });
  const partition = partitionForKey('lobby', PARTITIONS);
  const all = records(['a', 'b', 'c', 'd', 'e', 'f'].map((text) => ['lobby', text]));
  // Kafka holds six records; this replica has read three of them.
  kafka.log.push(...all);
  dispatcher.onRecords(all.slice(0, 3));
  const behind = recordingSink();
  await new Subscription(context, [{ kind: 'room', name: 'lobby' }], behind.sink).start({
    kind: 'cursor',
    id: codec.encode([{ slot: 0, partition, next: 5 }]),
  });
  const beyond = recordingSink();
  await new Subscription(context, [{ kind: 'room', name: 'lobby' }], beyond.sink).start({
    kind: 'cursor',
    id: codec.encode([{ slot: 0, partition, next: 1_000_000 }]),
  });
  dispatcher.onRecords(all.slice(3));
  t.same(behind.resets, [], 'a replica behind the client is no reason to reset');
  t.same(behind.texts, ['f'], 'it continues once the replica has caught up, without repeating what the client had');
  t.same(beyond.resets, ['beyond-end']);
  t.same(beyond.texts, ['d', 'e', 'f'], 'then the live stream');
});
