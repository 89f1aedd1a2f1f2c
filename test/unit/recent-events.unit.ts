import t from 'tap';
import { RecentEvents, type StoredEvent } from '../../src/hub/recent-events.ts';

function event(channel: string, offset: number, timestamp: number, partition = 0): StoredEvent {
  return { channel, slot: 0, partition, offset, timestamp, body: Buffer.from(`data: ${offset}\n\n`) };
}

const offsets = (events: StoredEvent[] | null) => events?.map((stored) => stored.offset) ?? null;

t.test('range returns the channel events in [from, to), and [] when nothing happened since', async (t) => {
  const history = new RecentEvents({ maxEventsPerChannel: 10, maxAgeMs: 60000, maxTotalEvents: 100 });
  history.coverPartitionFrom(0, 0, 0, 0);
  for (const offset of [1, 3, 5, 7]) history.append(event('room:a', offset, 1000 + offset), 2000);
  t.same(offsets(history.range('room:a', 0, 0, 3, 7)), [3, 5]);
  t.same(offsets(history.range('room:a', 0, 0, 8, 9)), []);
  t.same(offsets(history.range('room:quiet', 0, 0, 0, 9)), [], 'a channel with no events since the partition start');
  t.equal(history.range('room:a', 0, 1, 0, 9), null, 'a partition it never covered');
});

t.test('once events are dropped, older positions are no longer vouched for', async (t) => {
  const history = new RecentEvents({ maxEventsPerChannel: 3, maxAgeMs: 60000, maxTotalEvents: 100 });
  history.coverPartitionFrom(0, 0, 0, 0);
  for (let offset = 0; offset < 6; offset++) history.append(event('room:a', offset, 1000), 2000);
  t.equal(history.range('room:a', 0, 0, 2, 10), null, 'offset 2 was dropped');
  t.same(offsets(history.range('room:a', 0, 0, 3, 10)), [3, 4, 5]);
  t.equal(history.totalEvents, 3);
});

t.test('age and the total bound drop events; a forgotten channel makes its partition start later', async (t) => {
  const history = new RecentEvents({ maxEventsPerChannel: 10, maxAgeMs: 1000, maxTotalEvents: 4 });
  history.coverPartitionFrom(0, 0, 0, 0);
  history.append(event('room:old', 0, 0), 0);
  history.append(event('room:b', 1, 500), 500);
  history.sweep(1200);
  t.equal(history.range('room:old', 0, 0, 0, 5), null, 'aged out');
  t.equal(history.range('room:b', 0, 0, 0, 5), null, 'the partition view now starts after the forgotten channel');
  t.same(offsets(history.range('room:b', 0, 0, 1, 5)), [1]);
  for (let offset = 2; offset < 8; offset++) history.append(event(`room:c${offset}`, offset, 1300), 1300);
  t.ok(history.totalEvents <= 4, 'never more than the total bound');
});

t.test('offsetAtTime finds where a stream from a time starts, or says it cannot', async (t) => {
  const history = new RecentEvents({ maxEventsPerChannel: 10, maxAgeMs: 60000, maxTotalEvents: 100 });
  history.coverPartitionFrom(0, 0, 1, 100);
  for (const [offset, timestamp] of [[1, 200], [2, 300], [3, 400]] as const) history.append(event('room:a', offset, timestamp), 500);
  t.equal(history.offsetAtTime('room:a', 0, 0, 250, 9), 2);
  t.equal(history.offsetAtTime('room:a', 0, 0, 450, 9), 9, 'nothing since: the live position');
  t.equal(history.offsetAtTime('room:a', 0, 0, 50, 9), null, 'before the replica knew the partition');

  const fromTheFirstRecord = new RecentEvents({ maxEventsPerChannel: 10, maxAgeMs: 60000, maxTotalEvents: 100 });
  fromTheFirstRecord.coverPartitionFrom(0, 0, 0, 100);
  fromTheFirstRecord.append(event('room:a', 0, 200), 500);
  t.equal(fromTheFirstRecord.offsetAtTime('room:a', 0, 0, 50, 9), 0, 'known from offset 0: nothing can be older, so any earlier time starts at the first event');
});
