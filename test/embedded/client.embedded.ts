import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { channelsUrl, roomUrl, subscribe, tickerUrl, type ChatMessageEvent, type PriceUpdateEvent } from '../../src/client/index.ts';
import { configWith } from '../../src/config.ts';
import { issueToken } from '../../src/auth/issue.ts';
import { postJson, startGateway, uniqueName } from '../helpers/gateway.ts';
import { until } from '../helpers/sse-client.ts';

/** A scripted SSE server: answer `n` (0-based) is `script[n]`, and every request is recorded. */
async function scriptedServer(script: ((response: http.ServerResponse) => void)[]) {
  const requests: { at: number; headers: http.IncomingHttpHeaders; closed: boolean }[] = [];
  const server = http.createServer((request, response) => {
    const answer = script[Math.min(requests.length, script.length - 1)]!;
    const record = { at: Date.now(), headers: request.headers, closed: false };
    requests.push(record);
    response.on('close', () => {
      record.closed = true;
    });
    answer(response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/events/lobby`,
    requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

const sse = (response: http.ServerResponse, body: string, end = true) => {
  response.writeHead(200, { 'content-type': 'text/event-stream' });
  if (end) response.end(body);
  else response.write(body);
};

t.test('builds the stream URLs', async (t) => {
  t.equal(roomUrl('http://h:1', 'a b'), 'http://h:1/events/a%20b');
  t.equal(tickerUrl('http://h:1/', 'BTC'), 'http://h:1/tickers/BTC/events');
  t.equal(channelsUrl('http://h:1', { rooms: ['a', 'b'], tickers: ['X'] }), 'http://h:1/events?room=a&room=b&ticker=X');
});

t.test('reconnects after the retry: delay the server sent, with Last-Event-ID', async (t) => {
  const server = await scriptedServer([
    (response) => sse(response, 'retry: 150\n\nid: 3-7\nevent: message\ndata: {"room":"lobby","id":"m1","user":"ann","text":"hi","ts":1}\n\n'),
    (response) => sse(response, 'id: 3-8\nevent: message\ndata: {"room":"lobby","id":"m2","user":"bob","text":"yo","ts":2}\n\n', false),
  ]);
  t.teardown(server.close);
  const stream = subscribe(server.url, { retryMs: 10_000 });
  t.teardown(() => stream.close());
  const received: { message: ChatMessageEvent; id: string | undefined }[] = [];
  const opens: boolean[] = [];
  stream.on('message', (message, meta) => received.push({ message, id: meta.id }));
  stream.on('open', ({ resumed }) => opens.push(resumed));

  await until(() => received.length === 2, 5000, 'two messages');
  t.same(received.map((event) => [event.message.text, event.id]), [['hi', '3-7'], ['yo', '3-8']]);
  t.equal(server.requests[0]!.headers['last-event-id'], undefined, 'nothing to resume on the first connection');
  t.equal(server.requests[1]!.headers['last-event-id'], '3-7', 'the reconnection resumes from the last id');
  const gap = server.requests[1]!.at - server.requests[0]!.at;
  t.ok(gap >= 140 && gap < 5000, `waited the server's retry: 150 ms, not the 10 s default (waited ${gap} ms)`);
  t.same(opens, [false, true]);
  t.equal(stream.retryMs, 150);
  t.equal(stream.lastEventId, '3-8');
  t.equal(stream.state, 'open');
});

t.test('keeps retrying through server errors, and stops on a 4xx', async (t) => {
  const server = await scriptedServer([
    (response) => response.writeHead(503).end('{}'),
    (response) => response.writeHead(404).end('{}'),
  ]);
  t.teardown(server.close);
  const stream = subscribe(server.url, { retryMs: 20, lastEventId: '0-41' });
  const errors: { status?: number; willRetry: boolean }[] = [];
  stream.on('error', ({ status, willRetry }) => errors.push({ ...(status === undefined ? {} : { status }), willRetry }));
  await until(() => stream.state === 'closed', 5000, 'closed');
  t.same(errors, [{ status: 503, willRetry: true }, { status: 404, willRetry: false }]);
  t.equal(server.requests.length, 2);
  t.equal(server.requests[0]!.headers['last-event-id'], '0-41', 'a given lastEventId is sent on the first connection');
});

t.test('a stream that starts with a byte-order mark loses no event, and an id without data is resumed from', async (t) => {
  const server = await scriptedServer([
    (response) => sse(response, '\uFEFFdata: {"room":"lobby","id":"m1","user":"ann","text":"first","ts":1}\n\nid: joined-here\n\n'),
    (response) => sse(response, ':connected\n\n', false),
  ]);
  t.teardown(server.close);
  const stream = subscribe(server.url, { retryMs: 20 });
  t.teardown(() => stream.close());
  const texts: string[] = [];
  stream.on('message', (message) => texts.push(message.text));
  await until(() => server.requests.length === 2, 5000, 'the reconnection');
  t.same(texts, ['first']);
  t.equal(server.requests[1]!.headers['last-event-id'], 'joined-here', 'the id of a data-less block is what a reconnection resumes from');
});

t.test('getToken() is asked before every connection; a 401 is retried once with a new token, twice in a row closes', async (t) => {
  const server = await scriptedServer([
    (response) => sse(response, 'id: 1\n\n'),
    (response) => response.writeHead(401).end('{}'),
    (response) => sse(response, 'id: 2\n\n'),
    (response) => response.writeHead(401).end('{}'),
    (response) => response.writeHead(401).end('{}'),
  ]);
  t.teardown(server.close);
  let issued = 0;
  const stream = subscribe(server.url, { retryMs: 20, getToken: async () => `token-${++issued}` });
  t.teardown(() => stream.close());
  await until(() => stream.state === 'closed', 5000, 'closed after two 401s in a row');
  t.same(server.requests.map((request) => request.headers.authorization), ['Bearer token-1', 'Bearer token-2', 'Bearer token-3', 'Bearer token-4', 'Bearer token-5']);
  t.same(server.requests.map((request) => request.headers['last-event-id']), [undefined, '1', '1', '2', '2']);
});

t.test('close() stops the stream and any reconnection', async (t) => {
  const server = await scriptedServer([(response) => sse(response, ':connected\n\n', false)]);
  t.teardown(server.close);
  const stream = subscribe(server.url, { retryMs: 20 });
  await until(() => stream.state === 'open', 5000, 'open');
  const states: string[] = [];
  stream.on('state', (state) => states.push(state));
  stream.close();
  t.equal(stream.state, 'closed');
  await until(() => server.requests[0]!.closed, 5000, 'the server sees the connection go');
  t.same(states, ['closed']);
  t.equal(server.requests.length, 1, 'no reconnection');
});

t.test('against the gateway: typed chat and ticker events, ids as the gateway gives them', async (t) => {
  const gateway = await startGateway(t);
  const room = uniqueName('room');
  const symbol = uniqueName('SYM');
  const chat = subscribe(roomUrl(gateway.url, room));
  const ticker = subscribe(tickerUrl(gateway.url, symbol));
  t.teardown(() => chat.close());
  t.teardown(() => ticker.close());
  const messages: ChatMessageEvent[] = [];
  const deleted: string[] = [];
  const prices: PriceUpdateEvent[] = [];
  chat.on('message', (message) => messages.push(message));
  chat.on('delete', (deletion) => deleted.push(deletion.id));
  ticker.on('price_update', (update) => prices.push(update));
  await until(() => chat.state === 'open' && ticker.state === 'open', 5000, 'both open');

  const posted = await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'ann', text: 'hello' });
  t.equal(posted.status, 202);
  await postJson(`${gateway.url}/tickers/${symbol}/prices`, { price: 42.5, currency: 'USD' });
  await until(() => messages.length === 1 && prices.length === 1, 5000, 'events');
  t.match(messages[0], { room, id: posted.body.id, user: 'ann', text: 'hello' });
  t.equal(chat.lastEventId, posted.body.eventId);
  t.match(prices[0], { ticker: symbol, price: 42.5, currency: 'USD' });

  const deletion = await fetch(`${gateway.url}/rooms/${room}/messages/${posted.body.id}`, { method: 'DELETE' });
  t.equal(deletion.status, 202);
  await until(() => deleted.length === 1, 5000, 'delete');
  t.same(deleted, [posted.body.id]);
});

