import t from 'tap';
import { configWith, type AuthConfig, type Config } from '../../src/config.ts';
import { issueToken } from '../../src/auth/issue.ts';
import { configRefusal } from '../helpers/config.ts';
import { postJson, startGateway, uniqueName } from '../helpers/gateway.ts';
import { openStream, until } from '../helpers/sse-client.ts';

/**
 * The security rules of the README's "Security" section that concern secrets, token lifetime,
 * operator endpoints and cross-site cookies, checked over real HTTP.
 */

const SECRET = 'test-secret-of-at-least-32-characters!';
const SERVICE_KEY = 'operator-key-0123456789abcdef';
const nowSeconds = () => Math.floor(Date.now() / 1000);

function secured(auth: Partial<AuthConfig> = {}, overrides: Partial<Config> = {}): Partial<Config> {
  return { auth: { ...configWith().auth, jwtSecret: SECRET, serviceApiKeys: new Map([[SERVICE_KEY, 'ops']]), ...auth }, ...overrides };
}

t.test('CURSOR_SECRET: required with Kafka, per process without it on the embedded bus', async (t) => {
  const refused = configRefusal({ KAFKA_BROKERS: '127.0.0.1:9092' });
  t.match(refused, { variable: 'CURSOR_SECRET', message: /CURSOR_SECRET is required with KAFKA_BROKERS/ });
  t.equal(configRefusal({ KAFKA_BROKERS: '127.0.0.1:9092', CURSOR_SECRET: 'a-shared-secret-of-16+' }), undefined);
  const embedded = configWith();
  t.equal(embedded.cursorSecretSource, 'per-process');
  t.not(embedded.cursorSecret, 'kafka-sse-gateway-development-cursor-secret', 'no public constant');
  t.equal(configWith().cursorSecret, embedded.cursorSecret, 'the same within one process (several apps in one process agree)');
});

t.test('/status shows which protections are on, as flags', async (t) => {
  const open = await startGateway(t);
  // any: the test indexes into the JSON answer.
  const body: any = await (await fetch(`${open.url}/status`)).json();
  t.same(body.security, { auth: false, serviceApiKeys: 0, operatorKeyRequired: false, metricsPublic: false, cursorSecret: 'per-process' });
  t.equal(body.config.auth.requireTokenExp, true, 'a boolean setting is shown even when its name sounds like a credential');
  t.equal(body.config.cursorSecret, '[redacted]');
});

