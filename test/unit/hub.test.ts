import t from 'tap';
import { Hub, type HubEvent } from '../../src/hub.ts';

function recorder() {
  const received: HubEvent[] = [];
  return {
    received,
    deliver: (event: HubEvent) => {
      received.push(event);
    },
  };
}

function event(channel: string): HubEvent {
  const body = Buffer.from('data: x\n\n');
  return { channel, slot: 0, partition: 0, offset: 0, timestamp: 0, body, frame: body };
}

t.test('fan-out reaches every subscriber of the channel with the same frame, and no one else', async (t) => {
  const hub = new Hub();
  const a = recorder();
  const b = recorder();
  const other = recorder();
  hub.subscribe('room:lobby', a);
  hub.subscribe('room:lobby', b);
  hub.subscribe('room:other', other);
  const published = event('room:lobby');
  t.equal(hub.publish(published), 2);
  t.equal(a.received[0], published, 'the very same event, not a copy');
  t.equal(b.received[0], published);
  t.same(other.received, []);
});

t.test('unsubscribe removes the subscriber, and the channel when it was the last', async (t) => {
  const hub = new Hub();
  const a = recorder();
  const b = recorder();
  const unsubscribeA = hub.subscribe('room:lobby', a);
  const unsubscribeB = hub.subscribe('room:lobby', b);
  unsubscribeA();
  unsubscribeA();
  t.equal(hub.subscriberCount('room:lobby'), 1);
  hub.publish(event('room:lobby'));
  t.equal(a.received.length, 0);
  unsubscribeB();
  t.equal(hub.channelCount, 0);
  t.notOk(hub.hasSubscribers('room:lobby'));
  t.equal(hub.publish(event('room:lobby')), 0);
});

t.test('twenty thousand subscribers on one channel need no emitter listeners', async (t) => {
  const hub = new Hub();
  let count = 0;
  const unsubscribes = Array.from({ length: 20000 }, () => hub.subscribe('room:big', { deliver: () => count++ }));
  hub.publish(event('room:big'));
  t.equal(count, 20000);
  for (const unsubscribe of unsubscribes) unsubscribe();
  t.equal(hub.channelCount, 0);
});