t.test('against the gateway: iterate() yields the chosen events in order, ends on close, and refuses to buffer without bound', async (t) => {
  const gateway = await startGateway(t);
  const room = uniqueName('room');
  const chat = subscribe(roomUrl(gateway.url, room));
  t.teardown(() => chat.close());
  await until(() => chat.state === 'open', 5000, 'open');
  const texts = ['one', 'two', 'three'];
  const received: string[] = [];
  const loop = (async () => {
    for await (const event of chat.iterate(['message', 'delete'])) {
      if (event.type === 'message') received.push(event.data.text);
      if (received.length === texts.length) chat.close();
    }
  })();
  for (const text of texts) t.equal((await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'it', text })).status, 202);
  await loop;
  t.same(received, texts, 'in order, and the loop ended when the stream closed');

  const slow = subscribe(roomUrl(gateway.url, room));
  t.teardown(() => slow.close());
  await until(() => slow.state === 'open', 5000, 'open');
  const iterator = slow.iterate(['message'], { maxBuffered: 2 })[Symbol.asyncIterator]();
  const first = iterator.next();
  let arrived = 0;
  slow.on('message', () => arrived++);
  for (const text of ['a', 'b', 'c', 'd']) await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'it', text });
  await until(() => arrived === 4, 5000, 'all four at the client, three of them unread by the loop');
  t.match(await first, { done: false, value: { type: 'message', data: { text: 'a' } } });
  await t.rejects(
    (async () => {
      for (;;) if ((await iterator.next()).done) return;
    })(),
    /cannot keep up/,
    'a loop that does not keep up fails instead of buffering',
  );
});

