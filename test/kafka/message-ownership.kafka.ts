import t from 'tap';
import { configWith, type Config } from '../../src/config.ts';
import { issueToken } from '../../src/auth/issue.ts';
import { kafkaTopics, requiredKafkaBrokers, startGateway, startReplicaPair, uniqueName, type TestGateway } from '../helpers/gateway.ts';
import { rawProducer } from '../helpers/kafka.ts';
import { openStream, until, type TestStream } from '../helpers/sse-client.ts';

/**
 * Issue 14, item 1: only a message's author, a moderator of its room or a service may delete
 * it, on every replica, one started after the post included; unknown ids answer 404.
 */

const SECRET = 'ownership-test-secret-of-32-characters!';
const API_KEY = 'ownership-service-key-0123456789';
const brokers = requiredKafkaBrokers();

function settings(overrides: Partial<Config> = {}): Partial<Config> {
  return {
    kafkaBrokers: brokers,
    ...kafkaTopics(),
    auth: { ...configWith().auth, jwtSecret: SECRET, publicRooms: ['*'], serviceApiKeys: new Map([[API_KEY, 'importer']]), publishRatePerIdentity: 1000, publishRatePerIp: 1000 },
    ...overrides,
  };
}

const bearer = (claims: Record<string, unknown>) => ({
  authorization: `Bearer ${issueToken({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims }, SECRET, 'HS256')}`,
});
const service = { 'x-api-key': API_KEY };

// any: tests index into whatever JSON a reply carries.
async function call(url: string, method: string, headers: Record<string, string>, body?: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(url, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: await response.json() };
}

/** The ids of the stream's events of this type, in order. */
const idsOf = (stream: TestStream, type: string) =>
  stream.events.filter((event) => event.event === type).map((event) => JSON.parse(event.data).id as string);

t.test('a stranger cannot delete a message, on any replica, one started after the post included; its author, a moderator and a service can', async (t) => {
  const shared = settings();
  const [a, b] = await startReplicaPair(t, shared);
  const room = uniqueName('team');
  const open = (gateway: TestGateway) => openStream(t, `${gateway.url}/events/${room}`);
  const onA = await open(a);
  const onB = await open(b);
  const ann = bearer({ sub: 'ann', publish: [room] });
  const bob = bearer({ sub: 'bob', name: 'ann', publish: [room] });
  // A moderator needs no publish grant to delete.
  const moderator = bearer({ sub: 'mo', moderate: ['team-*'] });
  const post = (gateway: TestGateway, headers: Record<string, string>, id: string) =>
    call(`${gateway.url}/rooms/${room}/messages`, 'POST', headers, { id, user: 'svc', text: `text of ${id}` });
  const remove = (gateway: TestGateway, headers: Record<string, string>, id: string) =>
    call(`${gateway.url}/rooms/${room}/messages/${id}`, 'DELETE', headers);

  const posted = await post(a, ann, 'by-ann');
  t.equal(posted.status, 202);
  t.equal((await post(b, service, 'by-service')).status, 202);
  const producer = await rawProducer(t);
  // Straight to Kafka: a service posting for user "dave" (author header), and a record without one.
  await producer.send(shared.chatTopic!, [
    { key: room, value: JSON.stringify({ id: 'by-dave', user: 'Dave', text: 'hi' }), headers: { 'event-type': 'message', author: 'dave' } },
    { key: room, value: JSON.stringify({ id: 'nobodys', user: 'X', text: 'hi' }), headers: { 'event-type': 'message' } },
  ]);
  const all = ['by-ann', 'by-service', 'by-dave', 'nobodys'];
  for (const stream of [onA, onB]) await until(() => idsOf(stream, 'message').length === all.length, 30000, 'the four messages');

  // A stranger with a publish grant for the room, even one showing the same display name.
  for (const [name, gateway] of [['A', a], ['B', b]] as const) {
    const refused = await remove(gateway, bob, 'by-ann');
    t.equal(refused.status, 403, `replica ${name} refuses a stranger's delete`);
    t.match(refused.body.message, /author/);
    t.equal((await remove(gateway, bob, 'by-dave')).status, 403);
    t.equal((await remove(gateway, bob, 'nobodys')).status, 403, 'a message without author is nobody\'s');
    t.equal((await remove(gateway, ann, 'never-posted')).status, 404, `replica ${name}: an unknown id is 404`);
  }
  t.equal((await remove(a, bearer({ sub: 'mo', moderate: ['other-*'] }), 'by-ann')).status, 403, 'a moderator of other rooms is no moderator here');
  const taken = await post(b, bob, 'by-ann');
  t.equal(taken.status, 409, 'a stranger cannot post under the id of someone else\'s message');
  t.same((await post(b, ann, 'by-ann')).body, posted.body, 'its author\'s retry still answers with the first event id');

  // A replica started after every post learns the authors from its warm-up read.
  const c = await startGateway(t, shared);
  const refusedOnC = await remove(c, bob, 'by-ann');
  t.equal(refusedOnC.status, 403, 'the new replica refuses the stranger too');
  t.equal((await remove(c, ann, 'never-posted')).status, 404);
  const deleted = await remove(c, ann, 'by-ann');
  t.equal(deleted.status, 202, 'the author deletes her message on the new replica');
  t.equal(deleted.body.id, 'by-ann');
  t.equal((await remove(c, moderator, 'by-dave')).status, 202, 'a moderator deletes anyone\'s');
  t.equal((await remove(c, service, 'nobodys')).status, 202, 'a service deletes anyone\'s');
  t.equal((await remove(a, bearer({ sub: 'dave', publish: [room] }), 'by-service')).status, 403, 'a service\'s post is not owned by a user');

  const expected = ['by-ann', 'by-dave', 'nobodys'];
  for (const stream of [onA, onB]) await until(() => idsOf(stream, 'delete').length === expected.length, 30000, 'the deletes');
  // A retry of a delete on another replica: the first delete's event id, nothing written again;
  // a stranger is still refused once the message is deleted.
  await until(() => a.app.dispatcher.messageEntry('room', room, 'by-ann')?.deletion != null, 30000, 'replica A consumed the delete');
  const retried = await remove(a, ann, 'by-ann');
  t.same([retried.status, retried.body], [202, deleted.body], 'a retried delete answers with the first delete\'s event id');
  t.equal((await remove(b, bob, 'by-ann')).status, 403, 'a deleted message is still not the stranger\'s');
  await post(a, service, 'marker');
  for (const [name, stream] of [['A', onA], ['B', onB]] as const) {
    await until(() => idsOf(stream, 'message').includes('marker'), 30000, 'the marker');
    t.same(idsOf(stream, 'delete'), expected, `replica ${name}'s subscribers got only the allowed deletes, once each`);
  }
});

