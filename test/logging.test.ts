import net from 'node:net';
import { chatMessageRecord } from '../src/channels/contract.ts';
import t from 'tap';
import { Writable } from 'node:stream';
import { buildApp, loggerOptions } from '../app.ts';
import { configWith, type Config } from '../src/config.ts';
import { issueToken } from '../src/auth/issue.ts';
import { uniqueName } from './helpers/gateway.ts';
import { openStream, until } from './helpers/sse-client.ts';

/** One JSON log line as pino writes it. */
interface LogLine {
  level: number;
  msg: string;
  reqId?: string;
  [field: string]: unknown;
}

const DEBUG = 20;
const INFO = 30;

/** A gateway on a free port whose pino output the test reads. */
async function loggedGateway(t: { teardown(fn: () => unknown): void }, overrides: Partial<Config> = {}, level = 'debug') {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line !== '') lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  const config = configWith({ port: 0, host: '127.0.0.1', logLevel: level as Config['logLevel'], instanceId: uniqueName('log'), drainWindowMs: 200, ...overrides });
  const base = loggerOptions(config) as Record<string, unknown>;
  // never: Fastify's logger option type does not admit pino's `stream`, which it accepts.
  const app = await buildApp({ config, logger: { ...base, stream: sink } as never });
  await app.listen({ port: 0, host: '127.0.0.1' });
  let closed = false;
  t.teardown(() => (closed ? undefined : app.close()));
  const address = app.server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
  return {
    app,
    url,
    lines,
    close: async () => {
      closed = true;
      await app.close();
    },
    ended: () => lines.filter((line) => line.msg === 'stream ended'),
  };
}

const post = (url: string, body: unknown) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

t.test('a stream the client leaves logs one end line: duration, events, bytes, reason', async (t) => {
  const gateway = await loggedGateway(t, {}, 'info');
  const room = uniqueName('room');
  const stream = await openStream(`${gateway.url}/events/${room}`);
  t.equal((await post(`${gateway.url}/rooms/${room}/messages`, { user: 'ann', text: 'hello' })).status, 202);
  await stream.waitForEvents(1);
  const opened = gateway.lines.find((line) => line.msg === 'incoming request' && (line.req as { url: string }).url === `/events/${room}`);
  t.ok(opened, 'the stream start is logged');
  stream.close();
  await until(() => gateway.ended().length === 1, 10_000, 'the end line');
  const [line] = gateway.ended();
  t.match(line, { level: INFO, reason: 'client-left', kind: 'room', channels: 1, reqId: opened!.reqId });
  t.type(line!.durationMs, 'number');
  // The starting id, then the message (with its id).
  t.ok((line!.events as number) >= 2, `events counted (${line!.events})`);
  t.ok((line!.bytes as number) > stream.text().length / 2, `bytes counted (${line!.bytes})`);
  t.equal(gateway.ended().length, 1, 'once');
});

t.test('a stream that ends for being too slow logs overflow', async (t) => {
  const gateway = await loggedGateway(t, { streamMaxBufferedBytes: 64 * 1024 }, 'info');
  const room = uniqueName('room');
  // A client that never reads: the kernel's buffers fill, then the gateway's, and it is cut off.
  const port = Number(new URL(gateway.url).port);
  const socket = net.connect({ host: '127.0.0.1', port }, () => {
    socket.write(`GET /events/${room} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`);
    socket.pause();
  });
  socket.on('error', () => {});
  t.teardown(() => socket.destroy());
  await until(() => gateway.app.hub.subscriberCount(`room:${room}`) === 1, 5000, 'the stalled client subscribed');
  const topics = { chat: gateway.app.config.chatTopic, ticker: gateway.app.config.tickerTopic };
  const text = 'x'.repeat(1500);
  for (let sent = 0; sent < 20_000 && !gateway.ended().some((line) => line.reason === 'overflow'); sent++) {
    await gateway.app.bus.publish(chatMessageRecord(topics, room, { user: 'load', text }).record);
    if (sent % 10 === 9) await new Promise((resolve) => setImmediate(resolve));
  }
  await until(() => gateway.ended().some((line) => line.reason === 'overflow'), 10_000, 'the overflow end line');
  t.pass('logged with reason overflow');
});

t.test('a stream whose token expires, and one ended by shutdown, say so', async (t) => {
  const secret = 'logging-test-secret-of-at-least-32-chars';
  const gateway = await loggedGateway(t, { auth: { ...configWith().auth, jwtSecret: secret } }, 'info');
  const token = issueToken({ sub: 'ann', rooms: ['*'], exp: Math.floor(Date.now() / 1000) + 1 }, secret, 'HS256');
  const expiring = await openStream(`${gateway.url}/events/${uniqueName('room')}?token=${token}`);
  t.equal(expiring.status, 200);
  await expiring.ended;
  await until(() => gateway.ended().some((line) => line.reason === 'auth-expired'), 10_000, 'the auth-expired end line');
  t.notOk(JSON.stringify(gateway.lines).includes(token), 'the token is not logged');

  const longLived = issueToken({ sub: 'bob', rooms: ['*'], exp: Math.floor(Date.now() / 1000) + 3600 }, secret, 'HS256');
  const draining = await openStream(`${gateway.url}/events/${uniqueName('room')}`, { authorization: `Bearer ${longLived}` });
  t.equal(draining.status, 200);
  await gateway.close();
  t.match(gateway.ended().at(-1), { reason: 'drain', level: INFO });
});

t.test('health probes log at debug only; a 400 logs its reason at debug', async (t) => {
  const atInfo = await loggedGateway(t, {}, 'info');
  for (const path of ['/healthz', '/readyz', '/events/bad!name', '/healthz']) await (await fetch(`${atInfo.url}${path}`)).arrayBuffer();
  const urls = atInfo.lines.filter((line) => line.msg === 'incoming request').map((line) => (line.req as { url: string }).url);
  t.same(urls, ['/events/bad!name'], 'probes are not logged at info; other requests are');
  t.ok(atInfo.lines.some((line) => line.msg === 'request completed' && (line.res as { statusCode: number }).statusCode === 400));
  t.notOk(atInfo.lines.some((line) => line.msg === 'request refused'), 'reasons are debug');

  const atDebug = await loggedGateway(t, {}, 'debug');
  await (await fetch(`${atDebug.url}/healthz`)).arrayBuffer();
  await (await fetch(`${atDebug.url}/events/bad!name`)).arrayBuffer();
  await (await fetch(`${atDebug.url}/tickers/BTC/history?window=2d`)).arrayBuffer();
  const probe = atDebug.lines.filter((line) => line.msg === 'incoming request' && (line.req as { url: string }).url === '/healthz');
  t.equal(probe.length, 1);
  t.equal(probe[0]!.level, DEBUG, 'probes at debug');
  const refused = atDebug.lines.filter((line) => line.msg === 'request refused');
  t.match(refused, [
    { level: DEBUG, statusCode: 400, reason: /params\/room/ },
    { level: DEBUG, statusCode: 400, reason: /querystring\/window/ },
  ]);
});