t.test('against the gateway with auth: a stream ended by auth_expired resumes with a fresh token from getToken()', async (t) => {
  const secret = 'client-test-secret-of-32-characters!!';
  const gateway = await startGateway(t, { auth: { ...configWith().auth, jwtSecret: secret, serviceApiKeys: new Map([['publisher-key-0123456789', 'publisher']]) } });
  const room = uniqueName('room');
  const nowSeconds = () => Math.floor(Date.now() / 1000);
  const tokens: string[] = [];
  const getToken = () => {
    // The first token expires in two seconds, the next ones in an hour.
    const token = issueToken({ sub: 'reader', rooms: [room], exp: nowSeconds() + (tokens.length === 0 ? 2 : 3600) }, secret, 'HS256');
    tokens.push(token);
    return token;
  };
  const stream = subscribe(roomUrl(gateway.url, room), { getToken, retryMs: 50 });
  t.teardown(() => stream.close());
  const texts: string[] = [];
  const expired: string[] = [];
  stream.on('message', (message) => texts.push(message.text));
  stream.on('auth_expired', ({ reason }) => expired.push(reason));
  await until(() => stream.state === 'open', 5000, 'open');
  const publish = async (text: string) => {
    const response = await fetch(`${gateway.url}/rooms/${room}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': 'publisher-key-0123456789' },
      body: JSON.stringify({ user: 'svc', text }),
    });
    t.equal(response.status, 202);
  };
  await publish('before expiry');
  await until(() => expired.length === 1, 10_000, 'auth_expired');
  await until(() => tokens.length === 2 && stream.state === 'open', 10_000, 'reconnected with a second token');
  await publish('after expiry');
  await until(() => texts.length === 2, 5000, 'the message after the reconnection');
  t.same(texts, ['before expiry', 'after expiry'], 'each message once, across the expiry');
  t.match(expired[0], /token expired/);
});
