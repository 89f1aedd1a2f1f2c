import t from 'tap';
import { postJson, startGateway, uniqueName } from '../helpers/gateway.ts';
import { messageTexts, openStream, until } from '../helpers/sse-client.ts';
import { messages, post, range } from '../helpers/rooms.ts';


t.test('embedded bus: a client that reconnects with its last id gets exactly what it missed', async (t) => {
  const gateway = await startGateway(t);
  const room = uniqueName('room');
  const first = await openStream(t, `${gateway.url}/events/${room}`);
  await post(gateway, room, range('m', 0, 3));
  t.same(await messages(first, 3), range('m', 0, 3));
  first.close();
  await post(gateway, room, range('m', 3, 8));
  const resumed = await openStream(t, `${gateway.url}/events/${room}`, { 'last-event-id': first.lastEventId() });
  t.same(await messages(resumed, 5), range('m', 3, 8), 'the five missed, none repeated');
  await post(gateway, room, ['live']);
  t.same(await messages(resumed, 6), [...range('m', 3, 8), 'live']);
  t.equal(gateway.app.streamStats.resumesFromMemory, 1);
});

t.test('a client that saw no event yet still resumes from where it connected', async (t) => {
  const gateway = await startGateway(t);
  const room = uniqueName('room');
  const first = await openStream(t, `${gateway.url}/events/${room}`);
  await until(() => first.lastEventId() !== '', 5000, 'the initial id');
  first.close();
  await post(gateway, room, ['while away']);
  const resumed = await openStream(t, `${gateway.url}/events/${room}?lastEventId=${encodeURIComponent(first.lastEventId())}`);
  t.same(await messages(resumed, 1), ['while away'], '?lastEventId= works for clients that cannot send headers');
});

t.test('forged and tampered ids get `reset`, then live events, never another room', async (t) => {
  const gateway = await startGateway(t);
  const room = uniqueName('room');
  const other = uniqueName('other');
  const watcher = await openStream(t, `${gateway.url}/events/${other}`);
  await post(gateway, other, ['secret']);
  await watcher.waitForEvents(1);
  const realId = watcher.lastEventId();
  // One character of the tag changed (never to itself: then it would be the real id).
  const tampered = `${realId.slice(0, -2)}${realId.at(-2) === 'A' ? 'B' : 'A'}${realId.slice(-1)}`;
  for (const id of ['0-0', 'not base64!', tampered, 'A'.repeat(5000), '\u00ff\u00fe']) {
    const stream = await openStream(t, `${gateway.url}/events/${room}`, { 'last-event-id': encodeURI(id) });
    const [reset] = await stream.waitForEvents(1);
    t.equal(reset?.event, 'reset', `reset for ${id.slice(0, 20)}`);
    t.same(JSON.parse(reset!.data), { reason: 'invalid-id' });
    await post(gateway, room, [`after ${id.length}`]);
    const [, live] = await stream.waitForEvents(2);
    t.equal(JSON.parse(live!.data).text, `after ${id.length}`);
    t.notOk(stream.text().includes('secret'));
    stream.close();
  }
  // A valid id of another room replays nothing of that room: events come from the channel in the URL.
  const crossRoom = await openStream(t, `${gateway.url}/events/${room}`, { 'last-event-id': realId });
  await post(gateway, room, ['mine']);
  await until(() => messageTexts(crossRoom.events).includes('mine'), 5000, 'live event');
  t.notOk(crossRoom.text().includes('secret'));
});

t.test('embedded bus: a position older than the history gets `reset` with reason expired', async (t) => {
  const gateway = await startGateway(t, { historyMaxEventsPerChannel: 3 });
  const room = uniqueName('room');
  const first = await openStream(t, `${gateway.url}/events/${room}`);
  await post(gateway, room, ['a']);
  await messages(first, 1);
  first.close();
  await post(gateway, room, range('m', 0, 6));
  const resumed = await openStream(t, `${gateway.url}/events/${room}`, { 'last-event-id': first.lastEventId() });
  const [reset] = await resumed.waitForEvents(1);
  t.equal(reset?.event, 'reset');
  t.same(JSON.parse(reset!.data), { reason: 'expired' });
  await post(gateway, room, ['live']);
  t.same(await messages(resumed, 1), ['live']);
});

t.test('an empty Last-Event-ID header (fetch-based clients send one) does not hide ?lastEventId=', async (t) => {
  const gateway = await startGateway(t);
  const room = uniqueName('room');
  const first = await openStream(t, `${gateway.url}/events/${room}`);
  await post(gateway, room, ['seen']);
  await messages(first, 1);
  first.close();
  await post(gateway, room, ['missed1', 'missed2']);
  const resumed = await openStream(t, `${gateway.url}/events/${room}?lastEventId=${encodeURIComponent(first.lastEventId())}`, { 'last-event-id': '' });
  t.same(await messages(resumed, 2), ['missed1', 'missed2'], 'resumed from the URL’s id, not started live');
});

