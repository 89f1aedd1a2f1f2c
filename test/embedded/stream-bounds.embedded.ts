import t, { type Test } from 'tap';
import { chatMessageRecord, priceUpdateRecord } from '../../src/channels/contract.ts';
import { SseParser } from '../../src/client/sse-parser.ts';
import { startGateway, uniqueName, type TestGateway } from '../helpers/gateway.ts';
import { stalledClient, streamRequest, until, type StalledClient } from '../helpers/sse-client.ts';

/**
 * STREAM_MAX_BUFFERED_BYTES must hold for every stream whichever way its bytes wait on the
 * server: written straight to the socket (HTTP/1.1 chunked, HTTP/1.0), or held by the response
 * while it waits behind an earlier response on the same connection (HTTP/1.1 pipelining). Each
 * client here sends its requests and then reads nothing; what the server holds for it shows in
 * what the client sees: its stream ended as too slow (`overflow`), its connection closed.
 */

const BOUND = 256 * 1024;

/** Publishes `count` chat messages of about 1.5 KB to `room`, giving the event loop turns as a real broker would. */
async function flood(gateway: TestGateway, room: string, count: number): Promise<void> {
  const topics = { chat: gateway.config.chatTopic, ticker: gateway.config.tickerTopic };
  const text = 'x'.repeat(1500);
  for (let i = 0; i < count; i++) {
    await gateway.app.bus.publish(chatMessageRecord(topics, room, { user: 'load', text: `${i} ${text}` }).record);
    if (i % 10 === 9) await new Promise((resolve) => setImmediate(resolve));
  }
}

/** About 24 times the bound: a stream that is never cut off holds all of it. */
const FLOOD_EVENTS = 4000;

async function assertCutOff(t: Test, gateway: TestGateway, client: StalledClient, room: string): Promise<void> {
  await until(() => gateway.app.streamStats.slowClientDisconnects === 1, 20000, 'the stream ended as too slow');
  t.pass('the stream that fell behind was ended as too slow');
  await until(() => gateway.app.hub.subscriberCount(`room:${room}`) === 0, 5000, 'its subscription removed');
  // The client reads again: it finds the connection closed (a paused socket sees no close).
  client.socket.on('data', () => {});
  client.socket.resume();
  await client.closed;
  t.pass('and its connection closed, releasing what the client did not take');
  await until(() => gateway.app.openStreamCount() === 0, 5000, 'no stream left open');
}

t.test('HTTP/1.1, written straight to the socket: cut off past the bound', async (t) => {
  const gateway = await startGateway(t, { streamMaxBufferedBytes: BOUND, historyMaxEventsPerChannel: 10 });
  const room = uniqueName('direct');
  const client = await stalledClient(t, gateway.url, streamRequest(`/events/${room}`));
  await until(() => gateway.app.hub.subscriberCount(`room:${room}`) === 1, 5000, 'subscribed');
  await flood(gateway, room, FLOOD_EVENTS);
  await assertCutOff(t, gateway, client, room);
});

t.test('HTTP/1.0 (no chunking, the body ends with the connection): cut off past the bound', async (t) => {
  const gateway = await startGateway(t, { streamMaxBufferedBytes: BOUND, historyMaxEventsPerChannel: 10 });
  const room = uniqueName('http10');
  const client = await stalledClient(t, gateway.url, streamRequest(`/events/${room}`, '1.0'));
  await until(() => gateway.app.hub.subscriberCount(`room:${room}`) === 1, 5000, 'subscribed');
  await flood(gateway, room, FLOOD_EVENTS);
  await assertCutOff(t, gateway, client, room);
});

t.test('pipelined behind an open stream (bytes held by the response, not the socket): cut off past the bound', async (t) => {
  const gateway = await startGateway(t, { streamMaxBufferedBytes: BOUND, historyMaxEventsPerChannel: 10 });
  const quiet = uniqueName('quiet');
  const room = uniqueName('behind');
  // The first stream never ends, so the second one's response waits behind it for good.
  const client = await stalledClient(t, gateway.url, streamRequest(`/events/${quiet}`) + streamRequest(`/events/${room}`));
  await until(() => gateway.app.hub.subscriberCount(`room:${room}`) === 1, 5000, 'the pipelined stream subscribed');
  await flood(gateway, room, FLOOD_EVENTS);
  await assertCutOff(t, gateway, client, room);
  t.equal(gateway.app.hub.subscriberCount(`room:${quiet}`), 0, 'the stream ahead of it ended with the connection (it resumes by id)');
});

t.test('pipelined behind a request that finished: the stream writes through its response and is still cut off', async (t) => {
  const gateway = await startGateway(t, { streamMaxBufferedBytes: BOUND, historyMaxEventsPerChannel: 10 });
  const room = uniqueName('after');
  const client = await stalledClient(t, gateway.url, `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n${streamRequest(`/events/${room}`)}`);
  await until(() => gateway.app.hub.subscriberCount(`room:${room}`) === 1, 5000, 'subscribed');
  await flood(gateway, room, FLOOD_EVENTS);
  await assertCutOff(t, gateway, client, room);
});

t.test('a ticker stream pipelined behind an open stream keeps only the latest price while it cannot send', async (t) => {
  const gateway = await startGateway(t, { streamMaxBufferedBytes: BOUND, drainWindowMs: 0 });
  const symbol = uniqueName('SYM');
  const client = await stalledClient(t, gateway.url, streamRequest(`/events/${uniqueName('quiet')}`) + streamRequest(`/tickers/${symbol}/events`));
  await until(() => gateway.app.hub.subscriberCount(`ticker:${symbol}`) === 1, 5000, 'the pipelined ticker stream subscribed');
  const topics = { chat: gateway.config.chatTopic, ticker: gateway.config.tickerTopic };
  const total = 20000;
  for (let i = 1; i <= total; i++) {
    await gateway.app.bus.publish(priceUpdateRecord(topics, symbol, { price: i, currency: 'USD' }));
    if (i % 500 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  await until(() => gateway.app.dispatcher.stats.recordsConsumed >= total, 20000, 'all prices dispatched');
  t.ok(gateway.app.streamStats.conflated > 0, `${gateway.app.streamStats.conflated} stale prices replaced`);
  t.equal(gateway.app.streamStats.slowClientDisconnects, 0, 'ticker streams conflate instead of being cut');
  // Closing the app ends the first stream, so the second one's bytes finally go out: what it
  // held is what the client now reads.
  const chunks: Buffer[] = [];
  client.socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  client.socket.resume();
  await gateway.close();
  await client.closed;
  const raw = Buffer.concat(chunks).toString('utf8');
  const parser = new SseParser();
  const prices = parser
    .feed(raw.replace(/(^|\r\n)[0-9a-fA-F]+\r\n/g, ''))
    .filter((event) => event.event === 'price_update')
    .map((event) => JSON.parse(event.data).price as number);
  t.ok(prices.length > 0 && prices.length < total / 4, `the client got ${prices.length} of ${total} prices, not every one`);
  t.same(prices, [...prices].sort((a, b) => a - b), 'in order');
});
