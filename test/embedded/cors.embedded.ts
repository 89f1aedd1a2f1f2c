import t from 'tap';
import { configWith } from '../../src/config.ts';
import { startGateway } from '../helpers/gateway.ts';

/**
 * CORS for browsers on an allowed origin (`CORS_ORIGINS`): every documented method passes the
 * preflight, and the response headers the README tells clients to read are exposed to scripts.
 */

const ORIGIN = 'https://app.example';

const exposed = (value: string | number | string[] | undefined) =>
  String(value ?? '')
    .split(',')
    .map((name) => name.trim().toLowerCase());

t.test('the preflight of every method a route answers, PATCH included, succeeds from an allowed origin', async (t) => {
  const gateway = await startGateway(t, { corsOrigins: [ORIGIN] });
  for (const [method, url] of [
    ['PATCH', '/rooms/lobby/messages/m1'],
    ['DELETE', '/rooms/lobby/messages/m1'],
    ['POST', '/rooms/lobby/messages'],
  ] as const) {
    const preflight = await gateway.app.inject({
      method: 'OPTIONS',
      url,
      headers: { origin: ORIGIN, 'access-control-request-method': method, 'access-control-request-headers': 'content-type,authorization' },
    });
    t.equal(preflight.statusCode, 204, `${method} preflight`);
    t.equal(preflight.headers['access-control-allow-origin'], ORIGIN);
    t.ok(exposed(preflight.headers['access-control-allow-methods']).includes(method.toLowerCase()), `${method} in ${preflight.headers['access-control-allow-methods']}`);
    t.match(preflight.headers['access-control-allow-headers'], /Content-Type/);
  }
});

t.test('a 429 to an allowed origin exposes Retry-After to the page', async (t) => {
  const gateway = await startGateway(t, { corsOrigins: [ORIGIN], auth: { ...configWith().auth, publishRatePerIp: 1 } });
  const post = () =>
    gateway.app.inject({ method: 'POST', url: '/rooms/lobby/messages', headers: { origin: ORIGIN, 'content-type': 'application/json' }, payload: { user: 'ann', text: 'hi' } });
  t.equal((await post()).statusCode, 202);
  const limited = await post();
  t.equal(limited.statusCode, 429);
  t.ok(Number(limited.headers['retry-after']) >= 1, 'Retry-After sent');
  t.equal(limited.headers['access-control-allow-origin'], ORIGIN);
  const names = exposed(limited.headers['access-control-expose-headers']);
  t.ok(names.includes('retry-after'), `Retry-After exposed (${limited.headers['access-control-expose-headers']})`);
  t.ok(names.includes('www-authenticate'), 'WWW-Authenticate (401) exposed');
});

t.test('a 503 (Kafka not connected) to an allowed origin exposes Retry-After to the page', async (t) => {
  const gateway = await startGateway(t, { corsOrigins: [ORIGIN], kafkaBrokers: ['127.0.0.1:1'], publishTimeoutMs: 1000 }, { waitReady: false });
  const refused = await gateway.app.inject({
    method: 'POST',
    url: '/rooms/lobby/messages',
    headers: { origin: ORIGIN, 'content-type': 'application/json' },
    payload: { user: 'ann', text: 'hi' },
  });
  t.equal(refused.statusCode, 503);
  t.equal(refused.headers['retry-after'], '5');
  t.equal(refused.headers['access-control-allow-origin'], ORIGIN);
  t.ok(exposed(refused.headers['access-control-expose-headers']).includes('retry-after'), 'Retry-After exposed');
});
