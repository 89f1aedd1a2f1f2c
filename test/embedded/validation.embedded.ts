import t from 'tap';
import Fastify from 'fastify';
import { validatorFactory } from '../../plugins/validation.ts';
import { startGateway } from '../helpers/gateway.ts';
import { openStream } from '../helpers/sse-client.ts';

/** One request; the answer's status and JSON body. */
async function send(url: string, init: RequestInit): Promise<{ status: number; message: string }> {
  const response = await fetch(url, init);
  const body = (await response.json()) as { statusCode: number; message: string };
  if (response.status >= 400) t.equal(body.statusCode, response.status, "an error's JSON carries its status");
  return { status: response.status, message: body.message };
}

const json = (body: unknown): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

t.test('a JSON body is checked as sent: no coercion, no silently dropped field', async (t) => {
  const gateway = await startGateway(t);
  const room = `${gateway.url}/rooms/lobby/messages`;
  const prices = `${gateway.url}/tickers/DOGE/prices`;
  const cases: Array<[string, unknown, RegExp]> = [
    [room, { user: 'ann', text: ['a'] }, /^body\/text must be string$/],
    [room, { user: 'ann', text: 123 }, /^body\/text must be string$/],
    [room, { user: 'ann', text: true }, /^body\/text must be string$/],
    [room, { user: 'ann', text: 'hi', colour: 'red' }, /^body\/colour is not an allowed property$/],
    [prices, { price: '5', currency: 'USD' }, /^body\/price must be number$/],
    [prices, { price: 5, currency: 'USD', volume: 3 }, /^body\/volume is not an allowed property$/],
    [room, ['ann', 'hi'], /^body must be object$/],
  ];
  for (const [url, body, message] of cases) {
    const reply = await send(url, json(body));
    t.equal(reply.status, 400, `${JSON.stringify(body)} → 400`);
    t.match(reply.message, message, `${JSON.stringify(body)}: "${reply.message}"`);
  }

  // Nothing of the refused posts reached a subscriber: a valid one after them is the first event.
  const stream = await openStream(t, `${gateway.url}/events/lobby`);
  t.equal((await send(room, json({ user: 'ann', text: 'valid' }))).status, 202);
  await stream.waitForEvents(1, 5000);
  t.same(stream.events.map((event) => JSON.parse(event.data).text), ['valid']);
});

t.test('a body that is not JSON answers 415, naming the media type', async (t) => {
  const gateway = await startGateway(t);
  for (const type of ['text/plain', 'text/plain; charset=utf-8', 'application/x-www-form-urlencoded']) {
    const reply = await send(`${gateway.url}/rooms/lobby/messages`, { method: 'POST', headers: { 'content-type': type }, body: 'user=ann&text=hi' });
    t.equal(reply.status, 415, `${type} → 415`);
    t.match(reply.message, /Unsupported Media Type/i, `${type}: "${reply.message}"`);
  }
});

t.test('query strings and parameters keep the coercion they need, and errors name the allowed values', async (t) => {
  const gateway = await startGateway(t);
  const bad = await send(`${gateway.url}/tickers/BTC/history?window=2h`, {});
  t.equal(bad.status, 400);
  t.equal(bad.message, 'querystring/window must be one of "5m", "1h", "24h"');

  const typo = await send(`${gateway.url}/tickers/BTC/history?windw=1h`, {});
  t.equal(typo.status, 400, 'a mistyped query parameter is refused, not ignored');
  t.equal(typo.message, 'querystring/windw is not an allowed property');

  const good = await fetch(`${gateway.url}/tickers/BTC/history?window=1h`);
  t.equal(good.status, 200);
  t.equal(((await good.json()) as { window: string }).window, '1h');

  // One `?room=` is a string on the wire; the schema's array still takes it.
  const stream = await openStream(t, `${gateway.url}/events?room=lobby`);
  t.equal((await send(`${gateway.url}/rooms/lobby/messages`, json({ user: 'ann', text: 'one room' }))).status, 202);
  await stream.waitForEvents(1, 5000);
  t.equal(JSON.parse(stream.events[0]?.data ?? '{}').text, 'one room');
});

t.test('validators compiled once per process stay per app where JSON cannot tell two apps apart: a custom format given as a RegExp', async (t) => {
  const schema = () => ({ type: 'object', properties: { code: { type: 'string', format: 'code' } } });
  const statuses: number[] = [];
  for (const pattern of [/^abc$/, /^xyz$/]) {
    // any: Fastify's options type does not know this Ajv option's shape.
    const app = Fastify({ ajv: { customOptions: { formats: { code: pattern } } }, schemaController: { compilersFactory: { buildValidator: validatorFactory() } } } as any);
    t.teardown(() => app.close());
    app.post('/x', { schema: { body: schema() } }, async () => 'ok');
    statuses.push((await app.inject({ method: 'POST', url: '/x', payload: { code: 'abc' } })).statusCode);
  }
  t.same(statuses, [200, 400], "each app checks the format with its own pattern");
});
