import t from 'tap';
import { testsAtATime } from './helpers/one-process.ts';
import { kafkaTopics, postJson, requiredKafkaBrokers, startGateway, startReplicaPair, type TestGateway } from './helpers/gateway.ts';
import { spawnServer } from './helpers/server-process.ts';
import { openStream, until, type TestStream } from './helpers/sse-client.ts';
import { uniqueName } from './helpers/gateway.ts';
import { kafkaAdmin } from './helpers/kafka.ts';

/**
 * Presence across replicas, through the presence topic on real Kafka (README, "Presence").
 * Short intervals: changes published every 100 ms, restated every second (expiry: 3 s).
 */

const RESTATE_MS = 1000;
const FAST = { rooms: true, intervalMs: 100, crowdStreams: 100, crowdIntervalMs: 500, restateMs: RESTATE_MS, leaveGraceMs: 600, topic: null };

// any: the tests index into the presence JSON they assert on.
const lastPresence = (stream: TestStream): any => (stream.presence.length === 0 ? undefined : JSON.parse(stream.presence[stream.presence.length - 1]!.data));
// any: the route's JSON.
async function presenceOf(url: string, room: string): Promise<any> {
  const response = await fetch(`${url}/rooms/${room}/presence`);
  return response.json();
}
const names = (members: Array<{ name: string }>): string => members.map((member) => member.name).sort().join(',');

/** Waits until the route on every replica lists exactly `expected` (names, sorted, comma-joined). */
async function routesAgree(replicas: readonly TestGateway[] | readonly { url: string }[], room: string, expected: string, what: string): Promise<void> {
  let seen = '';
  await until(
    async () => {
      const views = await Promise.all(replicas.map((replica) => presenceOf(replica.url, room)));
      seen = views.map((view) => `${names(view.members)} (${view.count})`).join(' | ');
      return views.every((view) => names(view.members) === expected && view.count === expected.split(',').filter(Boolean).length);
    },
    15000,
    () => `${what}: every replica to list "${expected}", saw ${seen}`,
  );
}

/** What a stream's snapshot and deltas add up to: the members it believes are in the room. */
function believed(stream: TestStream): string {
  const members = new Set<string>();
  for (const message of stream.presence) {
    const data = JSON.parse(message.data);
    if (data.snapshot === true) {
      members.clear();
      for (const member of data.members) members.add(member.name);
    } else {
      for (const member of data.joined) members.add(member.name);
      for (const member of data.left) members.delete(member.name);
    }
  }
  return [...members].sort().join(',');
}

testsAtATime(3);

t.test('two replicas: joins and leaves on both, the route and the presence events agree; one identity on both is one member', async (t) => {
  const [a, b] = await startReplicaPair(t, { presence: FAST });
  const room = uniqueName('room');
  const annOnA = await openStream(t, `${a.url}/events/${room}?name=Ann`);
  const bobOnB = await openStream(t, `${b.url}/events/${room}?name=Bob`);
  await routesAgree([a, b], room, 'Ann,Bob', 'Ann on A, Bob on B');
  await until(() => believed(annOnA) === 'Ann,Bob' && believed(bobOnB) === 'Ann,Bob', 10000, () => `the streams' view: ${believed(annOnA)} | ${believed(bobOnB)}`);
  t.match(lastPresence(annOnA), { room, joined: [{ name: 'Bob', sub: null, verified: false }], count: 2 }, 'A\'s stream is told Bob joined on B');

  // Cy holds a stream on each replica: one member, joined once.
  const cyOnA = await openStream(t, `${a.url}/events/${room}?name=Cy`);
  const cyOnB = await openStream(t, `${b.url}/events/${room}?name=Cy`);
  await routesAgree([a, b], room, 'Ann,Bob,Cy', 'Cy on both');
  await until(() => believed(annOnA) === 'Ann,Bob,Cy' && believed(bobOnB) === 'Ann,Bob,Cy', 10000, 'the streams see Cy');
  t.equal(lastPresence(bobOnB).count, 3, 'one member for two replicas\' streams');
  const joinsOfCy = (stream: TestStream) => stream.presence.filter((message) => JSON.parse(message.data).joined?.some((member: { name: string }) => member.name === 'Cy')).length;
  t.equal(joinsOfCy(annOnA), 1, 'Cy joined once for A\'s stream');
  t.equal(joinsOfCy(bobOnB), 1, 'and once for B\'s');

  // Cy leaves A but stays on B: still in the room.
  cyOnA.close();
  await new Promise((resolve) => setTimeout(resolve, FAST.leaveGraceMs + 3 * FAST.intervalMs + 500));
  await routesAgree([a, b], room, 'Ann,Bob,Cy', 'Cy still on B');
  // Then B too: Cy leaves everyone's view.
  cyOnB.close();
  bobOnB.close();
  await routesAgree([a, b], room, 'Ann', 'Cy and Bob gone');
  await until(() => believed(annOnA) === 'Ann', 10000, () => `A's stream sees them leave: ${believed(annOnA)}`);
  t.match(lastPresence(annOnA), { count: 1, anonymous: 0 });

  // The gateway created the presence topic, compacted (latest statement per room and replica).
  const admin = await kafkaAdmin(t);
  const described = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2 /* ConfigResourceTypes.TOPIC */, name: `${a.config.chatTopic}.presence`, configNames: ['cleanup.policy'] }] });
  t.match(described.resources[0]?.configEntries.find((entry) => entry.configName === 'cleanup.policy')?.configValue, /compact/, 'the presence topic is compacted');
});

