import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { tempDir } from './helpers/fixture.ts';
import { readChannelsFile } from '../src/channels/channels-file.ts';
import { partitionForKey } from '../src/bus/partitioner.ts';
import { kafkaTopics, postJson, requiredKafkaBrokers, startGateway, uniqueName } from './helpers/gateway.ts';
import { createTestTopics, rawProducer } from './helpers/kafka.ts';
import { openStream, until } from './helpers/sse-client.ts';
import { serverArgs, serverEnv } from './helpers/server-process.ts';

/**
 * A channel kind declared in CHANNELS_FILE, end to end on real Kafka (issue 15, "Done means"):
 * records produced straight to its topic by another service — its own event-type header, a
 * default type for records without it, and a partitioner that is not murmur2 — stream at
 * `/streams/<kind>/<channel>` with only the valid ones, resume by id on a second replica, and
 * join a multi-channel stream beside a room.
 */

const brokers = requiredKafkaBrokers();
const PARTITIONS = 3;

function declarationFile(t: { teardown(fn: () => unknown): void }, topic: string): string {
  const dir = tempDir(t, 'channels-file-');
  const file = join(dir, 'channels.json');
  writeFileSync(
    file,
    JSON.stringify({
      kinds: [
        {
          name: 'orders',
          topic,
          description: 'Order status updates',
          eventTypeHeader: 'type',
          defaultEventType: 'created',
          publish: ['created'],
          eventTypes: {
            created: {
              description: 'An order was placed',
              schema: {
                type: 'object',
                required: ['orderId', 'amount'],
                properties: { orderId: { type: 'string', maxLength: 40 }, amount: { type: 'number', exclusiveMinimum: 0 } },
              },
            },
            shipped: {
              schema: { type: 'object', required: ['orderId', 'carrier'], properties: { orderId: { type: 'string' }, carrier: { enum: ['ups', 'dhl'] } } },
            },
          },
        },
      ],
    }),
  );
  return file;
}

