import t from 'tap';
import SwaggerParser from '@apidevtools/swagger-parser';
import type { FastifyInstance } from 'fastify';
import { startGateway } from './helpers/gateway.ts';

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
  'POST /rooms/{room}/messages',
  'DELETE /rooms/{room}/messages/{id}',
  'POST /tickers/{symbol}/prices',
  'GET /healthz',
  'GET /readyz',
  'GET /metrics',
  'GET /status',
];

t.test('/docs/json is a valid OpenAPI 3 document that lists every route the app serves', async (t) => {
  const gateway = await startGateway();
  t.teardown(() => gateway.close());
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

t.test('/docs serves Swagger UI, and /metrics still answers plain text', async (t) => {
  const gateway = await startGateway();
  t.teardown(() => gateway.close());
  const ui = await fetch(`${gateway.url}/docs`);
  t.equal(ui.status, 200);
  t.match(ui.headers.get('content-type'), /^text\/html/);
  t.match(await ui.text(), /swagger-ui/);
  const metrics = await fetch(`${gateway.url}/metrics`);
  t.match(await metrics.text(), /^# HELP /m, 'not JSON-encoded by a response schema');
});
