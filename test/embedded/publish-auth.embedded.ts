import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configWith, type AuthConfig, type Config } from '../../src/config.ts';
import { issueToken } from '../../src/auth/issue.ts';
import { tempDir } from '../helpers/fixture.ts';
import { startGateway, uniqueName } from '../helpers/gateway.ts';
import { openStream } from '../helpers/sse-client.ts';

const SECRET = 'test-secret-of-at-least-32-characters!';
const API_KEY = 'service-key-0123456789abcdef';
const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;

function auth(overrides: Partial<AuthConfig> = {}): Pick<Config, 'auth'> {
  return { auth: { ...configWith().auth, jwtSecret: SECRET, publicRooms: ['public-*'], serviceApiKeys: new Map([[API_KEY, 'importer']]), ...overrides } };
}

function token(claims: Record<string, unknown>, key: string = SECRET): string {
  return issueToken({ exp: inAnHour(), ...claims }, key, 'HS256');
}

// any: tests index into whatever JSON a reply carries.
async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: any; text: string }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: response.status, headers: response.headers, body: parsed, text };
}

const bearer = (value: string) => ({ authorization: `Bearer ${value}` });

t.test('publishing with auth on: every refusal status, with a JSON reason', async (t) => {
  const gateway = await startGateway(t, auth());
  const room = `public-${uniqueName('r')}`;
  const url = `${gateway.url}/rooms/${room}/messages`;
  const message = { text: 'hi' };

  const missing = await post(url, message);
  t.equal(missing.status, 401);
  t.equal(missing.body.message, 'missing token: send Authorization: Bearer <token> or X-API-Key');
  t.match(missing.headers.get('www-authenticate'), /^Bearer/);

  t.equal((await post(url, message, bearer('not.a.jwt'))).body.message, 'token malformed');
  t.equal((await post(url, message, bearer(token({ sub: 'ann', publish: [room] }, 'another-secret-of-32-characters-xx')))).body.message, 'token signature invalid');
  t.equal((await post(url, message, bearer(token({ sub: 'ann', publish: [room], exp: Math.floor(Date.now() / 1000) - 60 })))).body.message, 'token expired');
  const unsigned = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'ann', publish: [room], exp: inAnHour() })).toString('base64url')}.`;
  const none = await post(url, message, bearer(unsigned));
  t.equal(none.status, 401);
  t.equal(none.body.message, 'token algorithm not allowed');
  t.equal((await post(url, message, bearer(token({ sub: 'ann', publish: 'everything' })))).status, 401, 'malformed claims');
  t.equal((await post(url, message, { authorization: 'Basic YW5uOnB3' })).status, 401);
  t.equal((await post(url, message, { 'x-api-key': 'wrong-key' })).body.message, 'invalid API key');

  const cookieOnly = await post(url, message, { cookie: `token=${token({ sub: 'ann', publish: [room] })}` });
  t.equal(cookieOnly.status, 401, 'publishing does not accept cookies (no cross-site posting)');

  const forbidden = await post(url, message, bearer(token({ sub: 'ann', rooms: ['*'], publish: ['other-room'] })));
  t.equal(forbidden.status, 403);
  t.equal(forbidden.body.message, `token does not grant publishing to room "${room}"`);

  const tickerUrl = `${gateway.url}/tickers/BTC/prices`;
  t.equal((await post(tickerUrl, { price: 1, currency: 'USD' }, bearer(token({ sub: 'ann', publish: ['BTC'] })))).status, 403, 'a room grant is not a ticker grant');
  t.equal((await post(tickerUrl, { price: 1, currency: 'USD' }, bearer(token({ sub: 'ann', publish: ['ticker:BT*'] })))).status, 202);

  const deleteResponse = await fetch(`${gateway.url}/rooms/${room}/messages/m1`, { method: 'DELETE' });
  t.equal(deleteResponse.status, 401, 'deleting needs a token too');

  const valid = token({ sub: 'ann', publish: [room] });
  t.equal((await post(url, 'not json', bearer(valid))).status, 400);
  t.equal((await post(url, { text: 'x'.repeat(20000) }, bearer(valid))).status, 413);
  t.equal((await post(url, { text: '' }, bearer(valid))).status, 400);

  for (const reply of [missing, none, forbidden]) {
    t.notMatch(reply.text, /secret|stack|at .*\.ts/i, 'no secret or stack in error replies');
  }
  t.notMatch(none.text, unsigned.slice(0, 20), 'the token is not echoed');
});

t.test("the chat user comes from the token, not from the body", async (t) => {
  const gateway = await startGateway(t, auth());
  const room = `public-${uniqueName('r')}`;
  const stream = await openStream(t, `${gateway.url}/events/${room}`);
  t.equal(stream.status, 200, 'public room: no token needed');

  const named = await post(`${gateway.url}/rooms/${room}/messages`, { user: 'admin', text: 'spoof 1' }, bearer(token({ sub: 'u-42', name: 'Ann', publish: [room] })));
  t.equal(named.status, 202);
  const unnamed = await post(`${gateway.url}/rooms/${room}/messages`, { user: 'admin', text: 'spoof 2' }, bearer(token({ sub: 'u-43', publish: ['public-*'] })));
  t.equal(unnamed.status, 202);
  const service = await post(`${gateway.url}/rooms/${room}/messages`, { user: 'bot', text: 'from a service' }, { 'x-api-key': API_KEY });
  t.equal(service.status, 202, 'a service API key may publish');
  const serviceWithoutUser = await post(`${gateway.url}/rooms/${room}/messages`, { text: 'who?' }, { 'x-api-key': API_KEY });
  t.equal(serviceWithoutUser.status, 400, 'a service must say which user it posts for');

  const events = await stream.waitForEvents(3);
  t.same(
    events.map((event) => JSON.parse(event.data)).map(({ user, text }) => ({ user, text })),
    [
      { user: 'Ann', text: 'spoof 1' },
      { user: 'u-43', text: 'spoof 2' },
      { user: 'bot', text: 'from a service' },
    ],
  );
});

t.test('429 with Retry-After: per identity and per IP', async (t) => {
  const gateway = await startGateway(t, auth({ publishRatePerIdentity: 3, publishRatePerIp: 7 }));
  const room = `public-${uniqueName('r')}`;
  const url = `${gateway.url}/rooms/${room}/messages`;
  const ann = bearer(token({ sub: 'ann', publish: [room] }));
  const bob = bearer(token({ sub: 'bob', publish: [room] }));

  const annStatuses = [];
  for (let i = 0; i < 4; i++) annStatuses.push((await post(url, { text: `a${i}` }, ann)).status);
  t.same(annStatuses, [202, 202, 202, 429], 'the fourth post of one identity in the window is refused');
  const limited = await post(url, { text: 'again' }, ann);
  t.equal(limited.status, 429);
  t.ok(Number(limited.headers.get('retry-after')) >= 1, 'Retry-After in seconds');
  t.match(limited.body, { statusCode: 429, error: 'Too Many Requests' });

  t.equal((await post(url, { text: 'b0' }, bob)).status, 202, 'another identity is not limited by the first');
  // Six requests so far from this IP (refused ones count too); the eighth is over its limit of 7.
  t.equal((await post(url, { text: 'b1' }, bob)).status, 202);
  const overIp = await post(url, { text: 'b2' }, bob);
  t.equal(overIp.status, 429, 'the per-IP limit applies across identities');
  t.ok(overIp.headers.get('retry-after'));
  const anonymous = await post(url, { text: 'x' });
  t.equal(anonymous.status, 429, 'the per-IP limit applies before the token is even checked');
});

t.test('the per-IP limit applies with auth off too', async (t) => {
  const gateway = await startGateway(t, { auth: { ...configWith().auth, publishRatePerIp: 2 } });
  const url = `${gateway.url}/rooms/${uniqueName('r')}/messages`;
  const statuses = [];
  for (let i = 0; i < 3; i++) statuses.push((await post(url, { user: 'ann', text: `m${i}` })).status);
  t.same(statuses, [202, 202, 429]);
  t.equal((await post(`${gateway.url}/rooms/${uniqueName('r')}/messages`, { text: 'no user' })).status, 429);
});

t.test('with auth off the body user stands (and is required)', async (t) => {
  const gateway = await startGateway(t);
  const room = uniqueName('r');
  t.equal((await post(`${gateway.url}/rooms/${room}/messages`, { user: 'ann', text: 'hi' })).status, 202);
  const missingUser = await post(`${gateway.url}/rooms/${room}/messages`, { text: 'hi' });
  t.equal(missingUser.status, 400);
  t.match(missingUser.body.message, /user/);
});

t.test('RS256 with a PEM key file and ES256 with a JWKS file', async (t) => {
  const dir = tempDir(t, 'gateway-keys-');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pemFile = join(dir, 'rsa.pem');
  writeFileSync(pemFile, rsa.publicKey.export({ type: 'spki', format: 'pem' }));
  const jwksFile = join(dir, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...ec.publicKey.export({ format: 'jwk' }), kid: 'ec-1', alg: 'ES256', use: 'sig' }] }));
  const room = `public-${uniqueName('r')}`;
  const claims = { sub: 'svc', publish: [room], exp: inAnHour() };

  const rsaGateway = await startGateway(t, auth({ jwtSecret: null, jwtPublicKeyFile: pemFile }));
  const rsaUrl = `${rsaGateway.url}/rooms/${room}/messages`;
  t.equal((await post(rsaUrl, { text: 'rs' }, bearer(issueToken(claims, rsa.privateKey, 'RS256')))).status, 202);
  const publicPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const confused = await post(rsaUrl, { text: 'hs' }, bearer(issueToken(claims, publicPem, 'HS256')));
  t.equal(confused.status, 401, 'HS256 signed with the public key (algorithm confusion) is refused');
  t.equal(confused.body.message, 'token algorithm not allowed');
  t.equal((await post(rsaUrl, { text: 'es' }, bearer(issueToken(claims, ec.privateKey, 'ES256')))).status, 401, 'only the configured algorithm');

  const ecGateway = await startGateway(t, auth({ jwtSecret: null, jwtPublicKeyFile: jwksFile }));
  const ecUrl = `${ecGateway.url}/rooms/${room}/messages`;
  t.equal((await post(ecUrl, { text: 'es' }, bearer(issueToken(claims, ec.privateKey, 'ES256', { kid: 'ec-1' })))).status, 202);
  t.equal((await post(ecUrl, { text: 'es' }, bearer(issueToken(claims, ec.privateKey, 'ES256')))).status, 202, 'kid optional with one key');
  const unknownKid = await post(ecUrl, { text: 'es' }, bearer(issueToken(claims, ec.privateKey, 'ES256', { kid: 'other' })));
  t.equal(unknownKid.status, 401);
  t.equal(unknownKid.body.message, 'token signed with an unknown key');
  const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  t.equal((await post(ecUrl, { text: 'es' }, bearer(issueToken(claims, otherKey.privateKey, 'ES256', { kid: 'ec-1' })))).status, 401);
});

t.test('issuer and audience are enforced when configured', async (t) => {
  const gateway = await startGateway(t, auth({ jwtIssuer: 'https://id.example', jwtAudience: 'chat' }));
  const room = `public-${uniqueName('r')}`;
  const url = `${gateway.url}/rooms/${room}/messages`;
  t.equal((await post(url, { text: 'x' }, bearer(token({ sub: 'a', publish: [room], iss: 'https://id.example', aud: 'chat' })))).status, 202);
  t.equal((await post(url, { text: 'x' }, bearer(token({ sub: 'a', publish: [room], iss: 'https://evil.example', aud: 'chat' })))).status, 401);
  t.equal((await post(url, { text: 'x' }, bearer(token({ sub: 'a', publish: [room], iss: 'https://id.example' })))).status, 401);
});

t.test('tokens never reach the logs', async (t) => {
  const { url, logs } = await startGateway(t, { logLevel: 'debug', ...auth() });
  const room = `public-${uniqueName('r')}`;
  const secretToken = token({ sub: 'ann', publish: [room], rooms: [room] });
  const expired = token({ sub: 'ann', exp: 1 });

  await post(`${url}/rooms/${room}/messages`, { text: 'hi' }, bearer(secretToken));
  await post(`${url}/rooms/${room}/messages`, { text: 'hi' }, bearer(expired));
  await post(`${url}/rooms/${room}/messages`, { text: 'hi' }, { 'x-api-key': API_KEY });
  const stream = await openStream(t, `${url}/events/${room}?token=${secretToken}&x=1`);
  stream.close();
  await fetch(`${url}/no-such-route?token=${secretToken}`);

  const log = JSON.stringify(logs);
  t.match(log, /token=\[redacted\]&x=1/, 'the stream URL was logged, redacted');
  for (const secret of [secretToken, expired, API_KEY, SECRET, secretToken.split('.')[2]!]) {
    t.notOk(log.includes(secret), 'no token, key or secret in the logs');
  }
});

t.test('operator routes (config.admin) need a service API key once auth is on', async (t) => {
  const gateway = await startGateway(t, auth());
  const anonymous = await fetch(`${gateway.url}/status`);
  t.equal(anonymous.status, 401);
  t.equal((await fetch(`${gateway.url}/status`, { headers: { 'x-api-key': 'wrong' } })).status, 401);
  t.equal((await fetch(`${gateway.url}/status`, { headers: bearer(token({ sub: 'ann', rooms: ['*'] })) })).status, 401, 'a user token is not enough');
  const operator = await fetch(`${gateway.url}/status`, { headers: { 'x-api-key': API_KEY } });
  t.equal(operator.status, 200);
  t.notOk((await operator.text()).includes(API_KEY), 'the status page does not show the keys');
});
