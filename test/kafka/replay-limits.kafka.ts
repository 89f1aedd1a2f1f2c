import http from 'node:http';
import t from 'tap';
import type { Message } from 'kafkajs';
import type { KafkaBus } from '../../src/bus/kafka.ts';
import { partitionForKey } from '../../src/bus/partitioner.ts';
import type { Config } from '../../src/config.ts';
import { SseParser, type SseMessage } from '../../src/client/sse-parser.ts';
import { chatMessageRecord } from '../../src/channels/contract.ts';
import { kafkaTopics, requiredKafkaBrokers, startGateway, uniqueName } from '../helpers/gateway.ts';
import { rawProducer } from '../helpers/kafka.ts';
import type { Teardowns } from '../helpers/fixture.ts';
import { messageTexts, openStream, until } from '../helpers/sse-client.ts';

/**
 * The replica's limit on deep replays (REPLAY_MAX_CONCURRENT) on a real broker: replays past
 * their first page wait for a slot, oldest first, and each still delivers every event exactly
 * once, in order, on its one connection; a client that stops reading does not hold the others up.
 */

const brokers = requiredKafkaBrokers();
const PARTITIONS = 6;

/** A room name whose records land on `partition`. */
function roomOn(partition: number, prefix: string): string {
  for (;;) {
    const name = uniqueName(prefix);
    if (partitionForKey(name, PARTITIONS) === partition) return name;
  }
}

/** An event stream whose reading can be paused, as a client busy elsewhere. */
function openPausable(url: string, headers: Record<string, string>) {
  const parser = new SseParser();
  const events: SseMessage[] = [];
  return new Promise<{ events: SseMessage[]; resume(): void; close(): void }>((resolve, reject) => {
    const request = http.get(url, { headers: { accept: 'text/event-stream', ...headers } }, (response) => {
      response.pause();
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => events.push(...parser.feed(chunk)));
      resolve({ events, resume: () => response.resume(), close: () => request.destroy() });
    });
    request.on('error', reject);
  });
}

async function gapSetup(t: Teardowns, rooms: string[], gap: number, text: (index: number) => string, overrides: Partial<Config>) {
  const topics = kafkaTopics();
  const gateway = await startGateway(t, { kafkaBrokers: brokers, ...topics, topicPartitions: PARTITIONS, historyMaxEventsPerChannel: 5, ...overrides });
  const ids = new Map<string, string>();
  for (const room of rooms) {
    const first = await openStream(t, `${gateway.url}/events/${room}`);
    await until(() => first.lastEventId() !== '', 5000, `the id of ${room}`);
    ids.set(room, first.lastEventId());
    first.close();
  }
  const producer = await rawProducer(t);
  const message = (room: string, value: string): Message => {
    const { record } = chatMessageRecord({ chat: topics.chatTopic, ticker: topics.tickerTopic }, room, { user: 'seq', text: value });
    return { key: record.key, value: record.value, headers: record.headers };
  };
  for (let sent = 0; sent < gap; sent += 100) {
    const batch: Message[] = [];
    for (let index = sent; index < Math.min(gap, sent + 100); index++) for (const room of rooms) batch.push(message(room, text(index)));
    await producer.send(topics.chatTopic, batch);
  }
  await until(() => gateway.app.dispatcher.stats.recordsConsumed >= gap * rooms.length, 60000, 'the replica read every record');
  await until(() => gateway.app.openStreamCount() === 0, 5000, 'the first streams closed');
  return { gateway, ids };
}

t.test('Kafka, REPLAY_MAX_CONCURRENT=1: deep replays of three partitions take turns past their first page, and each delivers every event exactly once, in order, on one connection', async (t) => {
  const GAP = 1000;
  const PAGE = 100;
  // Three rooms on three partitions: without the limit their replays go side by side.
  const rooms = [roomOn(0, 'cap'), roomOn(1, 'cap'), roomOn(2, 'cap')];
  const { gateway, ids } = await gapSetup(t, rooms, GAP, (index) => `g${index}`, { resumeMaxEvents: PAGE, replayMaxConcurrent: 1 });

  const streams = await Promise.all(rooms.map((room) => openStream(t, `${gateway.url}/events/${room}`, { 'last-event-id': ids.get(room)! })));
  t.teardown(() => streams.forEach((stream) => stream.close()));
  // Which replay waits for which is timing here (the order is proven exactly, over a logging
  // fake Kafka, in test/unit/replay-slots.unit.ts); what must hold whatever the timing: each
  // stream, waiting or not, gets every event once, in order, on its one connection.
  const counts = () => streams.map((stream) => messageTexts(stream.events).length);
  await until(() => counts().every((count) => count >= GAP), 60000, () => `every replay (got ${counts().join(', ')} of ${GAP})`);
  const expected = Array.from({ length: GAP }, (_, index) => `g${index}`);
  streams.forEach((stream, index) => {
    t.same(messageTexts(stream.events), expected, `${rooms[index]}: every event once, in order`);
    t.notOk(stream.events.some((event) => event.event === 'reset'), 'no reset');
  });
  t.equal(gateway.app.streamStats.opened, rooms.length * 2, 'no reconnect: the waiting streams stayed open');
});

t.test('Kafka, REPLAY_MAX_CONCURRENT=1: a client that stops reading mid-replay gives its place up; the other replay completes, then the stalled one when its client reads again', async (t) => {
  // The stalled client's gap (~9.5 MB; texts at the contract's 2,000-character limit) is more
  // than its socket buffers can swallow.
  const GAP = 5000;
  const TEXT = 'x'.repeat(1900);
  const rooms = [roomOn(3, 'stall'), roomOn(4, 'stall')];
  const { gateway, ids } = await gapSetup(t, rooms, GAP, (index) => `g${index} ${TEXT}`, { resumeMaxEvents: 200, replayMaxConcurrent: 1 });

  const stalled = await openPausable(`${gateway.url}/events/${rooms[0]}`, { 'last-event-id': ids.get(rooms[0]!)! });
  t.teardown(() => stalled.close());
  // Let the stalled replay get past its first page (200 events, ~0.4 MB: it then holds the slot)
  // and fill the sockets before the other one comes.
  const waitStart = Date.now();
  await until(() => gateway.app.streamStats.bytesWritten > 700_000, 120000, () => `the stalled replay under way (${gateway.app.streamStats.bytesWritten} bytes written; ${JSON.stringify((gateway.app.bus as KafkaBus).rangeReader.stats)} read)`);
  t.comment(`stalled replay under way after ${Date.now() - waitStart} ms: ${JSON.stringify((gateway.app.bus as KafkaBus).rangeReader.stats)}`);
  const other = await openStream(t, `${gateway.url}/events/${rooms[1]}`, { 'last-event-id': ids.get(rooms[1]!)! });
  await until(() => messageTexts(other.events).length >= GAP, 60000, () => `the other replay (got ${messageTexts(other.events).length} of ${GAP})`);
  const expected = Array.from({ length: GAP }, (_, index) => `g${index}`);
  t.same(messageTexts(other.events).map((text) => text.split(' ')[0]), expected, 'the other replay: every event once, in order, while the first client still read nothing');
  t.equal(stalled.events.length, 0, 'the stalled client had read nothing');

  stalled.resume();
  await until(() => messageTexts(stalled.events).length >= GAP, 60000, () => `the stalled replay (got ${messageTexts(stalled.events).length} of ${GAP})`);
  t.same(messageTexts(stalled.events).map((text) => text.split(' ')[0]), expected, 'the stalled replay: every event once, in order');
  t.equal(gateway.app.streamStats.opened, rooms.length * 2, 'no reconnect');
});
