import { connect } from 'node:net';
import t from 'tap';
import { postJson, startGateway } from '../helpers/gateway.ts';
import { openStream, until } from '../helpers/sse-client.ts';

t.test('on the embedded bus, a posted message reaches a stream over real HTTP', async (t) => {
  const gateway = await startGateway(t);
  const stream = await openStream(t, `${gateway.url}/events/lobby`, { origin: 'http://example.test' });
  t.equal(stream.status, 200);
  t.match(stream.headers['content-type'], /^text\/event-stream/);
  t.match(stream.headers['cache-control'], /no-cache/);
  t.equal(stream.headers['x-accel-buffering'], 'no');
  t.equal(stream.headers['access-control-allow-origin'], 'http://example.test');

  const posted = await postJson(`${gateway.url}/rooms/lobby/messages`, { user: 'ann', text: 'hello\nworld' });
  t.equal(posted.status, 202);
  t.type(posted.body.id, 'string');
  const deleted = await fetch(`${gateway.url}/rooms/lobby/messages/${posted.body.id}`, { method: 'DELETE' });
  t.equal(deleted.status, 202);

  const [message, deletion] = await stream.waitForEvents(2);
  t.equal(message?.event, 'message');
  t.equal(message?.id, posted.body.eventId);
  t.match(JSON.parse(message?.data ?? '{}'), { room: 'lobby', id: posted.body.id, user: 'ann', text: 'hello\nworld' });
  t.equal(deletion?.event, 'delete');
  t.match(JSON.parse(deletion?.data ?? '{}'), { room: 'lobby', id: posted.body.id });
  t.match(stream.text(), /^retry: \d+\n\n/, 'the stream starts by telling clients how long to wait before reconnecting');
  t.match(stream.text(), /\nid: [A-Za-z0-9_-]+\nevent: message\ndata: \{[^\n]*\}\n\n/, 'one data line: JSON never carries a raw newline');
});

t.test('rooms are isolated and tickers stream price updates', async (t) => {
  const gateway = await startGateway(t);
  const other = await openStream(t, `${gateway.url}/events/other`);
  const ticker = await openStream(t, `${gateway.url}/tickers/DOGE/events`);
  t.equal((await postJson(`${gateway.url}/rooms/lobby/messages`, { user: 'a', text: 'not for other' })).status, 202);
  t.equal((await postJson(`${gateway.url}/tickers/DOGE/prices`, { price: 0.1234, currency: 'USD' })).status, 202);
  t.equal((await postJson(`${gateway.url}/rooms/other/messages`, { user: 'b', text: 'for other' })).status, 202);
  const [update] = await ticker.waitForEvents(1);
  t.equal(update?.event, 'price_update');
  t.match(JSON.parse(update?.data ?? '{}'), { ticker: 'DOGE', price: 0.1234, currency: 'USD' });
  const [message] = await other.waitForEvents(1);
  t.match(JSON.parse(message?.data ?? '{}'), { text: 'for other' });
  t.equal(other.events.length, 1);
});

