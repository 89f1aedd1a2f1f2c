import http from 'node:http';
import t from 'tap';
import type { Message } from 'kafkajs';
import type { KafkaBus } from '../src/bus/kafka.ts';
import { partitionForKey } from '../src/bus/partitioner.ts';
import { SseParser, type SseMessage } from '../src/client/sse-parser.ts';
import { chatMessageRecord } from '../src/channels/contract.ts';
import { kafkaTopics, postJson, requiredKafkaBrokers, startGateway, uniqueName } from './helpers/gateway.ts';
import { rawProducer } from './helpers/kafka.ts';
import { messageTexts, openStream, until } from './helpers/sse-client.ts';

/**
 * Deep resume on a real broker: a gap far larger than the in-memory history and than one Kafka
 * fetch is replayed on the same connection, page after page, while a
 * short resume on the same partition goes through meanwhile.
 */

const brokers = requiredKafkaBrokers();
const PARTITIONS = 6;
const DEEP = 20_000;
const NOISE = 20_000;
// About 10 MB for the deep room alone: more than a paused client's socket buffers can swallow.
const TEXT = 'x'.repeat(400);

/** An event stream whose reading can be paused, as a client busy elsewhere. */
function openPausable(url: string, headers: Record<string, string>) {
  const parser = new SseParser();
  const events: SseMessage[] = [];
  let ended = false;
  return new Promise<{ events: SseMessage[]; pause(): void; resume(): void; ended(): boolean; close(): void }>((resolve, reject) => {
    const request = http.get(url, { headers: { accept: 'text/event-stream', ...headers } }, (response) => {
      response.pause();
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => events.push(...parser.feed(chunk)));
      response.on('close', () => {
        ended = true;
      });
      resolve({
        events,
        pause: () => response.pause(),
        resume: () => response.resume(),
        ended: () => ended,
        close: () => request.destroy(),
      });
    });
    request.on('error', reject);
  });
}

/** A room name whose records land on `partition`. */
function roomOn(partition: number, prefix: string): string {
  for (;;) {
    const name = uniqueName(prefix);
    if (partitionForKey(name, PARTITIONS) === partition) return name;
  }
}

t.test('Kafka: a gap of 20,000 events (plus 20,000 of other rooms on the partition) is replayed on one connection; a short resume on the partition is not held up', async (t) => {
  const topics = kafkaTopics();
  // A small history, so the short resume below is read from Kafka too.
  const gateway = await startGateway(t, { kafkaBrokers: brokers, ...topics, topicPartitions: PARTITIONS, historyMaxEventsPerChannel: 5 });
  const deepRoom = uniqueName('deep');
  const partition = partitionForKey(deepRoom, PARTITIONS);
  const noiseRooms = [roomOn(partition, 'noise'), roomOn(partition, 'noise')];
  const shortRoom = roomOn(partition, 'short');

  const deepFirst = await openStream(t, `${gateway.url}/events/${deepRoom}`);
  await until(() => deepFirst.lastEventId() !== '', 5000, 'the deep client’s id');
  deepFirst.close();

  const producer = await rawProducer(t);
  const message = (room: string, text: string): Message => {
    const { record } = chatMessageRecord({ chat: topics.chatTopic, ticker: topics.tickerTopic }, room, { user: 'seq', text });
    return { key: record.key, value: record.value, headers: record.headers };
  };
  // Large sends keep this quick; the deep room and the others interleave on the partition.
  for (let sent = 0; sent < DEEP; sent += 500) {
    const batch: Message[] = [];
    for (let index = sent; index < sent + 500; index++) {
      batch.push(message(deepRoom, `d${index} ${TEXT}`), message(noiseRooms[index % 2]!, `n${index}`));
    }
    await producer.send(topics.chatTopic, batch);
  }
  const shortFirst = await openStream(t, `${gateway.url}/events/${shortRoom}`);
  await until(() => shortFirst.lastEventId() !== '', 5000, 'the short client’s id');
  shortFirst.close();
  await producer.send(
    topics.chatTopic,
    Array.from({ length: 10 }, (_, index) => message(shortRoom, `s${index}`)),
  );
  await until(() => gateway.app.dispatcher.stats.recordsConsumed >= DEEP + NOISE + 10, 60000, 'the replica read every record');
  await until(() => gateway.app.openStreamCount() === 0, 5000, 'the first streams closed');

  // The deep client comes back but is slow to read: its replay is under way, paced by its socket.
  const deep = await openPausable(`${gateway.url}/events/${deepRoom}`, { 'last-event-id': deepFirst.lastEventId() });
  t.teardown(() => deep.close());
  const short = await openStream(t, `${gateway.url}/events/${shortRoom}`, { 'last-event-id': shortFirst.lastEventId() });
  await until(() => messageTexts(short.events).length >= 10, 30000, 'the short resume');
  t.same(messageTexts(short.events), Array.from({ length: 10 }, (_, index) => `s${index}`), 'the short resume got its 10 events');
  t.equal(gateway.app.openStreamCount(), 2, 'while the deep replay is still open');
  t.ok(messageTexts(deep.events).length < DEEP, 'and not finished');

  deep.resume();
  const resumedAt = Date.now();
  // A generous bound: on a shared 2-core machine running other test files the replay can take
  // most of a minute (its speed is measured by bench/, not asserted here).
  await until(() => messageTexts(deep.events).length >= DEEP, 120000, () => `the deep replay (got ${messageTexts(deep.events).length} of ${DEEP})`);
  t.comment(`deep replay: ${DEEP} events in ${Date.now() - resumedAt} ms once the client read`);
  const texts = messageTexts(deep.events).map((text) => text.split(' ')[0]);
  t.equal(texts.length, DEEP, 'no duplicate');
  t.same(texts, Array.from({ length: DEEP }, (_, index) => `d${index}`), 'every event, in order');
  t.notOk(deep.events.some((event) => event.event === 'reset'), 'no reset');
  t.equal(gateway.app.streamStats.opened, 4, 'on one connection: no reconnect');

  t.equal((await postJson(`${gateway.url}/rooms/${deepRoom}/messages`, { user: 'seq', text: 'live' })).status, 202);
  await until(() => messageTexts(deep.events).at(-1) === 'live', 10000, 'the live event after the replay');
  t.equal(messageTexts(deep.events).length, DEEP + 1);
});

