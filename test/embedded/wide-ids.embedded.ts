import t from 'tap';
import { postJson, startGateway, uniqueName } from '../helpers/gateway.ts';
import type { ChannelKindDeclaration } from '../../src/channels/kind.ts';
import { openStream, until } from '../helpers/sse-client.ts';
import { messages, post } from '../helpers/rooms.ts';
import { partitionForKey } from '../../src/bus/partitioner.ts';
import { MAX_CURSOR_ENTRIES } from '../../src/connection/cursor.ts';

/**
 * A stream's id holds one position per partition it follows, so a stream of many rooms on a
 * topic of many partitions gets long ids. Every id the gateway writes must resume (an id it
 * wrote but refused on the way back lost the events in between: `reset`, or a 400 for
 * `?lastEventId=` on which EventSource gives up), and a stream whose ids could not hold its
 * positions is refused when it opens.
 */

const PARTITIONS = 1000;

/** Room names (under one unique prefix) whose partitions, among PARTITIONS, number exactly `distinct`. */
function roomsOnPartitions(distinct: number, partitions = PARTITIONS): string[] {
  const prefix = uniqueName('w');
  const seen = new Set<number>();
  const rooms: string[] = [];
  for (let i = 0; seen.size < distinct; i++) {
    const room = `${prefix}-${i}`;
    const partition = partitionForKey(room, partitions);
    if (seen.has(partition)) continue;
    seen.add(partition);
    rooms.push(room);
  }
  return rooms;
}

const wide = { topicPartitions: PARTITIONS, maxChannelsPerStream: 1000, maxHeaderBytes: 65536 };
const streamUrl = (base: string, rooms: string[]): string => `${base}/events?${rooms.map((room) => `room=${room}`).join('&')}`;

t.test('a stream following 400 partitions (ids past the old limits: 4,096 characters, 256 entries) resumes with nothing lost', async (t) => {
  const gateway = await startGateway(t, wide);
  const rooms = roomsOnPartitions(400);
  const first = await openStream(t, streamUrl(gateway.url, rooms));
  t.equal(first.status, 200);
  await until(() => first.lastEventId() !== '', 5000, 'the position id');
  const id = first.lastEventId();
  t.ok(id.length > 4096, `the id is long (${id.length} characters)`);
  first.close();
  await post(gateway, rooms[123]!, ['missed while away']);

  const byHeader = await openStream(t, streamUrl(gateway.url, rooms), { 'last-event-id': id });
  t.same(await messages(byHeader, 1), ['missed while away'], 'Last-Event-ID: the missed event');
  t.notOk(byHeader.events.some((event) => event.event === 'reset'), 'no reset');
  byHeader.close();

  const byQuery = await openStream(t, `${streamUrl(gateway.url, rooms)}&lastEventId=${id}`);
  t.equal(byQuery.status, 200, '?lastEventId= of that length is accepted');
  t.same(await messages(byQuery, 1), ['missed while away'], '?lastEventId=: the missed event');
  t.notOk(byQuery.events.some((event) => event.event === 'reset'), 'no reset');

  // The id of an event on such a stream resumes too (after it, nothing missed, nothing twice).
  await post(gateway, rooms[7]!, ['second']);
  t.same(await messages(byQuery, 2), ['missed while away', 'second']);
  const eventId = byQuery.lastEventId();
  byQuery.close();
  await post(gateway, rooms[399]!, ['third']);
  const again = await openStream(t, streamUrl(gateway.url, rooms), { 'last-event-id': eventId });
  t.same(await messages(again, 1), ['third']);
  t.notOk(again.events.some((event) => event.event === 'reset'), 'no reset');
});

t.test(`a stream of exactly ${MAX_CURSOR_ENTRIES} partitions opens; one more is refused with a 400 that says why`, async (t) => {
  const gateway = await startGateway(t, wide);
  const rooms = roomsOnPartitions(MAX_CURSOR_ENTRIES + 1);
  const atLimit = await openStream(t, streamUrl(gateway.url, rooms.slice(0, MAX_CURSOR_ENTRIES)));
  t.equal(atLimit.status, 200);
  await until(() => atLimit.lastEventId() !== '', 5000, 'the position id');
  atLimit.close();

  const over = await fetch(streamUrl(gateway.url, rooms), { headers: { accept: 'text/event-stream' } });
  t.equal(over.status, 400);
  t.match(over.headers.get('content-type'), /application\/json/);
  const body = (await over.json()) as { message: string };
  t.match(body.message, new RegExp(`follow ${MAX_CURSOR_ENTRIES + 1} Kafka partitions.*at most ${MAX_CURSOR_ENTRIES}`));
  t.equal(gateway.app.openStreamCount(), 0, 'nothing left open');
});

t.test('resuming on a replica that has not learnt a channel\'s partition yet: the id says which, and the stream is not refused', async (t) => {
  // A declared kind with `partitioning: any` is followed on every partition until its
  // channel's first record; the id of a replica that had seen one holds just that partition.
  const orders: ChannelKindDeclaration = { name: 'orders', topic: 'orders', publish: ['created'], eventTypes: { created: { schema: { type: 'object' } } } };
  const config = { topicPartitions: 400, maxChannelsPerStream: 1000, maxHeaderBytes: 65536, channelKinds: [orders], cursorSecret: 'wide-ids-test-secret-0123456789' };
  const channel = uniqueName('c');
  const rooms = roomsOnPartitions(300, 400);
  const url = (base: string) => `${base}/events?orders=${channel}&${rooms.map((room) => `room=${room}`).join('&')}`;
  const first = await startGateway(t, config);
  t.equal((await postJson(`${first.url}/streams/orders/${channel}/created`, { n: 1 })).status, 202);
  const stream = await openStream(t, url(first.url));
  t.equal(stream.status, 200, 'this replica knows the channel\'s partition: ~301 positions');
  await until(() => stream.lastEventId() !== '', 5000, 'the position id');
  const id = stream.lastEventId();
  stream.close();

  // A replica started later, which has seen nothing of the channel: 400 + ~300 positions by
  // its own count, ~301 by the id's.
  const later = await startGateway(t, config);
  const fresh = await fetch(url(later.url), { headers: { accept: 'text/event-stream' } });
  t.equal(fresh.status, 400, 'opened there without an id, the stream would follow too many partitions');
  const resumed = await openStream(t, url(later.url), { 'last-event-id': id });
  t.equal(resumed.status, 200, 'resumed with the id: not refused (EventSource would give up for good)');
  await until(() => resumed.lastEventId() !== '' && resumed.lastEventId() !== id, 5000, 'a position from the new replica');
});