t.test('operator endpoints: one rule whenever tokens or service keys are configured', async (t) => {
  const keysOnly = await startGateway(t, { auth: { ...configWith().auth, serviceApiKeys: new Map([[SERVICE_KEY, 'ops']]) } });
  const withAuth = await startGateway(t, secured());
  const development = await startGateway(t);

  for (const [name, gateway] of [['keys without JWT', keysOnly], ['JWT and keys', withAuth]] as const) {
    for (const path of ['/status', '/metrics']) {
      t.equal((await fetch(`${gateway.url}${path}`)).status, 401, `${name}: ${path} without a key`);
      t.equal((await fetch(`${gateway.url}${path}`, { headers: { 'x-api-key': 'wrong-key-0123456789abcdef' } })).status, 401, `${name}: ${path} wrong key`);
      t.equal((await fetch(`${gateway.url}${path}`, { headers: { 'x-api-key': SERVICE_KEY } })).status, 200, `${name}: ${path} X-API-Key`);
      t.equal((await fetch(`${gateway.url}${path}`, { headers: { authorization: `Bearer ${SERVICE_KEY}` } })).status, 200, `${name}: ${path} bearer (Prometheus)`);
    }
  }
  t.equal((await fetch(`${development.url}/metrics`)).status, 200, 'development: open');

  const room = uniqueName('room');
  const post = (headers: Record<string, string>) =>
    fetch(`${keysOnly.url}/rooms/${room}/messages`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{"user":"ann","text":"hi"}' });
  const anonymous = await post({});
  t.equal(anonymous.status, 401, 'keys configured without JWT: publishing without a key is refused, not let through');
  t.match(await anonymous.json(), { message: /X-API-Key/ });
  t.equal((await post({ 'x-api-key': SERVICE_KEY })).status, 202);

  const metricsPublic = await startGateway(t, secured({ metricsPublic: true }));
  t.equal((await fetch(`${metricsPublic.url}/metrics`)).status, 200, 'METRICS_PUBLIC opens /metrics');
  t.equal((await fetch(`${metricsPublic.url}/status`)).status, 401, '…and not /status');
});

t.test('token lifetime: tokens without exp are refused; an authenticated stream ends after MAX_STREAM_LIFETIME_MS', async (t) => {
  const gateway = await startGateway(t, secured({ maxStreamLifetimeMs: 1500 }));
  const room = uniqueName('room');
  const noExp = issueToken({ sub: 'ann', rooms: [room] }, SECRET, 'HS256');
  const refused = await fetch(`${gateway.url}/events/${room}?token=${noExp}`);
  t.equal(refused.status, 401);
  t.match(await refused.json(), { message: /no "exp"/ });

  const forever = issueToken({ sub: 'ann', rooms: [room], exp: 1e300 }, SECRET, 'HS256');
  const stream = await openStream(t, `${gateway.url}/events/${room}?token=${forever}`);
  t.equal(stream.status, 200);
  await stream.ended;
  t.ok(stream.events.some((event) => event.event === 'auth_expired'), 'ended with auth_expired: the client reconnects with a fresh token');

  const lenient = await startGateway(t, secured({ requireTokenExp: false, maxStreamLifetimeMs: 1500 }));
  const allowed = await openStream(t, `${lenient.url}/events/${room}?token=${noExp}`);
  t.equal(allowed.status, 200, 'REQUIRE_TOKEN_EXP=false accepts it…');
  await allowed.ended;
  t.ok(allowed.events.some((event) => event.event === 'auth_expired'), '…and the lifetime still ends it');
});

t.test('a cookie authorises streams only from the own origin or a listed one', async (t) => {
  const listed = 'https://app.example';
  const gateway = await startGateway(t, secured({ maxStreamsPerIdentity: 1, publicRooms: ['public-*'] }, { corsOrigins: [listed] }));
  const room = uniqueName('room');
  const cookie = `token=${issueToken({ sub: 'victim', rooms: [room], exp: nowSeconds() + 3600 }, SECRET, 'HS256')}`;
  const url = `${gateway.url}/events/${room}`;

  const crossSite = await fetch(url, { headers: { cookie, origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' } });
  t.equal(crossSite.status, 403);
  t.match(await crossSite.json(), { message: /own origin/ });
  t.equal((await fetch(url, { headers: { cookie, 'sec-fetch-site': 'same-site' } })).status, 403, 'a sibling subdomain is another origin');
  t.equal((await fetch(url, { headers: { cookie, origin: 'null' } })).status, 403, 'an opaque origin');

  const publicRoom = `public-${uniqueName('r')}`;
  const publicStream = await openStream(t, `${gateway.url}/events/${publicRoom}`, { cookie, origin: 'https://evil.example' });
  t.equal(publicStream.status, 200, 'a public room still opens cross-site…');
  const own = await openStream(t, url, { cookie, 'sec-fetch-site': 'same-origin' });
  t.equal(own.status, 200, '…without using up the identity\'s stream (quota 1): same-origin gets it');
  own.close();
  publicStream.close();
  const released = () => until(() => gateway.app.streamQuota.count('victim') === 0, 5000, 'the stream slot to be released');
  await released();
  const fromListed = await openStream(t, url, { cookie, origin: listed });
  t.equal(fromListed.status, 200, 'a listed origin');
  fromListed.close();
  await released();
  const noBrowser = await openStream(t, url, { cookie });
  t.equal(noBrowser.status, 200, 'no Origin and no Sec-Fetch-Site: not a browser acting for a page');
  noBrowser.close();

  const wildcard = await startGateway(t, secured({}, { corsOrigins: true }));
  const viaWildcard = await fetch(`${wildcard.url}/events/${room}`, { headers: { cookie, origin: 'https://evil.example' } });
  t.equal(viaWildcard.status, 403, 'CORS_ORIGINS=* does not make every origin trusted for cookies');
});

t.test('the position a stream starts at says nothing about the partition: a new id on every connect', async (t) => {
  const gateway = await startGateway(t);
  const room = uniqueName('public');
  const positions: string[] = [];
  for (let connect = 0; connect < 3; connect++) {
    const stream = await openStream(t, `${gateway.url}/events/${room}`);
    await until(() => stream.lastEventId() !== '', 5000, 'the starting position');
    positions.push(stream.lastEventId());
    stream.close();
  }
  // Deterministic ids would be equal here, and differ only when some room on the partition got a
  // record: a stranger polling a public room could count a private room's messages.
  t.equal(new Set(positions).size, 3, 'three connects, three different ids, with nothing published');
  const resumed = await openStream(t, `${gateway.url}/events/${room}`, { 'last-event-id': positions[0]! });
  await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'ann', text: 'after' });
  const [event] = await resumed.waitForEvents(1);
  t.equal(event?.event, 'message', 'a fresh id resumes like any other (no reset)');
});
