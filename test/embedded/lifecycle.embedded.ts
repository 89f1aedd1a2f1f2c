import t, { type Test } from 'tap';
import net from 'node:net';
import http from 'node:http';
import { chatMessageRecord, priceUpdateRecord } from '../../src/channels/contract.ts';
import { SseParser, type SseMessage } from '../../src/client/sse-parser.ts';
import { postJson, startGateway, uniqueName } from '../helpers/gateway.ts';
import { MemoryBus } from '../../src/bus/memory.ts';
import { chatMessages, messageTexts, openStream, stalledClient, streamRequest, until, type TestStream } from '../helpers/sse-client.ts';

/** Reads everything a stalled socket received and parses its SSE events (after the HTTP head). */
async function drain(socket: net.Socket, closed: Promise<void>): Promise<{ events: SseMessage[]; lastEventId: string; endedCleanly: boolean }> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {});
  socket.resume();
  await closed;
  const raw = Buffer.concat(chunks).toString('utf8');
  const body = raw.slice(raw.indexOf('\r\n\r\n') + 4);
  // Chunked transfer encoding: drop the chunk-size lines.
  const unchunked = body.replace(/(^|\r\n)[0-9a-fA-F]+\r\n/g, '');
  const parser = new SseParser();
  // The last chunk arrived (else the connection was destroyed after the linger, bytes unsent).
  const endedCleanly = body.endsWith('\r\n0\r\n\r\n');
  return { events: parser.feed(unchunked), lastEventId: parser.lastEventId, endedCleanly };
}

/**
 * Asserts that `stream` is the answer to a stream request the replica cannot serve now: one
 * that EventSource retries (200, text/event-stream, then the end: WHATWG HTML "Server-sent
 * events" reconnects on the end of such a response, but fails for good on any other status or
 * type), with a `retry:` and an `unavailable` event giving `reason`. Returns the retry delay.
 */
async function assertComeBackLater(t: Test, stream: TestStream, reason: string): Promise<number> {
  t.equal(stream.status, 200, `${reason}: 200, which EventSource retries (it gives up on 503 or 429)`);
  t.match(stream.headers['content-type'], /^text\/event-stream/, 'as an event stream');
  await stream.ended;
  const match = /^retry: (\d+)\n\nevent: unavailable\ndata: (\{[^\n]*\})\n\n$/.exec(stream.text());
  t.ok(match, `a retry: and the reason, then the end: ${JSON.stringify(stream.text())}`);
  const retry = Number(match?.[1]);
  t.same(JSON.parse(match?.[2] ?? '{}'), { reason, retryMs: retry }, 'unavailable names the reason and the delay');
  t.equal(stream.headers['retry-after'], String(Math.ceil(retry / 1000)), 'Retry-After says the same');
  return retry;
}

t.test('heartbeats: idle streams get a comment line from one shared timer', async (t) => {
  const gateway = await startGateway(t, { heartbeatMs: 150 });
  const streams = await Promise.all([1, 2].map(() => openStream(t, `${gateway.url}/events/${uniqueName('idle')}`)));
  for (const stream of streams) await until(() => stream.comments() >= 3, 5000, 'two heartbeats after :connected');
  t.match(streams[0]!.text(), /\n:\n\n/, 'a bare comment line');
  t.ok(gateway.app.streamStats.heartbeats >= 4);
});

t.test('an idle stream gets one comment per HEARTBEAT_MS, not one every other period', async (t) => {
  const heartbeatMs = 200;
  const gateway = await startGateway(t, { heartbeatMs });
  const stream = await openStream(t, `${gateway.url}/events/${uniqueName('idle')}`);
  await until(() => stream.comments() >= 2, 5000, 'a first heartbeat after :connected');
  // Counted over ten periods, so one late timer does not decide: a heartbeat every other
  // period would take about twice as long as one every period.
  const first = stream.comments();
  const startedAt = Date.now();
  const periods = 10;
  await until(() => stream.comments() >= first + periods, 20 * periods * heartbeatMs, `${periods} more heartbeats`);
  const perHeartbeat = (Date.now() - startedAt) / periods;
  t.ok(perHeartbeat < 1.6 * heartbeatMs, `one heartbeat every ${perHeartbeat.toFixed(0)} ms (HEARTBEAT_MS ${heartbeatMs})`);
  t.ok(perHeartbeat > 0.6 * heartbeatMs, 'and not more often than that');
  // A room stream opens with who is in the room (README, "Presence"): the one frame besides its position.
  t.match(stream.text(), /^retry: \d+\n\n: connected\n\nevent: presence\ndata: \{[^\n]*"snapshot":true[^\n]*\}\n\nid: [^\n]+\nevent: position\ndata: \{\}\n\n(:\n\n)+$/, 'bare comment lines, nothing else, on an idle stream');
});

