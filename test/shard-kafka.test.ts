import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { AssignerProtocol } from 'kafkajs';
import type { Teardowns } from './helpers/fixture.ts';
import { kafkaTopics, postJson, requiredKafkaBrokers, startGateway, uniqueName, type TestGateway } from './helpers/gateway.ts';
import { createTestTopics, kafkaAdmin } from './helpers/kafka.ts';
import { messageTexts, openStream, until } from './helpers/sse-client.ts';
import { freePort } from './helpers/server-process.ts';
import { startHaproxy } from './helpers/haproxy.ts';
import { partitionForKey } from '../src/bus/partitioner.ts';
import { presenceTopic } from '../src/config.ts';
import type { ChannelKindDeclaration } from '../src/channels/kind.ts';
import { launchChromium, openPage, waitForBadge } from './helpers/browser.ts';
import { toolSkipReason } from '../scripts/test-tools.ts';

/**
 * Sharded mode end to end: two shard groups on real Kafka topics of 6 partitions (group 0
 * consumes 0-2 with two replicas, group 1 consumes 3-5 with one), behind a real HAProxy running
 * the shipped deploy/haproxy-sharded.cfg and deploy/shard-route.lua (only its listen address,
 * Lua path and server lines replaced).
 */

const DEPLOY = fileURLToPath(new URL('../deploy/', import.meta.url));
const PARTITIONS = 6;
const GROUP0 = [0, 1, 2];
const GROUP1 = [3, 4, 5];
const brokers = requiredKafkaBrokers();

/** The shipped sharded HAProxy config with these backends, listening on a free local port. */
async function startShardedHaproxy(t: Teardowns, groups: { shard0: TestGateway[]; shard1: TestGateway[] }): Promise<{ url: string }> {
  const port = await freePort();
  // The shipped checks (default-server inter 2s fall 2 rise 2, each check allowed 2 s): the three
  // gateways share this test's event loop, and on a loaded machine one stall of a few hundred ms
  // marked every server down at once under quicker ones (`inter 300 fall 1`), so HAProxy answered
  // requests itself with 503 (a red CI run). No test here needs a replica's loss detected.
  const server = (name: string, gateway: TestGateway) => `  server ${name} ${new URL(gateway.url).host} check`;
  const servers: Record<string, string[]> = {
    shard0: groups.shard0.map((gateway, index) => server(`shard0-${index}`, gateway)),
    shard1: groups.shard1.map((gateway, index) => server(`shard1-${index}`, gateway)),
  };
  servers['any-replica'] = [...servers.shard0!, ...servers.shard1!];
  let backend = '';
  const lines: string[] = [];
  for (const line of readFileSync(join(DEPLOY, 'haproxy-sharded.cfg'), 'utf8').split('\n')) {
    const section = /^backend (\S+)/.exec(line);
    if (section !== null) backend = section[1]!;
    if (/^\s+server /.test(line)) {
      // The shipped server lines stand for the replicas: replaced by this test's, once per backend.
      if (!lines.includes(`#servers ${backend}`)) lines.push(`#servers ${backend}`, ...servers[backend]!);
      continue;
    }
    lines.push(
      line
        .replace('/usr/local/etc/haproxy/shard-route.lua', join(DEPLOY, 'shard-route.lua'))
        .replace(/^(\s+)bind :8080$/, `$1bind 127.0.0.1:${port}`)
        .replace(/^(\s+)maxconn \d+$/, '$1maxconn 256')
        .replace(/^(\s+)timeout (client|server|tunnel) 1h$/, '$1timeout $2 120s'),
    );
  }
  if (!lines.some((line) => line.includes('bind 127.0.0.1')) || !servers.shard0!.every((line) => lines.includes(line))) {
    throw new Error('deploy/haproxy-sharded.cfg no longer has the listen address and server lines this test replaces');
  }
  return startHaproxy(t, lines.join('\n'), port);
}

/** A fresh room name whose partition (of PARTITIONS) is in `partitions`. */
function roomIn(partitions: readonly number[]): string {
  for (;;) {
    const room = uniqueName('room');
    if (partitions.includes(partitionForKey(room, PARTITIONS))) return room;
  }
}

async function post(url: string, room: string, text: string): Promise<void> {
  const reply = await postJson(`${url}/rooms/${room}/messages`, { user: 'ann', text });
  if (reply.status !== 202) throw new Error(`publish answered ${reply.status}: ${JSON.stringify(reply.body)}`);
}

