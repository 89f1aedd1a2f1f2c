import { readFile } from 'node:fs/promises';
import t from 'tap';
import { postJson, startGateway, uniqueName } from '../helpers/gateway.ts';
import { scrape, total, value, type Sample } from '../helpers/metrics.ts';
import { openStream, until, type TestStream } from '../helpers/sse-client.ts';
import { BusUnavailableError, type BusClientStats, type EventBus, type PartitionPosition } from '../../src/bus/types.ts';

/** What the gateway itself wrote to a stream: all but the stream's opening `retry:` and `: connected` preamble. */
function writtenFrames(stream: TestStream): { frames: number; bytes: number } {
  const blocks = stream.text().split(/(?<=\n\n)/).filter((block) => !/^(retry: \d+|: ?connected)\n\n$/.test(block));
  return { frames: blocks.length, bytes: blocks.reduce((total, block) => total + Buffer.byteLength(block), 0) };
}

const ROOM_POSTS = '/rooms/:room/messages';

t.test('after a known sequence of streams and publishes, /metrics counts exactly them', async (t) => {
  const gateway = await startGateway(t);
  const room = uniqueName('room');
  const roomStream = await openStream(t, `${gateway.url}/events/${room}`);
  const tickerStream = await openStream(t, `${gateway.url}/tickers/DOGE/events`);

  for (let i = 0; i < 3; i++) {
    t.equal((await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'ann', text: `m${i}` })).status, 202);
  }
  t.equal((await postJson(`${gateway.url}/rooms/nobody-listens/messages`, { user: 'bob', text: 'unheard' })).status, 202);
  t.equal((await postJson(`${gateway.url}/tickers/DOGE/prices`, { price: 0.5, currency: 'USD' })).status, 202);
  t.equal((await postJson(`${gateway.url}/rooms/${room}/messages`, { user: '', text: 'x' })).status, 400);
  await roomStream.waitForEvents(3);
  await tickerStream.waitForEvents(1);

  const { contentType, samples } = await scrape(gateway.url);
  t.match(contentType, /^text\/plain; version=0\.0\.4/);
  t.equal(value(samples, 'sse_gateway_records_consumed_total'), 5);
  t.equal(value(samples, 'sse_gateway_records_skipped_total'), 0);
  t.equal(value(samples, 'sse_gateway_events_total', { type: 'message' }), 4);
  t.equal(value(samples, 'sse_gateway_events_total', { type: 'price_update' }), 1);
  t.equal(value(samples, 'sse_gateway_events_total', { type: 'delete' }), undefined, 'no delete yet');
  t.equal(value(samples, 'sse_gateway_events_delivered_total'), 4, 'the unheard message reached no stream');
  const [roomWritten, tickerWritten] = [writtenFrames(roomStream), writtenFrames(tickerStream)];
  t.equal(value(samples, 'sse_gateway_frames_written_total'), roomWritten.frames + tickerWritten.frames);
  t.equal(value(samples, 'sse_gateway_bytes_written_total'), roomWritten.bytes + tickerWritten.bytes);
  t.ok(roomWritten.frames >= 3 && tickerWritten.frames >= 1, 'the events are among the frames counted');
  t.equal(value(samples, 'sse_gateway_end_to_end_latency_seconds_count'), 5, 'one latency observation per event');
  t.equal(value(samples, 'sse_gateway_streams_opened_total'), 2);
  t.equal(value(samples, 'sse_gateway_streams_closed_total'), 0);
  t.equal(value(samples, 'sse_gateway_open_streams', { kind: 'room' }), 1);
  t.equal(value(samples, 'sse_gateway_open_streams', { kind: 'ticker' }), 1);
  t.equal(value(samples, 'sse_gateway_open_streams', { kind: 'multi' }), 0);
  t.equal(value(samples, 'sse_gateway_resumes_total', { from: 'memory' }), 0);
  t.equal(value(samples, 'sse_gateway_resumes_total', { from: 'kafka' }), 0);
  t.equal(value(samples, 'sse_gateway_resume_resets_total'), 0);
  t.equal(value(samples, 'sse_gateway_history_events'), 5, 'every event is kept for resumes');
  t.equal(value(samples, 'sse_gateway_active_channels'), 2);
  t.equal(value(samples, 'sse_gateway_slow_client_disconnects_total'), 0);
  t.equal(value(samples, 'sse_gateway_bus_ready'), 1);
  t.equal(value(samples, 'sse_gateway_bus_info', { kind: 'memory' }), 1);
  for (const kind of ['consumer_crash', 'request_timeout', 'publish_failed']) {
    t.equal(value(samples, 'sse_gateway_kafka_client_errors_total', { kind }), 0, `kafka client errors of kind ${kind}: 0 on the embedded bus`);
  }
  t.equal(samples.filter((sample) => sample.name === 'sse_gateway_kafka_client_errors_total').length, 3, 'one series per error kind');
  t.equal(value(samples, 'sse_gateway_kafka_reconnects_total'), 0);
  t.equal(value(samples, 'sse_gateway_publish_requests_total', { method: 'POST', route: ROOM_POSTS, status: '202' }), 4);
  t.equal(value(samples, 'sse_gateway_publish_requests_total', { method: 'POST', route: ROOM_POSTS, status: '400' }), 1);
  t.equal(
    value(samples, 'sse_gateway_publish_requests_total', { method: 'POST', route: '/tickers/:symbol/prices', status: '202' }),
    1,
  );
  t.equal(value(samples, 'sse_gateway_publish_duration_seconds_count', { route: ROOM_POSTS, status: '202' }), 4);
  t.equal(
    value(samples, 'sse_gateway_publish_duration_seconds_count', { route: ROOM_POSTS, status: '400' }),
    undefined,
    'a request refused before reaching the bus is no publish latency',
  );
  t.ok(samples.some((sample) => sample.name === 'nodejs_eventloop_lag_seconds'), 'default event-loop metrics');
  t.ok(samples.some((sample) => sample.name === 'process_cpu_user_seconds_total'), 'default process metrics');
  t.notOk(
    samples.some((sample) => Object.values(sample.labels).some((label) => label.includes(room) || label.includes('DOGE'))),
    'no room or symbol in any label',
  );
  const lags = samples.filter((sample) => sample.name === 'sse_gateway_consumer_lag_records');
  t.ok(lags.length > 0, 'a lag series per partition');
  t.ok(lags.every((sample) => sample.value === 0), 'the embedded bus never lags');

  const posted = await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'ann', text: 'to delete' });
  t.equal((await fetch(`${gateway.url}/rooms/${room}/messages/${posted.body.id}`, { method: 'DELETE' })).status, 202);
  await roomStream.waitForEvents(5);
  tickerStream.close();
  let after: Sample[] = [];
  await until(async () => {
    after = (await scrape(gateway.url)).samples;
    return total(after, 'sse_gateway_open_streams') === 1;
  }, 20000, 'the closed stream to be counted');
  t.equal(value(after, 'sse_gateway_streams_closed_total'), 1);
  t.equal(value(after, 'sse_gateway_open_streams', { kind: 'ticker' }), 0);
  t.equal(value(after, 'sse_gateway_active_channels'), 1, "the ticker's channel is gone with its last stream");
  t.equal(value(after, 'sse_gateway_events_total', { type: 'delete' }), 1);
  t.equal(
    value(after, 'sse_gateway_publish_requests_total', { method: 'DELETE', route: '/rooms/:room/messages/:id', status: '202' }),
    1,
  );
  t.equal(value(after, 'sse_gateway_publish_requests_total', { method: 'POST', route: ROOM_POSTS, status: '202' }), 5);
});

