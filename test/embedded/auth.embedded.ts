import t from 'tap';
import { configWith, type AuthConfig, type Config } from '../../src/config.ts';
import { issueToken } from '../../src/auth/issue.ts';
import type { Channel } from '../../src/auth/claims.ts';
import type { Teardowns } from '../helpers/fixture.ts';
import { startGateway, uniqueName, type TestGateway } from '../helpers/gateway.ts';
import { openStream, until, type TestStream } from '../helpers/sse-client.ts';

/**
 * Subscriber auth. The first group runs through a stream route defined here that does what
 * the gateway's stream routes do (authorizeSubscription, then streamChannels until the
 * token's exp); the second group runs against the gateway's own routes.
 */

const SECRET = 'test-secret-of-at-least-32-characters!';
const PUBLISHER_KEY = 'publisher-key-0123456789abcdef';
const nowSeconds = () => Math.floor(Date.now() / 1000);

function securedConfig(overrides: Partial<AuthConfig> = {}): Config {
  return configWith({
    port: 0,
    host: '127.0.0.1',
    logLevel: 'silent',
    instanceId: uniqueName('test'),
    auth: { ...configWith().auth, jwtSecret: SECRET, publicRooms: ['public-*'], serviceApiKeys: new Map([[PUBLISHER_KEY, 'publisher']]), ...overrides },
  });
}

function token(claims: Record<string, unknown>): string {
  return issueToken({ exp: nowSeconds() + 3600, ...claims }, SECRET, 'HS256');
}

/**
 * A gateway logging at info (kept in its `logs`), with an extra stream route
 * `/probe/events?room=…&ticker=…` that uses the auth API; closed when `t` ends.
 */
function startProbe(t: Teardowns, config: Config): Promise<TestGateway> {
  return startGateway(t, { ...config, logLevel: 'info' }, {
    beforeListen: (app) =>
      app.get('/probe/events', async (request, reply) => {
        const query = request.query as { room?: string | string[]; ticker?: string | string[] };
        const names = (value: string | string[] | undefined) => (value === undefined ? [] : Array.isArray(value) ? value : [value]);
        const channels: Channel[] = [
          ...names(query.room).map((name) => ({ kind: 'room' as const, name })),
          ...names(query.ticker).map((name) => ({ kind: 'ticker' as const, name })),
        ];
        const grant = await request.authorizeSubscription(channels);
        return reply.streamChannels(channels, { endAt: grant.expiresAt });
      }),
  });
}

// any: tests index into whatever JSON a reply carries.
async function getJson(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: any }> {
  const response = await fetch(url, { headers: { accept: 'text/event-stream', ...headers } });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: JSON.parse(text) };
}