t.test('a declared kind streams only valid records, resumes on another replica, and mixes with rooms', async (t) => {
  const ordersTopic = uniqueName('orders');
  await createTestTopics(t, [{ topic: ordersTopic, numPartitions: PARTITIONS, replicationFactor: 1 }]);
  const channelKinds = readChannelsFile(declarationFile(t, ordersTopic));
  const shared = { kafkaBrokers: brokers, ...kafkaTopics(), channelKinds, topicPartitions: PARTITIONS };
  const a = await startGateway(t, shared);
  const b = await startGateway(t, shared);

  const channel = uniqueName('order');
  // Another client's partitioner: never the partition murmur2 names for the key.
  const partition = (partitionForKey(channel, PARTITIONS) + 1) % PARTITIONS;

  // A stream opened before the channel ever had a record: its position must cover wherever the records land.
  const early = await openStream(t, `${a.url}/streams/orders/${channel}`);
  t.equal(early.status, 200);
  await until(() => early.lastEventId() !== '', 10000, 'the position id');
  const joinedAt = early.lastEventId();

  const producer = await rawProducer(t);
  const send = (value: unknown, headers: Record<string, string> = {}) =>
    producer.send(ordersTopic, [{ key: channel, partition, value: typeof value === 'string' ? value : JSON.stringify(value), headers }]);
  await send({ orderId: 'o1', amount: 10, internal: 'not declared, never forwarded' }, { type: 'created' });
  await send({ orderId: 'o1', amount: -5 }, { type: 'created' }); // breaks the schema
  await send({ orderId: 'o2', amount: 3 }); // no header: the default type
  await send({ orderId: 'o2', carrier: 'pigeon' }, { type: 'shipped' }); // breaks the schema
  await send('{not json', { type: 'created' });
  await send({ orderId: 'o1' }, { type: 'cancelled' }); // not an event type of the kind
  await send({ orderId: 'o1', carrier: 'ups' }, { type: 'shipped' });

  const events = await early.waitForEvents(3, 30000);
  t.same(
    events.map((event) => [event.event, JSON.parse(event.data)]),
    [
      ['created', { orders: channel, orderId: 'o1', amount: 10, ts: JSON.parse(events[0]!.data).ts }],
      ['created', { orders: channel, orderId: 'o2', amount: 3, ts: JSON.parse(events[1]!.data).ts }],
      ['shipped', { orders: channel, orderId: 'o1', carrier: 'ups', ts: JSON.parse(events[2]!.data).ts }],
    ],
    'only the valid records, in order, with only the declared fields',
  );
  const skipped = async () => ((await (await fetch(`${a.url}/status`)).json()) as { records: { skipped: number } }).records.skipped;
  await until(async () => (await skipped()) === 4, 20000, 'the four bad records counted as skipped');

  // Resume on the other replica: from the position taken before any record (the channel's
  // partition unknown then), and from the first event's own id.
  const fromJoin = await openStream(t, `${b.url}/streams/orders/${channel}`, { 'last-event-id': joinedAt });
  const replayed = await fromJoin.waitForEvents(3, 30000);
  t.same(replayed.map((event) => JSON.parse(event.data).orderId + event.event), ['o1created', 'o2created', 'o1shipped'], 'B replays everything since the position A gave');
  t.notOk(replayed.some((event) => event.event === 'reset'), 'no reset');
  const fromFirst = await openStream(t, `${b.url}/streams/orders/${channel}`, { 'last-event-id': events[0]!.id! });
  t.same(
    (await fromFirst.waitForEvents(2, 30000)).map((event) => JSON.parse(event.data).orderId + event.event),
    ['o2created', 'o1shipped'],
    'B resumes after the first event',
  );

  // The same kind on a multi-channel stream beside a room, on B.
  const room = uniqueName('room');
  const mixed = await openStream(t, `${b.url}/events?room=${room}&orders=${channel}`);
  await until(() => mixed.lastEventId() !== '', 10000, 'the mixed stream position');
  t.equal((await postJson(`${a.url}/rooms/${room}/messages`, { user: 'ann', text: 'hello' })).status, 202);
  const posted = await postJson(`${a.url}/streams/orders/${channel}/created`, { orderId: 'o3', amount: 7 });
  t.equal(posted.status, 202, 'publishing a declared kind over HTTP');
  const both = await mixed.waitForEvents(2, 30000);
  t.same(both.map((event) => event.event).sort(), ['created', 'message'], 'a room message and an order on one stream');
  t.equal(JSON.parse(both.find((event) => event.event === 'created')!.data).orders, channel);

  // Publishing is checked against the declaration.
  const bad = await postJson(`${a.url}/streams/orders/${channel}/created`, { orderId: 'o4', amount: 'lots' });
  t.equal(bad.status, 400, 'a body breaking the schema is refused');
  t.match(bad.body.message, /amount/);
  t.equal((await postJson(`${a.url}/streams/orders/${channel}/shipped`, { orderId: 'o4', carrier: 'ups' })).status, 404, 'an event type the declaration does not let publish');
  t.equal((await fetch(`${a.url}/streams/nosuchkind/${channel}`)).status, 404, 'an unknown kind');

  // Documented in /docs automatically.
  const document = (await (await fetch(`${a.url}/docs/json`)).json()) as { paths: Record<string, unknown> };
  t.ok(document.paths['/streams/orders/{channel}'], 'the stream route is in the OpenAPI document');
  t.ok(document.paths['/streams/orders/{channel}/created'], 'the publish route too');
});

t.test('a bad declaration stops the server, exit 1, with a message naming the kind and the field', async (t) => {
  // Every kind of bad declaration is covered in test/unit/channels-file.unit.ts; this is the real process.
  const dir = tempDir(t, 'channels-file-');
  const file = join(dir, 'channels.json');
  writeFileSync(file, JSON.stringify({ kinds: [{ name: 'orders', topic: 'orders', eventTypes: { created: { schema: { type: 'object' } } }, slowClients: 'drop' }] }));
  const result = spawnSync(process.execPath, serverArgs(), {
    env: { ...serverEnv(), KAFKA_BROKERS: '', CHANNELS_FILE: file, PORT: '0', HOST: '127.0.0.1' },
    encoding: 'utf8',
    timeout: 60000,
  });
  t.equal(result.status, 1, 'exit 1');
  t.match(result.stderr, /invalid configuration: CHANNELS_FILE .*channel kind "orders": slowClients/, 'names the setting, the kind and the field');
});
