import t from 'tap';
import { PresenceTracker } from '../../src/presence/tracker.ts';
import { diffViews, mergeView, RemoteStatements } from '../../src/presence/cluster-view.ts';
import { decodeStatement, encodeStatement, isPresentableName, MAX_MEMBERS_PER_STATEMENT, type PresenceStatement } from '../../src/presence/statement.ts';
import { MAX_SNAPSHOT_MEMBERS, PresenceService } from '../../src/presence/service.ts';
import type { BusRecord, OutgoingRecord } from '../../src/bus/types.ts';
import { Hub } from '../../src/hub/hub.ts';

const ann = { sub: 'u-ann', name: 'Ann', verified: true };
const annSelfNamed = { sub: null, name: 'u-ann', verified: false };
const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const silent = { error() {}, warn() {}, info() {}, debug() {}, trace() {}, child() { return silent; } } as never;

t.test('tracker: one member however many streams; leaves only after its last stream closed for the grace', async (t) => {
  const changes: string[] = [];
  const tracker = new PresenceTracker({ graceMs: 40, onChange: (key) => changes.push(key), now: () => 1000 });
  const leave1 = tracker.join('room:a', ann);
  const leave2 = tracker.join('room:a', ann);
  t.same(tracker.view('room:a'), { members: [{ ...ann, since: 1000 }], anonymous: 0 });
  t.equal(changes.length, 1, 'a second tab is no change');
  leave1();
  leave1();
  leave2();
  t.equal(tracker.view('room:a').members.length, 1, 'still listed during the grace');
  const back = tracker.join('room:a', ann);
  await wait(80);
  t.equal(tracker.view('room:a').members.length, 1, 'a reconnect within the grace: no leave');
  t.equal(changes.length, 1);
  back();
  await wait(80);
  t.same(tracker.view('room:a').members, [], 'gone once the grace ran out');
  t.equal(changes.length, 2);
  t.equal(tracker.channelCount, 1, 'kept until its emptiness is told');
  tracker.forget('room:a');
  t.equal(tracker.channelCount, 0, 'then forgotten: state is O(members + channels)');
});

t.test('tracker: anonymous streams are counted at once; a self-chosen name is not a token identity of the same text', async (t) => {
  const tracker = new PresenceTracker({ graceMs: 1000, onChange: () => {} });
  const leave = tracker.join('room:a', null);
  tracker.join('room:a', null);
  tracker.join('room:a', ann);
  tracker.join('room:a', annSelfNamed);
  t.equal(tracker.view('room:a').anonymous, 2);
  t.equal(tracker.view('room:a').members.length, 2, 'sub u-ann and the name "u-ann" are two members');
  leave();
  t.equal(tracker.view('room:a').anonymous, 1);
  tracker.close();
});

const statement = (replica: string, members: PresenceStatement['members'], at: number, anonymous = 0): PresenceStatement => ({ kind: 'room', channel: 'a', replica, members, anonymous, at });

t.test('merging: one identity on several replicas is one member with its earliest since; anonymous add up', async (t) => {
  const view = mergeView(
    { members: [{ ...ann, since: 300 }], anonymous: 1 },
    [statement('r1', [{ ...ann, since: 100 }, { sub: 'u-bob', name: 'Bob', verified: true, since: 200 }], 1000, 2), statement('r2', [], 1000, 3)],
  );
  t.equal(view.members.size, 2);
  t.equal(view.members.get('v:u-ann')?.since, 100);
  t.equal(view.anonymous, 6);
  const after = mergeView({ members: [{ ...ann, since: 300 }], anonymous: 0 }, [statement('r1', [{ sub: 'u-cy', name: 'Cy', verified: true, since: 5 }], 1000)]);
  const { joined, left } = diffViews(view.members, after.members);
  t.same(joined.map((member) => member.name), ['Cy']);
  t.same(left.map((member) => member.name), ['Bob']);
});

