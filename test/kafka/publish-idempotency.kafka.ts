import t from 'tap';
import { kafkaTopics, postJson, requiredKafkaBrokers, startGateway, uniqueName, type TestGateway } from '../helpers/gateway.ts';
import { rawProducer } from '../helpers/kafka.ts';
import { openStream, until, type TestStream } from '../helpers/sse-client.ts';

const brokers = requiredKafkaBrokers();

/** The message ids of the stream's chat messages, in order. */
const ids = (stream: TestStream) => stream.events.filter((event) => event.event === 'message').map((event) => JSON.parse(event.data).id as string);

/** Waits for the marker message, then returns every message id received up to it. */
async function idsUpTo(stream: TestStream, marker: string): Promise<string[]> {
  await until(() => ids(stream).includes(marker), 30000, `message ${marker}`);
  return ids(stream);
}

t.test('a message id published twice (through each replica, concurrently, and straight to Kafka) is delivered once everywhere, also on a replica started later', async (t) => {
  const topics = kafkaTopics();
  // One event per room in memory: a resume from the start has to read Kafka (toStored).
  // A long window: the verdicts must not depend on how fast this machine is.
  const settings = { kafkaBrokers: brokers, ...topics, historyMaxEventsPerChannel: 1, dedupWindowMs: 300_000 };
  const start = () => startGateway(t, settings);
  const [a, b] = [await start(), await start()];
  const room = uniqueName('room');
  const open = (gateway: TestGateway, headers: Record<string, string> = {}) => openStream(t, `${gateway.url}/events/${room}`, headers);
  const onA = await open(a);
  const onB = await open(b);
  await until(() => onA.lastEventId() !== '', 5000, 'the initial id');
  const before = onA.lastEventId();
  const producer = await rawProducer(t);
  const produce = (id: string, text: string) =>
    producer.send(topics.chatTopic, [{ key: room, value: JSON.stringify({ id, user: 'svc', text }), headers: { 'event-type': 'message' } }]);
  const post = (gateway: TestGateway, id: string, text: string) => postJson(`${gateway.url}/rooms/${room}/messages`, { id, user: 'ann', text });

  // A first attempt, seen by both replicas; then its retries.
  const first = await post(a, 'm-1', 'hello');
  t.equal(first.status, 202);
  t.equal(first.body.id, 'm-1', 'the id is the publisher’s');
  await idsUpTo(onA, 'm-1');
  await idsUpTo(onB, 'm-1');
  const retryOnB = await post(b, 'm-1', 'hello');
  t.same([retryOnB.status, retryOnB.body], [202, first.body], 'a retry on the other replica answers with the first record’s event id');
  const retryOnA = await post(a, 'm-1', 'hello');
  t.same(retryOnA.body, first.body, 'and so does one on the same replica');
  // A repeat that does reach Kafka: the first attempt of a publisher whose answer was lost.
  await produce('m-1', 'hello');
  // Two attempts racing through both replicas, before either has consumed the other.
  const racing = await Promise.all([post(a, 'm-2', 'race'), post(b, 'm-2', 'race')]);
  t.same(racing.map((reply) => reply.status), [202, 202]);
  await post(b, 'end-1', 'marker');
  const expected = ['m-1', 'm-2', 'end-1'];
  t.same(await idsUpTo(onA, 'end-1'), expected, 'replica A delivered each message once');
  t.same(await idsUpTo(onB, 'end-1'), expected, 'replica B delivered each message once');

  // A replica started after all of it learns the ids from its warm-up read.
  const c = await start();
  const onC = await open(c);
  const retryOnC = await post(c, 'm-1', 'hello');
  t.same([retryOnC.status, retryOnC.body], [202, first.body], 'the new replica answers a retry with the first record’s event id');
  await produce('m-2', 'race');
  await produce('m-1', 'hello');
  await post(c, 'end-2', 'marker');
  for (const [name, stream] of [['A', onA], ['B', onB]] as const) {
    t.same(await idsUpTo(stream, 'end-2'), [...expected, 'end-2'], `replica ${name} skipped the late repeats`);
  }
  t.same(await idsUpTo(onC, 'end-2'), ['end-2'], 'the new replica skipped them too');

  // Resumes from before the first attempt read Kafka: the repeats stay out there as well.
  const all = [...expected, 'end-2'];
  for (const [name, gateway] of [['A', a], ['B', b], ['C', c]] as const) {
    const resumed = await open(gateway, { 'last-event-id': before });
    t.same(await idsUpTo(resumed, 'end-2'), all, `a resume on replica ${name} delivers each message once`);
  }
  t.ok(c.app.dispatcher.stats.duplicatesSkipped >= 3, 'the new replica counted the repeats it skipped');
});

