import t from 'tap';
import { ReplaySlots, ReplayTurns, type ReplayTicket } from '../../src/connection/replay-turns.ts';

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
/** Lets resolved promises' continuations run (not a turn of the event loop). */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

t.test('one replay at a time holds the turn; the others go on in the order they asked', async (t) => {
  let now = 0;
  const turns = new ReplayTurns(4, () => now);
  const order: string[] = [];
  await turns.enter();
  for (const name of ['b', 'c']) void turns.enter().then(() => order.push(name));
  await settle();
  t.same(order, [], 'nobody else while a holds it');
  t.equal(turns.waiting, 2);
  turns.leave();
  await settle();
  t.same(order, ['b'], 'the first in line goes on in the same turn while the slice lasts');
  turns.leave();
  await settle();
  t.same(order, ['b', 'c']);
  turns.leave();
});

t.test('once the slice is used, the next replay waits for the next turn of the event loop', async (t) => {
  let now = 0;
  const turns = new ReplayTurns(4, () => now);
  await turns.enter();
  let second = false;
  void turns.enter().then(() => {
    second = true;
  });
  now = 5;
  t.ok(turns.used, 'the holder sees its slice used');
  turns.leave();
  await settle();
  t.notOk(second, 'not in the same turn');
  await nextTurn();
  await settle();
  t.ok(second, 'in the next turn, with a fresh slice');
  t.notOk(turns.used);
  turns.leave();
});

t.test('a replay that leaves and enters again goes behind those already waiting (round robin)', async (t) => {
  const turns = new ReplayTurns(4, () => 0);
  const order: string[] = [];
  await turns.enter();
  void turns.enter().then(() => {
    order.push('b');
    turns.leave();
  });
  turns.leave();
  await turns.enter();
  order.push('a');
  turns.leave();
  t.same(order, ['b', 'a']);
});

t.test('an idle replica lets a replay start at once', async (t) => {
  const turns = new ReplayTurns(4);
  let entered = false;
  void turns.enter().then(() => {
    entered = true;
  });
  await settle();
  t.ok(entered);
  turns.leave();
  t.equal(turns.waiting, 0);
});

t.test('replay slots: deep replays read at most `max` partitions at once; the others wait and go on oldest first as slots come back', async (t) => {
  const slots = new ReplaySlots(2);
  const order: string[] = [];
  const [a, b, c, d] = [slots.ticket(), slots.ticket(), slots.ticket(), slots.ticket()];
  const take = (name: string, ticket: ReplayTicket, partition: string) =>
    void slots.acquire(ticket, partition).then((held) => {
      if (held) order.push(name);
    });
  take('a', a, 'p0');
  take('b', b, 'p1');
  take('d', d, 'p3');
  take('c', c, 'p2');
  await settle();
  t.same(order, ['a', 'b'], 'two partitions at once');
  t.equal(slots.waiting, 2);
  slots.release('p0');
  await settle();
  t.same(order, ['a', 'b', 'c'], 'the oldest waiting goes first, whatever the order they asked in');
  slots.release('p1');
  await settle();
  t.same(order, ['a', 'b', 'c', 'd']);
  t.equal(slots.active, 2);
  slots.release('p2');
  slots.release('p3');
  t.equal(slots.active, 0);
});

t.test('replay slots: replays of a partition being read go on at once (one read of Kafka serves them), and it stays taken until the last is done', async (t) => {
  const slots = new ReplaySlots(1);
  const order: string[] = [];
  const take = (name: string, partition: string) =>
    void slots.acquire(slots.ticket(), partition).then((held) => {
      if (held) order.push(name);
    });
  take('a', 'p0');
  take('b', 'p1');
  take('c', 'p0');
  await settle();
  t.same(order, ['a', 'c'], 'c reads the partition a reads: no wait, although b is older');
  slots.release('p0');
  await settle();
  t.same(order, ['a', 'c'], 'c still reads p0');
  slots.release('p0');
  await settle();
  t.same(order, ['a', 'c', 'b'], 'p0 done: b gets the slot');
  slots.release('p1');
  t.equal(slots.active, 0);
});

t.test('replay slots: a replay that gave its slot up (its client stopped reading) gets it back ahead of younger ones; a cancelled wait resolves false and frees its place', async (t) => {
  const slots = new ReplaySlots(1);
  const old = slots.ticket();
  const young = slots.ticket();
  const younger = slots.ticket();
  t.equal(await slots.acquire(old, 'p0'), true);
  const got: string[] = [];
  void slots.acquire(young, 'p1').then((held) => got.push(`young ${held}`));
  slots.release('p0');
  await settle();
  t.same(got, ['young true'], 'the slot went on while the old one waited for its client');
  void slots.acquire(younger, 'p2').then((held) => got.push(`younger ${held}`));
  void slots.acquire(old, 'p0').then((held) => got.push(`old ${held}`));
  slots.cancel(younger);
  await settle();
  t.same(got, ['young true', 'younger false'], 'the cancelled wait resolved false');
  slots.release('p1');
  await settle();
  t.same(got, ['young true', 'younger false', 'old true'], 'the old one is back');
  t.equal(slots.waiting, 0);
  slots.release('p0');
  t.throws(() => new ReplaySlots(0), RangeError);
});

t.test('with a share below 1, the replays leave the loop alone after a slice: t ms of work, then t × (1 − share) / share ms without', async (t) => {
  let now = 0;
  const turns = new ReplayTurns(4, () => now, 0.25);
  await turns.enter();
  now = 6; // the slice wrote for 6 ms: used
  t.ok(turns.used);
  let second = false;
  void turns.enter().then(() => {
    second = true;
  });
  turns.leave();
  // The next slice may start at 6 + 6 × 3 = 24 ms.
  for (let turn = 0; turn < 5; turn++) {
    await nextTurn();
    await settle();
  }
  t.notOk(second, 'no slice while the live streams have the loop (several turns later)');
  now = 24;
  // The turns wait on a timer for the rest: poll until it fires (bounded).
  for (let polls = 0; polls < 200 && !second; polls++) await new Promise((resolve) => setTimeout(resolve, 5));
  t.ok(second, 'the next slice once the share allows it');
  turns.leave();
});

t.test('with the whole share (1), a replay gets a slice every turn, as before', async (t) => {
  let now = 0;
  const turns = new ReplayTurns(4, () => now, 1);
  await turns.enter();
  now = 6;
  let second = false;
  void turns.enter().then(() => {
    second = true;
  });
  turns.leave();
  await nextTurn();
  await settle();
  t.ok(second, 'the next turn');
  turns.leave();
});

t.test('a share outside (0, 1] is refused', async (t) => {
  t.throws(() => new ReplayTurns(4, () => 0, 0), RangeError);
  t.throws(() => new ReplayTurns(4, () => 0, 1.5), RangeError);
});