t.test('remote statements: the latest per replica, empty ones remove, stale ones expire or are never taken', async (t) => {
  const remote = new RemoteStatements({ expiryMs: 3000 });
  t.ok(remote.apply('room:a', statement('r1', [{ ...ann, since: 1 }], 10_000), 10_000), 'a new statement changes the view');
  t.notOk(remote.apply('room:a', statement('r1', [{ ...ann, since: 1 }], 11_000), 11_000), 'a restatement of the same does not');
  t.notOk(remote.apply('room:a', statement('r1', [], 9_000), 11_000), 'an older statement arriving late is ignored');
  t.equal(remote.size, 1);
  t.same(remote.expire(13_999), [], 'restated at 11 s: alive until 14 s');
  t.same(remote.expire(14_001), ['room:a'], 'expired 3 s after its last restatement (kill -9)');
  t.equal(remote.size, 0);
  t.notOk(remote.apply('room:a', statement('r9', [{ ...ann, since: 1 }], 1_000), 10_000), 'a statement older than the bound (read back at startup) is never taken');
  t.equal(remote.size, 0, 'so a restart does not resurrect it');
  remote.apply('room:a', statement('r2', [{ ...ann, since: 1 }], 20_000), 20_000);
  t.ok(remote.apply('room:a', statement('r2', [], 20_500), 20_500), 'an empty statement: its replica holds nobody there any more');
  t.equal(remote.size, 0);
  remote.apply('room:a', statement('r3', [{ ...ann, since: 1 }], 99_000_000), 20_000);
  t.same(remote.expire(23_001), ['room:a'], 'a statement dated in the future counts from when it was read');
});

t.test('statements: encoded and decoded; a bad record is refused with a reason, never thrown', async (t) => {
  const good = statement('r1', [{ ...ann, since: 5 }, { ...annSelfNamed, since: 6 }], 7, 1);
  t.same(decodeStatement(Buffer.from(encodeStatement(good))), { ok: true, statement: good });
  for (const bad of ['', 'null', '[]', '{"kind":"room"}', JSON.stringify({ ...good, anonymous: -1 }), JSON.stringify({ ...good, members: [{ sub: null, name: 'x', verified: true, since: 1 }] }), JSON.stringify({ ...good, members: Array(MAX_MEMBERS_PER_STATEMENT + 1).fill({ ...ann, since: 1 }) })]) {
    const decoded = decodeStatement(Buffer.from(bad));
    t.equal(decoded.ok, false, bad.slice(0, 40));
  }
  t.equal(decodeStatement(null).ok, false, 'a tombstone');
  t.ok(isPresentableName('Ann Smith'));
  t.ok(isPresentableName('Zoë 🙂'));
  for (const bad of ['', ' ', 'a'.repeat(65), 'a\u0000', 'a\nb', '\u200b', ' ann ', 'ann ', 'ann\u00a0', 'ann\u2028', 'a\u3000b']) t.notOk(isPresentableName(bad), encodeURIComponent(bad)); // (a raw U+2028 in a TAP line would break it)
});

