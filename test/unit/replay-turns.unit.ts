import t from 'tap';
import { ReplayTurns } from '../../src/connection/replay-turns.ts';

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
