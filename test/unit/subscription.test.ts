import t from 'tap';
import { pino } from 'pino';
import type { BusRecord } from '../../src/bus/types.ts';
import { partitionForKey } from '../../src/bus/partitioner.ts';
import { CursorCodec } from '../../src/cursor.ts';
import { Dispatcher } from '../../src/dispatcher.ts';
import { chatMessageRecord } from '../../src/events.ts';
import { History } from '../../src/history.ts';
import { Hub } from '../../src/hub.ts';
import { SseParser } from '../../src/client/sse-parser.ts';
import { Subscription, type ChannelRef, type SubscriptionSink } from '../../src/subscription.ts';

const topics = { chat: 'chat', ticker: 'ticker' };
const PARTITIONS = 6;

/** The gateway's domain wired as plugins/gateway.ts does, fed records by hand. */
function gateway() {
  const hub = new Hub();
  const history = new History({ maxEventsPerChannel: 1000, maxAgeMs: 60_000, maxTotalEvents: 10_000 });
  const codec = new CursorCodec('unit-test-secret-0123456789', topics);
  const dispatcher = new Dispatcher(hub, history, codec, topics, pino({ level: 'silent' }));
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
  const context = { hub, history, dispatcher, codec, rangeReader: undefined, maxReplayEvents: 100, maxPendingEvents: 100, lagThresholdMs: 60_000 };
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
    end: () => {},
  };
  return { sink, writes, texts, lastEventId: () => parser.lastEventId };
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