t.test('service: statements on change (coalesced per interval) and on restatement; deltas per channel once per interval, one shared frame', async (t) => {
  let now = 1_000_000;
  const published: OutgoingRecord[] = [];
  const service = new PresenceService({ topic: 'p', replicaId: 'me', intervalMs: 100, crowdStreams: 100, crowdIntervalMs: 500, restateMs: 1000, leaveGraceMs: 10, publish: async (record) => published.push(record), logger: silent, now: () => now });
  const frames: Buffer[][] = [[], []];
  const sinks = frames.map((list) => ({ write: (frame: Buffer) => list.push(frame) }));
  service.join([{ kind: 'room', name: 'a' }], ann, sinks[0]!);
  service.join([{ kind: 'room', name: 'a' }], null, sinks[1]!);
  t.match(frames[0]![0]!.toString(), /^event: presence\ndata: \{"room":"a","snapshot":true,"members":\[\{"sub":"u-ann","name":"Ann","since":1000000\}\],"count":1,"anonymous":0\}\n\n$/);
  service.tick(now);
  await wait(0);
  t.equal(published.length, 1, 'two joins in one interval: one statement');
  t.match(JSON.parse(published[0]!.value), { kind: 'room', channel: 'a', replica: 'me', members: [{ sub: 'u-ann' }], anonymous: 1 });
  t.equal(published[0]!.key, 'room:a|me');
  t.equal(frames[0]!.length, 2, 'a delta for the anonymous stream');
  t.equal(frames[0]![1], frames[1]![1], 'the same frame for both streams');

  // Another replica's statement arrives: one delta next interval.
  const record = (value: PresenceStatement): BusRecord => ({ topic: 'p', partition: 0, offset: '0', key: null, value: Buffer.from(encodeStatement(value)), headers: {}, timestamp: now });
  service.onRecords([record({ kind: 'room', channel: 'a', replica: 'other', members: [{ sub: 'u-bob', name: 'Bob', verified: true, since: 5 }], anonymous: 0, at: now })]);
  service.onRecords([record({ kind: 'room', channel: 'a', replica: 'me', members: [], anonymous: 0, at: now })]);
  service.onRecords([{ ...record(statement('x', [], now)), value: Buffer.from('garbage') }]);
  t.equal(service.stats.recordsSkipped, 1);
  now += 100;
  service.tick(now);
  t.match(JSON.parse(frames[0]![2]!.toString().split('data: ')[1]!), { room: 'a', joined: [{ sub: 'u-bob', name: 'Bob' }], left: [], count: 2, anonymous: 1 });
  t.same(service.summary({ kind: 'room', name: 'a' }).members.map((member) => member.name), ['Bob', 'Ann'], 'its own statement read back is ignored: Ann is counted once');

  // Restatement: every channel held, even without change.
  now += 1000;
  service.tick(now);
  await wait(0);
  t.equal(published.length, 2);
  // Bob's replica goes silent: gone after 3 restatement periods.
  now += 3001;
  service.tick(now);
  t.match(JSON.parse(frames[0]![frames[0]!.length - 1]!.toString().split('data: ')[1]!), { left: [{ name: 'Bob' }], count: 1 });
  await service.stop(100);
  const last = JSON.parse(published[published.length - 1]!.value);
  t.equal(last.until, last.at, 'stopping with no hand-over time: its members are listed until now, so they leave at once');
});

t.test('a departing replica hands over: its last statement keeps its members listed until `until`, then they leave; a member back elsewhere stays', async (t) => {
  const remote = new RemoteStatements({ expiryMs: 30_000 });
  const ann = { sub: 'u-ann', name: 'Ann', verified: true, since: 1 };
  const bob = { sub: 'u-bob', name: 'Bob', verified: true, since: 2 };
  t.ok(remote.apply('room:r', { kind: 'room', channel: 'r', replica: 'a', members: [ann, bob], anonymous: 3, at: 1000 }, 1000));
  // Replica a drains and stops: its last statement, members still listed for a 6 s hand-over.
  remote.apply('room:r', { kind: 'room', channel: 'r', replica: 'a', members: [ann, bob], anonymous: 0, at: 2000, until: 8000 }, 2000);
  // Ann came back on replica b meanwhile.
  remote.apply('room:r', { kind: 'room', channel: 'r', replica: 'b', members: [ann], anonymous: 0, at: 3000 }, 3000);
  const names = () => [...remote.statementsOf('room:r')].flatMap((statement) => statement.members.map((member) => member.name)).sort();
  t.same(remote.expire(7999), [], 'nothing leaves during the hand-over');
  t.same(names(), ['Ann', 'Ann', 'Bob']);
  t.same(remote.expire(8000), ['room:r'], 'at `until` the departed replica\'s statement goes');
  t.same(names(), ['Ann'], 'Bob, who did not come back, left; Ann, back on b, stayed');
  t.notOk(remote.apply('room:r', { kind: 'room', channel: 'r', replica: 'c', members: [bob], anonymous: 0, at: 9000, until: 9000 }, 9500), 'a hand-over already over is ignored');
});

