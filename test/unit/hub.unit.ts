import t from 'tap';
import { Hub, type HubBatch, type HubEvent } from '../../src/hub/hub.ts';

function batchRecorder() {
  const received: HubBatch[] = [];
  return {
    received,
    deliverBatch: (batch: HubBatch) => {
      received.push(batch);
    },
  };
}

function eventRecorder() {
  const received: HubEvent[] = [];
  return {
    received,
    deliverEvent: (event: HubEvent) => {
      received.push(event);
    },
  };
}

function event(channel: string, offset = 0): HubEvent {
  const frame = Buffer.from(`id: ${offset}\ndata: ${channel}\n\n`);
  return { channel, slot: 0, partition: 0, offset, timestamp: 0, body: frame, frame };
}

t.test('fan-out reaches every subscriber of the channel with the same batch, and no one else', async (t) => {
  const hub = new Hub();
  const a = batchRecorder();
  const b = batchRecorder();
  const other = batchRecorder();
  hub.subscribe('room:lobby', a);
  hub.subscribe('room:lobby', b);
  hub.subscribe('room:other', other);
  const published = event('room:lobby');
  t.equal(hub.publish(published), 2);
  t.same(a.received, [], 'nothing before the flush');
  hub.flush();
  t.equal(a.received.length, 1);
  t.equal(a.received[0], b.received[0], 'the very same batch, not a copy');
  t.equal(a.received[0]!.events[0], published, 'holding the very same event');
  t.equal(a.received[0]!.frame, published.frame, 'a batch of one is that event’s frame');
  t.same(other.received, []);
});

t.test('events published before a flush reach a channel’s streams as one batch with one shared frame', async (t) => {
  const hub = new Hub();
  const a = batchRecorder();
  const b = batchRecorder();
  hub.subscribe('room:lobby', a);
  hub.subscribe('room:lobby', b);
  const events = [event('room:lobby', 1), event('room:lobby', 2), event('room:lobby', 3)];
  for (const each of events) hub.publish(each);
  hub.flush();
  hub.flush();
  t.equal(a.received.length, 1, 'one delivery per flush, and nothing on an empty flush');
  const [batch] = a.received;
  t.same(batch!.events, events);
  t.equal(batch!.frame.toString(), events.map((each) => each.frame.toString()).join(''), 'the frames back to back, in order');
  t.equal(batch!.frame, b.received[0]!.frame, 'built once, shared');
});

t.test('streams of several channels get each event, in publish order across channels, at the flush', async (t) => {
  const hub = new Hub();
  const multi = eventRecorder();
  hub.subscribe('room:a', multi);
  hub.subscribe('room:b', multi);
  const order = [event('room:a', 1), event('room:b', 2), event('room:a', 3)];
  for (const each of order) hub.publish(each);
  t.same(multi.received, [], 'queued until the flush');
  hub.flush();
  t.same(multi.received, order, 'delivered in publish order');
  hub.flush();
  t.equal(multi.received.length, 3, 'and not again at the next flush');
});

t.test('per-event deliveries to many streams of several channels go out in slices, each stream still getting every event in publish order', async (t) => {
  const hub = new Hub({ sliceMs: 2, deliveriesPerChannelTurn: 50, now: steppingClock() });
  const multis = Array.from({ length: 1000 }, () => eventRecorder());
  for (const multi of multis) {
    hub.subscribe('room:a', multi);
    hub.subscribe('room:b', multi);
  }
  const order = [event('room:a', 1), event('room:b', 2), event('room:a', 3), event('room:b', 4)];
  for (const each of order) hub.publish(each);
  hub.flush();
  const done = multis.filter((multi) => multi.received.length === order.length).length;
  t.ok(done < multis.length, `the flush returned before every stream had every event (${done} of ${multis.length})`);
  // More events meanwhile: they queue behind, in order.
  const later = [event('room:b', 5), event('room:a', 6)];
  for (const each of later) hub.publish(each);
  hub.flush();
  await hub.settled();
  const expected = [...order, ...later].map((each) => each.offset).join();
  t.ok(multis.every((multi) => multi.received.map((each) => each.offset).join() === expected), 'every stream: every event once, in publish order');
});

t.test('unsubscribe removes the subscriber, and the channel when it was the last', async (t) => {
  const hub = new Hub();
  const a = batchRecorder();
  const b = eventRecorder();
  const unsubscribeA = hub.subscribe('room:lobby', a);
  const unsubscribeB = hub.subscribe('room:lobby', b);
  t.equal(hub.subscriberCount('room:lobby'), 2);
  unsubscribeA();
  unsubscribeA();
  t.equal(hub.subscriberCount('room:lobby'), 1);
  hub.publish(event('room:lobby'));
  hub.flush();
  t.equal(a.received.length, 0);
  t.equal(b.received.length, 1);
  unsubscribeB();
  t.equal(hub.channelCount, 0);
  t.notOk(hub.hasSubscribers('room:lobby'));
  t.equal(hub.publish(event('room:lobby')), 0);
});

