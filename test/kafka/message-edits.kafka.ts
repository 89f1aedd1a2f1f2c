import t from 'tap';
import { configWith, type Config } from '../../src/config.ts';
import { issueToken } from '../../src/auth/issue.ts';
import { roomUrl, subscribe, type ChatEditEvent, type ChatMessageEvent } from '../../src/client/index.ts';
import { kafkaTopics, requiredKafkaBrokers, startReplicaPair, uniqueName, type TestGateway } from '../helpers/gateway.ts';
import { rawProducer } from '../helpers/kafka.ts';
import { parseMetrics, value } from '../helpers/metrics.ts';
import { openStream, until, type TestStream } from '../helpers/sse-client.ts';

/**
 * Issue 16, item 5: `PATCH /rooms/:room/messages/:id` publishes an `edit` event; only the
 * author, a moderator or a service may edit; edits reach every replica's streams and resumes in
 * order with the message they change; retries with the same `editId` are delivered once, while
 * several edits of one message are not repeats.
 */

const SECRET = 'edits-test-secret-of-32-characters-long!';
const API_KEY = 'edits-service-key-0123456789abcdef';
const brokers = requiredKafkaBrokers();

function settings(overrides: Partial<Config> = {}): Partial<Config> {
  return {
    kafkaBrokers: brokers,
    ...kafkaTopics(),
    // A long window: the verdicts on repeats must not depend on how fast this machine is.
    dedupWindowMs: 300_000,
    auth: { ...configWith().auth, jwtSecret: SECRET, publicRooms: ['*'], serviceApiKeys: new Map([[API_KEY, 'importer']]), publishRatePerIdentity: 1000, publishRatePerIp: 1000 },
    ...overrides,
  };
}

const bearer = (claims: Record<string, unknown>) => ({
  authorization: `Bearer ${issueToken({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims }, SECRET, 'HS256')}`,
});

// any: tests index into whatever JSON a reply carries.
async function call(url: string, method: string, headers: Record<string, string>, body?: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(url, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: await response.json() };
}

/** The stream's chat events as `type id text`, in order (`message`, `edit`, `delete`). */
const chatLog = (events: readonly { event: string; data: string }[]) =>
  events
    .filter((event) => ['message', 'edit', 'delete'].includes(event.event))
    .map((event) => {
      const data = JSON.parse(event.data) as { id: string; text?: string };
      return `${event.event} ${data.id}${data.text === undefined ? '' : ` ${data.text}`}`;
    });

