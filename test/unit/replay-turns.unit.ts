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

/** Polls (each turn of the event loop) until `condition` holds, for at most `limit` turns; whether it held. */
async function turnsUntil(condition: () => boolean, limit = 10_000): Promise<boolean> {
  for (let turn = 0; turn < limit; turn++) {
    if (condition()) return true;
    await nextTurn();
  }
  return condition();
}

/** Asks for the turn; `entered` says whether it was given yet. */
function ask(turns: ReplayTurns): { entered: boolean } {
  const asked = { entered: false };
  void turns.enter().then(() => {
    asked.entered = true;
  });
  return asked;
}

/**
 * Takes slices of `sliceMs` (the fake clock moves by that much while the turn is held), each
 * given within a turn or two of asking, until one is not: returns the time held and the
 * request still waiting.
 */
async function spendSlices(turns: ReplayTurns, clock: { now: number }, sliceMs: number, most = 1000): Promise<{ held: number; waiting: { entered: boolean } }> {
  let held = 0;
  for (let slice = 0; slice < most; slice++) {
    const asked = ask(turns);
    if (!(await turnsUntil(() => asked.entered, 3))) return { held, waiting: asked };
    clock.now += sliceMs;
    held += sliceMs;
    turns.leave();
  }
  throw new Error(`still given slices after ${most}`);
}

t.test('a share of the clock: once the replays held the loop for their share, the next slice waits for the clock to earn it', async (t) => {
  const clock = { now: 0 };
  // 25 % of the clock, saved up to 25 % of 200 ms = 50 ms.
  const turns = new ReplayTurns(4, () => clock.now, 0.25);
  // Slices of 4 ms, one per turn, until the 50 ms saved are spent. The clock moves only while
  // they hold the loop, which earns a quarter of it back: 50 / (1 - 0.25) ≈ 67 ms in all.
  const { held, waiting } = await spendSlices(turns, clock, 4);
  t.ok(held >= 64 && held <= 72, `the savings were spent in slices (${held} ms held)`);
  // Spent: the replay asking now does not get the next turns while the clock stands still.
  await turnsUntil(() => waiting.entered, 20);
  t.notOk(waiting.entered, 'no slice while the bucket is empty and no time passes');
  // The clock moves on (as if the process did other work meanwhile): a quarter of it is earned.
  clock.now += 40;
  t.ok(await turnsUntil(() => waiting.entered), 'the slice comes once the clock earned it');
  turns.leave();
});

t.test('a share of the clock: time that passed while nobody replayed is saved (up to the burst), so a late timer loses nothing', async (t) => {
  const clock = { now: 0 };
  const turns = new ReplayTurns(4, () => clock.now, 0.5);
  // Spend everything saved.
  await turns.enter();
  clock.now += 200;
  turns.leave();
  // Long after (a starved machine: the timer fired late), the replay may hold the loop for what it
  // earned meanwhile, capped at 50 % × 200 ms: 100 ms, in slices of one turn each (plus half of
  // the time it holds: 100 / (1 - 0.5) = 200 ms).
  clock.now += 10_000;
  const { held, waiting } = await spendSlices(turns, clock, 4);
  t.ok(held >= 196 && held <= 208, `the time earned while waiting was spent (${held} ms held), no more`);
  clock.now += 100;
  await turnsUntil(() => waiting.entered);
  turns.leave();
});

t.test('a share of 1 never makes a replay wait on the clock; the slices stay one per turn', async (t) => {
  const clock = { now: 0 };
  const turns = new ReplayTurns(4, () => clock.now, 1);
  for (let slice = 0; slice < 200; slice++) {
    const asked = ask(turns);
    t.ok(await turnsUntil(() => asked.entered, 3), 'given within a turn or two');
    clock.now += 5;
    t.ok(turns.used, 'a slice ends after 4 ms');
    turns.leave();
  }
});

t.test('a share outside (0, 1] is refused', async (t) => {
  t.throws(() => new ReplayTurns(4, undefined, 0), RangeError);
  t.throws(() => new ReplayTurns(4, undefined, 1.5), RangeError);
});

t.test('replay slots: at most `max` at once; the others wait and go on oldest first as slots come back', async (t) => {
  const slots = new ReplaySlots(2);
  const order: string[] = [];
  const [a, b, c, d] = [slots.ticket(), slots.ticket(), slots.ticket(), slots.ticket()];
  const take = (name: string, ticket: ReplayTicket) =>
    void slots.acquire(ticket).then((held) => {
      if (held) order.push(name);
    });
  take('a', a);
  take('b', b);
  take('d', d);
  take('c', c);
  await settle();
  t.same(order, ['a', 'b'], 'two at once');
  t.equal(slots.waiting, 2);
  slots.release();
  await settle();
  t.same(order, ['a', 'b', 'c'], 'the oldest waiting goes first, whatever the order they asked in');
  slots.release();
  await settle();
  t.same(order, ['a', 'b', 'c', 'd']);
  t.equal(slots.active, 2);
  slots.release();
  slots.release();
  t.equal(slots.active, 0);
});

t.test('replay slots: a replay that gave its slot up (its client stopped reading) gets it back ahead of younger ones; a cancelled wait resolves false and frees its place', async (t) => {
  const slots = new ReplaySlots(1);
  const old = slots.ticket();
  const young = slots.ticket();
  const younger = slots.ticket();
  t.equal(await slots.acquire(old), true);
  const got: string[] = [];
  void slots.acquire(young).then((held) => got.push(`young ${held}`));
  slots.release();
  await settle();
  t.same(got, ['young true'], 'the slot went on while the old one waited for its client');
  void slots.acquire(younger).then((held) => got.push(`younger ${held}`));
  void slots.acquire(old).then((held) => got.push(`old ${held}`));
  slots.cancel(younger);
  await settle();
  t.same(got, ['young true', 'younger false'], 'the cancelled wait resolved false');
  slots.release();
  await settle();
  t.same(got, ['young true', 'younger false', 'old true'], 'the old one is back');
  t.equal(slots.waiting, 0);
  slots.release();
  t.throws(() => new ReplaySlots(0), RangeError);
});
