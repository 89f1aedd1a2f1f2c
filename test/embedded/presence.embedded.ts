import t from 'tap';
import { configWith } from '../../src/config.ts';
import { issueToken } from '../../src/auth/issue.ts';
import { startGateway, uniqueName } from '../helpers/gateway.ts';
import { openStream, until, type TestStream } from '../helpers/sse-client.ts';

/** Presence on one replica (the embedded bus): snapshot, deltas, the route, grace, identities. */

const FAST = { rooms: true, intervalMs: 50, crowdStreams: 100, crowdIntervalMs: 250, restateMs: 1000, leaveGraceMs: 400, topic: null };

// any: the tests index into the presence JSON they assert on.
const data = (stream: TestStream, index: number): any => JSON.parse(stream.presence[index]!.data);
const lastPresence = (stream: TestStream): any => (stream.presence.length === 0 ? undefined : data(stream, stream.presence.length - 1));
// any: the route's JSON.
const routeOf = async (url: string): Promise<any> => (await fetch(url)).json();
const names = (members: Array<{ name: string }>): string[] => members.map((member) => member.name).sort();

t.test('a room stream first gets a snapshot, then deltas as named streams join and leave; the route agrees', async (t) => {
  const gateway = await startGateway(t, { presence: FAST });
  const room = uniqueName('room');
  const ann = await openStream(t, `${gateway.url}/events/${room}?name=Ann`);
  await until(() => ann.presence.length >= 1, 5000, 'a snapshot');
  t.match(ann.text(), /^retry: \d+\n\n: connected\n\nevent: presence\ndata: [^\n]+\n\n/, 'the snapshot comes first, with no id');
  t.match(data(ann, 0), { room, snapshot: true, count: 1, anonymous: 0, members: [{ sub: null, name: 'Ann', verified: false }] });
  t.type(data(ann, 0).members[0].since, 'number');

  const anonymous = await openStream(t, `${gateway.url}/events/${room}`);
  await until(() => anonymous.presence.length >= 1, 5000, 'the anonymous stream\'s snapshot');
  t.match(data(anonymous, 0), { room, snapshot: true, count: 1, anonymous: 1 });
  await until(() => lastPresence(ann)?.anonymous === 1, 5000, 'a delta counting the anonymous stream');

  const bob = await openStream(t, `${gateway.url}/events/${room}?name=Bob`);
  await until(() => lastPresence(ann)?.count === 2, 5000, 'Bob joining');
  t.match(lastPresence(ann), { room, joined: [{ sub: null, name: 'Bob', verified: false }], left: [], count: 2, anonymous: 1 });
  t.notOk('snapshot' in lastPresence(ann), 'a delta is no snapshot');

  const route = await routeOf(`${gateway.url}/rooms/${room}/presence`);
  t.match(route, { room, count: 2, anonymous: 1 });
  t.same(names(route.members), ['Ann', 'Bob']);
  t.match(route.members[0], { sub: null, name: 'Ann', verified: false });

  bob.close();
  await until(() => lastPresence(ann)?.count === 1, 5000, 'Bob leaving after the grace');
  t.match(lastPresence(ann), { joined: [], left: [{ name: 'Bob' }], count: 1 });
  t.notOk(/id: [^\n]+\nevent: presence/.test(ann.text()), 'no presence frame carries an id');

  // Everyone gone: the replica forgets the room (state is O(members held + rooms)).
  ann.close();
  anonymous.close();
  await until(async () => (await routeOf(`${gateway.url}/status`)).presence.localChannels === 0, 5000, 'the room forgotten');
  t.match((await routeOf(`${gateway.url}/status`)).presence, { topic: `${gateway.config.chatTopic}.presence`, localMembers: 0, localChannels: 0, streamChannels: 0, recordsSkipped: 0 });
});

