/**
 * Issue 13 item 2: a broker loss that Kafka survives (three nodes, replication 3,
 * min.insync.replicas 2) is invisible to subscribers. Two replicas, subscribers that stay
 * connected and subscribers that keep reconnecting with their last id, an upstream producer
 * writing straight to Kafka, while the room's partition leader and then the group coordinator
 * are killed with SIGKILL and restarted. Every record Kafka holds at the end (read back)
 * arrives at every subscriber exactly once, in order; /readyz of both replicas answers 200
 * throughout; no error-level log line at startup (a first start on a fresh cluster, both
 * replicas at once). A replica started while a node is down under another topic's only
 * replica becomes ready (it asks about its own topics only).
 *
 * Then a produce request that times out while the broker writes it (a follower stopped with
 * SIGSTOP): every publish the bus acknowledged is in Kafka exactly once, at its offset.
 */
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { pino } from 'pino';
import { startKafka } from '../scripts/kafka/kafka.ts';
import { KafkaBus } from '../src/bus/kafka.ts';
import { BusUnavailableError, type Position } from '../src/bus/types.ts';
import { partitionForKey } from '../src/bus/partitioner.ts';
import type { Teardowns } from './helpers/fixture.ts';
import { kafkaTopics, startGateway, uniqueName, type LogLine, type TestGateway } from './helpers/gateway.ts';
import { messageTexts, openStream, until, type TestStream } from './helpers/sse-client.ts';

const began = Date.now();
const elapsed = () => `${((Date.now() - began) / 1000).toFixed(1)} s`;
const cluster = await startKafka({ nodes: 3 });
t.comment(`cluster up after ${elapsed()}`);
t.teardown(() => cluster.stop());
const kafka = new Kafka({ clientId: 'test-broker-loss', brokers: cluster.brokers, logLevel: logLevel.NOTHING, retry: { retries: 3 } });
const admin = kafka.admin();
await admin.connect();
t.teardown(() => admin.disconnect());

/** A gateway replica on the cluster, logging at info (kept in its `logs`); closed when `t` ends. */
function replica(t: Teardowns, topics: { chatTopic: string; tickerTopic: string }): Promise<TestGateway> {
  return startGateway(
    t,
    {
      logLevel: 'info',
      kafkaBrokers: cluster.brokers,
      topicPartitions: 3,
      topicReplicationFactor: 3,
      cursorSecret: 'broker-loss-test-secret',
      sseRetryMs: 300,
      publishTimeoutMs: 2000,
      ...topics,
    },
    { readyTimeoutMs: 90000 },
  );
}

/** Leader node of a partition, and its in-sync replica count. */
async function partitionState(topic: string, partition: number): Promise<{ leader: number; isr: number }> {
  const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
  const meta = topics[0]!.partitions.find((p) => p.partitionId === partition)!;
  return { leader: meta.leader, isr: meta.isr.length };
}

/** SIGKILL a node's JVM, let the cluster notice, start it again and wait until it is back in every ISR that matters. */
async function killAndRestart(node: number, watched: Array<[string, number]>, downMs: number): Promise<void> {
  const pid = cluster.jvmPids()[node];
  if (pid === undefined) throw new Error(`node ${node} is not running`);
  process.kill(pid, 'SIGKILL');
  await until(() => cluster.jvmPids()[node] === undefined, 10000, `node ${node} gone`);
  await sleep(downMs); // the outage itself: publishing continues meanwhile
  t.comment(`starting node ${node} again at ${elapsed()}`);
  await cluster.startNode(node);
  t.comment(`node ${node} serving at ${elapsed()}`);
  for (const [topic, partition] of watched) {
    await until(async () => (await partitionState(topic, partition).catch(() => ({ isr: 0 }))).isr === 3, 60000, `${topic}/${partition} fully in sync`);
  }
}