t.test('Kafka: clients resuming from the same place on one partition are served by shared reads of Kafka, and deep resumes on every partition at once all complete', async (t) => {
  const topics = kafkaTopics();
  const gateway = await startGateway(t, { kafkaBrokers: brokers, ...topics, topicPartitions: PARTITIONS, historyMaxEventsPerChannel: 5 });
  const GAP = 1500;
  const shared = 0;
  // Three rooms on one partition (resuming from the same place), and one room on each other partition.
  const sameRooms = [roomOn(shared, 'same'), roomOn(shared, 'same'), roomOn(shared, 'same')];
  const otherRooms = Array.from({ length: PARTITIONS - 1 }, (_, index) => roomOn(index + 1, 'other'));
  const rooms = [...sameRooms, ...otherRooms];
  const ids = new Map<string, string>();
  for (const room of rooms) {
    const first = await openStream(t, `${gateway.url}/events/${room}`);
    await until(() => first.lastEventId() !== '', 5000, `the id of ${room}`);
    ids.set(room, first.lastEventId());
    first.close();
  }
  const producer = await rawProducer(t);
  const message = (room: string, text: string): Message => {
    const { record } = chatMessageRecord({ chat: topics.chatTopic, ticker: topics.tickerTopic }, room, { user: 'seq', text });
    return { key: record.key, value: record.value, headers: record.headers };
  };
  for (let sent = 0; sent < GAP; sent += 100) {
    const batch: Message[] = [];
    for (let index = sent; index < sent + 100; index++) for (const room of rooms) batch.push(message(room, `g${index}`));
    await producer.send(topics.chatTopic, batch);
  }
  await until(() => gateway.app.dispatcher.stats.recordsConsumed >= GAP * rooms.length, 60000, 'the replica read every record');
  await until(() => gateway.app.openStreamCount() === 0, 5000, 'the first streams closed');

  const reader = (gateway.app.bus as KafkaBus).rangeReader;
  const recordsBefore = reader.stats.records;
  const streams = await Promise.all(rooms.map((room) => openStream(t, `${gateway.url}/events/${room}`, { 'last-event-id': ids.get(room)! })));
  t.teardown(() => streams.forEach((stream) => stream.close()));
  await until(() => streams.every((stream) => messageTexts(stream.events).length >= GAP), 60000, 'every replay');
  const expected = Array.from({ length: GAP }, (_, index) => `g${index}`);
  streams.forEach((stream, index) => {
    t.same(messageTexts(stream.events), expected, `${rooms[index]}: every event once, in order`);
    t.notOk(stream.events.some((event) => event.event === 'reset'), 'no reset');
  });
  t.equal(gateway.app.streamStats.opened, rooms.length * 2, 'no reconnect');
  // Apart, the three reads of the shared partition would fetch its 4,500 records three times.
  const sharedPartitionRecords = GAP * sameRooms.length;
  const fetched = reader.stats.records - recordsBefore;
  const otherPartitionRecords = GAP * otherRooms.length;
  t.comment(`records fetched for the replays: ${fetched} (the partitions hold ${sharedPartitionRecords + otherPartitionRecords})`);
  t.ok(fetched - otherPartitionRecords < 2 * sharedPartitionRecords, `the shared partition fetched less than twice (${fetched - otherPartitionRecords} records of ${sharedPartitionRecords})`);
});

t.test('Kafka: a well-signed id past the end of the partition gets `reset` (beyond-end), then live events', async (t) => {
  const topics = kafkaTopics();
  const gateway = await startGateway(t, { kafkaBrokers: brokers, ...topics });
  const room = uniqueName('room');
  const partition = partitionForKey(room, gateway.app.dispatcher.partitionCount(0));
  const absurd = gateway.app.cursorCodec.encode([{ slot: 0, partition, next: 1_000_000_000 }]);
  const stream = await openStream(t, `${gateway.url}/events/${room}`, { 'last-event-id': absurd });
  const [reset] = await stream.waitForEvents(1, 20000);
  t.equal(reset?.event, 'reset');
  t.same(JSON.parse(reset!.data), { reason: 'beyond-end' });
  t.equal((await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'u', text: 'live' })).status, 202);
  await until(() => messageTexts(stream.events).includes('live'), 20000, 'the live event');
  // The stream's own id is back to a real position: a reconnect with it resumes normally.
  const after = await openStream(t, `${gateway.url}/events/${room}`, { 'last-event-id': stream.lastEventId() });
  t.equal((await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'u', text: 'next' })).status, 202);
  await until(() => messageTexts(after.events).includes('next'), 20000, 'the next event');
  t.same(messageTexts(after.events), ['next'], 'resumed right after the live event, no reset');
});