t.test('a replica killed with kill -9: its members leave everyone\'s view within 3 restatements; a restarted one does not bring them back', async (t) => {
  const topics = kafkaTopics();
  const env = {
    KAFKA_BROKERS: requiredKafkaBrokers().join(','),
    CHAT_TOPIC: topics.chatTopic,
    TICKER_TOPIC: topics.tickerTopic,
    PRESENCE_INTERVAL_MS: String(FAST.intervalMs),
    PRESENCE_RESTATE_MS: String(RESTATE_MS),
    SSE_RETRY_MS: '500',
    PRESENCE_LEAVE_GRACE_MS: String(FAST.leaveGraceMs),
  };
  const a = await startGateway(t, { kafkaBrokers: requiredKafkaBrokers(), ...topics, presence: FAST, cursorSecret: 'test-cursor-secret-0123456789' });
  const doomed = await spawnServer(t, env);
  const room = uniqueName('room');
  const watcher = await openStream(t, `${a.url}/events/${room}?name=Watcher`);
  const kim = await openStream(t, `${doomed.url}/events/${room}?name=Kim`);
  await routesAgree([a, doomed], room, 'Kim,Watcher', 'Kim on the doomed replica');

  doomed.kill('SIGKILL');
  const killedAt = Date.now();
  await doomed.exited;
  await kim.ended;
  // The stated bound: 3 × PRESENCE_RESTATE_MS after its last statement, seen within one interval.
  const bound = 3 * RESTATE_MS + FAST.intervalMs;
  await routesAgree([a], room, 'Watcher', 'Kim expired');
  const tookMs = Date.now() - killedAt;
  t.ok(tookMs <= bound + RESTATE_MS, `Kim left A's view ${tookMs} ms after the kill (bound ${bound} ms after its last statement)`);
  await until(() => believed(watcher) === 'Watcher', 5000, 'the watcher\'s stream told Kim left');
  t.match(lastPresence(watcher), { left: [{ name: 'Kim' }], count: 1 });

  // A fresh process of that replica reads the presence topic back: Kim's statement is there, and stale.
  const restarted = await spawnServer(t, env);
  t.equal(names((await presenceOf(restarted.url, room)).members), 'Watcher', 'the restarted replica lists only who is there');
  const late = await openStream(t, `${restarted.url}/events/${room}`);
  await until(() => late.presence.length >= 1, 5000, 'a snapshot');
  t.equal(believed(late), 'Watcher', 'and its streams\' snapshot too');
  await new Promise((resolve) => setTimeout(resolve, RESTATE_MS));
  t.equal(names((await presenceOf(a.url, room)).members), 'Watcher', 'nor does Kim come back on A');
});