/** A subscriber as EventSource behaves: reconnects with its last id, alternating replicas; a non-200 answer makes it give up. */
function reconnectingSubscriber(t: Teardowns, urls: string[], path: string, startId: string) {
  const texts: string[] = [];
  let lastId = startId;
  let stopped = false;
  let gaveUp: string | null = null;
  let connections = 0;
  const loop = (async () => {
    while (!stopped) {
      const url = urls[connections++ % urls.length]!;
      let stream: TestStream;
      try {
        stream = await openStream(t, `${url}${path}`, lastId === '' ? {} : { 'last-event-id': lastId });
      } catch {
        await sleep(300); // a network error: EventSource retries
        continue;
      }
      if (stream.status !== 200) {
        gaveUp = `HTTP ${stream.status} from ${url}`;
        stream.close();
        return;
      }
      await Promise.race([stream.ended, sleep(700 + Math.random() * 1000)]);
      stream.close();
      texts.push(...messageTexts(stream.events));
      if (stream.lastEventId() !== '') lastId = stream.lastEventId();
    }
  })();
  return {
    texts,
    gaveUp: () => gaveUp,
    lastId: () => lastId,
    async stop(): Promise<void> {
      stopped = true;
      await loop;
    },
  };
}

/** Every record of `key` in the partition, in offset order: the truth. */
async function readBack(topic: string, partition: number, key: string): Promise<string[]> {
  return (await partitionRecords(topic, partition)).filter((record) => record.key === key).map((record) => record.text);
}

/** Every record of the partition (its value's `text`), in offset order. */
async function partitionRecords(topic: string, partition: number): Promise<Array<{ offset: number; key: string; text: string }>> {
  const high = (await admin.fetchTopicOffsets(topic)).find((p) => p.partition === partition)!.high;
  const consumer = kafka.consumer({ groupId: uniqueName('read-back') });
  const records = new Map<number, { offset: number; key: string; text: string }>();
  let next = 0;
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition: p, message }) => {
        if (p !== partition) return;
        const offset = Number(message.offset);
        next = Math.max(next, offset + 1);
        records.set(offset, { offset, key: message.key?.toString() ?? '', text: (JSON.parse(message.value!.toString()) as { text: string }).text });
      },
    });
    await until(() => next >= Number(high), 30000, 'read back to the end offset');
  } finally {
    await consumer.disconnect();
  }
  return [...records.values()].sort((a, b) => a.offset - b.offset);
}