t.test('service: a snapshot of a crowded room lists the earliest members and says it is truncated; count counts all', async (t) => {
  const service = new PresenceService({ topic: 'p', replicaId: 'me', intervalMs: 100, crowdStreams: 100, crowdIntervalMs: 500, restateMs: 1000, leaveGraceMs: 10, publish: async () => undefined, logger: silent });
  const members = Array.from({ length: MAX_SNAPSHOT_MEMBERS + 5 }, (_, i) => ({ sub: `u${i}`, name: `n${i}`, verified: true, since: i }));
  service.onRecords([{ topic: 'p', partition: 0, offset: '0', key: null, value: Buffer.from(encodeStatement({ kind: 'room', channel: 'big', replica: 'other', members: members.slice(0, 3000), anonymous: 0, at: Date.now() })), headers: {}, timestamp: Date.now() }]);
  service.onRecords([{ topic: 'p', partition: 0, offset: '1', key: null, value: Buffer.from(encodeStatement({ kind: 'room', channel: 'big', replica: 'third', members: members.slice(3000), anonymous: 0, at: Date.now() })), headers: {}, timestamp: Date.now() }]);
  const frames: Buffer[] = [];
  service.join([{ kind: 'room', name: 'big' }], null, { write: (frame) => frames.push(frame) });
  const snapshot = JSON.parse(frames[0]!.toString().split('data: ')[1]!);
  t.equal(snapshot.members.length, MAX_SNAPSHOT_MEMBERS);
  t.equal(snapshot.members[0].sub, 'u0', 'the earliest first');
  t.equal(snapshot.truncated, true);
  t.equal(snapshot.count, MAX_SNAPSHOT_MEMBERS + 5);
  t.equal(service.summary({ kind: 'room', name: 'big' }).members.length, MAX_SNAPSHOT_MEMBERS + 5, 'the route lists them all');
  await service.stop(10);
});

t.test('settings: presence in a kind declaration and the presence settings are checked', async (t) => {
  const { loadConfig, presenceTopic } = await import('../../src/config.ts');
  const { writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tempDir } = await import('../helpers/fixture.ts');
  const dir = tempDir(t, 'presence-settings-');
  const file = (name: string, presence: unknown) => {
    const path = join(dir, `${name}.json`);
    writeFileSync(path, JSON.stringify({ kinds: [{ name: 'orders', topic: 'orders', presence, eventTypes: { created: { schema: { type: 'object' } } } }] }));
    return path;
  };
  t.equal(loadConfig({ CHANNELS_FILE: file('on', true) }).channelKinds[0]?.presence, true, 'presence: true is a field of a declaration');
  t.throws(() => loadConfig({ CHANNELS_FILE: file('bad', 'yes') }), /channel kind "orders": presence must be boolean/);

  const defaults = loadConfig({});
  t.same(defaults.presence, { rooms: true, topic: null, intervalMs: 1000, crowdStreams: 100, crowdIntervalMs: 5000, restateMs: 10000, leaveGraceMs: 5000 });
  t.equal(presenceTopic(defaults), 'chat.presence', 'the default topic follows CHAT_TOPIC');
  t.equal(presenceTopic(loadConfig({ PRESENCE_TOPIC: 'who-is-here' })), 'who-is-here');
  t.equal(loadConfig({ SSE_RETRY_MS: '8000' }).presence.leaveGraceMs, 10000, 'the default grace outlasts a longer retry');
  t.throws(() => loadConfig({ SSE_RETRY_MS: '3000', PRESENCE_LEAVE_GRACE_MS: '2000' }), /PRESENCE_LEAVE_GRACE_MS \(2000\) must be greater than SSE_RETRY_MS \(3000\)/);
  t.throws(() => loadConfig({ PRESENCE_INTERVAL_MS: '5000', PRESENCE_RESTATE_MS: '1000' }), /PRESENCE_RESTATE_MS \(1000\) must be at least PRESENCE_INTERVAL_MS/);
  t.match(loadConfig({ PRESENCE_CROWD_STREAMS: '20', PRESENCE_CROWD_INTERVAL_MS: '10000' }).presence, { crowdStreams: 20, crowdIntervalMs: 10000 });
  t.equal(loadConfig({ PRESENCE_INTERVAL_MS: '2000', PRESENCE_CROWD_INTERVAL_MS: '2000' }).presence.crowdIntervalMs, 2000, 'the crowd interval may equal the interval');
  t.equal(loadConfig({ PRESENCE_INTERVAL_MS: '6000' }).presence.crowdIntervalMs, 6000, 'a longer interval alone: the crowd interval follows it, no refusal');
  t.throws(() => loadConfig({ PRESENCE_INTERVAL_MS: '2000', PRESENCE_CROWD_INTERVAL_MS: '1000' }), { name: 'ConfigError', message: /PRESENCE_CROWD_INTERVAL_MS \(1000\) must be at least PRESENCE_INTERVAL_MS \(2000\)/ });
  t.throws(() => loadConfig({ PRESENCE_CROWD_INTERVAL_MS: '500' }), /PRESENCE_CROWD_INTERVAL_MS \(500\) must be at least PRESENCE_INTERVAL_MS \(1000\)/, 'against the default interval too');
  t.throws(() => loadConfig({ PRESENCE_CROWD_STREAMS: '0' }), /PRESENCE_CROWD_STREAMS must be between 1 and/);
  t.throws(() => loadConfig({ PRESENCE_TOPIC: 'chat' }), /PRESENCE_TOPIC \("chat"\) is the topic of a channel kind/);
  t.throws(() => loadConfig({ PRESENCE_TOPIC: 'bad topic' }), /PRESENCE_TOPIC has an invalid value/);
});