t.test('bad input answers 4xx JSON naming the problem', async (t) => {
  const gateway = await startGateway(t, { bodyLimitBytes: 4096 });
  const cases: Array<[string, string, unknown, number, RegExp]> = [
    ['POST', '/rooms/lobby/messages', { user: 'a' }, 400, /text/],
    ['POST', '/rooms/lobby/messages', { user: 'a', text: 'x'.repeat(2001) }, 400, /text/],
    ['POST', '/rooms/lobby/messages', { user: '', text: 'x' }, 400, /user/],
    ['POST', '/rooms/lob%20by/messages', { user: 'a', text: 'x' }, 400, /room/],
    ['POST', `/rooms/${'r'.repeat(65)}/messages`, { user: 'a', text: 'x' }, 400, /room/],
    ['POST', '/rooms/lobby/messages', '{"user": "a", "text": ', 400, /JSON/],
    ['POST', '/rooms/lobby/messages', { user: 'a', text: 'x'.repeat(5000) }, 413, /large/],
    ['POST', '/tickers/DOGE/prices', { price: 0, currency: 'USD' }, 400, /price/],
    ['POST', '/tickers/DOGE/prices', { price: -1, currency: 'USD' }, 400, /price/],
    ['POST', '/tickers/DOGE/prices', { price: 1, currency: 'US Dollar' }, 400, /currency/],
    ['DELETE', '/rooms/lobby/messages/bad%0Aid', undefined, 400, /id/],
    ['GET', '/events/bad%0Aroom', undefined, 400, /room/],
    ['GET', '/nowhere', undefined, 404, /no route/],
  ];
  for (const [method, path, body, status, message] of cases) {
    const response = await fetch(`${gateway.url}${path}`, {
      method,
      ...(body === undefined
        ? {}
        : { headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const reply = (await response.json()) as { statusCode: number; message: string };
    t.equal(response.status, status, `${method} ${path} → ${status}`);
    t.equal(reply.statusCode, status);
    t.match(reply.message, message, `${method} ${path}: "${reply.message}"`);
  }
});

t.test('a client that goes away leaves no subscription behind', async (t) => {
  const gateway = await startGateway(t);
  const streams = await Promise.all([1, 2, 3].map(() => openStream(t, `${gateway.url}/events/leaving`)));
  await until(() => gateway.app.hub.subscriberCount('room:leaving') === 3, 5000, 'three subscribers');
  for (const stream of streams) stream.close();
  await until(() => gateway.app.hub.channelCount === 0 && gateway.app.openStreamCount() === 0, 5000, 'no subscriptions');
  t.equal(gateway.app.hub.subscriberCount('room:leaving'), 0);
});

t.test('HEAD on a stream route answers the stream headers and no body, and opens no stream', async (t) => {
  const gateway = await startGateway(t);
  for (const path of ['/events/probe', '/tickers/PROBE/events', '/events?room=probe&ticker=PROBE']) {
    const response = await fetch(`${gateway.url}${path}`, { method: 'HEAD' });
    t.equal(response.status, 200, path);
    t.match(response.headers.get('content-type'), /^text\/event-stream/, path);
    t.equal(await response.text(), '', path);
  }
  t.equal(gateway.app.openStreamCount(), 0);
  t.equal(gateway.app.hub.channelCount, 0);
  const get = await fetch(`${gateway.url}/events/probe`);
  t.equal(get.status, 200, 'the connection is still a sane HTTP/1.1 one after the HEADs');
  await get.body?.cancel();
});

/** The payload of an HTTP/1.1 chunked body so far (complete chunks only); throws on bad framing. */
function dechunk(body: string): string {
  let payload = '';
  let rest = body;
  for (;;) {
    const sizeEnd = rest.indexOf('\r\n');
    if (sizeEnd < 0) return payload;
    const size = Number.parseInt(rest.slice(0, sizeEnd), 16);
    if (!/^[0-9a-f]+$/i.test(rest.slice(0, sizeEnd))) throw new Error(`bad chunk size line: ${JSON.stringify(rest.slice(0, 20))}`);
    if (rest.length < sizeEnd + 2 + size + 2) return payload;
    payload += rest.slice(sizeEnd + 2, sizeEnd + 2 + size);
    if (rest.slice(sizeEnd + 2 + size, sizeEnd + 4 + size) !== '\r\n') throw new Error('chunk not followed by CRLF');
    rest = rest.slice(sizeEnd + 4 + size);
  }
}

t.test('a stream requested behind another request on one connection (pipelining) comes after its response, intact', async (t) => {
  const gateway = await startGateway(t);
  const { port, hostname } = new URL(gateway.url);
  const socket = connect(Number(port), hostname);
  t.teardown(() => socket.destroy());
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('utf8')));
  socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /events/pipelined HTTP/1.1\r\nHost: x\r\n\r\n');
  await until(() => gateway.app.hub.subscriberCount('room:pipelined') === 1, 5000, 'the stream subscribed');
  t.equal((await postJson(`${gateway.url}/rooms/pipelined/messages`, { user: 'ann', text: 'in order' })).status, 202);
  await until(() => received.includes('in order'), 5000, 'the event');
  const [health, stream] = received.split(/(?=HTTP\/1\.1 )/);
  t.match(health, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n\{"status":"ok"\}$/, 'the first response, whole, first');
  const [head] = stream!.split('\r\n\r\n', 2) as [string, string];
  t.match(head, /^HTTP\/1\.1 200 OK\r\n[\s\S]*text\/event-stream[\s\S]*transfer-encoding: chunked/i, 'then the stream: its headers');
  t.match(dechunk(stream!.slice(head.length + 4)), /^retry: \d+\n\n: connected\n\nevent: presence\ndata: \{[^\n]*\}\n\nid: [^\n]+\nevent: position\ndata: \{\}\n\nid: [^\n]+\nevent: message\ndata: \{[^\n]*"text":"in order"[^\n]*\}\n\n$/, 'and its frames, well chunked');
});

t.test('closing the app ends open streams instead of hanging', async (t) => {
  const gateway = await startGateway(t);
  const stream = await openStream(t, `${gateway.url}/events/closing`);
  const started = Date.now();
  await gateway.close();
  await stream.ended;
  t.ok(Date.now() - started < 5000, 'closed promptly');
});

t.test('with Kafka unreachable, publishing answers 503 quickly and /readyz says why', async (t) => {
  const gateway = await startGateway(t, { kafkaBrokers: ['127.0.0.1:1'], publishTimeoutMs: 1000 }, { waitReady: false });
  const started = Date.now();
  const posted = await postJson(`${gateway.url}/rooms/lobby/messages`, { user: 'a', text: 'x' });
  t.equal(posted.status, 503);
  t.equal(posted.headers.get('retry-after'), '5');
  t.match(posted.body.message, /Kafka/);
  t.ok(Date.now() - started < 3000, 'answered within the bound');
  const ready = await fetch(`${gateway.url}/readyz`);
  t.equal(ready.status, 503);
  t.match(await ready.json(), { status: 'not ready', reason: /Kafka/ });
});

t.test('idle keep-alive connections stay open for KEEP_ALIVE_TIMEOUT_MS (default 72 s, above load balancers\' 60 s), announced in Keep-Alive', async (t) => {
  // Closing sooner than whatever reuses the connection races the reuse: a request sent as the
  // server closes is reset (a POST's outcome then unknown; a 502 at a load balancer).
  const byDefault = await startGateway(t);
  t.equal((await fetch(`${byDefault.url}/healthz`)).headers.get('keep-alive'), 'timeout=72');
  const short = await startGateway(t, { keepAliveTimeoutMs: 1000 });
  const socket = connect(Number(new URL(short.url).port), '127.0.0.1');
  t.teardown(() => socket.destroy());
  let answer = '';
  let closedAt = 0;
  socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
  socket.on('close', () => (closedAt = Date.now()));
  socket.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
  await until(() => answer.includes('\r\n\r\n'), 5000, 'the answer');
  const answeredAt = Date.now();
  t.match(answer, /^HTTP\/1\.1 200 /);
  t.match(answer, /\r\nkeep-alive: timeout=1\r\n/i);
  await until(() => closedAt > 0, 10000, 'the idle connection closed');
  t.ok(closedAt - answeredAt >= 900, `closed after the timeout (${closedAt - answeredAt} ms)`);
});
