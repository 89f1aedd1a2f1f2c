import t from 'tap';
import { testsAtATime } from './helpers/one-process.ts';
import { kafkaTopics, postJson, requiredKafkaBrokers, startGateway, uniqueName } from './helpers/gateway.ts';
import type { Teardowns } from './helpers/fixture.ts';
import { kafkaAdmin, rawProducer } from './helpers/kafka.ts';
import { chatMessages, openStream, until } from './helpers/sse-client.ts';

const brokers = requiredKafkaBrokers();
const kafkaGateway = (t: Teardowns, topics = kafkaTopics()) => startGateway(t, { kafkaBrokers: brokers, ...topics });

testsAtATime(3);

t.test('a record an upstream service produces reaches an SSE client, in order, with event and id', async (t) => {
  const topics = kafkaTopics();
  const gateway = await kafkaGateway(t, topics);
  const room = uniqueName('room');
  const stream = await openStream(t, `${gateway.url}/events/${room}`);
  const producer = await rawProducer(t);
  const sent = [];
  for (let i = 0; i < 5; i++) {
    const [metadata] = await producer.send(topics.chatTopic, [
      { key: room, value: JSON.stringify({ id: `m${i}`, user: 'svc', text: `n${i}` }), headers: { 'event-type': 'message' } },
    ]);
    sent.push(metadata!);
  }
  const events = await stream.waitForEvents(5);
  t.same(events.map((event) => JSON.parse(event.data).text), ['n0', 'n1', 'n2', 'n3', 'n4']);
  t.same(events.map((event) => event.event), Array(5).fill('message'));
  t.same(
    events.map((event) => event.id),
    sent.map((metadata) => gateway.app.eventIdFor({ topic: topics.chatTopic, partition: metadata.partition, offset: metadata.baseOffset! })),
    'each id is the signed Kafka position after the event',
  );
});

t.test('POST → Kafka → SSE round trip, and many concurrent posts arrive exactly once', async (t) => {
  // What is tested is exactly once and each answer's id, not how fast a loaded broker acknowledges
  // (the bench measures that): a publish waits up to a minute here instead of PUBLISH_TIMEOUT_MS's 5 s.
  const gateway = await startGateway(t, { kafkaBrokers: brokers, ...kafkaTopics(), publishTimeoutMs: 60000, shutdownTimeoutMs: 90000 });
  // Eight rooms over the topic's partitions: concurrent posts go to Kafka together (PublishQueue),
  // and each 202 must still name its own event's position.
  const rooms = Array.from({ length: 8 }, () => uniqueName('room'));
  const streams = await Promise.all(rooms.map((room) => openStream(t, `${gateway.url}/events/${room}`)));
  const posts = await Promise.all(
    Array.from({ length: 40 }, (_, i) => postJson(`${gateway.url}/rooms/${rooms[i % 8]}/messages`, { user: 'ann', text: `p${i}` })),
  );
  t.same(posts.map((post) => post.status), Array(40).fill(202), `every post accepted (refusals: ${JSON.stringify(posts.filter((post) => post.status !== 202).map((post) => post.body))})`);
  const idOf = new Map<string, string | undefined>();
  for (const [index, stream] of streams.entries()) {
    // Its messages (a presence snapshot may come first on Kafka).
    await until(() => chatMessages(stream.events).length >= 5, 20000, `room ${index}: 5 messages`);
    const events = chatMessages(stream.events);
    const texts = events.map((event) => JSON.parse(event.data).text as string);
    t.same([...texts].sort(), Array.from({ length: 5 }, (_, k) => `p${index + 8 * k}`).sort(), `room ${index}: its 5, none twice`);
    const offsets = events.map((event) => gateway.app.cursorCodec.decode(event.id ?? '')?.[0]?.next ?? -1);
    t.same(offsets, [...offsets].sort((a, b) => a - b), `room ${index}: delivered in offset order`);
    for (const event of events) idOf.set(JSON.parse(event.data).text, event.id);
  }
  t.same(posts.map((post) => post.body.eventId), Array.from({ length: 40 }, (_, i) => idOf.get(`p${i}`)), "each 202 names its own event's id");
});