t.test('a member who moves to another replica keeps when it joined (`since`)', async (t) => {
  let now = 5_000;
  const service = new PresenceService({ topic: 'p', replicaId: 'b', intervalMs: 100, crowdStreams: 100, crowdIntervalMs: 500, restateMs: 1000, leaveGraceMs: 10, publish: async () => undefined, logger: silent, now: () => now });
  // Replica a's last statement: Ann there since 1,000, handed over until 9,000.
  const statement = { kind: 'room', channel: 'r', replica: 'a', members: [{ sub: 'u-ann', name: 'Ann', verified: true, since: 1_000 }], anonymous: 0, at: 4_000, until: 9_000 };
  service.onRecords([{ topic: 'p', partition: 0, offset: '0', key: null, value: Buffer.from(encodeStatement(statement)), headers: {}, timestamp: 4_000 }]);
  service.join([{ kind: 'room', name: 'r' }], { sub: 'u-ann', name: 'Ann', verified: true }, { write: () => {} });
  now = 10_000;
  service.tick(now);
  t.same(service.summary({ kind: 'room', name: 'r' }).members.map((member) => member.since), [1_000], 'since kept after the hand-over ended');
  await service.stop(10);
});

/**
 * A presence service whose deltas go out in a hub's slices, as the gateway wires them; every
 * reading of the hub's clock is a millisecond later, so a slice of 2 ms holds a few writes.
 */
function slicedPresence(): { hub: Hub; service: PresenceService } {
  let clock = 0;
  const hub = new Hub({ sliceMs: 2, deliveriesPerChannelTurn: 50, now: () => (clock += 1) });
  const service = new PresenceService({
    topic: 'p',
    replicaId: 'me',
    intervalMs: 100,
    // Never crowded: these tests are about how one delta is written, not how often.
    crowdStreams: Infinity,
    crowdIntervalMs: 500,
    restateMs: 1000,
    leaveGraceMs: 10,
    publish: async () => undefined,
    logger: silent,
    now: () => 1_000_000,
    forEachSink: (sinks, each) => hub.sliced(sinks, each),
  });
  return { hub, service };
}