t.setTimeout(300000);
t.test('partition leader and group coordinator killed (-9) and restarted: every event once, in order; /readyz 200 throughout', async (t) => {
  const topics = kafkaTopics();
  // Started together, as a deploy starts them: both find the topics missing and race to make them.
  const [a, b] = await Promise.all([replica(t, topics), replica(t, topics)]);
  const urls = [a.url, b.url];
  t.comment(`replicas ready at ${elapsed()}`);

  const errorsAtStart = [...a.logs, ...b.logs].filter((line) => line.level >= 50);
  const describe = (line: LogLine) => `${line.msg}${line.reason === undefined ? '' : `: ${line.reason}`}`;
  t.same(errorsAtStart.map(describe), [], 'no error-level line while starting on a fresh cluster');
  const kafkaWarnings = [...a.logs, ...b.logs].filter((line) => line.level === 40 && line.component === 'kafka');
  t.same(kafkaWarnings.map(describe), [], 'no Kafka warning on a normal start');

  const room = uniqueName('room');
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, retry: { retries: 2 } });
  await producer.connect();
  t.teardown(() => producer.disconnect());
  const connected = await Promise.all([...urls, ...urls].map((url) => openStream(t, `${url}/events/${room}`)));
  await until(() => connected.every((stream) => stream.lastEventId() !== ''), 10000, 'starting ids');
  const startId = connected[0]!.lastEventId();
  const [first] = await producer.send({
    topic: topics.chatTopic,
    acks: -1,
    messages: [{ key: room, value: JSON.stringify({ id: 'm0', user: 'up', text: 'n0' }), headers: { 'event-type': 'message' } }],
  });
  const partition = first!.partition;
  await until(() => connected.every((stream) => messageTexts(stream.events).length === 1), 20000, 'first event everywhere');
  // They start from where the connected ones joined (before the first event), by id.
  const reconnecting = [0, 1, 2, 3].map((i) => reconnectingSubscriber(t, i % 2 === 0 ? urls : [...urls].reverse(), `/events/${room}`, startId));
  t.teardown(() => Promise.all(reconnecting.map((client) => client.stop())));

  const notReady: string[] = [];
  let watching = true;
  t.teardown(() => {
    watching = false;
  });
  const readiness = (async () => {
    while (watching) {
      for (const url of urls) {
        const response = await fetch(`${url}/readyz`).catch(() => null);
        if (response?.status !== 200) notReady.push(`${url}: ${response?.status ?? 'no answer'} ${response ? await response.text() : ''}`);
        else await response.body?.cancel();
      }
      await sleep(200);
    }
  })();

  let attempts = 1;
  let publishing = true;
  t.teardown(() => {
    publishing = false;
  });
  const publisher = (async () => {
    while (publishing && attempts < 3000) {
      const text = `n${attempts}`;
      const id = `m${attempts}`;
      attempts += 1;
      await producer
        .send({ topic: topics.chatTopic, acks: -1, messages: [{ key: room, value: JSON.stringify({ id, user: 'up', text }), headers: { 'event-type': 'message' } }] })
        .catch(() => undefined); // outcome unknown: what Kafka holds at the end is the truth
      await sleep(15);
    }
  })();

  await sleep(1500);
  const leader = (await partitionState(topics.chatTopic, partition)).leader;
  const watched: Array<[string, number]> = [[topics.chatTopic, partition], ['__consumer_offsets', 0]];
  t.comment(`killing node ${leader}, leader of ${topics.chatTopic}/${partition}`);
  await killAndRestart(leader, watched, 4000);
  await sleep(1500);
  // The harness runs one __consumer_offsets partition: its leader coordinates every group.
  const coordinator = (await partitionState('__consumer_offsets', 0)).leader;
  t.comment(`killing node ${coordinator}, the group coordinator`);
  await killAndRestart(coordinator, watched, 4000);
  await sleep(1500);
  // Enough traffic to judge by, however slowly a loaded machine published during the faults.
  await until(() => attempts > 150, 60000, 'more than 150 publish attempts');
  publishing = false;
  await publisher;
  t.comment(`faults over at ${elapsed()}`);

  const expected = await readBack(topics.chatTopic, partition, room);
  t.ok(expected.length > 100, `${expected.length} events in Kafka (${attempts} publish attempts)`);
  for (const client of reconnecting) await client.stop();
  for (const [index, stream] of connected.entries()) {
    await until(() => messageTexts(stream.events).length >= expected.length, 30000, `connected subscriber ${index} has every event`).catch(() => undefined);
    t.same(messageTexts(stream.events), expected, `connected subscriber ${index} (${urls[index % 2]}): every event once, in order`);
  }
  for (const [index, client] of reconnecting.entries()) {
    t.equal(client.gaveUp(), null, `reconnecting subscriber ${index} never got a non-200 answer`);
    // Its final reconnect, as EventSource would make it.
    const last = await openStream(t, `${urls[index % 2]}/events/${room}`, { 'last-event-id': client.lastId() });
    await until(() => client.texts.length + messageTexts(last.events).length >= expected.length, 30000, `reconnecting subscriber ${index} caught up`).catch(() => undefined);
    last.close();
    t.same([...client.texts, ...messageTexts(last.events)], expected, `reconnecting subscriber ${index}: every event once, in order`);
  }
  watching = false;
  await readiness;
  t.same(notReady, [], '/readyz answered 200 on both replicas throughout');
  const errors = [...a.logs, ...b.logs].filter((line) => line.level >= 50).map((line) => line.msg);
  t.comment(`error-level lines during the faults: ${JSON.stringify(errors)}`);
});

