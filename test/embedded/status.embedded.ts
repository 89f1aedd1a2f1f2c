import t from 'tap';
import { postJson, startGateway, uniqueName } from '../helpers/gateway.ts';
import { openStream } from '../helpers/sse-client.ts';
import { configWith, type Config } from '../../src/config.ts';
import Fastify, { type RouteOptions } from 'fastify';
import statusRoutes, { redactSecrets } from '../../routes/status.ts';

// any: the test reads whatever JSON /status answers and asserts on it.
async function status(url: string): Promise<{ status: number; body: any; text: string }> {
  const response = await fetch(`${url}/status`);
  const text = await response.text();
  return { status: response.status, body: JSON.parse(text), text };
}

t.test('/status describes this replica: instance, bus, partitions, streams, channels, config', async (t) => {
  const gateway = await startGateway(t, { chatTopic: uniqueName('chat') });
  const room = uniqueName('room');
  const stream = await openStream(t, `${gateway.url}/events/${room}`);
  t.equal((await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'ann', text: 'hi' })).status, 202);
  await stream.waitForEvents(1);

  const { status: code, body } = await status(gateway.url);
  t.equal(code, 200);
  t.equal(body.instanceId, gateway.config.instanceId);
  t.ok(body.uptimeSeconds >= 0);
  t.ok(Date.parse(body.startedAt) <= Date.now());
  t.same(body.bus, { kind: 'memory', brokers: null, ready: true });
  t.match(body.streams, {
    open: 1,
    openByKind: { room: 1, ticker: 0, multi: 0 },
    opened: 1,
    closed: 0,
    slowClientDisconnects: 0,
    resumesFromMemory: 0,
    resumesFromKafka: 0,
    resumeResets: 0,
  });
  t.same(body.history, { events: 1, channels: 1 });
  t.equal(body.channels.active, 1);
  t.same(body.channels.kinds.map((kind: { name: string }) => kind.name), ['room', 'ticker'], 'the built-in kinds');
  t.same(body.chartHistory, { symbols: 0, backfill: null }, 'no chart history yet, and nothing to read back on the embedded bus');
  t.same(body.records, { consumed: 1, skipped: 0, deliveries: 1 });
  const chat = body.partitions.filter((position: { topic: string }) => position.topic === gateway.config.chatTopic);
  t.equal(chat.length, gateway.config.topicPartitions, 'every partition of the chat topic');
  t.same(
    chat.map((position: { next: string }) => position.next).sort(),
    ['0', '0', '0', '0', '0', '1'],
    'the one message moved one partition on',
  );
  t.ok(chat.every((position: { lag: number }) => position.lag === 0));
  t.same(body.config.chatTopic, gateway.config.chatTopic, 'the config summary shows the settings');
  t.equal(body.config.publishTimeoutMs, gateway.config.publishTimeoutMs);
});

t.test('/status redacts every setting whose name says it is a credential', async (t) => {
  const defaults = configWith();
  const settings: Partial<Config> = {
    cursorSecret: 'cursor-secret-value-1',
    // The embedded bus never uses these: they are here to be shown, or not.
    kafkaSecurity: { ...defaults.kafkaSecurity, sasl: { mechanism: 'plain', username: 'gw', password: 'sasl-password-value-2' } },
  };
  // Settings a later change may add: hand them in as extra fields (auth stays off).
  const future = { adminToken: 'admin-token-value-3', apiKeys: ['api-key-value-4'], nested: { jwtSecret: 'jwt-secret-value-5' } };
  const gateway = await startGateway(t, { ...settings, ...future } as Partial<Config>);
  const { status: code, body, text } = await status(gateway.url);
  t.equal(code, 200);
  t.equal(body.config.cursorSecret, '[redacted]');
  t.same(body.config.kafkaSecurity.sasl, { mechanism: 'plain', username: 'gw', password: '[redacted]' });
  t.equal(body.config.adminToken, '[redacted]');
  t.equal(body.config.apiKeys, '[redacted]');
  t.same(body.config.nested, { jwtSecret: '[redacted]' });
  t.equal(body.config.auth.jwtSecret, '[redacted]', 'redacted even when unset');
  t.notMatch(text, /value-\d/, 'no secret value anywhere in the answer');
  t.equal(body.config.instanceId, gateway.config.instanceId, 'other settings are shown');
  t.equal(body.config.historyMaxTotalEvents, gateway.config.historyMaxTotalEvents);
});

t.test('redactSecrets matches credential names in any case and at any depth, and leaves the rest alone', async (t) => {
  t.same(
    redactSecrets({
      SECRET: 1,
      dbPassword: 'x',
      refresh_token: 'y',
      PRIVATE_KEY: 'z',
      list: [{ apiKey: 'k', name: 'n' }],
      services: new Map([['billing', { token: 't', url: 'u' }]]),
      port: 3000,
    }),
    {
      SECRET: '[redacted]',
      dbPassword: '[redacted]',
      refresh_token: '[redacted]',
      PRIVATE_KEY: '[redacted]',
      list: [{ apiKey: '[redacted]', name: 'n' }],
      services: { billing: { token: '[redacted]', url: 'u' } },
      port: 3000,
    },
  );
  t.equal(redactSecrets(null), null);
});

t.test('/status is marked as an operator route, for the admin-token check to find', async (t) => {
  // The check will be an onRequest hook reading request.routeOptions.config.admin; findRoute
  // does not expose route config, so look at the route as it is declared.
  const app = Fastify();
  const declared: RouteOptions[] = [];
  app.addHook('onRoute', (route) => {
    declared.push(route);
  });
  await app.register(statusRoutes);
  const status = declared.find((route) => route.url === '/status' && route.method === 'GET');
  t.equal(status?.config?.admin, true);
  await app.close();
});