t.test('every metric the Grafana dashboard queries is one the gateway exports', async (t) => {
  const gateway = await startGateway(t);
  // One publish so the labelled series (events by type, publishes) exist.
  t.equal((await postJson(`${gateway.url}/rooms/lobby/messages`, { user: 'ann', text: 'hi' })).status, 202);
  await until(async () => value((await scrape(gateway.url)).samples, 'sse_gateway_records_consumed_total') === 1);
  const exported = new Set((await scrape(gateway.url)).samples.map((sample) => sample.name));
  const dashboard = await readFile(new URL('../../deploy/grafana-dashboard.json', import.meta.url), 'utf8');
  const queried = new Set(dashboard.match(/\b(?:sse_gateway|nodejs|process)_[a-z0-9_]+/g));
  t.ok(queried.size >= 10, `the dashboard queries ${[...queried].join(', ')}`);
  for (const name of queried) t.ok(exported.has(name), `${name} is exported`);
});

t.test('resumes are counted by source, and a position that cannot be honoured as a reset', async (t) => {
  const gateway = await startGateway(t);
  const room = uniqueName('room');
  const first = await openStream(t, `${gateway.url}/events/${room}`);
  for (const text of ['one', 'two']) {
    t.equal((await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'ann', text })).status, 202);
  }
  const [one] = await first.waitForEvents(2);
  first.close();

  const resumed = await openStream(t, `${gateway.url}/events/${room}`, { 'last-event-id': one?.id ?? '' });
  await resumed.waitForEvents(1);
  t.match(JSON.parse(resumed.events.find((event) => event.event === 'message')?.data ?? '{}'), { text: 'two' });
  await openStream(t, `${gateway.url}/events/${room}`, { 'last-event-id': 'not-a-position' });

  let samples: Sample[] = [];
  await until(async () => {
    samples = (await scrape(gateway.url)).samples;
    return value(samples, 'sse_gateway_resume_resets_total') === 1;
  }, 20000, 'the reset to be counted');
  t.equal(value(samples, 'sse_gateway_resumes_total', { from: 'memory' }), 1, 'the missed message came from memory');
  t.equal(value(samples, 'sse_gateway_resumes_total', { from: 'kafka' }), 0);
});