t.test('a produce request that times out while the broker writes it: every acknowledged publish is in Kafka once, at the offset it was acknowledged with', async (t) => {
  // A follower of the partition stopped (SIGSTOP) holds every acks=all write in the leader's
  // log, unanswered, past the bus's 2 s request timeout; kafkajs then retries. Chaos run 16
  // (docs/CHAOS.md) lost an acknowledged publish this way: a second send to the partition went
  // out with the first one's wound-back sequence numbers and Kafka took it for a repeat.
  const topic = uniqueName('produce-timeout');
  const bus = new KafkaBus({
    brokers: cluster.brokers,
    clientId: 'test-produce-timeout',
    groupId: uniqueName('produce-timeout'),
    topics: [topic],
    partitions: 3,
    replicationFactor: 3,
    publishTimeoutMs: 60000,
    warmUpMs: 0,
    logger: pino({ level: 'silent' }),
    timings: { requestTimeout: 2000, retry: { initialRetryTime: 300, maxRetryTime: 1000, retries: 1 } },
  });
  t.teardown(() => bus.close());
  await bus.start({ onPartitionsStart: () => undefined, onRecords: () => undefined });
  const keys = Array.from({ length: 40 }, (_, i) => `k${i}`).filter((key) => partitionForKey(key, 3) === 0);
  const record = (key: string, text: string) => ({ topic, key, value: JSON.stringify({ text }), headers: {} });
  await bus.publish(record(keys[0]!, 'warm'));
  const { topics: [meta] } = await admin.fetchTopicMetadata({ topics: [topic] });
  const { leader, replicas } = meta!.partitions.find((p) => p.partitionId === 0)!;
  const follower = replicas.find((node) => node !== leader)!;
  const pid = cluster.jvmPids()[follower]!;
  const stopFollower = () => process.kill(pid, 'SIGSTOP');
  const continueFollower = () => process.kill(pid, 'SIGCONT');
  t.teardown(() => void continueFollower());

  /** Every record of the partition by text, with its offsets: the truth. */
  const partitionContents = async (): Promise<Map<string, string[]>> => {
    const texts = new Map<string, string[]>();
    for (const { offset, text } of await partitionRecords(topic, 0)) texts.set(text, [...(texts.get(text) ?? []), String(offset)]);
    return texts;
  };

  // 1. Two keys of the partition published together while the first send's request times out
  //    and kafkajs retries it.
  stopFollower();
  const stoppedAt = Date.now();
  const a = bus.publish(record(keys[1]!, 'a'));
  await sleep(100);
  const b = bus.publish(record(keys[2]!, 'b'));
  // Between the first request's timeout (2 s) and the second's: the follower catches up.
  await sleep(3000 - (Date.now() - stoppedAt));
  continueFollower();
  const [atA, atB] = await Promise.all([a, b]);
  t.comment(`a and b acknowledged after ${Date.now() - stoppedAt} ms`);

  // 2. A send that kafkajs gave up on (two timeouts) although Kafka wrote it, then the next one.
  //    On a loaded machine the controller may fence the stopped follower first (its heartbeats
  //    stop too), and the write is then acknowledged without it: the fault is set up again,
  //    with the next text, up to three times. Every acknowledged one must be in Kafka once.
  const acknowledgedC = new Map<string, Position>();
  let c = '';
  for (let attempt = 0; attempt < 3 && !c.startsWith('failed'); attempt++) {
    const text = attempt === 0 ? 'c' : `c${attempt}`;
    stopFollower();
    c = await bus.publish(record(keys[3]!, text)).then(
      (position) => {
        acknowledgedC.set(text, position);
        return 'acknowledged';
      },
      (error: Error) => `failed: ${error.message}`,
    );
    continueFollower();
  }
  t.match(c, /^failed/, 'the send given up on answers 503 (outcome unknown)');
  // Published as a publisher retries a 503: until the bus has its fresh producer.
  let d: Position | undefined;
  const retryUntil = Date.now() + 60000;
  while (d === undefined) {
    d = await bus.publish(record(keys[3]!, 'd')).catch((error: unknown) => {
      if (!(error instanceof BusUnavailableError) || Date.now() > retryUntil) throw error;
      return sleep(200).then(() => undefined);
    });
  }
  t.comment(`c answered and d acknowledged after ${Date.now() - stoppedAt} ms`);

  const contents = await partitionContents();
  t.same(contents.get('a'), [atA.offset], 'a: once, where it was acknowledged');
  t.same(contents.get('b'), [atB.offset], 'b, sent while a was retried: once, where it was acknowledged');
  t.same(contents.get('d'), [d.offset], 'd, the next send after a send given up on: once, where it was acknowledged');
  for (const [text, position] of acknowledgedC) t.same(contents.get(text), [position.offset], `${text}, acknowledged (the fault not set up in time): once, where it was acknowledged`);
  t.ok(['c', 'c1', 'c2'].filter((text) => !acknowledgedC.has(text)).every((text) => (contents.get(text) ?? []).length <= 1), 'the one given up on: at most once');
});

