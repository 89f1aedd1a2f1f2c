import t from 'tap';
import { channelRegistry } from '../../src/channels/contract.ts';
import { pino } from 'pino';
import type { BusRecord } from '../../src/bus/types.ts';
import { CursorCodec } from '../../src/connection/cursor.ts';
import { Dispatcher } from '../../src/dispatch/dispatcher.ts';
import { chatMessageRecord } from '../../src/channels/contract.ts';
import { RecentEvents } from '../../src/hub/recent-events.ts';
import { Hub, type HubEvent } from '../../src/hub/hub.ts';

const topics = { chat: 'chat', ticker: 'ticker' };
const T0 = 1_700_000_000_000;

/** A replica's domain as plugins/gateway.ts wires it, with a subscriber of room `lobby` recording what it is handed. */
function replica(dedupWindowMs: number) {
  const hub = new Hub();
  const history = new RecentEvents({ maxEventsPerChannel: 1000, maxAgeMs: 1e12, maxTotalEvents: 10_000 });
  const dispatcher = new Dispatcher(hub, history, new CursorCodec('unit-test-secret-0123456789', topics), channelRegistry(topics), pino({ level: 'silent' }), { dedupWindowMs });
  dispatcher.onPartitionsStart([{ topic: 'chat', partition: 0, offset: '0', time: T0 }]);
  const delivered: number[] = [];
  hub.subscribe('room:lobby', { deliverEvent: (event: HubEvent) => delivered.push(event.offset) });
  return { dispatcher, history, delivered };
}

/** A `message` record of room lobby on partition 0. */
function message(id: string, offset: number, timestamp: number): BusRecord {
  const { record } = chatMessageRecord(topics, 'lobby', { id, user: 'ann', text: 'hi' });
  return { topic: 'chat', partition: 0, offset: String(offset), key: Buffer.from(record.key), value: Buffer.from(record.value), headers: record.headers, timestamp };
}

const log = [message('a', 0, T0), message('b', 1, T0 + 1_000), message('a', 2, T0 + 5_000), message('a', 3, T0 + 64_000), message('a', 4, T0 + 200_000)];

t.test('a repeat within the window reaches neither subscribers nor the history nor Kafka resumes; past the window it is new', async (t) => {
  const { dispatcher, history, delivered } = replica(60_000);
  dispatcher.onRecords(log);
  // 2 repeats 0 (5 s later); 3 is 64 s after 0 but 59 s after 2: the window runs from the last copy; 4 is 136 s after 3.
  t.same(delivered, [0, 1, 4]);
  t.same(history.range('room:lobby', 0, 0, 0, 10)?.map((event) => event.offset), [0, 1, 4]);
  t.same(log.map((record) => dispatcher.toStored(record)?.offset ?? null), [0, 1, null, null, 4]);
  t.equal(dispatcher.stats.duplicatesSkipped, 2);
  t.equal(dispatcher.stats.recordsSkipped, 0, 'repeats are not counted as contract violations');
});

t.test('records read again after a consumer restart get the verdict they had', async (t) => {
  const { dispatcher, delivered } = replica(60_000);
  dispatcher.onRecords(log.slice(0, 3));
  dispatcher.onRecords(log);
  t.same(delivered, [0, 1, 0, 1, 4], 'the hub is handed the re-read first copies again (streams drop them by offset), never a repeat');
});

t.test('replicas reading the partition in other batches give the same verdicts', async (t) => {
  const one = replica(60_000);
  const other = replica(60_000);
  one.dispatcher.onRecords(log);
  for (const record of log) other.dispatcher.onRecords([record]);
  t.same(other.delivered, one.delivered);
});

t.test('a window of 0 delivers every record', async (t) => {
  const { dispatcher, delivered } = replica(0);
  dispatcher.onRecords(log);
  t.same(delivered, [0, 1, 2, 3, 4]);
});

t.test('headers Kafka allows but few producers write: a null event type is a counted skip, a repeated one counts by its last value; neither throws', async (t) => {
  const { dispatcher, delivered } = replica(60_000);
  const base = message('h', 0, T0);
  const records: BusRecord[] = [
    { ...base, offset: '0', headers: { 'event-type': null } },
    { ...base, offset: '1', headers: { 'event-type': [Buffer.from('delete'), Buffer.from('message')] } },
    { ...base, offset: '2', headers: { 'event-type': Buffer.from('message'), author: [null as unknown as Buffer] } },
  ];
  t.doesNotThrow(() => dispatcher.onRecords(records), 'consumed without throwing (a throw would stop the consumer on this record for good)');
  t.same(delivered, [1], 'the null type skipped; the repeated header taken by its last value; the third a repeat of message id h');
  t.equal(dispatcher.stats.recordsSkipped, 1, 'the null type counted as a skip');
});