t.test('a chat client that stops reading is cut off with bounded memory, resumes without loss, and others keep up', async (t) => {
  const gateway = await startGateway(t, { streamMaxBufferedBytes: 256 * 1024, historyMaxEventsPerChannel: 10000, historyMaxTotalEvents: 20000 });
  const room = uniqueName('busy');
  const normal = await openStream(t, `${gateway.url}/events/${room}`);
  const slow = await stalledClient(t, gateway.url, streamRequest(`/events/${room}`));
  await until(() => gateway.app.hub.subscriberCount(`room:${room}`) === 2, 5000, 'both subscribed');

  const total = 4000;
  const text = 'x'.repeat(1500);
  const rssBefore = process.memoryUsage().rss;
  const topics = { chat: gateway.config.chatTopic, ticker: gateway.config.tickerTopic };
  const delays: number[] = [];
  normal.events.length = 0;
  for (let i = 0; i < total; i++) {
    await gateway.app.bus.publish(chatMessageRecord(topics, room, { user: 'load', text: `${i} ${text}` }).record);
    // The test client shares this process's event loop: give it turns to read, as a real one would.
    if (i % 10 === 9) await new Promise((resolve) => setImmediate(resolve));
  }
  await normal.waitForEvents(total, 60000);
  for (const event of normal.events) delays.push(Date.now() - JSON.parse(event.data).ts);
  const rssGrowthMb = (process.memoryUsage().rss - rssBefore) / 1024 / 1024;
  t.ok(rssGrowthMb < 200, `server memory stays bounded: grew ${rssGrowthMb.toFixed(1)} MB while ${((total * 1600) / 1e6).toFixed(1)} MB went to a client that reads nothing`);
  t.equal(gateway.app.streamStats.slowClientDisconnects, 1, 'the stalled stream was ended');
  await until(() => gateway.app.hub.subscriberCount(`room:${room}`) === 1, 5000, 'its subscription removed');
  t.equal(normal.events.length, total, 'the normal client got everything');

  const received = await drain(slow.socket, slow.closed);
  // The reason is the stream's last bytes: they reach a client that reads again within the
  // linger, and are dropped with the connection after it (this client reads only later on).
  if (received.endedCleanly) t.equal(received.events.at(-1)?.event, 'overflow', 'told why');
  const seen = chatMessages(received.events).length;
  t.ok(seen < total, `the stalled client got ${seen} before the cut`);
  const resumed = await openStream(t, `${gateway.url}/events/${room}`, { 'last-event-id': received.lastEventId });
  await until(() => chatMessages(resumed.events).length >= total - seen, 30000, 'the rest');
  const rest = resumed.events;
  const numbers = messageTexts([...received.events, ...rest]).map((text) => Number(text.split(' ')[0]));
  t.same(numbers, Array.from({ length: total }, (_, i) => i), 'the resume fills the gap exactly');
});

t.test('a ticker client that stops reading is not cut off: it gets the latest price per symbol', async (t) => {
  const gateway = await startGateway(t, { streamMaxBufferedBytes: 256 * 1024 });
  const slow = await stalledClient(t, gateway.url, streamRequest('/tickers/DOGE/events'));
  await until(() => gateway.app.hub.subscriberCount('ticker:DOGE') === 1, 5000, 'subscribed');
  const topics = { chat: gateway.config.chatTopic, ticker: gateway.config.tickerTopic };
  const total = 60000;
  for (let i = 1; i <= total; i++) {
    await gateway.app.bus.publish(priceUpdateRecord(topics, 'DOGE', { price: i, currency: 'USD' }));
    if (i % 500 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  await until(() => gateway.app.dispatcher.stats.recordsConsumed >= total, 20000, 'all prices dispatched');
  t.ok(gateway.app.streamStats.conflated > 0, `${gateway.app.streamStats.conflated} stale prices replaced`);
  t.equal(gateway.app.streamStats.slowClientDisconnects, 0, 'ticker streams conflate instead of being cut');
  const chunks: Buffer[] = [];
  const parser = new SseParser();
  const prices: number[] = [];
  slow.socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    for (const event of parser.feed(chunk.toString('utf8').replace(/(^|\r\n)[0-9a-fA-F]+\r\n/g, ''))) {
      if (event.event === 'price_update') prices.push(JSON.parse(event.data).price);
    }
  });
  slow.socket.resume();
  await until(() => prices.at(-1) === total, 20000, 'the latest price');
  t.ok(prices.length < total, `received ${prices.length} of ${total} prices`);
  t.same(prices, [...prices].sort((a, b) => a - b), 'prices stay in order');
  slow.socket.destroy();
});