async function publish(base: string, room: string, text: string): Promise<void> {
  const response = await fetch(`${base}/rooms/${room}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': PUBLISHER_KEY },
    body: JSON.stringify({ user: 'pub', text }),
  });
  if (response.status !== 202) throw new Error(`publish answered ${response.status}`);
}

function chat(stream: TestStream): Array<{ room: string; text: string }> {
  return stream.events.filter((event) => event.event === 'message').map((event) => JSON.parse(event.data) as { room: string; text: string });
}

t.test('stream auth through the authorizeSubscription API', async (t) => {
  const probe = await startProbe(t, securedConfig({ maxStreamsPerIdentity: 2 }));
  const roomA = `team-${uniqueName('a')}`;
  const roomB = `team-${uniqueName('b')}`;
  const streamUrl = (query: string) => `${probe.url}/probe/events?${query}`;

  t.test('401 with a JSON reason: missing, invalid, expired, alg none', async (t) => {
    const missing = await getJson(streamUrl(`room=${roomA}`));
    t.equal(missing.status, 401);
    t.same(missing.body, { statusCode: 401, error: 'Unauthorized', message: 'missing token' });
    t.match(missing.headers.get('www-authenticate'), /^Bearer/);
    t.equal((await getJson(streamUrl(`room=${roomA}&token=garbage`))).body.message, 'token malformed');
    const wrongKey = issueToken({ sub: 'ann', rooms: ['*'], exp: nowSeconds() + 60 }, 'x'.repeat(40), 'HS256');
    t.equal((await getJson(streamUrl(`room=${roomA}`), { authorization: `Bearer ${wrongKey}` })).body.message, 'token signature invalid');
    const expired = token({ sub: 'ann', rooms: ['*'], exp: nowSeconds() - 30 });
    t.equal((await getJson(streamUrl(`room=${roomA}`), { cookie: `token=${expired}` })).body.message, 'token expired');
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'ann', rooms: ['*'] })).toString('base64url')}.`;
    const unsigned = await getJson(streamUrl(`room=${roomA}&token=${none}`));
    t.equal(unsigned.status, 401);
    t.equal(unsigned.body.message, 'token algorithm not allowed');
  });

  t.test('403 when the token does not grant every channel', async (t) => {
    const onlyA = token({ sub: 'ann', rooms: [roomA] });
    const denied = await getJson(streamUrl(`room=${roomA}&room=${roomB}&token=${onlyA}`));
    t.equal(denied.status, 403);
    t.equal(denied.body.message, `token does not grant room "${roomB}"`);
    const ticker = await getJson(streamUrl(`ticker=BTC&token=${onlyA}`));
    t.equal(ticker.status, 403, 'room grants do not cover tickers');
  });

  t.test('the token is accepted from the header, a cookie and the query', async (t) => {
    const granted = token({ sub: 'carrier', rooms: [roomA] });
    for (const [how, url, headers] of [
      ['header', streamUrl(`room=${roomA}`), { authorization: `Bearer ${granted}` }],
      ['cookie', streamUrl(`room=${roomA}`), { cookie: `theme=dark; token=${granted}` }],
      ['query', streamUrl(`room=${roomA}&token=${encodeURIComponent(granted)}`), {}],
    ] as const) {
      const stream = await openStream(t, url, headers);
      t.equal(stream.status, 200, how);
      t.match(stream.headers['content-type'], /text\/event-stream/);
      stream.close();
      await stream.ended;
    }
  });

  t.test('a token for room A never yields events of room B', async (t) => {
    const stream = await openStream(t, streamUrl(`room=${roomA}`), { authorization: `Bearer ${token({ sub: 'reader-a', rooms: [roomA] })}` });
    t.equal(stream.status, 200);
    await publish(probe.url, roomB, 'b-1');
    await publish(probe.url, roomA, 'a-1');
    await publish(probe.url, roomB, 'b-2');
    await publish(probe.url, roomA, 'a-2');
    await until(() => chat(stream).length >= 2, 10000, 'two room A events');
    // A marker published last on A: once it arrives, any B event would have arrived before it.
    await publish(probe.url, roomA, 'marker');
    await until(() => chat(stream).some((event) => event.text === 'marker'), 10000, 'the marker');
    t.same(chat(stream).map((event) => `${event.room}:${event.text}`), [`${roomA}:a-1`, `${roomA}:a-2`, `${roomA}:marker`]);
  });

  t.test('public rooms need no token, and a stale token does not lock anyone out', async (t) => {
    const open = await openStream(t, streamUrl('room=public-square'));
    t.equal(open.status, 200);
    open.close();
    const stale = await openStream(t, streamUrl('room=public-square'), { cookie: `token=${token({ sub: 'x', exp: nowSeconds() - 5 })}` });
    t.equal(stale.status, 200);
    stale.close();
    const mixed = await getJson(streamUrl(`room=public-square&room=${roomA}`));
    t.equal(mixed.status, 401, 'a private room among public ones still needs a token');
  });

  t.test('streams per identity are capped', async (t) => {
    const capped = token({ sub: 'greedy', rooms: [roomA] });
    const first = await openStream(t, streamUrl(`room=${roomA}&token=${capped}`));
    const second = await openStream(t, streamUrl(`room=${roomA}&token=${capped}`));
    t.equal(first.status, 200);
    t.equal(second.status, 200);
    t.equal(probe.app.streamQuota.count('greedy'), 2);
    const third = await getJson(streamUrl(`room=${roomA}&token=${capped}`));
    t.equal(third.status, 429);
    t.match(third.body.message, /too many open streams/);
    t.ok(third.headers.get('retry-after'));
    const other = await openStream(t, streamUrl(`room=${roomA}&token=${token({ sub: 'modest', rooms: [roomA] })}`));
    t.equal(other.status, 200, 'other identities are not affected');
    other.close();
    first.close();
    await until(() => probe.app.streamQuota.count('greedy') === 1, 5000, 'the slot to be released');
    const again = await openStream(t, streamUrl(`room=${roomA}&token=${capped}`));
    t.equal(again.status, 200, 'a closed stream frees its slot');
    again.close();
  });

  t.test('a token that expires mid-stream ends the stream with auth_expired', async (t) => {
    const shortLived = token({ sub: 'brief', rooms: [roomA], exp: nowSeconds() + 2 });
    const stream = await openStream(t, streamUrl(`room=${roomA}&token=${shortLived}`));
    t.equal(stream.status, 200);
    await publish(probe.url, roomA, 'before expiry');
    await stream.ended;
    const names = stream.events.map((event) => event.event);
    t.equal(names[names.length - 1], 'auth_expired', 'the last event says why the stream ended');
    t.ok(names.includes('message'), 'events flowed before the token expired');
    t.match(JSON.parse(stream.events[stream.events.length - 1]!.data), { reason: String });
  });

  t.test('the query token is redacted from the request log', async (t) => {
    const secretToken = token({ sub: 'logged', rooms: [roomA] });
    const stream = await openStream(t, streamUrl(`room=${roomA}&token=${secretToken}`));
    stream.close();
    await (await fetch(streamUrl(`room=${roomB}&token=${secretToken}`))).text();
    const log = JSON.stringify(probe.logs);
    t.match(log, /token=\[redacted\]/);
    t.notOk(log.includes(secretToken.split('.')[2]!), 'the signature never appears');
    t.notOk(log.includes(secretToken), 'the token never appears');
  });
});