t.test('twenty thousand subscribers on one channel need no emitter listeners', async (t) => {
  const hub = new Hub();
  let count = 0;
  const unsubscribes = Array.from({ length: 20000 }, () => hub.subscribe('room:big', { deliverBatch: () => count++ }));
  hub.publish(event('room:big'));
  hub.flush();
  await hub.settled();
  t.equal(count, 20000);
  for (const unsubscribe of unsubscribes) unsubscribe();
  t.equal(hub.channelCount, 0);
});

/** A clock that moves 1 ms every time it is read: every clock check after the first stride finds the slice used up. */
function steppingClock(): () => number {
  let now = 0;
  return () => (now += 1);
}

t.test("a big room's fan-out is cut into slices: the small rooms of the same flush are not held behind it", async (t) => {
  const hub = new Hub({ sliceMs: 2, deliveriesPerChannelTurn: 100, now: steppingClock() });
  const big = Array.from({ length: 1000 }, () => batchRecorder());
  for (const subscriber of big) hub.subscribe('room:big', subscriber);
  const small = batchRecorder();
  hub.subscribe('room:small', small);
  hub.publish(event('room:big', 1));
  hub.publish(event('room:small', 2));
  hub.flush();
  const reachedAtOnce = big.filter((subscriber) => subscriber.received.length === 1).length;
  t.ok(reachedAtOnce < big.length, `the flush returned before the whole big room was served (${reachedAtOnce} of ${big.length})`);
  t.equal(small.received.length, 1, 'the small room got its turn in the same slice');
  await hub.settled();
  t.ok(big.every((subscriber) => subscriber.received.length === 1), 'every stream of the big room got the batch, once');
});

t.test("while a fan-out is under way, the channel's later batches wait: each stream gets its batches in order", async (t) => {
  const hub = new Hub({ sliceMs: 1, deliveriesPerChannelTurn: 10, now: steppingClock() });
  const subscribers = Array.from({ length: 200 }, () => batchRecorder());
  for (const subscriber of subscribers) hub.subscribe('room:big', subscriber);
  for (let offset = 0; offset < 3; offset++) {
    hub.publish(event('room:big', offset));
    hub.flush();
  }
  await hub.settled();
  for (const subscriber of subscribers) {
    t.same(subscriber.received.map((batch) => batch.first.offset), [0, 1, 2], 'in order');
    if (subscriber.received.length !== 3) break;
  }
});

t.test('a stream that leaves during a sliced fan-out gets nothing more', async (t) => {
  const hub = new Hub({ sliceMs: 1, deliveriesPerChannelTurn: 10, now: steppingClock() });
  const subscribers = Array.from({ length: 100 }, () => batchRecorder());
  const unsubscribes = subscribers.map((subscriber) => hub.subscribe('room:big', subscriber));
  hub.publish(event('room:big', 1));
  hub.flush();
  const last = subscribers.length - 1;
  t.equal(subscribers[last]!.received.length, 0, 'not reached yet');
  unsubscribes[last]!();
  await hub.settled();
  t.equal(subscribers[last]!.received.length, 0, 'and never after leaving');
  t.equal(subscribers[0]!.received.length, 1);
});

t.test('other per-stream work (`sliced`) shares the fan-outs\' budget: a big set is done in slices, a room flushed meanwhile is not held behind it', async (t) => {
  const hub = new Hub({ sliceMs: 2, deliveriesPerChannelTurn: 100, now: steppingClock() });
  const streams = Array.from({ length: 1000 }, () => ({ pinged: 0 }));
  hub.sliced(streams, (stream) => {
    stream.pinged += 1;
  });
  const pingedAtOnce = streams.filter((stream) => stream.pinged === 1).length;
  t.ok(pingedAtOnce < streams.length, `it returned before every stream was done (${pingedAtOnce} of ${streams.length})`);
  const small = batchRecorder();
  hub.subscribe('room:small', small);
  hub.publish(event('room:small', 1));
  hub.flush();
  t.ok(hub.busy, 'work is under way');
  for (let turn = 0; turn < 10 && small.received.length === 0; turn++) await new Promise((resolve) => setImmediate(resolve));
  t.equal(small.received.length, 1, 'the room flushed meanwhile got its batch in the next slice');
  t.ok(streams.some((stream) => stream.pinged === 0), 'while the big set was still under way');
  await hub.settled();
  t.ok(streams.every((stream) => stream.pinged === 1), 'every stream done, once');
  t.notOk(hub.busy);
});

