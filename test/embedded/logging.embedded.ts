import { chatMessageRecord } from '../../src/channels/contract.ts';
import t from 'tap';
import { configWith, type Config } from '../../src/config.ts';
import { issueToken } from '../../src/auth/issue.ts';
import type { Teardowns } from '../helpers/fixture.ts';
import { startGateway, uniqueName } from '../helpers/gateway.ts';
import { openStream, stalledClient, streamRequest, until } from '../helpers/sse-client.ts';

const DEBUG = 20;
const INFO = 30;

/** A gateway logging at `level` (its lines in `logs`); `ended()` are its "stream ended" lines. */
async function loggedGateway(t: Teardowns, overrides: Partial<Config> = {}, level: Config['logLevel'] = 'debug') {
  const gateway = await startGateway(t, { logLevel: level, instanceId: uniqueName('log'), drainWindowMs: 200, ...overrides });
  return { ...gateway, ended: () => gateway.logs.filter((line) => line.msg === 'stream ended') };
}

const post = (url: string, body: unknown) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

t.test('a stream the client leaves logs one end line: duration, events, bytes, reason', async (t) => {
  const gateway = await loggedGateway(t, {}, 'info');
  const room = uniqueName('room');
  const stream = await openStream(t, `${gateway.url}/events/${room}`);
  t.equal((await post(`${gateway.url}/rooms/${room}/messages`, { user: 'ann', text: 'hello' })).status, 202);
  await stream.waitForEvents(1);
  const opened = gateway.logs.find((line) => line.msg === 'incoming request' && (line.req as { url: string }).url === `/events/${room}`);
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
  await stalledClient(t, gateway.url, streamRequest(`/events/${room}`));
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
  const expiring = await openStream(t, `${gateway.url}/events/${uniqueName('room')}?token=${token}`);
  t.equal(expiring.status, 200);
  await expiring.ended;
  await until(() => gateway.ended().some((line) => line.reason === 'auth-expired'), 10_000, 'the auth-expired end line');
  t.notOk(JSON.stringify(gateway.logs).includes(token), 'the token is not logged');

  const longLived = issueToken({ sub: 'bob', rooms: ['*'], exp: Math.floor(Date.now() / 1000) + 3600 }, secret, 'HS256');
  const draining = await openStream(t, `${gateway.url}/events/${uniqueName('room')}`, { authorization: `Bearer ${longLived}` });
  t.equal(draining.status, 200);
  await gateway.close();
  t.match(gateway.ended().at(-1), { reason: 'drain', level: INFO });
});

t.test('health probes log at debug only; a 400 logs its reason at debug', async (t) => {
  const atInfo = await loggedGateway(t, {}, 'info');
  for (const path of ['/healthz', '/readyz', '/events/bad!name', '/healthz']) await (await fetch(`${atInfo.url}${path}`)).arrayBuffer();
  const urls = atInfo.logs.filter((line) => line.msg === 'incoming request').map((line) => (line.req as { url: string }).url);
  t.same(urls, ['/events/bad!name'], 'probes are not logged at info; other requests are');
  t.ok(atInfo.logs.some((line) => line.msg === 'request completed' && (line.res as { statusCode: number }).statusCode === 400));
  t.notOk(atInfo.logs.some((line) => line.msg === 'request refused'), 'reasons are debug');

  const atDebug = await loggedGateway(t, {}, 'debug');
  await (await fetch(`${atDebug.url}/healthz`)).arrayBuffer();
  await (await fetch(`${atDebug.url}/events/bad!name`)).arrayBuffer();
  await (await fetch(`${atDebug.url}/tickers/BTC/history?window=2d`)).arrayBuffer();
  const probe = atDebug.logs.filter((line) => line.msg === 'incoming request' && (line.req as { url: string }).url === '/healthz');
  t.equal(probe.length, 1);
  t.equal(probe[0]!.level, DEBUG, 'probes at debug');
  const refused = atDebug.logs.filter((line) => line.msg === 'request refused');
  t.match(refused, [
    { level: DEBUG, statusCode: 400, reason: /params\/room/ },
    { level: DEBUG, statusCode: 400, reason: /querystring\/window/ },
  ]);
});
