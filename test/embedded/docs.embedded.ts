import t from 'tap';
import SwaggerParser from '@apidevtools/swagger-parser';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { FastifyInstance } from 'fastify';
import { configWith } from '../../src/config.ts';
import { issueToken } from '../../src/auth/issue.ts';
import { chatKind, tickerKind } from '../../src/channels/contract.ts';
import { startGateway, uniqueName } from '../helpers/gateway.ts';
import { openStream, until } from '../helpers/sse-client.ts';

/** Every `METHOD /path` the app serves, read from Fastify's route tree (it has no route list). */
function servedRoutes(app: FastifyInstance): string[] {
  const routes: string[] = [];
  const prefixes: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^(.*?)[├└]── (.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (match === null) continue;
    const depth = (match[1]!.length) / 4;
    const path = prefixes.slice(0, depth).join('') + match[2]!;
    prefixes[depth] = match[2]!;
    for (const method of (match[3] ?? '').split(', ').filter((m) => m !== '')) routes.push(`${method} ${path}`);
  }
  return routes;
}

/** Fastify's `/rooms/:room` as OpenAPI writes it: `/rooms/{room}`. */
const openApiPath = (path: string) => path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

const API_ROUTES = [
  'GET /events/{room}',
  'GET /tickers/{symbol}/events',
  'GET /streams/room/{channel}',
  'GET /streams/ticker/{channel}',
  'POST /rooms/{room}/messages',
  'PATCH /rooms/{room}/messages/{id}',
  'DELETE /rooms/{room}/messages/{id}',
  'POST /tickers/{symbol}/prices',
  'GET /healthz',
  'GET /readyz',
  'GET /metrics',
  'GET /status',
];