t.test("a delta to a crowded room is written in the hub's slices, never in one stretch of the event loop", async (t) => {
  const { hub, service } = slicedPresence();
  const written = Array.from({ length: 2000 }, () => [] as Buffer[]);
  for (const frames of written) service.join([{ kind: 'room', name: 'big' }], null, { write: (frame) => frames.push(frame) });
  t.ok(written.every((frames) => frames.length === 1), 'every stream got its snapshot at once');
  service.tick(1_000_000);
  const atOnce = written.filter((frames) => frames.length === 2).length;
  t.ok(atOnce < written.length, `the tick returned before the whole room had its delta (${atOnce} of ${written.length})`);
  await hub.settled();
  t.ok(written.every((frames) => frames.length === 2), 'then every stream had it, once');
  t.match(JSON.parse(written[0]![1]!.toString().split('data: ')[1]!), { room: 'big', count: 0, anonymous: 2000 });
  t.equal(written[0]![1], written[1999]![1], 'one frame, shared');
  await service.stop(10);
});

t.test('a stream that opens while a delta is still being written gets its snapshot only, never that older delta after it', async (t) => {
  const { hub, service } = slicedPresence();
  for (let index = 0; index < 2000; index++) service.join([{ kind: 'room', name: 'big' }], null, { write: () => undefined });
  service.tick(1_000_000);
  service.join([{ kind: 'room', name: 'big' }], ann, { write: () => undefined });
  service.tick(1_000_000);
  t.ok(hub.busy, 'the delta (Ann joined) is still being written');
  const late: Buffer[] = [];
  service.join([{ kind: 'room', name: 'big' }], null, { write: (frame) => late.push(frame) });
  await hub.settled();
  t.equal(late.length, 1, 'only its snapshot');
  t.match(JSON.parse(late[0]!.toString().split('data: ')[1]!), { snapshot: true, count: 1, anonymous: 2001 });
  await service.stop(10);
});

/**
 * A service whose channel `room:a` has `streams` anonymous streams here (the recorded sinks)
 * and whose counts another replica ('other') changes at will; deltas are crowded beyond 3 streams.
 */
function crowdedPresence(streams: number) {
  let now = 1_000_000;
  const service = new PresenceService({ topic: 'p', replicaId: 'me', intervalMs: 100, crowdStreams: 3, crowdIntervalMs: 500, restateMs: 60_000, leaveGraceMs: 10, publish: async () => undefined, logger: silent, now: () => now });
  const written = Array.from({ length: streams }, () => [] as Buffer[]);
  for (const frames of written) service.join([{ kind: 'room', name: 'a' }], null, { write: (frame) => frames.push(frame) });
  let offset = 0;
  /** The other replica now holds `members` and `anonymous` streams in room a. */
  const other = (members: string[], anonymous: number) =>
    service.onRecords([
      {
        topic: 'p',
        partition: 0,
        offset: String(offset++),
        key: null,
        value: Buffer.from(encodeStatement({ kind: 'room', channel: 'a', replica: 'other', members: members.map((name, i) => ({ sub: `u-${name}`, name, verified: true, since: i + 1 })), anonymous, at: now })),
        headers: {},
        timestamp: now,
      },
    ]);
  /** One interval later: the timer's tick. */
  const tick = (ms = 100) => {
    now += ms;
    service.tick(now);
  };
  const presence = (frame: Buffer) => JSON.parse(frame.toString().split('data: ')[1]!);
  return { service, written, other, tick, presence };
}