t.test('a reconnect within the grace is not a leave; two tabs of one name are one member', async (t) => {
  const gateway = await startGateway(t, { presence: { ...FAST, leaveGraceMs: 1500 } });
  const room = uniqueName('room');
  const watcher = await openStream(t, `${gateway.url}/events/${room}?name=Watcher`);
  const tab1 = await openStream(t, `${gateway.url}/events/${room}?name=Cy`);
  const tab2 = await openStream(t, `${gateway.url}/events/${room}?name=Cy`);
  await until(async () => (await routeOf(`${gateway.url}/rooms/${room}/presence`)).count === 2, 5000, 'two members');
  await until(() => tab2.presence.length >= 1, 5000, 'a snapshot');
  t.equal(data(tab2, 0).count, 2, 'two tabs of Cy: one member');

  tab1.close();
  tab2.close();
  // The gateway has seen both tabs go (only the watcher's stream is open)...
  await until(async () => (await routeOf(`${gateway.url}/status`)).streams.open === 1, 5000, 'the tabs closed on the server');
  // Several intervals later, within the grace (1.5 s), Cy is still listed...
  await new Promise((resolve) => setTimeout(resolve, 6 * FAST.intervalMs));
  t.same(names((await routeOf(`${gateway.url}/rooms/${room}/presence`)).members), ['Cy', 'Watcher'], 'Cy still listed during the grace');
  // ...and comes back within it (as EventSource does after `retry:`).
  const back = await openStream(t, `${gateway.url}/events/${room}?name=Cy`);
  await until(() => back.presence.length >= 1, 5000, 'the snapshot of the reconnect');
  t.equal(data(back, 0).count, 2);
  // Long enough for the grace to have run out had the reconnect counted as a leave.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const deltas = watcher.presence.slice(1).map((message) => JSON.parse(message.data));
  t.notOk(deltas.some((delta) => delta.left.some((member: { name: string }) => member.name === 'Cy')), `no leave of Cy: ${JSON.stringify(deltas)}`);
});

t.test('a multi-channel stream joins each room it holds; tickers have no presence', async (t) => {
  const gateway = await startGateway(t, { presence: FAST });
  const a = uniqueName('a');
  const b = uniqueName('b');
  const stream = await openStream(t, `${gateway.url}/events?room=${a}&room=${b}&ticker=DOGE&name=Dee`);
  await until(() => stream.presence.length >= 2, 5000, 'two snapshots');
  t.same(stream.presence.map((message) => JSON.parse(message.data).room).sort(), [a, b].sort());
  for (const room of [a, b]) t.match(await (await fetch(`${gateway.url}/rooms/${room}/presence`)).json(), { room, count: 1, members: [{ name: 'Dee' }] });
  const ticker = await openStream(t, `${gateway.url}/tickers/DOGE/events`);
  await until(() => ticker.comments() >= 1, 5000, 'the ticker stream open');
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.equal(ticker.presence.length, 0, 'no presence on a ticker stream');
});

t.test('bad names are refused with 400', async (t) => {
  const gateway = await startGateway(t, { presence: FAST });
  for (const name of ['%00x', 'a'.repeat(65), '%E2%80%8B', '%20%20']) {
    const response = await fetch(`${gateway.url}/events/lobby?name=${name}`);
    t.equal(response.status, 400, `?name=${name.slice(0, 12)}`);
    t.match(await response.json(), { statusCode: 400, message: /name/ });
  }
});

t.test('with auth on, members are token identities (sub, name); ?name= is ignored; the route needs the read right', async (t) => {
  const secret = 'presence-test-secret-of-32-characters!';
  const room = uniqueName('team');
  const token = (claims: Record<string, unknown>) => issueToken({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims }, secret, 'HS256');
  const gateway = await startGateway(t, { presence: FAST, auth: { ...configWith().auth, jwtSecret: secret, publicRooms: ['public-*'] } });
  const ann = token({ sub: 'u-ann', name: 'Ann', rooms: [room] });
  const stream = await openStream(t, `${gateway.url}/events/${room}?name=Mallory&token=${ann}`);
  await until(() => stream.presence.length >= 1, 5000, 'a snapshot');
  t.same(data(stream, 0).members.map(({ sub, name, verified }: any) => ({ sub, name, verified })), [{ sub: 'u-ann', name: 'Ann', verified: undefined }], 'the token\'s sub and name, verified');

  t.equal((await fetch(`${gateway.url}/rooms/${room}/presence`)).status, 401, 'no token: 401');
  const other = token({ sub: 'u-eve', rooms: ['elsewhere'] });
  t.equal((await fetch(`${gateway.url}/rooms/${room}/presence`, { headers: { authorization: `Bearer ${other}` } })).status, 403, 'no right to the room: 403');
  const reply = await fetch(`${gateway.url}/rooms/${room}/presence`, { headers: { authorization: `Bearer ${ann}` } });
  t.equal(reply.status, 200);
  t.match(await reply.json(), { room, count: 1, anonymous: 0, members: [{ sub: 'u-ann', name: 'Ann' }] });

  // A public room streamed without a token: anonymous, whatever it calls itself.
  const open = await openStream(t, `${gateway.url}/events/public-${room}?name=Mallory`);
  await until(() => open.presence.length >= 1, 5000, 'a snapshot');
  t.match(data(open, 0), { count: 0, anonymous: 1, members: [] });
});