t.test('an edit by the author reaches both replicas\' streams and a resume, in order, once per editId; a stranger gets 403, an unknown id 404, a deleted message 409', async (t) => {
  const shared = settings();
  const [a, b] = await startReplicaPair(t, shared);
  const room = uniqueName('team');
  const streams: TestStream[] = [];
  t.teardown(() => streams.forEach((stream) => stream.close()));
  const open = async (gateway: TestGateway, headers: Record<string, string> = {}) => {
    const stream = await openStream(t, `${gateway.url}/events/${room}`, headers);
    streams.push(stream);
    return stream;
  };
  const onA = await open(a);
  const onB = await open(b);
  await until(() => onA.lastEventId() !== '', 5000, 'the initial id');
  const before = onA.lastEventId();

  const ann = bearer({ sub: 'ann', publish: [room] });
  // A stranger with a publish grant for the room, showing the same display name.
  const bob = bearer({ sub: 'bob', name: 'ann', publish: [room] });
  const moderator = bearer({ sub: 'mo', moderate: ['team-*'] });
  const edit = (gateway: TestGateway, headers: Record<string, string>, id: string, body: Record<string, unknown>) =>
    call(`${gateway.url}/rooms/${room}/messages/${id}`, 'PATCH', headers, body);

  const posted = await call(`${a.url}/rooms/${room}/messages`, 'POST', ann, { id: 'm-1', text: 'first' });
  t.equal(posted.status, 202);

  // The author's edit, on the replica the message was not posted to (it waits for its consumer).
  const edited = await edit(b, ann, 'm-1', { text: 'second', editId: 'e-1' });
  t.equal(edited.status, 202, 'the author edits her message');
  t.equal(edited.body.id, 'm-1');
  t.type(edited.body.eventId, 'string');
  for (const [name, gateway] of [['A', a], ['B', b]] as const) {
    const refused = await edit(gateway, bob, 'm-1', { text: 'hijacked' });
    t.equal(refused.status, 403, `replica ${name} refuses a stranger's edit`);
    t.match(refused.body.message, /author/);
    t.equal((await edit(gateway, ann, 'never-posted', { text: 'x' })).status, 404, `replica ${name}: an unknown id is 404`);
  }
  t.equal((await edit(a, bearer({ sub: 'mo', moderate: ['other-*'] }), 'm-1', { text: 'x' })).status, 403, 'a moderator of other rooms is no moderator here');
  t.equal((await edit(a, ann, 'm-1', { text: '' })).status, 400, 'an empty text is refused');
  t.equal((await edit(a, ann, 'm-1', { text: 'x', user: 'someone' })).status, 400, 'an edit changes the text only');

  for (const stream of [onA, onB]) await until(() => chatLog(stream.events).includes('edit m-1 second'), 30000, 'the first edit');
  // A retry of the edit, on the other replica: the first edit's event id, nothing written again.
  const retried = await edit(a, ann, 'm-1', { text: 'second', editId: 'e-1' });
  t.same([retried.status, retried.body], [202, edited.body], 'a retried edit answers with the first one\'s event id');
  // A copy that does reach Kafka (a publisher whose answer was lost) is dropped where consumed.
  const producer = await rawProducer(t);
  await producer.send(shared.chatTopic!, [
    { key: room, value: JSON.stringify({ id: 'm-1', text: 'second', editId: 'e-1' }), headers: { 'event-type': 'edit' } },
  ]);
  // Edits without an editId are never repeats of each other, nor of one with an editId.
  t.equal((await edit(a, ann, 'm-1', { text: 'third' })).status, 202);
  t.equal((await edit(b, ann, 'm-1', { text: 'third' })).status, 202, 'the same text again is another edit');
  t.equal((await edit(a, moderator, 'm-1', { text: 'moderated' })).status, 202, 'a moderator edits anyone\'s message');
  t.equal((await edit(b, { 'x-api-key': API_KEY }, 'm-1', { text: 'by a service' })).status, 202, 'and so does a service');
  t.equal((await call(`${b.url}/rooms/${room}/messages`, 'POST', ann, { id: 'end', text: 'marker' })).status, 202);

  const expected = ['message m-1 first', 'edit m-1 second', 'edit m-1 third', 'edit m-1 third', 'edit m-1 moderated', 'edit m-1 by a service', 'message end marker'];
  for (const [name, stream] of [['A', onA], ['B', onB]] as const) {
    await until(() => chatLog(stream.events).includes('message end marker'), 30000, `the marker on ${name}`);
    t.same(chatLog(stream.events), expected, `replica ${name}'s stream has the message, then each edit once, in order`);
  }
  const editData = JSON.parse(onB.events.find((event) => event.event === 'edit')!.data) as Record<string, unknown>;
  const messageData = JSON.parse(onB.events.find((event) => event.event === 'message')!.data) as Record<string, unknown>;
  t.same(Object.keys(editData), ['room', 'id', 'text', 'ts'], 'an edit is {room, id, text, ts}');
  t.same([editData.room, editData.id, editData.text], [room, 'm-1', 'second']);
  t.ok(typeof editData.ts === 'number' && editData.ts >= (messageData.ts as number), '`ts` is when it was edited');

  // A resume from before the message, on the other replica than the one it started on, with the
  // typed client: the message and its edits, in order.
  const resumed = subscribe(roomUrl(b.url, room), { lastEventId: before });
  t.teardown(() => resumed.close());
  const replayed: string[] = [];
  for await (const event of resumed.iterate(['message', 'edit'])) {
    const data: ChatMessageEvent | ChatEditEvent = event.data;
    replayed.push(`${event.type} ${data.id} ${data.text}`);
    if (data.id === 'end') break;
  }
  t.same(replayed, expected, 'a resume carries the edits in order with the message');
  // A resume from just after the message: its edits only.
  const afterMessage = onA.events.find((event) => event.event === 'message')!.id!;
  const fromMessage = await open(a, { 'last-event-id': afterMessage });
  await until(() => chatLog(fromMessage.events).includes('message end marker'), 30000, 'the resumed marker');
  t.same(chatLog(fromMessage.events), expected.slice(1), 'a resume after the message gets its edits');

  // Deleted: there is nothing left to edit; a retry of an edit made before still answers.
  t.equal((await call(`${a.url}/rooms/${room}/messages/m-1`, 'DELETE', ann)).status, 202);
  await until(() => b.app.dispatcher.messageEntry('room', room, 'm-1')?.deletion != null, 30000, 'replica B consumed the delete');
  const afterDelete = await edit(b, ann, 'm-1', { text: 'too late' });
  t.equal(afterDelete.status, 409, 'an edit of a deleted message is 409');
  t.match(afterDelete.body.message, /deleted/);
  t.equal((await edit(b, bob, 'm-1', { text: 'too late' })).status, 403, 'a stranger is still refused first');
  t.same((await edit(b, ann, 'm-1', { text: 'second', editId: 'e-1' })).body, edited.body, 'a retry of an earlier edit still answers with it');

  // Counted as publishes under their route.
  const metrics = parseMetrics(await (await fetch(`${b.url}/metrics`, { headers: { 'x-api-key': API_KEY } })).text());
  const patches = (status: string) => value(metrics, 'sse_gateway_publish_requests_total', { method: 'PATCH', route: '/rooms/:room/messages/:id', status });
  t.same([patches('202'), patches('403'), patches('404'), patches('409')], [4, 2, 1, 1], 'replica B counted its PATCH answers by status');
});