t.test('a crowded channel (more than crowdStreams streams here) gets at most one delta per crowdIntervalMs, then the net change', async (t) => {
  const { service, written, other, tick, presence } = crowdedPresence(4);
  tick();
  t.ok(written.every((frames) => frames.length === 1), 'no delta yet: its streams were just told the room by their snapshots');
  tick(400);
  t.ok(written.every((frames) => frames.length === 2), 'its first delta, a crowd interval after its first stream');
  t.match(presence(written[0]![1]!), { count: 0, anonymous: 4 });

  // Its count changes on every tick: Bob joins, leaves, Cy joins, the other replica's anonymous grow.
  const changes: Array<[string[], number]> = [[['Bob'], 1], [[], 2], [['Cy'], 3], [['Cy'], 4]];
  for (const [members, anonymous] of changes) {
    other(members, anonymous);
    tick();
    t.ok(written.every((frames) => frames.length === 2), `no delta ${anonymous * 100} ms after the last one`);
  }
  other(['Cy'], 5);
  tick();
  t.ok(written.every((frames) => frames.length === 3), 'one delta once the crowd interval has passed');
  t.equal(written[0]![2], written[3]![2], 'one frame, shared');
  t.match(presence(written[0]![2]!), { room: 'a', joined: [{ sub: 'u-Cy', name: 'Cy' }], left: [], count: 1, anonymous: 9 }, 'the net change: Bob came and went, unseen; counts as of now');

  // A change with none after it is not lost: sent when the crowd interval has passed.
  other(['Cy'], 6);
  tick();
  tick(300);
  t.ok(written.every((frames) => frames.length === 3), 'still within the crowd interval');
  tick();
  t.ok(written.every((frames) => frames.length === 4));
  t.match(presence(written[0]![3]!), { joined: [], left: [], count: 1, anonymous: 10 });
  await service.stop(10);
});

t.test('a channel at the crowd threshold (crowdStreams streams here) still gets a delta on every tick with a change', async (t) => {
  const { service, written, other, tick, presence } = crowdedPresence(3);
  tick();
  t.ok(written.every((frames) => frames.length === 2));
  for (let anonymous = 1; anonymous <= 4; anonymous++) {
    other(anonymous % 2 === 1 ? ['Bob'] : [], anonymous);
    tick();
    t.ok(written.every((frames) => frames.length === 2 + anonymous), `a delta on tick ${anonymous}`);
    t.match(presence(written[0]![1 + anonymous]!), { count: anonymous % 2, anonymous: 3 + anonymous });
  }
  tick();
  t.ok(written.every((frames) => frames.length === 6), 'no change, no delta');
  await service.stop(10);
});

t.test('a stream opened between deltas gets its own difference from its snapshot: a member who left and came back, or came and left, meanwhile', async (t) => {
  const { service, written, other, tick, presence } = crowdedPresence(4);
  tick(500);
  t.ok(written.every((frames) => frames.length === 2), 'the room announced once');
  const late = (): Buffer[] => {
    const frames: Buffer[] = [];
    service.join([{ kind: 'room', name: 'a' }], null, { write: (frame) => frames.push(frame) });
    return frames;
  };

  // Zoe is announced, leaves, a stream opens (its snapshot without her), she comes back.
  other(['Zoe'], 0);
  tick(500);
  other([], 0);
  const opened1 = late();
  t.match(presence(opened1[0]!), { snapshot: true, members: [], count: 0 });
  other(['Zoe'], 0);
  tick(500);
  t.match(presence(opened1.at(-1)!), { joined: [{ name: 'Zoe' }], left: [], count: 1, anonymous: 5 }, 'the late stream is told Zoe is there');
  t.match(presence(written[0]!.at(-1)!), { joined: [], left: [], count: 1, anonymous: 5 }, 'the others, who saw her all along, only the count');

  // Yan comes, a stream opens (its snapshot lists him), he leaves before the next delta.
  other(['Zoe', 'Yan'], 0);
  const opened2 = late();
  t.match(presence(opened2[0]!), { snapshot: true, count: 2 });
  other(['Zoe'], 0);
  tick(500);
  t.match(presence(opened2.at(-1)!), { joined: [], left: [{ name: 'Yan' }], count: 1, anonymous: 6 }, 'the late stream is told Yan left');
  t.match(presence(written[0]!.at(-1)!), { joined: [], left: [], count: 1, anonymous: 6 }, 'the others never saw him');
  await service.stop(10);
});
