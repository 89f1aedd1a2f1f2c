import t from 'tap';
import { testsAtATime } from './helpers/one-process.ts';
import { kafkaTopics, requiredKafkaBrokers, startGateway, startReplicaPair, uniqueName } from './helpers/gateway.ts';
import { messageTexts, openStream, until } from './helpers/sse-client.ts';
import { messages, post, range } from './helpers/rooms.ts';


// Resume across replicas and from Kafka (test/embedded/resume.embedded.ts: the same on the embedded bus).

const brokers = requiredKafkaBrokers();

testsAtATime(3);

t.test('Kafka: cut off on replica A, resumed on replica B: exactly the missed events, then live', async (t) => {
  const [a, b] = await startReplicaPair(t);
  const room = uniqueName('room');
  const onA = await openStream(t, `${a.url}/events/${room}`);
  await post(a, room, range('s', 0, 5));
  await messages(onA, 5);
  onA.close();
  await post(a, room, range('s', 5, 25));
  const onB = await openStream(t, `${b.url}/events/${room}`, { 'last-event-id': onA.lastEventId() });
  t.same(await messages(onB, 20), range('s', 5, 25), 'the 20 missed events, in order, none repeated');
  await post(b, room, ['live']);
  t.same((await messages(onB, 21)).slice(20), ['live']);
});

t.test('Kafka: resume while events keep being published: no gap, no duplicate across the hand-over', async (t) => {
  const [a, b] = await startReplicaPair(t);
  const room = uniqueName('room');
  const total = 120;
  let published = 0;
  const publishing = (async () => {
    for (; published < total; published++) await post(published % 2 === 0 ? a : b, room, [`n${published}`]);
  })();
  const onA = await openStream(t, `${a.url}/events/${room}`);
  await until(() => messageTexts(onA.events).length >= 10, 20000, 'some events on A');
  onA.close();
  const seenOnA = messageTexts(onA.events);
  const onB = await openStream(t, `${b.url}/events/${room}`, { 'last-event-id': onA.lastEventId() });
  await publishing;
  const expected = range('n', 0, total).slice(range('n', 0, total).indexOf(seenOnA[0]!));
  await until(() => seenOnA.length + messageTexts(onB.events).length >= expected.length, 30000, 'all events');
  t.same([...seenOnA, ...messageTexts(onB.events)], expected, 'every event once, in order, across the two replicas');
});

t.test('Kafka: a position older than the in-memory history is served from Kafka', async (t) => {
  const topics = kafkaTopics();
  const a = await startGateway(t, { kafkaBrokers: brokers, ...topics });
  const b = await startGateway(t, { kafkaBrokers: brokers, ...topics, historyMaxEventsPerChannel: 4 });
  const room = uniqueName('room');
  const noise = uniqueName('noise');
  const onA = await openStream(t, `${a.url}/events/${room}`);
  await post(a, room, ['first']);
  await messages(onA, 1);
  onA.close();
  await post(a, room, range('k', 0, 15));
  await post(a, noise, range('x', 0, 5));
  await post(a, room, range('k', 15, 20));
  await until(() => b.app.history.totalEvents >= 8, 10000, 'B consumed the events');
  const onB = await openStream(t, `${b.url}/events/${room}`, { 'last-event-id': onA.lastEventId() });
  t.same(await messages(onB, 20), range('k', 0, 20));
  t.equal(b.app.streamStats.resumesFromKafka, 1);
  t.notOk(onB.events.some((event) => event.event === 'reset'));
});

t.test('Kafka: a replay larger than RESUME_MAX_EVENTS is read in pages, all on the same connection, then live', async (t) => {
  const topics = kafkaTopics();
  const gateway = await startGateway(t, { kafkaBrokers: brokers, ...topics, historyMaxEventsPerChannel: 2, resumeMaxEvents: 7 });
  const room = uniqueName('room');
  const first = await openStream(t, `${gateway.url}/events/${room}`);
  await until(() => first.lastEventId() !== '', 5000, 'initial id');
  first.close();
  await post(gateway, room, range('p', 0, 16));
  // A 202 means Kafka has the records, not that this replica read them yet: resumed earlier, the
  // stream would get them live rather than replayed.
  await until(() => gateway.app.dispatcher.stats.recordsConsumed === 16, 10000, 'the replica read the 16 records');
  const stream = await openStream(t, `${gateway.url}/events/${room}`, { 'last-event-id': first.lastEventId() });
  t.same(await messages(stream, 16), range('p', 0, 16), 'pages of 7, 7 and 2 on one connection, nothing lost or repeated');
  await post(gateway, room, ['live']);
  t.same((await messages(stream, 17)).slice(16), ['live']);
  t.equal(gateway.app.streamStats.opened, 2, 'no reconnect needed');
});

t.test('Kafka: a freshly started replica warms its history and resumes a client published to before it started', async (t) => {
  const topics = kafkaTopics();
  const a = await startGateway(t, { kafkaBrokers: brokers, ...topics });
  const room = uniqueName('room');
  const onA = await openStream(t, `${a.url}/events/${room}`);
  await post(a, room, ['w0']);
  await messages(onA, 1);
  onA.close();
  await post(a, room, range('w', 1, 9));
  const fresh = await startGateway(t, { kafkaBrokers: brokers, ...topics });
  const resumed = await openStream(t, `${fresh.url}/events/${room}`, { 'last-event-id': onA.lastEventId() });
  t.same(await messages(resumed, 8), range('w', 1, 9));
  t.equal(fresh.app.streamStats.resumesFromMemory, 1, 'served from the warmed history');
});

t.test('Kafka: a multi-room stream resumes all its rooms on another replica', async (t) => {
  const [a, b] = await startReplicaPair(t);
  const rooms = [uniqueName('r'), uniqueName('r'), uniqueName('r')];
  const query = rooms.map((room) => `room=${room}`).join('&');
  const onA = await openStream(t, `${a.url}/events?${query}`);
  for (const room of rooms) await post(a, room, [`${room}-0`]);
  await messages(onA, 3);
  onA.close();
  for (const room of rooms) await post(b, room, [`${room}-1`, `${room}-2`]);
  const onB = await openStream(t, `${b.url}/events?${query}`, { 'last-event-id': onA.lastEventId() });
  await messages(onB, 6);
  t.same(messageTexts(onB.events).sort(), rooms.flatMap((room) => [`${room}-1`, `${room}-2`]).sort());
  for (const room of rooms) {
    const own = messageTexts(onB.events).filter((text) => text.startsWith(room));
    t.same(own, [`${room}-1`, `${room}-2`], 'in order within a room');
  }
});

t.test('Kafka: since= reaches back into Kafka when memory does not cover it', async (t) => {
  const topics = kafkaTopics();
  const a = await startGateway(t, { kafkaBrokers: brokers, ...topics });
  const room = uniqueName('room');
  const watcher = await openStream(t, `${a.url}/events/${room}`);
  await post(a, room, ['before']);
  await messages(watcher, 1);
  await until(() => Date.now() > JSON.parse(watcher.events[0]!.data).ts, 1000, 'the clock to move on');
  const since = Date.now();
  await post(a, room, ['after1', 'after2']);
  await messages(watcher, 3);
  // A replica whose history window does not reach back to `since`.
  await until(() => Date.now() - since > 1500, 5000, 'since to fall outside a one-second window');
  const b = await startGateway(t, { kafkaBrokers: brokers, ...topics, historyMaxAgeMs: 1000 });
  const stream = await openStream(t, `${b.url}/events/${room}?since=${since}`);
  t.same(await messages(stream, 2), ['after1', 'after2']);
});