/** A hub with slices of 2 ms on a stepping clock, a room of 1,000 streams and one batch of it flushed: its fan-out under way. */
function bigRoomFlushed(): { hub: Hub; big: Array<ReturnType<typeof batchRecorder>> } {
  const hub = new Hub({ sliceMs: 2, deliveriesPerChannelTurn: 100, now: steppingClock() });
  const big = Array.from({ length: 1000 }, () => batchRecorder());
  for (const subscriber of big) hub.subscribe('room:big', subscriber);
  hub.publish(event('room:big', 1));
  hub.flush();
  return { hub, big };
}

t.test('one slice per turn of the event loop: a flush\'s slice is not followed at once by the next one in the same turn', async (t) => {
  const { hub, big } = bigRoomFlushed();
  const reached = () => big.filter((subscriber) => subscriber.received.length === 1).length;
  const afterFlush = reached();
  t.ok(afterFlush < big.length, 'the flush ran one slice');
  // Scheduled after the flush: runs in this turn's check phase, where a continuation scheduled
  // by the flush would have run first.
  const inThisTurn = await new Promise<number>((resolve) => setImmediate(() => resolve(reached())));
  t.equal(inThisTurn, afterFlush, 'nothing more in the same turn: timers and I/O come first');
  await hub.settled();
  t.equal(reached(), big.length, 'then the rest, every stream once');
});

t.test('a flush while a slice is due on a later turn delivers nothing at once: its batch joins that slice', async (t) => {
  const { hub, big } = bigRoomFlushed();
  t.ok(hub.busy);
  const small = batchRecorder();
  hub.subscribe('room:small', small);
  hub.publish(event('room:small', 2));
  hub.flush();
  t.equal(small.received.length, 0, 'no second slice in the same turn');
  await hub.settled();
  t.equal(small.received.length, 1, 'delivered with the continuation');
});

t.test('a delivery that throws is that stream\'s alone: the others get theirs, the channel\'s next batch still goes out, the error is reported', async (t) => {
  const errors: unknown[] = [];
  const hub = new Hub({ sliceMs: 2, deliveriesPerChannelTurn: 10, now: steppingClock(), onError: (error) => errors.push(error) });
  const good = Array.from({ length: 100 }, () => batchRecorder());
  hub.subscribe('room:a', good[0]!);
  hub.subscribe('room:a', { deliverBatch: () => { throw new Error('boom'); } });
  for (const subscriber of good.slice(1)) hub.subscribe('room:a', subscriber);
  const pinged: number[] = [];
  hub.sliced([1, 2, 3], (item) => {
    if (item === 2) throw new Error('bad item');
    pinged.push(item);
  });
  hub.publish(event('room:a', 1));
  hub.flush();
  hub.publish(event('room:a', 2));
  hub.flush();
  await hub.settled();
  t.same(pinged, [1, 3], 'the sliced job went on past the failing item');
  t.ok(good.every((subscriber) => subscriber.received.map((batch) => batch.first.offset).join() === '1,2'), 'every other stream got both batches, in order');
  t.equal(errors.length, 3, 'each failure reported');
});

t.test('events go first: a room flushed while other per-stream work (`sliced`) is under way gets its fan-out done while that work barely moves', async (t) => {
  const hub = new Hub({ sliceMs: 2, deliveriesPerChannelTurn: 64, now: steppingClock() });
  let pinged = 0;
  hub.sliced(Array.from({ length: 10_000 }, (_, index) => index), () => {
    pinged += 1;
  });
  t.ok(pinged < 10_000, 'the big set is under way');
  // 999 streams, then one that notes how far the other work had gone when the fan-out reached it.
  for (let i = 0; i < 999; i++) hub.subscribe('room:busy', batchRecorder());
  let pingedWhenRoomDone = -1;
  hub.subscribe('room:busy', { deliverBatch: () => (pingedWhenRoomDone = pinged) });
  const pingedAtFlush = pinged;
  hub.publish(event('room:busy', 1));
  hub.flush();
  await hub.settled();
  t.ok(pingedWhenRoomDone >= 0, 'the room got its batch');
  // Equal turns would have pinged as many streams (1,000) as the room has, meanwhile.
  t.ok(pingedWhenRoomDone - pingedAtFlush <= 1000 / 16 + 64, `the other work advanced by ${pingedWhenRoomDone - pingedAtFlush} meanwhile`);
  t.equal(pinged, 10_000, 'and was done, every item once');
});

t.test('`sliced` tells when its pass is done, once, after every item', async (t) => {
  const hub = new Hub({ sliceMs: 2, deliveriesPerChannelTurn: 64, now: steppingClock() });
  let seen = 0;
  let doneAt = -1;
  let doneCalls = 0;
  hub.sliced(Array.from({ length: 5000 }, (_, index) => index), () => (seen += 1), () => {
    doneAt = seen;
    doneCalls += 1;
  });
  t.equal(doneCalls, 0, 'not yet: the pass continues on later turns');
  await hub.settled();
  t.equal(doneCalls, 1);
  t.equal(doneAt, 5000, 'after the last item');
});
