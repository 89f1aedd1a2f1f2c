import t from 'tap';
import { pino } from 'pino';
import { EVENT_OVERHEAD_BYTES, eventBytes, RecentEvents, type StoredEvent } from '../../src/hub/recent-events.ts';
import { channelRegistry, chatMessageRecord } from '../../src/channels/contract.ts';
import { CursorCodec } from '../../src/connection/cursor.ts';
import { Dispatcher } from '../../src/dispatch/dispatcher.ts';
import { Hub, type HubEvent } from '../../src/hub/hub.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';

/**
 * The resume history's byte budget (HISTORY_MAX_TOTAL_BYTES): events weigh what they hold, the
 * budget evicts in the order the event-count bound does (the least recently active channel's
 * oldest events first) and is never exceeded; what it evicts is no longer vouched for, so a
 * resume from there goes to Kafka as for any position older than the history.
 */

/** An event whose body is `bodyBytes` long: it weighs bodyBytes + EVENT_OVERHEAD_BYTES. */
function event(channel: string, offset: number, bodyBytes = 1000, partition = 0): StoredEvent {
  return { channel, slot: 0, partition, offset, timestamp: 1000, body: Buffer.alloc(bodyBytes, 'x') };
}

const WEIGHT = 1000 + EVENT_OVERHEAD_BYTES;
const offsets = (events: StoredEvent[] | null) => events?.map((stored) => stored.offset) ?? null;
/** Room enough for the per-channel and count bounds never to be what evicts. */
const roomy = { maxEventsPerChannel: 1000, maxAgeMs: 60_000, maxTotalEvents: 100_000 };

t.test('an event weighs its Buffers plus a fixed overhead; heldBytes, when the event gives it, replaces its body length', async (t) => {
  t.equal(eventBytes(event('room:a', 0, 1000)), WEIGHT);
  t.equal(eventBytes({ ...event('room:a', 0, 10), heldBytes: 30_000 }), 30_000 + EVENT_OVERHEAD_BYTES);
  t.ok(EVENT_OVERHEAD_BYTES >= 512, 'the overhead is not a token amount');
});

t.test('one channel: the budget keeps its newest events, drops the oldest first, and never goes over', async (t) => {
  const budget = 5 * WEIGHT + WEIGHT / 2;
  const history = new RecentEvents({ ...roomy, maxTotalBytes: budget });
  history.coverPartitionFrom(0, 0, 0, 0);
  for (let offset = 0; offset < 20; offset++) {
    history.append(event('room:a', offset), 2000);
    t.ok(history.totalBytes <= budget, `after offset ${offset}: ${history.totalBytes} <= ${budget}`);
    const kept = Math.min(offset + 1, 5);
    t.equal(history.totalEvents, kept);
    t.equal(history.totalBytes, kept * WEIGHT, 'the total is the sum of the held events');
    t.same(offsets(history.range('room:a', 0, 0, offset + 1 - kept, 100)), Array.from({ length: kept }, (_, i) => offset + 1 - kept + i), 'the newest, in order');
  }
  t.equal(history.range('room:a', 0, 0, 14, 100), null, 'a position the budget dropped is no longer vouched for (the resume reads Kafka)');
  t.equal(history.offsetAtTime('room:a', 0, 0, 0, 20), null, 'nor a time before it');
});

t.test('several channels: the least recently active channel gives up its oldest events first, event by event', async (t) => {
  const budget = 6 * WEIGHT;
  const history = new RecentEvents({ ...roomy, maxTotalBytes: budget });
  history.coverPartitionFrom(0, 0, 0, 0);
  history.coverPartitionFrom(0, 1, 0, 0);
  // room:old on partition 0 (offsets 0-2), then room:new on partition 1 (offsets 0…).
  for (let offset = 0; offset < 3; offset++) history.append(event('room:old', offset, 1000, 0), 2000);
  for (let offset = 0; offset < 3; offset++) history.append(event('room:new', offset, 1000, 1), 2000);
  t.equal(history.totalBytes, budget, 'full, not over');
  history.append(event('room:new', 3, 1000, 1), 2000);
  t.same(offsets(history.range('room:old', 0, 0, 1, 100)), [1, 2], "the stale channel's oldest event went first");
  t.equal(history.range('room:old', 0, 0, 0, 100), null);
  t.same(offsets(history.range('room:new', 0, 1, 0, 100)), [0, 1, 2, 3], 'the active channel kept everything');
  history.append(event('room:new', 4, 1000, 1), 2000);
  history.append(event('room:new', 5, 1000, 1), 2000);
  t.equal(history.channelCount, 1, 'the stale channel, emptied, is forgotten');
  t.same(offsets(history.range('room:new', 0, 1, 0, 100)), [0, 1, 2, 3, 4, 5]);
  t.equal(history.range('room:old', 0, 0, 0, 100), null, 'what it held is not vouched for any more');
  t.same(offsets(history.range('room:old', 0, 0, 3, 100)), [], 'after it, nothing is missing');
  history.append(event('room:new', 6, 1000, 1), 2000);
  t.same(offsets(history.range('room:new', 0, 1, 1, 100)), [1, 2, 3, 4, 5, 6], 'then the only channel drops its own oldest');
  t.equal(history.range('room:new', 0, 1, 0, 100), null);
  t.ok(history.totalBytes <= budget);
});