t.test('a declared kind with presence on: its own presence route, `presence` events under its name; one without has neither', async (t) => {
  const schema = { type: 'object', properties: { a: { type: 'string' } } };
  const gateway = await startGateway(t, {
    presence: FAST,
    channelKinds: [
      { name: 'desks', topic: uniqueName('desks'), presence: true, eventTypes: { note: { schema } } },
      { name: 'orders', topic: uniqueName('orders'), eventTypes: { created: { schema } } },
    ],
  });
  const stream = await openStream(t, `${gateway.url}/streams/desks/d-1?name=Ivy`);
  await until(() => stream.presence.length >= 1, 5000, 'a snapshot');
  t.match(data(stream, 0), { desks: 'd-1', snapshot: true, count: 1, members: [{ name: 'Ivy', verified: false }] });
  t.match(await routeOf(`${gateway.url}/streams/desks/d-1/presence`), { desks: 'd-1', count: 1, members: [{ name: 'Ivy' }] });
  const orders = await openStream(t, `${gateway.url}/streams/orders/o-1?name=Ivy`);
  await until(() => orders.comments() >= 1, 5000, 'the orders stream open');
  t.equal((await fetch(`${gateway.url}/streams/orders/o-1/presence`)).status, 404, 'no presence route for a kind without it');
  t.equal(orders.presence.length, 0, 'no presence events on its streams');
});

t.test('ROOM_PRESENCE=false: room streams start with their events, no presence route, no presence topic read', async (t) => {
  const gateway = await startGateway(t, { presence: { ...FAST, rooms: false } });
  const room = uniqueName('room');
  const stream = await openStream(t, `${gateway.url}/events/${room}?name=Ann`);
  t.equal((await fetch(`${gateway.url}/rooms/${room}/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'ann', text: 'hi' }) })).status, 202);
  await stream.waitForEvents(1);
  t.equal(stream.presence.length, 0, 'no presence frame');
  t.notMatch(stream.text(), /event: presence/);
  t.equal((await fetch(`${gateway.url}/rooms/${room}/presence`)).status, 404, 'no presence route');
  const status = await routeOf(`${gateway.url}/status`);
  t.notOk(status.partitions.some((entry: { topic: string }) => entry.topic.endsWith('.presence')), 'the presence topic is not consumed');
});

t.test('a crowded room (more than PRESENCE_CROWD_STREAMS streams) gets its first delta a crowd interval after its first stream, then at most one per interval', async (t) => {
  const crowdIntervalMs = 2000;
  const gateway = await startGateway(t, { presence: { ...FAST, crowdStreams: 2, crowdIntervalMs } });
  const room = uniqueName('room');
  const opened = Date.now();
  const streams: TestStream[] = [];
  for (let i = 0; i < 3; i++) streams.push(await openStream(t, `${gateway.url}/events/${room}`));
  await until(() => streams.every((stream) => stream.presence.length >= 1), 5000, 'the snapshots');
  const watcher = streams[0]!;
  t.match(data(watcher, 0), { room, snapshot: true, anonymous: 1 });
  // Uncrowded, the count of 3 would reach the first stream within an interval (50 ms).
  await until(() => lastPresence(watcher)?.anonymous === 3, 10_000, 'a delta counting 3 streams');
  t.ok(Date.now() - opened >= crowdIntervalMs, `no delta before the crowd interval (${Date.now() - opened} ms)`);
  t.equal(watcher.presence.length, 2, 'one delta: the net change');
  t.match(lastPresence(watcher), { room, joined: [], left: [], count: 0, anonymous: 3 });

  // A change after it waits for the next crowd interval, then arrives, netted.
  const deltaSeen = Date.now();
  streams.push(await openStream(t, `${gateway.url}/events/${room}`));
  await until(() => lastPresence(watcher)?.anonymous === 4, 10_000, 'a delta counting 4 streams');
  // The delta was sent at least crowdIntervalMs after the previous one, which reached us before deltaSeen.
  t.ok(Date.now() - deltaSeen >= crowdIntervalMs - 500, `the next delta a crowd interval later (${Date.now() - deltaSeen} ms)`);
  t.equal(watcher.presence.length, 3);
});