t.test('limits: come back later past the instance cap (EventSource retries), 429 past the per-IP cap, 431 for huge headers', async (t) => {
  const gateway = await startGateway(t, { maxStreams: 3, maxStreamsPerIp: 2, sseRetryMs: 1000 });
  const first = await openStream(t, `${gateway.url}/events/a`, {}, '127.0.0.2');
  const second = await openStream(t, `${gateway.url}/events/a`, {}, '127.0.0.2');
  const perIp = await openStream(t, `${gateway.url}/events/a`, {}, '127.0.0.2');
  t.equal(perIp.status, 429);
  t.ok(Number(perIp.headers['retry-after']) > 0);
  t.match(JSON.parse(perIp.text()), { statusCode: 429, message: /too many streams from this address/ });
  const third = await openStream(t, `${gateway.url}/events/a`, {}, '127.0.0.3');
  t.equal(third.status, 200);
  const retries: number[] = [];
  for (const address of ['127.0.0.4', '127.0.0.5', '127.0.0.6', '127.0.0.7']) {
    retries.push(await assertComeBackLater(t, await openStream(t, `${gateway.url}/events/a`, {}, address), 'at-capacity'));
  }
  t.ok(retries.every((retry) => retry >= 1000 && retry < 6000), `reconnect delays from SSE_RETRY_MS, spread over 5 s: ${retries.join(',')}`);
  t.ok(new Set(retries).size > 1, 'jittered');
  t.equal(gateway.app.streamStats.refusedAtCapacity, 4, 'counted as refusals');
  t.equal(gateway.app.openStreamCount(), 3, 'and not as streams');
  for (const stream of [first, second, third]) stream.close();
  await until(() => gateway.app.openStreamCount() === 0, 5000, 'streams closed');
  const again = await openStream(t, `${gateway.url}/events/a`, {}, '127.0.0.2');
  t.equal(again.status, 200, 'slots are given back when streams close');
  again.close();

  const status = await new Promise<number>((resolve, reject) => {
    http.get(`${gateway.url}/healthz`, { headers: { 'x-big': 'y'.repeat(40000) } }, (response) => resolve(response.statusCode ?? 0)).on('error', reject);
  });
  t.equal(status, 431);
});

t.test('closing the app drains streams over the window with a jittered retry, then stops', async (t) => {
  const gateway = await startGateway(t, { drainWindowMs: 1000, sseRetryMs: 1000 });
  const streams = await Promise.all(Array.from({ length: 10 }, () => openStream(t, `${gateway.url}/events/${uniqueName('d')}`)));
  const endedAt: number[] = [];
  for (const stream of streams) void stream.ended.then(() => endedAt.push(Date.now()));
  const closing = gateway.close();
  await until(async () => (await fetch(`${gateway.url}/readyz`).then((r) => r.status, () => 503)) === 503, 2000, 'not ready while draining');
  await closing;
  await Promise.all(streams.map((stream) => stream.ended));
  const spread = Math.max(...endedAt) - Math.min(...endedAt);
  t.ok(spread >= 500, `ends spread over the window (${spread} ms)`);
  const retries = streams.map((stream) => Number(/retry: (\d+)\n\n$/.exec(stream.text())?.[1]));
  t.ok(retries.every((retry) => retry >= 1000 && retry < 2000), `each told a reconnect delay within the window: ${retries.join(',')}`);
  t.ok(new Set(retries).size > 1, 'delays are jittered');
});

t.test('publishing while the server drains still works; new streams are sent elsewhere', async (t) => {
  const gateway = await startGateway(t, { drainWindowMs: 1500 });
  const holders = await Promise.all(Array.from({ length: 15 }, () => openStream(t, `${gateway.url}/events/${uniqueName('h')}`)));
  const closing = gateway.close();
  await until(async () => gateway.app.isShuttingDown(), 2000, 'draining');
  const late = await openStream(t, `${gateway.url}/events/late`);
  const retry = await assertComeBackLater(t, late, 'draining');
  t.ok(retry >= gateway.config.sseRetryMs && retry < gateway.config.sseRetryMs + 1500, `a reconnect delay spread over the drain window: ${retry}`);
  t.equal(gateway.app.streamStats.refusedDraining, 1);
  t.equal((await postJson(`${gateway.url}/rooms/x/messages`, { user: 'a', text: 'b' })).status, 202);
  await closing;
  await Promise.all(holders.map((holder) => holder.ended));
});

/** The embedded bus, reporting not ready until told otherwise (as Kafka while a replica starts). */
class SlowStartingBus extends MemoryBus {
  ready = false;
  override readiness() {
    return this.ready ? super.readiness() : { ready: false, reason: 'warming up the history' };
  }
}

t.test('a replica still starting tells stream requests to come back later; once ready, it streams', async (t) => {
  const bus = new SlowStartingBus({ partitions: 6, topics: ['chat', 'ticker'] });
  const gateway = await startGateway(t, { sseRetryMs: 1000 }, { bus, waitReady: false });
  const early = await openStream(t, `${gateway.url}/events/lobby`);
  const retry = await assertComeBackLater(t, early, 'starting');
  t.ok(retry >= 1000 && retry < 2000, `retry between SSE_RETRY_MS and twice it: ${retry}`);
  t.equal(gateway.app.streamStats.refusedStarting, 1);
  t.equal(gateway.app.openStreamCount(), 0);

  bus.ready = true;
  const stream = await openStream(t, `${gateway.url}/events/lobby`);
  t.equal(stream.status, 200);
  t.equal((await postJson(`${gateway.url}/rooms/lobby/messages`, { user: 'a', text: 'now' })).status, 202);
  t.same(messageTexts(await stream.waitForEvents(1)), ['now'], 'the stream is served once the replica is ready');
});