t.test('large events evict many small ones; one larger than the whole budget is not kept', async (t) => {
  const budget = 100_000;
  const history = new RecentEvents({ ...roomy, maxTotalBytes: budget });
  history.coverPartitionFrom(0, 0, 0, 0);
  for (let offset = 0; offset < 40; offset++) history.append(event('room:a', offset, 100), 2000);
  t.equal(history.totalEvents, 40);
  history.append(event('room:a', 40, 60_000), 2000);
  t.ok(history.totalBytes <= budget, `${history.totalBytes} <= ${budget}`);
  t.equal(history.range('room:a', 0, 0, 0, 100), null);
  const held = offsets(history.range('room:a', 0, 0, 40 - (history.totalEvents - 1), 100))!;
  t.equal(held.at(-1), 40, 'the large event is kept, the oldest small ones made room');
  t.equal(held.length, history.totalEvents);

  history.append(event('room:a', 41, 200_000), 2000);
  t.equal(history.totalEvents, 0, 'an event larger than the budget leaves nothing behind it…');
  t.equal(history.totalBytes, 0);
  t.equal(history.range('room:a', 0, 0, 41, 100), null, '…and is not vouched for: its resume reads Kafka');
  t.same(offsets(history.range('room:a', 0, 0, 42, 100)), [], 'after it, the history is complete again');
  history.append(event('room:a', 42, 100), 2000);
  t.same(offsets(history.range('room:a', 0, 0, 42, 100)), [42]);
});

t.test('every way an event leaves (per-channel bound, age, count bound) gives its bytes back', async (t) => {
  const history = new RecentEvents({ maxEventsPerChannel: 3, maxAgeMs: 1000, maxTotalEvents: 5, maxTotalBytes: 1_000_000 });
  history.coverPartitionFrom(0, 0, 0, 0);
  for (let offset = 0; offset < 5; offset++) history.append({ ...event('room:a', offset), timestamp: 1000 }, 1000);
  t.equal(history.totalEvents, 3, 'per-channel bound');
  t.equal(history.totalBytes, 3 * WEIGHT);
  for (let offset = 5; offset < 9; offset++) history.append({ ...event('room:b', offset), timestamp: 1500 }, 1500);
  t.equal(history.totalEvents, 5, 'count bound (it evicts in the same order: room:a, the stalest, gave up its oldest)');
  t.equal(history.totalBytes, 5 * WEIGHT);
  t.same(offsets(history.range('room:a', 0, 0, 3, 100)), [3, 4]);
  t.equal(history.range('room:a', 0, 0, 2, 100), null);
  history.sweep(2100);
  t.equal(history.totalEvents, 3, 'age: room:a aged out');
  t.equal(history.totalBytes, 3 * WEIGHT);
  history.sweep(5000);
  t.equal(history.totalEvents, 0);
  t.equal(history.totalBytes, 0);
});

t.test("a dispatched event's weight covers what it comes to hold: its text, body and frame", async (t) => {
  const topics = { chat: 'chat', ticker: 'ticker' };
  const history = new RecentEvents(roomy);
  const dispatcher = new Dispatcher(new Hub(), history, new CursorCodec('history-bytes-test-secret', topics), channelRegistry(topics), pino({ level: 'silent' }));
  for (const text of ['hi', 'x'.repeat(2000), '\u0001'.repeat(2000), '中'.repeat(2000)]) {
    const { record } = chatMessageRecord(topics, 'lobby', { user: 'tester', text });
    const stored = dispatcher.toStored({
      topic: 'chat',
      partition: 0,
      offset: '7',
      key: Buffer.from(record.key),
      value: Buffer.from(record.value),
      headers: { ...record.headers },
      timestamp: 1000,
    }) as HubEvent;
    const weight = eventBytes(stored);
    const buffers = stored.body.byteLength + stored.frame.byteLength;
    // The data line's text as V8 keeps it: a byte per character when all are Latin-1, else two.
    const data = stored.body.toString('utf8').split('\n').find((line) => line.startsWith('data: '))!.slice('data: '.length);
    const textBytes = /^[\u0000-\u00ff]*$/.test(data) ? data.length : 2 * data.length;
    t.ok(weight >= buffers + textBytes + EVENT_OVERHEAD_BYTES, `${text.slice(0, 1)}×${text.length}: ${weight} >= ${buffers} of Buffers + ${textBytes} of text + overhead`);
    t.ok(weight <= 1.2 * (buffers + textBytes) + EVENT_OVERHEAD_BYTES, `…and not much more (${weight})`);
  }
});

t.test('HISTORY_MAX_TOTAL_BYTES: 128 MiB by default, a whole number of bytes from 1024', async (t) => {
  t.equal(loadConfig({}).historyMaxTotalBytes, 128 * 1024 * 1024);
  t.equal(loadConfig({ HISTORY_MAX_TOTAL_BYTES: '65536' }).historyMaxTotalBytes, 65536);
  t.throws(() => loadConfig({ HISTORY_MAX_TOTAL_BYTES: '1000' }), ConfigError);
  t.throws(() => loadConfig({ HISTORY_MAX_TOTAL_BYTES: '64MB' }), ConfigError);
});