t.test('two gateway instances on one Kafka: a client on A receives a message posted to B', async (t) => {
  const topics = kafkaTopics();
  const a = await kafkaGateway(t, topics);
  const b = await kafkaGateway(t, topics);
  t.not(a.config.instanceId, b.config.instanceId);
  const room = uniqueName('room');
  const onA = await openStream(t, `${a.url}/events/${room}`);
  const onB = await openStream(t, `${b.url}/events/${room}`);
  const rooms = Array.from({ length: 12 }, (_, i) => `${room}-${i}`);
  // Rooms spread over all partitions: every replica must see every partition.
  const spread = await Promise.all(rooms.map((name) => openStream(t, `${a.url}/events/${name}`)));
  const posted = await postJson(`${b.url}/rooms/${room}/messages`, { user: 'bob', text: 'from B' });
  t.equal(posted.status, 202);
  for (const name of rooms) t.equal((await postJson(`${b.url}/rooms/${name}/messages`, { user: 'bob', text: name })).status, 202);
  const [onAEvent] = await onA.waitForEvents(1);
  t.match(JSON.parse(onAEvent!.data), { text: 'from B' });
  t.equal(onAEvent!.id, posted.body.eventId);
  const [onBEvent] = await onB.waitForEvents(1);
  t.equal(onBEvent!.id, posted.body.eventId, 'the same id on both replicas');
  for (const [index, stream] of spread.entries()) {
    const [event] = await stream.waitForEvents(1);
    t.equal(JSON.parse(event!.data).text, rooms[index]);
  }
});

t.test('a poison record is skipped and counted; the next good record still arrives', async (t) => {
  const topics = kafkaTopics();
  const gateway = await kafkaGateway(t, topics);
  const room = uniqueName('room');
  const stream = await openStream(t, `${gateway.url}/events/${room}`);
  const producer = await rawProducer(t);
  await producer.send(topics.chatTopic, [
    { key: room, value: 'this is not JSON', headers: { 'event-type': 'message' } },
    { key: room, value: JSON.stringify({ id: 'x', user: 'svc' }), headers: { 'event-type': 'message' } },
    { key: room, value: JSON.stringify({ id: 'good', user: 'svc', text: 'still here' }), headers: { 'event-type': 'message' } },
  ]);
  const [event] = await stream.waitForEvents(1);
  t.match(JSON.parse(event!.data), { id: 'good', text: 'still here' });
  await until(() => gateway.app.dispatcher.stats.recordsSkipped === 2, 5000, 'two skipped records counted');
  t.equal(stream.events.length, 1);
});

t.test('ticker prices flow through Kafka; topics were created with the configured partitions', async (t) => {
  const topics = kafkaTopics();
  const gateway = await startGateway(t, { kafkaBrokers: brokers, ...topics, topicPartitions: 3 });
  const stream = await openStream(t, `${gateway.url}/tickers/DOGE/events`);
  t.equal((await postJson(`${gateway.url}/tickers/DOGE/prices`, { price: 0.42, currency: 'USD' })).status, 202);
  const [update] = await stream.waitForEvents(1);
  t.equal(update!.event, 'price_update');
  t.match(JSON.parse(update!.data), { ticker: 'DOGE', price: 0.42 });
  const admin = await kafkaAdmin(t);
  const metadata = await admin.fetchTopicMetadata({ topics: [topics.chatTopic, topics.tickerTopic] });
  t.same(metadata.topics.map((topic) => topic.partitions.length), [3, 3]);
});

// This file's tests are all queued: end the file when they have. Twice in ten full runs on a
// loaded machine its process then stayed alive on two sockets with kafkajs's listeners (a
// client whose disconnect outlasted the bus's bounded close) until tap's timeout, although
// every test had passed. Name what is left open, and exit: the results are already reported.
t.teardown(() => {
  setTimeout(() => {
    process.stderr.write(`bus-kafka: still open after the last test: ${process.getActiveResourcesInfo().join(', ')}; exiting\n`);
    process.exit();
  }, 10_000).unref();
});
t.end();