t.test('embedded bus: a well-signed id past anything the bus delivered (an earlier run) gets `reset` beyond-end, then live', async (t) => {
  const gateway = await startGateway(t);
  const room = uniqueName('room');
  // As an id from before a restart of the embedded bus: offsets this run has not reached.
  const earlier = await openStream(t, `${gateway.url}/events/${room}`);
  await post(gateway, room, range('old', 0, 3));
  await messages(earlier, 3);
  earlier.close();
  const partition = gateway.app.cursorCodec.decode(earlier.lastEventId())![0]!.partition;
  const ahead = gateway.app.cursorCodec.encode([{ slot: 0, partition, next: 1_000_000 }]);
  const stream = await openStream(t, `${gateway.url}/events/${room}`, { 'last-event-id': ahead });
  const [reset] = await stream.waitForEvents(1);
  t.equal(reset?.event, 'reset');
  t.same(JSON.parse(reset!.data), { reason: 'beyond-end' });
  await post(gateway, room, ['live']);
  t.same(await messages(stream, 1), ['live'], 'the live stream, not silence');
});

t.test('multi-channel streams: several rooms and a ticker on one connection, resumed with one id', async (t) => {
  const gateway = await startGateway(t);
  const [a, b] = [uniqueName('a'), uniqueName('b')];
  const url = `${gateway.url}/events?room=${a}&room=${b}&ticker=DOGE`;
  const first = await openStream(t, url);
  await post(gateway, a, ['a1']);
  await post(gateway, b, ['b1']);
  t.equal((await postJson(`${gateway.url}/tickers/DOGE/prices`, { price: 1, currency: 'USD' })).status, 202);
  await first.waitForEvents(3);
  t.same(new Set(messageTexts(first.events)), new Set(['a1', 'b1']));
  t.ok(first.events.some((event) => event.event === 'price_update'));
  first.close();
  await post(gateway, a, ['a2', 'a3']);
  await post(gateway, b, ['b2']);
  const resumed = await openStream(t, url, { 'last-event-id': first.lastEventId() });
  await messages(resumed, 3);
  t.same(messageTexts(resumed.events).sort(), ['a2', 'a3', 'b2']);
  const rooms = resumed.events.map((event) => JSON.parse(event.data).room);
  t.same(rooms.filter((name) => name === a).length, 2);

  const tooMany = await fetch(`${gateway.url}/events?${Array.from({ length: 21 }, (_, i) => `room=r${i}`).join('&')}`);
  t.equal(tooMany.status, 400);
  t.match(await tooMany.json(), { message: /at most 20/ });
  t.equal((await fetch(`${gateway.url}/events`)).status, 400);
});

t.test('?since= starts a stream at a point in time', async (t) => {
  const gateway = await startGateway(t);
  const room = uniqueName('room');
  const watcher = await openStream(t, `${gateway.url}/events/${room}`);
  await post(gateway, room, ['old1', 'old2']);
  await messages(watcher, 2);
  await until(() => Date.now() > JSON.parse(watcher.events[1]!.data).ts, 1000, 'the clock to move on');
  const since = Date.now();
  await post(gateway, room, ['new1', 'new2']);
  await messages(watcher, 4);
  for (const value of [String(since), new Date(since).toISOString()]) {
    const stream = await openStream(t, `${gateway.url}/events/${room}?since=${encodeURIComponent(value)}`);
    t.same(await messages(stream, 2), ['new1', 'new2'], `since=${value}`);
    stream.close();
  }
  // The embedded bus holds every event since it started: a time before that starts at its first one.
  const fromTheStart = await openStream(t, `${gateway.url}/events/${room}?since=1000`);
  t.same(await messages(fromTheStart, 4), ['old1', 'old2', 'new1', 'new2'], 'a time before the bus started: everything it has');
  t.notOk(fromTheStart.events.some((event) => event.event === 'reset'), 'and no reset: nothing is missing');
  fromTheStart.close();
  t.equal((await fetch(`${gateway.url}/events/${room}?since=yesterday`)).status, 400);
});

t.test('?since= further back than the history holds gets reset since-unavailable', async (t) => {
  const gateway = await startGateway(t, { historyMaxEventsPerChannel: 2 });
  const room = uniqueName('room');
  await post(gateway, room, ['dropped1', 'dropped2', 'kept1', 'kept2']);
  await until(() => gateway.app.history.totalEvents >= 2, 5000, 'the history to hold the room');
  const before = await openStream(t, `${gateway.url}/events/${room}?since=1000`);
  const [reset] = await before.waitForEvents(1);
  t.same(JSON.parse(reset!.data), { reason: 'since-unavailable' }, 'the oldest events were dropped: the gap cannot be filled');
  before.close();
});
