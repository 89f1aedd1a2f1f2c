import t from 'tap';
import { channelsUrl, streamUrl, subscribe, type ChannelEvent, type ChatMessageEvent } from '../../src/client/index.ts';
import type { ChannelKindDeclaration } from '../../src/channels/kind.ts';
import { issueToken } from '../../src/auth/issue.ts';
import { configWith } from '../../src/config.ts';
import { postJson, startGateway, uniqueName } from '../helpers/gateway.ts';
import { openStream, until } from '../helpers/sse-client.ts';

/**
 * A declared channel kind on the embedded bus (no broker): its routes, its auth rules, the
 * typed client, and a slow client of a `conflate` kind. The Kafka side (records produced by
 * another service, another partitioner, resume on a second replica) is in
 * channel-kinds-kafka.test.ts.
 */

const ORDERS: ChannelKindDeclaration = {
  name: 'orders',
  topic: 'orders',
  publish: ['created'],
  access: { public: ['demo-*'], claim: 'orders' },
  eventTypes: {
    created: {
      schema: { type: 'object', required: ['orderId', 'amount'], properties: { orderId: { type: 'string' }, amount: { type: 'number' } } },
    },
  },
};

interface OrderEvents {
  created: ChannelEvent<'orders', { orderId: string; amount: number }>;
}

t.test('the typed client streams a declared kind, alone and beside a room', async (t) => {
  const gateway = await startGateway(t, { channelKinds: [ORDERS] });
  const channel = uniqueName('o');
  const room = uniqueName('room');

  const orders = subscribe<OrderEvents>(streamUrl(gateway.url, 'orders', channel));
  t.teardown(() => orders.close());
  const mixed = subscribe<OrderEvents & { message: ChatMessageEvent }>(channelsUrl(gateway.url, { rooms: [room], orders: [channel] }));
  t.teardown(() => mixed.close());
  const received: Array<{ orderId: string; amount: number; orders: string }> = [];
  orders.on('created', (order) => received.push({ orderId: order.orderId, amount: order.amount, orders: order.orders }));
  const seen: string[] = [];
  mixed.on('created', (order) => seen.push(`order ${order.orderId}`));
  mixed.on('message', (message) => seen.push(`message ${message.text}`));
  await until(() => orders.state === 'open' && mixed.state === 'open', 10000, 'both streams open');

  t.equal((await postJson(`${gateway.url}/streams/orders/${channel}/created`, { orderId: 'a1', amount: 5 })).status, 202);
  t.equal((await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'ann', text: 'hi' })).status, 202);
  await until(() => received.length === 1 && seen.length === 2, 10000, 'the events');
  t.same(received, [{ orderId: 'a1', amount: 5, orders: channel }]);
  t.same(seen.sort(), ['message hi', 'order a1']);

  const status = (await (await fetch(`${gateway.url}/status`)).json()) as { channels: { kinds: unknown[] }; streams: { openByKind: Record<string, number> } };
  t.same(
    status.channels.kinds,
    [
      { name: 'room', topic: 'chat', builtIn: true, eventTypes: ['message', 'edit', 'delete'], publishable: [], slowClients: 'cut' },
      { name: 'ticker', topic: 'ticker', builtIn: true, eventTypes: ['price_update'], publishable: [], slowClients: 'conflate' },
      { name: 'orders', topic: 'orders', builtIn: false, eventTypes: ['created'], publishable: ['created'], slowClients: 'cut' },
    ],
    '/status lists the kinds',
  );
  t.same(status.streams.openByKind, { room: 0, ticker: 0, orders: 1, multi: 1 }, 'open streams by kind');
  const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
  t.match(metrics, /sse_gateway_publish_requests_total\{method="POST",route="\/streams\/orders\/:channel\/created",status="202"\} 1/, "a declared kind's publishes are counted");
  t.match(metrics, /sse_gateway_open_streams\{kind="orders"\} 1/, 'open streams by kind, the declared one included');
});

t.test('a declared kind is read with its own claim and public patterns, and published with KIND:PATTERN', async (t) => {
  const secret = 'channel-kinds-test-secret-0123456789';
  const gateway = await startGateway(t, { channelKinds: [ORDERS], auth: { ...configWith().auth, jwtSecret: secret } });
  const token = (claims: Record<string, unknown>) => issueToken({ sub: 'u1', exp: Math.floor(Date.now() / 1000) + 600, ...claims }, secret, 'HS256');

  const open = async (path: string, bearer?: string) => {
    const stream = await openStream(t, `${gateway.url}${path}`, bearer === undefined ? {} : { authorization: `Bearer ${bearer}` });
    stream.close();
    return stream.status;
  };
  t.equal(await open('/streams/orders/demo-1'), 200, 'a public channel of the kind, without a token');
  t.equal(await open('/streams/orders/private-1'), 401, 'a private one needs a token');
  t.equal(await open('/streams/orders/private-1', token({ rooms: ['private-1'] })), 403, 'a room grant is not an orders grant');
  t.equal(await open('/streams/orders/private-1', token({ orders: ['private-*'] })), 200, "the kind's own claim grants it");
  t.equal(await open('/events?orders=private-1&room=lobby', token({ orders: ['private-1'] })), 403, 'a multi-channel stream needs every channel');

  const post = (bearer: string) =>
    fetch(`${gateway.url}/streams/orders/private-1/created`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` },
      body: JSON.stringify({ orderId: 'x', amount: 1 }),
    }).then((response) => response.status);
  t.equal(await post(token({ publish: ['private-1'] })), 403, 'a bare publish entry is a room');
  t.equal(await post(token({ publish: ['orders:private-*'] })), 202, 'orders:PATTERN grants publishing');
  t.equal(await post(token({ publish: ['nosuchkind:x'] })), 401, 'a grant naming no kind makes the token malformed');
});


t.test('two gateways in one process, one kind declared with different schemas: each validates with its own (compiled schemas are shared by content only)', async (t) => {
  const textAmounts: ChannelKindDeclaration = {
    ...ORDERS,
    eventTypes: { created: { schema: { type: 'object', required: ['orderId', 'amount'], properties: { orderId: { type: 'string' }, amount: { type: 'string' } } } } },
  };
  const numeric = await startGateway(t, { channelKinds: [ORDERS] });
  const textual = await startGateway(t, { channelKinds: [textAmounts] });
  const channel = uniqueName('demo-');
  const post = (url: string, amount: unknown) => postJson(`${url}/streams/orders/${channel}/created`, { orderId: 'a1', amount });
  t.equal((await post(numeric.url, 5)).status, 202, 'a number where its schema says number');
  t.equal((await post(textual.url, '5')).status, 202, 'a string where its schema says string');
  const refusedByNumeric = await post(numeric.url, '5');
  t.equal(refusedByNumeric.status, 400, 'a string where the first says number');
  t.match(refusedByNumeric.body, { message: /amount must be number/ });
  const refusedByTextual = await post(textual.url, 5);
  t.equal(refusedByTextual.status, 400, 'a number where the second says string');
  t.match(refusedByTextual.body, { message: /amount must be string/ });
});