/** A bus that is never ready, refuses every publish, and reports fixed positions and client trouble. */
function stuckBus(positions: PartitionPosition[], stats: BusClientStats): EventBus {
  return {
    kind: 'kafka',
    stats,
    start: async () => {},
    publish: async () => {
      throw new BusUnavailableError('Kafka is not connected');
    },
    readiness: () => ({ ready: false, reason: 'Kafka producer disconnected' }),
    partitionPositions: () => positions,
    close: async () => {},
  };
}

t.test('consumer lag is end offset minus next offset per partition; 503s are counted and timed', async (t) => {
  const bus = stuckBus([
    { topic: 'chat', partition: 0, next: '5', highWatermark: '12' },
    // Past 2^53: the offsets are compared as integers, not as doubles.
    { topic: 'chat', partition: 1, next: '9007199254740993', highWatermark: '9007199254740995' },
    { topic: 'ticker', partition: 0, next: '40', highWatermark: '40' },
  ], { clientErrors: { consumer_crash: 3, request_timeout: 5, publish_failed: 7 }, reconnects: 2 });
  const gateway = await startGateway(t, {}, { bus, waitReady: false });
  const refused = await postJson(`${gateway.url}/tickers/BTC/prices`, { price: 1, currency: 'USD' });
  t.equal(refused.status, 503);

  const { samples } = await scrape(gateway.url);
  t.equal(value(samples, 'sse_gateway_consumer_lag_records', { topic: 'chat', partition: '0' }), 7);
  t.equal(value(samples, 'sse_gateway_consumer_lag_records', { topic: 'chat', partition: '1' }), 2);
  t.equal(value(samples, 'sse_gateway_consumer_lag_records', { topic: 'ticker', partition: '0' }), 0);
  t.equal(samples.filter((sample) => sample.name === 'sse_gateway_consumer_lag_records').length, 3);
  t.equal(value(samples, 'sse_gateway_bus_ready'), 0);
  t.equal(value(samples, 'sse_gateway_bus_info', { kind: 'kafka' }), 1);
  const priceRoute = { method: 'POST', route: '/tickers/:symbol/prices', status: '503' };
  t.equal(value(samples, 'sse_gateway_publish_requests_total', priceRoute), 1);
  t.equal(value(samples, 'sse_gateway_publish_duration_seconds_count', priceRoute), 1);
  t.equal(value(samples, 'sse_gateway_kafka_client_errors_total', { kind: 'consumer_crash' }), 3);
  t.equal(value(samples, 'sse_gateway_kafka_client_errors_total', { kind: 'request_timeout' }), 5);
  t.equal(value(samples, 'sse_gateway_kafka_client_errors_total', { kind: 'publish_failed' }), 7);
  t.equal(value(samples, 'sse_gateway_kafka_reconnects_total'), 2);
  const status = (await (await fetch(`${gateway.url}/status`)).json()) as { bus: Record<string, unknown> };
  t.same(status.bus.clientErrors, { consumer_crash: 3, request_timeout: 5, publish_failed: 7 }, '/status shows the same');
  t.equal(status.bus.reconnects, 2);
});

t.test('each app has its own registry: two gateways in one process count separately', async (t) => {
  const [a, b] = await Promise.all([startGateway(t), startGateway(t)]);
  t.equal((await postJson(`${a.url}/rooms/lobby/messages`, { user: 'ann', text: 'only on a' })).status, 202);
  const route = { method: 'POST', route: ROOM_POSTS, status: '202' };
  t.equal(value((await scrape(a.url)).samples, 'sse_gateway_publish_requests_total', route), 1);
  t.equal(value((await scrape(b.url)).samples, 'sse_gateway_publish_requests_total', route), undefined);
});

t.test('a scrape walks no handle list: no nodejs_active_handles or _resources; process_open_fds still counts every open socket', async (t) => {
  const gateway = await startGateway(t);
  const before = value((await scrape(gateway.url)).samples, 'process_open_fds');
  t.ok(before !== undefined && before > 0, `process_open_fds reported (${before})`);
  const streams = await Promise.all(Array.from({ length: 40 }, () => openStream(t, `${gateway.url}/events/${uniqueName('room')}`)));
  const { samples } = await scrape(gateway.url);
  // Each stream is a socket on both ends, both in this process.
  t.ok(value(samples, 'process_open_fds')! >= before! + 2 * streams.length, `40 more streams: ${before} → ${value(samples, 'process_open_fds')} fds`);
  const walking = samples.filter((sample) => /^nodejs_active_(handles|resources)/.test(sample.name)).map((sample) => sample.name);
  t.same([...new Set(walking)], [], 'the collectors that list every handle at each scrape are left out');
  t.ok(samples.some((sample) => sample.name === 'nodejs_active_requests_total'), 'the other default process metrics stay');
});