t.test('a replica shut down with SIGTERM hands over: a client back on another replica within its retry never leaves; one that does not come back leaves soon, not after the expiry', async (t) => {
  const topics = kafkaTopics();
  const slowExpiry = { ...FAST, restateMs: 20000 };
  const a = await startGateway(t, { kafkaBrokers: requiredKafkaBrokers(), ...topics, presence: slowExpiry, cursorSecret: 'test-cursor-secret-0123456789' });
  const leaving = await spawnServer(t, {
    KAFKA_BROKERS: requiredKafkaBrokers().join(','),
    CHAT_TOPIC: topics.chatTopic,
    TICKER_TOPIC: topics.tickerTopic,
    PRESENCE_INTERVAL_MS: '100',
    PRESENCE_RESTATE_MS: '20000',
    SSE_RETRY_MS: '500',
    PRESENCE_LEAVE_GRACE_MS: '600',
    DRAIN_WINDOW_MS: '1500',
  });
  const room = uniqueName('room');
  const lou = await openStream(t, `${leaving.url}/events/${room}?name=Lou`);
  await openStream(t, `${leaving.url}/events/${room}?name=Max`);
  const watcher = await openStream(t, `${a.url}/events/${room}?name=Obs`);
  await routesAgree([a], room, 'Lou,Max,Obs', 'everyone on the other replica');
  const terminatedAt = Date.now();
  const terminated = leaving.terminate();
  // Lou's client does what EventSource does: waits the `retry:` the drain sent, then reconnects,
  // here to the other replica. Max's never comes back.
  await lou.ended;
  const retryMs = Number([...lou.text().matchAll(/^retry: (\d+)$/gm)].at(-1)![1]);
  t.ok(retryMs >= 500, `the drain told Lou to come back after ${retryMs} ms`);
  await new Promise((resolve) => setTimeout(resolve, retryMs));
  await openStream(t, `${a.url}/events/${room}?name=Lou`);
  await terminated;
  await routesAgree([a], room, 'Lou,Obs', 'Max gone, Lou still there');
  t.ok(Date.now() - terminatedAt < 15000, `Max gone ${Date.now() - terminatedAt} ms after SIGTERM, well before the 60 s expiry`);
  const left = watcher.presence.flatMap((message) => JSON.parse(message.data).left ?? []).map((member: { name: string }) => member.name);
  t.same(left, ['Max'], 'the other replica\'s streams saw Max leave, and never Lou');
});

t.test('a resumed stream gets a snapshot first, and no old presence deltas', async (t) => {
  const [a, b] = await startReplicaPair(t, { presence: FAST });
  const room = uniqueName('room');
  const first = await openStream(t, `${a.url}/events/${room}?name=Ria`);
  await until(() => first.presence.length >= 1, 5000, 'a snapshot');
  const zed = await openStream(t, `${b.url}/events/${room}?name=Zed`);
  await until(() => believed(first) === 'Ria,Zed', 10000, 'Zed joined');
  t.equal((await postJson(`${a.url}/rooms/${room}/messages`, { user: 'Ria', text: 'hello' })).status, 202);
  await first.waitForEvents(1);
  const lastEventId = first.lastEventId();
  zed.close();
  await until(() => believed(first) === 'Ria', 10000, 'Zed left');
  t.ok(first.presence.length >= 3, 'the first stream got a snapshot and two deltas');
  first.close();

  // Resumed on the other replica, from before Zed left.
  const resumed = await openStream(t, `${b.url}/events/${room}?name=Ria`, { 'last-event-id': lastEventId });
  await until(() => resumed.presence.length >= 1, 5000, 'a snapshot');
  t.match(resumed.text(), /^retry: \d+\n\n: connected\n\nevent: presence\ndata: [^\n]*"snapshot":true[^\n]*\n\n/, 'the snapshot comes before anything else');
  t.equal(believed(resumed), 'Ria', 'who is there now');
  t.equal((await postJson(`${b.url}/rooms/${room}/messages`, { user: 'Ria', text: 'again' })).status, 202);
  await resumed.waitForEvents(1);
  t.same(resumed.events.map((event) => JSON.parse(event.data).text), ['again'], 'nothing replayed before the new message (the resume point was the last message)');
  t.equal(resumed.presence.length, 1, 'no old deltas (Zed joining or leaving) replayed');
  t.notOk(/id: [^\n]+\nevent: presence/.test(resumed.text()), 'presence frames carry no id');
});