t.test('a message older than the window is deleted by its event id, read back from Kafka: its author only', async (t) => {
  // A one-second window: the ledger forgets the message almost at once.
  const shared = settings({ historyMaxAgeMs: 1000, dedupWindowMs: 1000 });
  const gateway = await startGateway(t, shared);
  const room = uniqueName('room');
  const ann = bearer({ sub: 'ann', publish: [room] });
  const bob = bearer({ sub: 'bob', publish: [room] });
  const post = (id: string) => call(`${gateway.url}/rooms/${room}/messages`, 'POST', ann, { id, text: 'old' });
  const remove = (headers: Record<string, string>, id: string, eventId?: string) =>
    call(`${gateway.url}/rooms/${room}/messages/${id}${eventId === undefined ? '' : `?eventId=${eventId}`}`, 'DELETE', headers);
  const first = await post('old-1');
  const second = await post('old-2');
  t.equal(first.status, 202);
  await until(() => gateway.app.dispatcher.messageEntry('room', room, 'old-1') !== undefined, 30000, 'the message consumed');
  await until(() => gateway.app.dispatcher.messageEntry('room', room, 'old-1') === undefined, 30000, 'the message older than the window');

  const unknown = await remove(ann, 'old-1');
  t.equal(unknown.status, 404, 'without its event id, an old message is unknown');
  t.match(unknown.body.message, /eventId/, 'and the answer says how to delete it');
  t.equal((await remove(bob, 'old-1', first.body.eventId)).status, 403, 'a stranger is refused with the event id too');
  t.equal((await remove(ann, 'old-1', second.body.eventId)).status, 404, 'an event id of another message does not stand for this one');
  t.equal((await remove(ann, 'old-1', 'bm90LWFuLWlk')).status, 400, 'an event id this gateway did not issue');
  const stream = await openStream(t, `${gateway.url}/events/${room}`);
  t.equal((await remove(ann, 'old-1', first.body.eventId)).status, 202, 'its author deletes it by its event id');
  await until(() => idsOf(stream, 'delete').includes('old-1'), 30000, 'the delete');
});

t.test('with auth off anyone may delete, but an unknown id is 404 (embedded bus)', async (t) => {
  const gateway = await startGateway(t);
  const room = uniqueName('room');
  const stream = await openStream(t, `${gateway.url}/events/${room}`);
  const posted = await call(`${gateway.url}/rooms/${room}/messages`, 'POST', {}, { user: 'ann', text: 'hi' });
  // Deleted at once after the post: the gateway waits for its consumer to catch up, not 404.
  const deleted = await call(`${gateway.url}/rooms/${room}/messages/${posted.body.id}`, 'DELETE', {});
  t.equal(deleted.status, 202);
  const missing = await call(`${gateway.url}/rooms/${room}/messages/nope`, 'DELETE', {});
  t.equal(missing.status, 404);
  t.match(missing.body, { statusCode: 404, error: 'Not Found' });
  await until(() => idsOf(stream, 'delete').length === 1, 10000, 'the delete');
  t.same(idsOf(stream, 'delete'), [posted.body.id], 'no delete event for the unknown id');
});