t.test('two shard groups behind HAProxy', async (t) => {
  const topics = kafkaTopics();
  const ordersTopic = uniqueName('orders');
  const admin = await kafkaAdmin(t);
  await createTestTopics(
    t,
    [topics.chatTopic, topics.tickerTopic, ordersTopic].map((topic) => ({ topic, numPartitions: PARTITIONS, replicationFactor: 1 })),
  );
  // A declared kind too: its publishes with an id are guarded like the rooms'.
  const orders: ChannelKindDeclaration = {
    name: 'orders',
    topic: ordersTopic,
    partitioning: 'murmur2',
    publish: ['created'],
    eventTypes: { created: { schema: { type: 'object', required: ['id'], properties: { id: { type: 'string' }, amount: { type: 'number' } } } } },
  };
  const shared = { kafkaBrokers: brokers, ...topics, channelKinds: [orders], cursorSecret: 'shard-test-cursor-secret' };
  const g0a = await startGateway(t, { ...shared, shardPartitions: GROUP0 });
  const g0b = await startGateway(t, { ...shared, shardPartitions: GROUP0 });
  // Group 1 knows where group 0 is served: its requests for group 0's rooms get a 307 there.
  const g1 = await startGateway(t, { ...shared, shardPartitions: GROUP1, shardPeers: [{ partitions: GROUP0, url: g0a.url }] });
  const balancer = await startShardedHaproxy(t, { shard0: [g0a, g0b], shard1: [g1] });

  const room0 = roomIn(GROUP0);
  const room1 = roomIn(GROUP1);

  await t.test('each replica consumes only its partitions (its /status, and its consumer group in Kafka)', async (t) => {
    for (const [gateway, owned] of [[g0a, GROUP0], [g0b, GROUP0], [g1, GROUP1]] as const) {
      const status = (await (await fetch(`${gateway.url}/status`)).json()) as { partitions: Array<{ topic: string; partition: number }> };
      for (const topic of [topics.chatTopic, topics.tickerTopic]) {
        t.same(
          status.partitions.filter((entry) => entry.topic === topic).map((entry) => entry.partition),
          owned,
          `${gateway.url} /status: ${topic} partitions`,
        );
      }
      const groupId = `${gateway.config.consumerGroupPrefix}-${gateway.config.instanceId}`;
      const { groups } = await admin.describeGroups([groupId]);
      const members = groups[0]?.members ?? [];
      t.equal(members.length, 1, `${groupId}: one member`);
      const assignment = AssignerProtocol.MemberAssignment.decode(members[0]!.memberAssignment)?.assignment ?? {};
      // The presence topic is the cluster's, not a shard's: every replica reads all of it.
      const presence = presenceTopic(gateway.config);
      const presencePartitions = (await admin.fetchTopicOffsets(presence)).map((entry) => entry.partition).sort();
      t.same(
        Object.fromEntries(Object.entries(assignment).map(([topic, partitions]) => [topic, [...partitions].sort()])),
        { [topics.chatTopic]: owned, [topics.tickerTopic]: owned, [ordersTopic]: owned, [presence]: presencePartitions },
        `${groupId}: Kafka assigned only its partitions of the channel topics, and the whole presence topic`,
      );
    }
  });

  await t.test('streams through HAProxy get every event of their room, from the group owning it', async (t) => {
    const stream0 = await openStream(t, `${balancer.url}/events/${room0}`);
    const stream1 = await openStream(t, `${balancer.url}/events/${room1}`);
    t.equal(stream0.status, 200);
    t.equal(stream1.status, 200);
    t.equal(stream0.headers['x-kafka-partition'], String(partitionForKey(room0, PARTITIONS)), 'HAProxy computed Kafka\'s partition of the room');
    t.equal(stream1.headers['x-kafka-partition'], String(partitionForKey(room1, PARTITIONS)));
    t.equal(g1.app.openStreamCount(), 1, 'the group 1 room streams from group 1');
    t.equal(g0a.app.openStreamCount() + g0b.app.openStreamCount(), 1, 'the group 0 room streams from group 0');

    const texts0 = Array.from({ length: 5 }, (_, i) => `zero ${i}`);
    const texts1 = Array.from({ length: 5 }, (_, i) => `one ${i}`);
    for (let i = 0; i < 5; i++) {
      await post(balancer.url, room0, texts0[i]!);
      // Publishing works on any replica: group 1 produces group 0's room to Kafka.
      await post(i % 2 === 0 ? balancer.url : g0b.url, room1, texts1[i]!);
    }
    await post(g1.url, room0, 'zero from group 1');
    await stream0.waitForEvents(6);
    await stream1.waitForEvents(5);
    t.same(messageTexts(stream0.events), [...texts0, 'zero from group 1'], 'every event of the group 0 room, in order');
    t.same(messageTexts(stream1.events), texts1, 'every event of the group 1 room, in order');

    // A resume through HAProxy: from the third message's id, the rest and what came since.
    const resumeFrom = stream0.events[2]!.id!;
    stream0.close();
    await post(balancer.url, room0, 'zero after');
    const resumed = await openStream(t, `${balancer.url}/events/${room0}`, { 'last-event-id': resumeFrom });
    t.equal(resumed.status, 200);
    await resumed.waitForEvents(4);
    t.same(messageTexts(resumed.events), [texts0[3], texts0[4], 'zero from group 1', 'zero after'], 'resumed after the id, nothing lost or repeated');
    resumed.close();
    stream1.close();
  });

  await t.test("HAProxy's Lua computes Kafka's murmur2 partition for names of every length", async (t) => {
    const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-';
    const names = Array.from({ length: 64 }, (_, i) => Array.from({ length: i + 1 }, (_, j) => alphabet[(i * 7 + j * 13) % alphabet.length]).join(''));
    const wrong: string[] = [];
    for (const name of names) {
      // Any answer will do (no such route): the header is HAProxy's, set on the way back.
      const response = await fetch(`${balancer.url}/rooms/${name}/nothing-here`);
      await response.arrayBuffer();
      if (response.headers.get('x-kafka-partition') !== String(partitionForKey(name, PARTITIONS))) wrong.push(`${name}: ${response.headers.get('x-kafka-partition')}`);
    }
    t.same(wrong, [], `the same partition as src/bus/partitioner.ts for ${names.length} names`);
    const spread = new Set(names.map((name) => partitionForKey(name, PARTITIONS)));
    t.equal(spread.size, PARTITIONS, 'the names cover every partition');
  });

  await t.test('requests naming no channel go to every replica of every group, with no partition', async (t) => {
    for (const path of ['/', '/status', '/readyz', '/app.js']) {
      const response = await fetch(`${balancer.url}${path}`);
      await response.arrayBuffer();
      t.equal(response.status, 200, `${path} answers`);
      t.equal(response.headers.get('x-kafka-partition'), null, `${path}: no X-Kafka-Partition (it names no channel)`);
    }
    const group = new Map([[g0a.config.instanceId, 'group 0'], [g0b.config.instanceId, 'group 0'], [g1.config.instanceId, 'group 1']]);
    const answeredBy = new Set<string>();
    // leastconn takes turns among idle replicas: a handful of requests reaches every one.
    for (let i = 0; i < 12 && answeredBy.size < 3; i++) {
      const status = (await (await fetch(`${balancer.url}/status`)).json()) as { instanceId: string };
      answeredBy.add(status.instanceId);
    }
    t.equal(answeredBy.size, 3, '/status through HAProxy is answered by each of the three replicas');
    t.same(new Set([...answeredBy].map((id) => group.get(id))), new Set(['group 0', 'group 1']), 'of both groups');
  });

  await t.test('/events?… is routed by its first channel parameter, never by name, since, lastEventId or token', async (t) => {
    // A value that would route to group 0, in front of a group 1 room.
    const decoy = roomIn(GROUP0);
    for (const param of ['name', 'since', 'lastEventId', 'token']) {
      // Any answer will do (a bad `since` is a 400): the header is HAProxy's.
      const controller = new AbortController();
      const response = await fetch(`${balancer.url}/events?${param}=${decoy}&room=${room1}`, { headers: { accept: 'text/event-stream' }, signal: controller.signal });
      controller.abort();
      t.equal(response.headers.get('x-kafka-partition'), String(partitionForKey(room1, PARTITIONS)), `?${param}= in front of room=`);
    }
    const stream = await openStream(t, `${balancer.url}/events?name=${decoy}&room=${room1}`);
    t.equal(stream.status, 200, 'the stream opens at the group owning the room');
    stream.close();
  });

  await t.test('a multi-room stream across shard groups is refused with 409 naming the room elsewhere', async (t) => {
    for (const [first, second] of [[room0, room1], [room1, room0]]) {
      const response = await fetch(`${balancer.url}/events?room=${first}&room=${second}`, { headers: { accept: 'text/event-stream' }, signal: AbortSignal.timeout(10_000) });
      t.equal(response.status, 409, `room=${first === room0 ? 'group 0' : 'group 1'} first`);
      const body = (await response.json()) as { message: string; elsewhere: Array<{ channel: string; partition: number; peer: string | null }> };
      t.same(body.elsewhere.map((entry) => entry.channel), [`room:${second}`], 'names the room of the other group');
      t.equal(body.elsewhere[0]!.partition, partitionForKey(second!, PARTITIONS));
      t.match(body.message, /one stream per group/);
    }
    const room0b = roomIn(GROUP0);
    const same = await openStream(t, `${balancer.url}/events?room=${room0}&room=${room0b}`);
    t.equal(same.status, 200, 'rooms of one group share a stream');
    same.close();
  });

  await t.test('a replica asked for a room of another group redirects (SHARD_PEERS) or refuses', async (t) => {
    const redirected = await fetch(`${g1.url}/events/${room0}?since=0`, { redirect: 'manual', headers: { accept: 'text/event-stream' }, signal: AbortSignal.timeout(10_000) });
    t.equal(redirected.status, 307, 'group 1 knows group 0: 307');
    t.equal(redirected.headers.get('location'), `${g0a.url}/events/${room0}?since=0`, 'to the same request at group 0');
    const followed = await openStream(t, redirected.headers.get('location')!);
    t.equal(followed.status, 200, 'where the redirect points, the stream opens');
    await until(() => messageTexts(followed.events).length >= 6, 20_000, 'the room\'s messages after the redirect');
    t.same(messageTexts(followed.events).slice(0, 2), ['zero 0', 'zero 1'], 'and carries the room\'s events (from ?since=0)');
    followed.close();

    const refused = await fetch(`${g0a.url}/events/${room1}`, { headers: { accept: 'text/event-stream' }, signal: AbortSignal.timeout(10_000) });
    t.equal(refused.status, 409, 'group 0 has no SHARD_PEERS: 409');
    const body = (await refused.json()) as { message: string; elsewhere: Array<{ channel: string; peer: string | null }> };
    t.same(body.elsewhere, [{ channel: `room:${room1}`, partition: partitionForKey(room1, PARTITIONS), peer: null }]);
    t.match(body.message, /load balancer/);
  });

  await t.test("edits, deletes, chart history and publishes with an id at a replica of the other group redirect or refuse, like streams", async (t) => {
    const json = { 'content-type': 'application/json' };
    const id = uniqueName('msg');
    const posted = await postJson(`${balancer.url}/rooms/${room0}/messages`, { id, user: 'ann', text: 'to edit' });
    t.equal(posted.status, 202);
    const symbol0 = roomIn(GROUP0);
    const symbol1 = roomIn(GROUP1);
    for (const symbol of [symbol0, symbol1]) t.equal((await postJson(`${balancer.url}/tickers/${symbol}/prices`, { price: 1.5, currency: 'USD' })).status, 202);

    // Group 1 names group 0 in SHARD_PEERS: the same request there (a 307 keeps method and body).
    const requests: Array<[string, string, string, object?]> = [
      ['PATCH', `/rooms/${room0}/messages/${id}`, 'an edit', { text: 'edited' }],
      ['DELETE', `/rooms/${room0}/messages/${uniqueName('none')}`, 'a delete'],
      ['GET', `/tickers/${symbol0}/history`, 'a chart'],
      ['POST', `/rooms/${room0}/messages`, 'a post with an id', { id, user: 'ann', text: 'to edit' }],
      ['POST', `/tickers/${symbol0}/prices`, 'a price with an id', { id: 'p1', price: 2, currency: 'USD' }],
      ['POST', `/streams/orders/${symbol0}/created`, "a declared kind's event with an id", { id: 'o1', amount: 3 }],
    ];
    for (const [method, path, what, body] of requests) {
      const response = await fetch(`${g1.url}${path}`, { method, redirect: 'manual', ...(body === undefined ? {} : { headers: json, body: JSON.stringify(body) }) });
      t.equal(response.status, 307, `${what} at group 1: 307`);
      t.equal(response.headers.get('location'), `${g0a.url}${path}`, `${what}: to the same request at group 0`);
    }
    const edited = await fetch(`${g1.url}/rooms/${room0}/messages/${id}`, { method: 'PATCH', headers: json, body: JSON.stringify({ text: 'edited' }) });
    t.equal(edited.status, 202, 'the edit, redirected, is made by the group knowing the message');
    const chart = (await (await fetch(`${g1.url}/tickers/${symbol0}/history`)).json()) as { points: unknown[] };
    t.equal(chart.points.length, 1, 'the chart, redirected, has the price');

    // Group 0 knows no peer: 409 naming where the channel lives.
    const refused: Array<[string, string, string, string, object?]> = [
      ['PATCH', `/rooms/${room1}/messages/x1`, 'an edit', `room:${room1}`, { text: 'edited' }],
      ['DELETE', `/rooms/${room1}/messages/x1`, 'a delete', `room:${room1}`],
      ['GET', `/tickers/${symbol1}/history`, 'a chart', `ticker:${symbol1}`],
      ['POST', `/rooms/${room1}/messages`, 'a post with an id', `room:${room1}`, { id: 'x1', user: 'ann', text: 'hi' }],
    ];
    for (const [method, path, what, channel, body] of refused) {
      const response = await fetch(`${g0a.url}${path}`, { method, ...(body === undefined ? {} : { headers: json, body: JSON.stringify(body) }) });
      t.equal(response.status, 409, `${what} at group 0: 409`);
      const reply = (await response.json()) as { elsewhere?: Array<{ channel: string }> };
      t.same(reply.elsewhere?.map((entry) => entry.channel), [channel], `${what}: names the channel elsewhere`);
    }
    const anywhere = await postJson(`${g0a.url}/rooms/${room1}/messages`, { user: 'ann', text: 'no id' });
    t.equal(anywhere.status, 202, 'a post without an id is published by any replica');
  });

  await t.test(
    'the demo page, its room and symbol on different groups, falls back to one stream per channel and shows both',
    { skip: toolSkipReason('chromium') },
    async (t) => {
      const browser = await launchChromium(t);
      const room = roomIn(GROUP0);
      const symbol = roomIn(GROUP1);
      const page = await openPage(t, browser, `${balancer.url}/?${new URLSearchParams({ room, symbol })}`);
      await waitForBadge(page, 'live');
      // (Streams of the tests before may still be closing on the server side.)
      await until(() => g0a.app.openStreamCount() + g0b.app.openStreamCount() === 1 && g1.app.openStreamCount() === 1, 20_000, () =>
        `one stream at each group (group 0: ${g0a.app.openStreamCount() + g0b.app.openStreamCount()}, group 1: ${g1.app.openStreamCount()})`);
      t.pass('the room streams from group 0, the symbol from group 1');
      await post(balancer.url, room, 'seen in the page');
      t.equal((await postJson(`${balancer.url}/tickers/${symbol}/prices`, { price: 42, currency: 'USD' })).status, 202);
      await page.locator('#messages li .text').getByText('seen in the page', { exact: true }).waitFor();
      await page.waitForSelector('#last-price:text("42")');
      t.equal(await page.getAttribute('#badge', 'data-state'), 'live', 'the page stays live');
    },
  );

  await t.test('a resume id naming a partition of another group is refused, not ignored', async (t) => {
    const stream = await openStream(t, `${balancer.url}/events/${room0}`);
    await post(balancer.url, room0, 'for the id');
    const [event] = await stream.waitForEvents(1);
    stream.close();
    // The id of a group 0 room, sent with a group 1 room's stream.
    const response = await fetch(`${balancer.url}/events/${room1}`, { headers: { accept: 'text/event-stream', 'last-event-id': event!.id! }, signal: AbortSignal.timeout(10_000) });
    t.equal(response.status, 409);
    const body = (await response.json()) as { message: string };
    t.match(body.message, new RegExp(`resume id names partition ${partitionForKey(room0, PARTITIONS)}\\b`));
  });
});

t.test('SHARD_PARTITIONS naming a partition the topic lacks keeps the replica unready, saying why', async (t) => {
  const topics = kafkaTopics();
  await createTestTopics(
    t,
    [topics.chatTopic, topics.tickerTopic].map((topic) => ({ topic, numPartitions: 4, replicationFactor: 1 })),
  );
  const gateway = await startGateway(
    t,
    { kafkaBrokers: brokers, ...topics, cursorSecret: 'shard-test-cursor-secret', shardPartitions: [2, 3, 4, 5] },
    { waitReady: false },
  );
  let reason = '';
  await until(async () => {
    const response = await fetch(`${gateway.url}/readyz`);
    reason = ((await response.json()) as { reason?: string }).reason ?? '';
    return response.status === 503 && reason.includes('SHARD_PARTITIONS');
  }, 20_000, () => `/readyz naming SHARD_PARTITIONS (last: ${reason})`);
  t.match(reason, /SHARD_PARTITIONS \(2-5\) names partitions 4-5 but topic \S+ has 4 partitions \(0-3\)/);
});