t.test("a replica starts while a broker is down under another topic's only replica: its own topics are all it asks about", async (t) => {
  // Someone else's topic of replication 1: with its node down, a partition of it has no
  // leader, and kafkajs fails any metadata answer that lists it (the whole cluster's, which the
  // gateway used to ask for at startup: replicas started during the outage stayed 503).
  const unrelated = uniqueName('unrelated-rf1');
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic: unrelated, numPartitions: 3, replicationFactor: 1 }] });
  const topics = kafkaTopics();
  // The gateway's own topics (replication 3), made while every node is up.
  await (await replica(t, topics)).close();
  const node = (await partitionState(unrelated, 0)).leader;
  const pid = cluster.jvmPids()[node];
  if (pid === undefined) throw new Error(`node ${node} is not running`);
  process.kill(pid, 'SIGKILL');
  t.teardown(async () => {
    if (cluster.jvmPids()[node] === undefined) await cluster.startNode(node);
  });
  await until(
    async () => (await partitionState(unrelated, 0).catch(() => ({ leader: -1 }))).leader === -1,
    60000,
    `${unrelated}/0 without a leader`,
  );
  const started = Date.now();
  const late = await startGateway(
    t,
    { logLevel: 'info', kafkaBrokers: cluster.brokers, topicPartitions: 3, topicReplicationFactor: 3, cursorSecret: 'broker-loss-test-secret', ...topics },
    { waitReady: false },
  );
  let answer = '';
  await until(
    async () => {
      const ready = await fetch(`${late.url}/readyz`);
      answer = `${ready.status} ${await ready.text()}`;
      return ready.status === 200;
    },
    60000,
    () => `/readyz 200 (last: ${answer}; its last warnings: ${JSON.stringify(late.logs.filter((line) => line.level >= 40).slice(-6))})`,
  );
  t.comment(`a replica started during the outage was ready in ${Date.now() - started} ms`);
  // It streams what upstream services produce meanwhile. (Its own publishing may answer 503
  // until its idempotent producer gets an id: kafkajs asks the whole cluster's metadata for it.)
  const room = uniqueName('room');
  const stream = await openStream(t, `${late.url}/events/${room}`);
  const upstream = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, retry: { retries: 3 } });
  await upstream.connect();
  t.teardown(() => upstream.disconnect());
  await upstream.send({ topic: topics.chatTopic, acks: -1, messages: [{ key: room, value: JSON.stringify({ id: 'm1', user: 'u', text: 'during the outage' }), headers: { 'event-type': 'message' } }] });
  await until(() => messageTexts(stream.events).includes('during the outage'), 20000, 'the event');
  stream.close();
  await cluster.startNode(node);
});