t.test('/docs/json is a valid OpenAPI 3 document that lists every route the app serves', async (t) => {
  const gateway = await startGateway(t);
  const response = await fetch(`${gateway.url}/docs/json`);
  t.equal(response.status, 200);
  // any: an OpenAPI document is walked as plain JSON here.
  const document = (await response.json()) as any;
  t.match(document.openapi, /^3\./);

  // The validator dereferences in place: give it a copy.
  await t.resolves(SwaggerParser.validate(structuredClone(document)), 'valid against the OpenAPI schema');

  const documented = Object.entries(document.paths as Record<string, object>).flatMap(([path, operations]) =>
    Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`),
  );
  for (const route of API_ROUTES) t.ok(documented.includes(route), `${route} is documented`);

  // HEAD and OPTIONS are implied; the documentation's own pages and static files are not API.
  const served = servedRoutes(gateway.app)
    .filter((route) => !/^(HEAD|OPTIONS) /.test(route))
    .filter((route) => !/ \/docs(\/|$)/.test(route) && !/ \/(?:[^/]*\.[a-z0-9]+)?$/.test(route))
    .map((route) => openApiPath(route));
  t.ok(served.length >= API_ROUTES.length, `found the served routes: ${served.join(', ')}`);
  for (const route of served) t.ok(documented.includes(route), `served ${route} is documented`);
  for (const route of documented) t.ok(served.includes(route), `documented ${route} is served`);

  const roomEvents = document.paths['/events/{room}'].get;
  t.ok(roomEvents.responses['200'].content['text/event-stream'], 'SSE routes answer text/event-stream');
  t.match(roomEvents.description, /`message`/);
  t.match(roomEvents.description, /`delete`/);
  t.match(document.paths['/tickers/{symbol}/events'].get.description, /`price_update`/);
  t.ok(document.paths['/rooms/{room}/messages'].post.requestBody, 'request bodies are described');
  t.ok(document.paths['/metrics'].get.responses['200'].content['text/plain'], '/metrics is text');
});

// any: the OpenAPI document is walked as plain JSON.
async function openApiDocument(url: string): Promise<any> {
  return (await fetch(`${url}/docs/json`)).json();
}

/** Every operation of the document as [`METHOD /path`, operation]. */
// any: as above.
function operations(document: any): Array<[string, any]> {
  return Object.entries(document.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) =>
    Object.entries(ops).map(([method, operation]): [string, unknown] => [`${method.toUpperCase()} ${path}`, operation]),
  );
}

/**
 * The statuses each route's code can answer, read from the code: the route's schema (400), the
 * auth plugin (401/403, and 429 for the per-identity stream cap; 401 on operator routes), the
 * stream plugin (429 per IP; at MAX_STREAMS a 200 with `event: unavailable`, never a 503, which
 * EventSource would give up on), the rate limiter (429), the body parser (413/415), the bus (503),
 * the error handler (500 for anything unexpected).
 */
const EXPECTED_STATUSES: Record<string, number[]> = {
  'GET /events/{room}': [200, 400, 401, 403, 429, 500],
  'GET /rooms/{room}/presence': [200, 400, 401, 403, 500],
  'GET /tickers/{symbol}/events': [200, 400, 401, 403, 429, 500],
  'GET /streams/room/{channel}': [200, 400, 401, 403, 429, 500],
  'GET /streams/ticker/{channel}': [200, 400, 401, 403, 429, 500],
  'GET /events': [200, 400, 401, 403, 429, 500],
  'POST /rooms/{room}/messages': [202, 400, 401, 403, 409, 413, 415, 429, 500, 503],
  'PATCH /rooms/{room}/messages/{id}': [202, 400, 401, 403, 404, 409, 413, 415, 429, 500, 503],
  'DELETE /rooms/{room}/messages/{id}': [202, 400, 401, 403, 404, 429, 500, 503],
  'POST /tickers/{symbol}/prices': [202, 400, 401, 403, 413, 415, 429, 500, 503],
  'GET /tickers/{symbol}/history': [200, 400, 401, 403, 500],
  'GET /status': [200, 401, 500],
  'GET /readyz': [200, 503],
  'GET /healthz': [200],
  'GET /metrics': [200, 401],
};

t.test('the document declares the security schemes, and each route its auth, tag and every status', async (t) => {
  const gateway = await startGateway(t);
  const document = await openApiDocument(gateway.url);
  await t.resolves(SwaggerParser.validate(structuredClone(document)), 'valid against the OpenAPI schema');

  t.match(document.components.securitySchemes, {
    bearerToken: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
    tokenCookie: { type: 'apiKey', in: 'cookie', name: gateway.config.auth.cookieName },
    tokenQuery: { type: 'apiKey', in: 'query', name: 'token' },
    serviceApiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
  });
  const security = Object.fromEntries(operations(document).map(([route, operation]) => [route, operation.security]));
  const streams = [{ bearerToken: [] }, { tokenCookie: [] }, { tokenQuery: [] }, {}];
  const publish = [{ bearerToken: [] }, { serviceApiKey: [] }];
  t.same(security, {
    'GET /events/{room}': streams,
    'GET /rooms/{room}/presence': streams,
    'GET /tickers/{symbol}/events': streams,
    'GET /streams/room/{channel}': streams,
    'GET /streams/ticker/{channel}': streams,
    'GET /events': streams,
    'POST /rooms/{room}/messages': publish,
    'PATCH /rooms/{room}/messages/{id}': publish,
    'DELETE /rooms/{room}/messages/{id}': publish,
    'POST /tickers/{symbol}/prices': publish,
    'GET /status': [{ serviceApiKey: [] }],
    'GET /tickers/{symbol}/history': streams,
    'GET /readyz': [],
    'GET /healthz': [],
    'GET /metrics': [{ serviceApiKey: [] }],
  }, 'each route says how it authenticates (streams: optional, for public channels)');

  const tagNames = (document.tags as Array<{ name: string }>).map((tag) => tag.name);
  t.ok(tagNames.length > 1, `several tags: ${tagNames.join(', ')}`);
  for (const [route, operation] of operations(document)) {
    t.ok(operation.tags?.length === 1 && tagNames.includes(operation.tags[0]), `${route} has a declared tag (${operation.tags})`);
    const documented = Object.keys(operation.responses).map(Number);
    t.ok(EXPECTED_STATUSES[route], `${route} is known to this test`);
    for (const status of EXPECTED_STATUSES[route] ?? []) t.ok(documented.includes(status), `${route} documents ${status}`);
    for (const [status, response] of Object.entries(operation.responses) as Array<[string, { description: string }]>) {
      t.not(response.description, 'Default Response', `${route} ${status} says what it means`);
    }
  }
  t.equal(document.paths['/events/{room}'].get.tags[0], 'streams');
  t.equal(document.paths['/status'].get.tags[0], 'operations');
});

const SECRET = 'docs-test-secret-of-at-least-32-characters';
const API_KEY = 'docs-service-key-0123456789abcdef';
const token = (claims: Record<string, unknown>) =>
  issueToken({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims }, SECRET, 'HS256');

t.test('every status the gateway answers while provoked is documented for its route', async (t) => {
  const gateway = await startGateway(t, {
    maxStreams: 2,
    auth: {
      ...configWith().auth,
      jwtSecret: SECRET,
      serviceApiKeys: new Map([[API_KEY, 'importer']]),
      maxStreamsPerIdentity: 1,
      publishRatePerIp: 20,
    },
    bodyLimitBytes: 1024,
  });
  const document = await openApiDocument(gateway.url);
  const base = gateway.url;
  const room = uniqueName('room');
  const seen = new Map<string, Set<number>>();
  const check = (route: string, status: number) => {
    seen.set(route, (seen.get(route) ?? new Set()).add(status));
    const operation = document.paths[route.split(' ')[1]!]?.[route.split(' ')[0]!.toLowerCase()];
    t.ok(operation?.responses[String(status)], `${route} answered ${status}: documented`);
  };
  const stream = async (route: string, path: string, headers: Record<string, string> = {}) => {
    const opened = await openStream(t, `${base}${path}`, headers);
    check(route, opened.status);
    return opened;
  };
  const request = async (route: string, path: string, init: RequestInit = {}) => {
    const response = await fetch(`${base}${path}`, init);
    await response.arrayBuffer();
    check(route, response.status);
    return response;
  };

  const ann = { authorization: `Bearer ${token({ sub: 'ann', rooms: [room], tickers: ['*'], publish: [room] })}` };
  const bob = { authorization: `Bearer ${token({ sub: 'bob', rooms: ['*'], tickers: ['*'] })}` };
  await stream('GET /events/{room}', `/events/${room}`); // 401
  await stream('GET /events/{room}', `/events/other-room`, ann); // 403
  await stream('GET /events/{room}', `/events/${room}?since=yesterday`, ann); // 400
  t.equal((await stream('GET /events/{room}', `/events/${room}`, ann)).status, 200);
  await stream('GET /tickers/{symbol}/events', `/tickers/BTC/events`, ann); // 429: ann's one stream is open
  t.equal((await stream('GET /tickers/{symbol}/events', `/tickers/BTC/events`, bob)).status, 200);
  // MAX_STREAMS: 200 with `event: unavailable` and a retry (EventSource gives up on a 503).
  await stream('GET /events', `/events?room=${room}`, { authorization: `Bearer ${token({ sub: 'cy', rooms: ['*'] })}` });
  await stream('GET /events', `/events`, bob); // 400: no channel

  const post = (route: string, path: string, body: string, headers: Record<string, string>) =>
    request(route, path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const service = { 'x-api-key': API_KEY };
  await post('POST /rooms/{room}/messages', `/rooms/${room}/messages`, '{"text":"hi"}', {}); // 401
  await post('POST /rooms/{room}/messages', `/rooms/${room}/messages`, '{"text":"hi"}', bob); // 403
  await post('POST /rooms/{room}/messages', `/rooms/${room}/messages`, '{"text":""}', ann); // 400
  await post('POST /rooms/{room}/messages', `/rooms/${room}/messages`, JSON.stringify({ text: 'x'.repeat(2000) }), ann); // 413
  await request('POST /rooms/{room}/messages', `/rooms/${room}/messages`, { method: 'POST', headers: { 'content-type': 'application/xml', ...ann }, body: '<hi/>' }); // 415
  await post('POST /rooms/{room}/messages', `/rooms/${room}/messages`, '{"id":"m1","text":"hi"}', ann); // 202
  const patch = (path: string, body: string, headers: Record<string, string>) =>
    request('PATCH /rooms/{room}/messages/{id}', path, { method: 'PATCH', headers: { 'content-type': 'application/json', ...headers }, body });
  await patch(`/rooms/${room}/messages/m1`, '{"text":"edited"}', ann); // 202
  await patch(`/rooms/${room}/messages/m1`, '{"text":"edited"}', {}); // 401
  await patch(`/rooms/${room}/messages/m1`, '{"text":"edited"}', bob); // 403
  await patch(`/rooms/${room}/messages/never-posted`, '{"text":"edited"}', ann); // 404
  await patch(`/rooms/${room}/messages/m1`, '{"text":""}', ann); // 400
  await request('DELETE /rooms/{room}/messages/{id}', `/rooms/${room}/messages/m1`, { method: 'DELETE', headers: service }); // 202
  await until(() => gateway.app.dispatcher.messageEntry('room', room, 'm1')?.deletion != null, 10000, 'the delete consumed');
  await patch(`/rooms/${room}/messages/m1`, '{"text":"edited"}', ann); // 409
  await request('DELETE /rooms/{room}/messages/{id}', `/rooms/${room}/messages/never-posted`, { method: 'DELETE', headers: service }); // 404
  await request('DELETE /rooms/{room}/messages/{id}', `/rooms/${room}/messages/m1`, { method: 'DELETE' }); // 401
  await post('POST /tickers/{symbol}/prices', '/tickers/BTC/prices', '{"price":-1,"currency":"USD"}', service); // 400
  await post('POST /tickers/{symbol}/prices', '/tickers/BTC/prices', '{"price":1,"currency":"USD"}', service); // 202
  let limited = 0;
  for (let n = 0; n < 20 && limited !== 429; n++) {
    limited = (await post('POST /tickers/{symbol}/prices', '/tickers/BTC/prices', '{"price":1,"currency":"USD"}', service)).status;
  }
  t.equal(limited, 429, 'the per-IP publish limit was reached');

  await request('GET /status', '/status'); // 401
  await request('GET /status', '/status', { headers: service }); // 200
  await request('GET /tickers/{symbol}/history', '/tickers/BTC/history?window=2d'); // 400
  await request('GET /tickers/{symbol}/history', '/tickers/BTC/history'); // 401
  await request('GET /tickers/{symbol}/history', '/tickers/BTC/history', { headers: { authorization: `Bearer ${token({ sub: 'dee', rooms: [room] })}` } }); // 403
  await request('GET /tickers/{symbol}/history', '/tickers/BTC/history', { headers: bob }); // 200
  await request('GET /readyz', '/readyz');
  await request('GET /healthz', '/healthz');
  await request('GET /metrics', '/metrics'); // 401
  await request('GET /metrics', '/metrics', { headers: service }); // 200

  t.same(
    Object.fromEntries([...seen].map(([route, statuses]) => [route, [...statuses].sort()])),
    {
      'GET /events/{room}': [200, 400, 401, 403],
      'GET /tickers/{symbol}/events': [200, 429],
      'GET /events': [200, 400],
      'POST /rooms/{room}/messages': [202, 400, 401, 403, 413, 415],
      'PATCH /rooms/{room}/messages/{id}': [202, 400, 401, 403, 404, 409],
      'DELETE /rooms/{room}/messages/{id}': [202, 401, 404],
      'POST /tickers/{symbol}/prices': [202, 400, 429],
      'GET /status': [200, 401],
      'GET /tickers/{symbol}/history': [200, 400, 401, 403],
      'GET /readyz': [200],
      'GET /healthz': [200],
      'GET /metrics': [200, 401],
    },
    'the statuses provoked',
  );
});

t.test("each event type's data is a schema in the stream routes' 200 response, and real events match it", async (t) => {
  const gateway = await startGateway(t);
  const document = await openApiDocument(gateway.url);
  // any: frames of the document, walked as JSON.
  const frames = (route: string): Map<string, any> =>
    new Map(
      document.paths[route].get.responses['200'].content['text/event-stream'].schema.anyOf.map((frame: any) => [frame.properties.event.enum?.[0] ?? frame.properties.event.const, frame]),
    );
  const control = ['reset', 'lag', 'live', 'overflow', 'auth_expired', 'unavailable', 'position'];
  const roomTypes = Object.keys(chatKind('chat').eventTypes);
  const tickerTypes = Object.keys(tickerKind('ticker').eventTypes);
  t.same([...frames('/events/{room}').keys()].sort(), [...roomTypes, ...control, 'presence'].sort(), 'room streams: chat events, control events and presence');
  t.same([...frames('/tickers/{symbol}/events').keys()].sort(), [...tickerTypes, ...control].sort(), 'tickers have no presence');
  t.same([...frames('/events').keys()].sort(), [...roomTypes, ...tickerTypes, ...control, 'presence'].sort());

  const ajv = new Ajv2020({ strict: false });
  const room = uniqueName('room');
  const stream = await openStream(t, `${gateway.url}/events?room=${room}&ticker=BTC`);
  const posted = await fetch(`${gateway.url}/rooms/${room}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: 'ann', text: 'hi' }),
  });
  const { id } = (await posted.json()) as { id: string };
  await fetch(`${gateway.url}/rooms/${room}/messages/${id}`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: '{"text":"hello"}' });
  await fetch(`${gateway.url}/rooms/${room}/messages/${id}`, { method: 'DELETE' });
  await fetch(`${gateway.url}/tickers/BTC/prices`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"price":1.5,"currency":"USD"}' });
  const events = await stream.waitForEvents(4);
  const schemas = frames('/events');
  for (const event of events) {
    const validate = ajv.compile(schemas.get(event.event ?? 'message').properties.data);
    t.ok(validate(JSON.parse(event.data)), `${event.event} ${event.data} matches its documented schema ${JSON.stringify(validate.errors)}`);
  }
  t.same(events.map((event) => event.event), ['message', 'edit', 'delete', 'price_update']);
  await until(() => stream.presence.length >= 1, 5000, 'the presence snapshot');
  for (const event of stream.presence) {
    const validate = ajv.compile(schemas.get('presence').properties.data);
    t.ok(validate(JSON.parse(event.data)), `presence ${event.data} matches its documented schema ${JSON.stringify(validate.errors)}`);
  }
  const wrong = ajv.compile(schemas.get('message').properties.data);
  t.notOk(wrong({ room, id, user: 'ann', ts: 1 }), 'a message without its text does not match');
});

t.test('/docs serves Swagger UI, and /metrics still answers plain text', async (t) => {
  const gateway = await startGateway(t);
  const ui = await fetch(`${gateway.url}/docs`);
  t.equal(ui.status, 200);
  t.match(ui.headers.get('content-type'), /^text\/html/);
  t.match(await ui.text(), /swagger-ui/);
  const metrics = await fetch(`${gateway.url}/metrics`);
  t.match(await metrics.text(), /^# HELP /m, 'not JSON-encoded by a response schema');
});
