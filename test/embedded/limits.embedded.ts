import t from 'tap';
import net from 'node:net';
import { startGateway, uniqueName } from '../helpers/gateway.ts';
import { openStream } from '../helpers/sse-client.ts';

/**
 * The request limits of the README's configuration table, held for every phase of a request:
 * nothing sent, a head cut short, a body trickling in, an oversized head or body (declared or
 * chunked). Raw sockets, because an HTTP client library would not misbehave on purpose.
 */

const REQUEST_TIMEOUT_MS = 1000;

interface RawExchange {
  /** Everything the server sent before it closed the connection. */
  answer: string;
  /** Milliseconds from connecting until the server closed the connection. */
  closedAfterMs: number;
}

/** Connects, lets `send` write (at once or over time), and resolves when the server closes the connection (rejects after `timeoutMs`). */
function exchange(url: string, send: (socket: net.Socket) => void, timeoutMs = 15000): Promise<RawExchange> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = net.connect(Number(port), '127.0.0.1', () => send(socket));
    let answer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server kept the connection open for ${timeoutMs} ms; got ${JSON.stringify(answer.slice(0, 80))}`));
    }, timeoutMs);
    socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ answer, closedAfterMs: Date.now() - started });
    });
  });
}

/** The status code of the first response in `answer`. */
function status(answer: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
}

t.test('REQUEST_TIMEOUT_MS holds for every phase of a request', async (t) => {
  const gateway = await startGateway(t, { requestTimeoutMs: REQUEST_TIMEOUT_MS });
  // Node checks deadlines on a timer: the gateway makes it tick at most every second.
  const bound = REQUEST_TIMEOUT_MS + 1000 + 1500;
  const room = uniqueName('room');
  const cases: Array<[string, (socket: net.Socket) => void]> = [
    ['a connection that sends nothing', () => {}],
    ['a head cut short', (socket) => socket.write(`GET /events/${room} HTTP/1.1\r\nHost: gateway\r\n`)],
    [
      'a body trickling in',
      (socket) => {
        socket.write(`POST /rooms/${room}/messages HTTP/1.1\r\nHost: gateway\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n{"user":`);
        const drip = setInterval(() => (socket.destroyed ? clearInterval(drip) : socket.write(' ')), 200);
      },
    ],
    [
      'a chunked body that never ends',
      (socket) => socket.write(`POST /rooms/${room}/messages HTTP/1.1\r\nHost: gateway\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{"u\r\n`),
    ],
  ];
  for (const [name, send] of cases) {
    const { answer, closedAfterMs } = await exchange(gateway.url, send);
    t.equal(status(answer), 408, `${name}: 408`);
    t.ok(closedAfterMs < bound, `${name}: closed after ${closedAfterMs} ms (limit ${REQUEST_TIMEOUT_MS} ms)`);
  }
});

t.test('an open stream is a response, not a request: REQUEST_TIMEOUT_MS never cuts it', async (t) => {
  const gateway = await startGateway(t, { requestTimeoutMs: REQUEST_TIMEOUT_MS, heartbeatMs: 200 });
  const stream = await openStream(t, `${gateway.url}/events/${uniqueName('room')}`);
  // Heartbeats are counted until well past the request limit; the stream must still be open.
  const deadline = Date.now() + 3 * REQUEST_TIMEOUT_MS;
  let open = true;
  void stream.ended.then(() => (open = false));
  while (Date.now() < deadline && open) await new Promise((resolve) => setTimeout(resolve, 100));
  t.ok(open, 'still open after three times the request limit');
  t.ok(stream.comments() >= 3, 'and kept alive by heartbeats');
});

t.test('MAX_HEADER_BYTES: an oversized head gets 431, on every kind of route', async (t) => {
  const gateway = await startGateway(t, { maxHeaderBytes: 2048 });
  const big = `x-filler: ${'a'.repeat(4096)}\r\n`;
  for (const head of [
    `GET /events/${uniqueName('room')} HTTP/1.1\r\nHost: g\r\naccept: text/event-stream\r\n${big}\r\n`,
    `POST /rooms/r/messages HTTP/1.1\r\nHost: g\r\ncontent-type: application/json\r\ncontent-length: 2\r\n${big}\r\n{}`,
    `GET /healthz HTTP/1.1\r\nHost: g\r\n${big}\r\n`,
  ]) {
    const { answer } = await exchange(gateway.url, (socket) => socket.write(head));
    t.equal(status(answer), 431, head.slice(0, head.indexOf(' HTTP')));
  }
  // Behind an ordinary first request on the same connection (pipelining), too.
  const pipelined = await exchange(gateway.url, (socket) =>
    socket.write(`GET /healthz HTTP/1.1\r\nHost: g\r\n\r\nGET /events/r HTTP/1.1\r\nHost: g\r\n${big}\r\n`),
  );
  // Node's parser refuses the connection as soon as it reads the oversized head, before the
  // first answer is written: the client learns 431 either way, and nothing past the limit is read.
  t.match(pipelined.answer, /HTTP\/1\.1 431/, 'an oversized request behind another on the connection gets 431');
});

t.test('BODY_LIMIT_BYTES: 413 whether the size is declared or the body is chunked', async (t) => {
  const gateway = await startGateway(t, { bodyLimitBytes: 1024 });
  const room = uniqueName('room');
  const body = JSON.stringify({ user: 'ann', text: 'a'.repeat(1500) });
  const declared = await exchange(gateway.url, (socket) =>
    socket.write(`POST /rooms/${room}/messages HTTP/1.1\r\nHost: g\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`),
  );
  t.equal(status(declared.answer), 413, 'declared content-length');
  const chunked = await exchange(gateway.url, (socket) =>
    socket.write(
      `POST /rooms/${room}/messages HTTP/1.1\r\nHost: g\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n` +
        `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
    ),
  );
  t.equal(status(chunked.answer), 413, 'chunked, no declared length');
});

t.test('MAX_CHANNELS_PER_STREAM: 400 naming the limit', async (t) => {
  const gateway = await startGateway(t, { maxChannelsPerStream: 3 });
  const response = await fetch(`${gateway.url}/events?room=a&room=b&room=c&ticker=D`);
  t.equal(response.status, 400);
  t.match(await response.json(), { message: /at most 3/ });
});