t.test('with auth off: streams open without a token, and the startup log says so', async (t) => {
  const probe = await startProbe(t, configWith({ port: 0, host: '127.0.0.1', logLevel: 'silent', instanceId: uniqueName('test') }));
  const stream = await openStream(t, `${probe.url}/probe/events?room=anything`);
  t.equal(stream.status, 200);
  stream.close();
  t.ok(probe.logs.some((line) => line.level === 40 && /AUTH IS OFF/.test(line.msg)), 'a warning says auth is off');
  t.equal(probe.app.authEnabled, false);
});

t.test("the gateway's stream routes enforce auth", async (t) => {
  const gateway = await startGateway(t, securedConfig());
  const room = `team-${uniqueName('r')}`;
  const onlyRoom = token({ sub: 'ann', rooms: [room] });
  const routes = [`/events/${room}`, `/events?room=${room}`];
  for (const route of routes) {
    t.equal((await getJson(`${gateway.url}${route}`)).status, 401, `${route} without a token`);
    const stream = await openStream(t, `${gateway.url}${route}${route.includes('?') ? '&' : '?'}token=${onlyRoom}`);
    t.equal(stream.status, 200, `${route} with a query token`);
    stream.close();
  }
  t.equal((await getJson(`${gateway.url}/events/other-${room}?token=${onlyRoom}`)).status, 403);
  t.equal((await getJson(`${gateway.url}/tickers/BTC/events?token=${onlyRoom}`)).status, 403);
  t.equal((await getJson(`${gateway.url}/events?room=${room}&ticker=BTC&token=${onlyRoom}`)).status, 403);
  const open = await openStream(t, `${gateway.url}/events/public-lobby`);
  t.equal(open.status, 200, 'public room');
  open.close();

  const shortLived = token({ sub: 'brief', rooms: [room], exp: nowSeconds() + 2 });
  const expiring = await openStream(t, `${gateway.url}/events/${room}`, { cookie: `token=${shortLived}` });
  t.equal(expiring.status, 200);
  await expiring.ended;
  t.equal(expiring.events[expiring.events.length - 1]?.event, 'auth_expired');
});