t.test('a repeated delete and a repeated price with an id are delivered once; prices without an id are not deduplicated', async (t) => {
  const topics = kafkaTopics();
  const gateway = await startGateway(t, { kafkaBrokers: brokers, ...topics, dedupWindowMs: 300_000 });
  const room = uniqueName('room');
  const symbol = uniqueName('SYM');
  const chat = await openStream(t, `${gateway.url}/events/${room}`);
  const ticker = await openStream(t, `${gateway.url}/tickers/${symbol}/events`);
  const remove = () => fetch(`${gateway.url}/rooms/${room}/messages/m-9`, { method: 'DELETE' });
  // Only a message the gateway knows can be deleted (404 otherwise).
  t.equal((await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'ann', text: 'to delete', id: 'm-9' })).status, 202);
  t.equal((await remove()).status, 202);
  await until(() => chat.events.some((event) => event.event === 'delete'), 30000, 'the delete');
  t.equal((await remove()).status, 202);
  const producer = await rawProducer(t);
  await producer.send(topics.chatTopic, [{ key: room, value: JSON.stringify({ id: 'm-9' }), headers: { 'event-type': 'delete' } }]);
  await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'ann', text: 'marker', id: 'end' });
  await until(() => ids(chat).includes('end'), 30000, 'the marker');
  t.same(chat.events.map((event) => event.event).filter((type) => type !== 'position'), ['message', 'delete', 'message'], 'one delete');

  const price = (body: object) => postJson(`${gateway.url}/tickers/${symbol}/prices`, body);
  const first = await price({ id: 'p-1', price: 10, currency: 'USD' });
  await until(() => ticker.events.length === 1, 30000, 'the first price');
  t.same((await price({ id: 'p-1', price: 10, currency: 'USD' })).body, first.body, 'a retried price answers with the first event id');
  await producer.send(topics.tickerTopic, [{ key: symbol, value: JSON.stringify({ id: 'p-1', price: 10, currency: 'USD' }), headers: { 'event-type': 'price_update' } }]);
  await price({ price: 11, currency: 'USD' });
  await price({ price: 11, currency: 'USD' });
  await until(() => ticker.events.length >= 3, 30000, 'the prices without id');
  t.same(ticker.events.map((event) => JSON.parse(event.data).price), [10, 11, 11]);
  t.notOk('id' in JSON.parse(ticker.events[0]!.data), 'a price’s id is not forwarded');
});

t.test('on the embedded bus too: a retry answers the first event id; a malformed id is refused with 400 naming the field', async (t) => {
  const gateway = await startGateway(t);
  const room = uniqueName('room');
  const stream = await openStream(t, `${gateway.url}/events/${room}`);
  const post = (body: object) => postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'ann', text: 'hi', ...body });
  const first = await post({ id: 'u-1' });
  await until(() => ids(stream).includes('u-1'), 10000, 'the first');
  t.same((await post({ id: 'u-1' })).body, first.body);
  const bad = await post({ id: 'has space' });
  t.equal(bad.status, 400);
  t.match(bad.body.message, /id/);
  await post({ id: 'u-2' });
  await until(() => ids(stream).includes('u-2'), 10000, 'the marker');
  t.same(ids(stream), ['u-1', 'u-2']);
});
