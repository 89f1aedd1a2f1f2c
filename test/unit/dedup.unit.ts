import t from 'tap';
import { DedupTable, dedupKey } from '../../src/dispatch/dedup.ts';
import { loadConfig } from '../../src/config.ts';

const WINDOW = 60_000;
const key = (id: string, channel = 'room:lobby', type = 'message') => dedupKey(channel, type, id);

t.test('the first record of an id is delivered; a repeat within the window is skipped, later it is new', async (t) => {
  const table = new DedupTable({ windowMs: WINDOW });
  t.equal(table.judge(0, 1, key('a'), 10, 1_000), false, 'first');
  t.equal(table.judge(0, 1, key('a'), 11, 1_000 + WINDOW), true, 'repeat at the window edge');
  t.equal(table.judge(0, 1, key('b'), 12, 1_000 + WINDOW), false, 'another id');
  t.equal(table.judge(0, 1, key('a', 'room:other'), 13, 1_000 + WINDOW), false, 'same id, other room');
  t.equal(table.judge(0, 1, key('a', 'room:lobby', 'delete'), 14, 1_000 + WINDOW), false, 'same id, other event type');
  // Measured from the last record with the id, delivered or not: a retry loop stays one message.
  t.equal(table.judge(0, 1, key('a'), 20, 1_000 + 2 * WINDOW), true, 'within the window of the previous repeat');
  t.equal(table.judge(0, 1, key('a'), 30, 1_000 + 3 * WINDOW + 1), false, 'past the window: a new message');
  t.same(table.stats.repeatsSkipped, 2);
});

t.test('a repeat that lands with an earlier timestamp than its first copy is still a repeat', async (t) => {
  const table = new DedupTable({ windowMs: WINDOW });
  t.equal(table.judge(0, 0, key('a'), 1, 5_000), false);
  t.equal(table.judge(0, 0, key('a'), 2, 4_000), true);
});

t.test('records read again get the verdict they had, and the positions of skipped repeats are known', async (t) => {
  const table = new DedupTable({ windowMs: WINDOW });
  t.equal(table.judge(0, 3, key('a'), 100, 1_000), false);
  t.equal(table.judge(0, 3, key('a'), 101, 2_000), true);
  t.equal(table.judge(0, 3, key('a'), 100, 1_000), false, 'the first, read again after a consumer restart');
  t.equal(table.judge(0, 3, key('a'), 101, 2_000), true, 'the repeat, read again');
  t.ok(table.wasSkipped(0, 3, 101));
  t.notOk(table.wasSkipped(0, 3, 100));
  t.notOk(table.wasSkipped(1, 3, 101), 'another topic slot');
  t.equal(table.stats.repeatsSkipped, 1, 'a re-read is not counted twice');
});

t.test('a publish retry finds the first record within the window only', async (t) => {
  const table = new DedupTable({ windowMs: WINDOW });
  table.judge(1, 4, key('p1', 'ticker:BTC', 'price_update'), 7, 10_000);
  t.same(table.firstRecord(key('p1', 'ticker:BTC', 'price_update'), 10_000 + WINDOW), { slot: 1, partition: 4, offset: 7 });
  t.equal(table.firstRecord(key('p1', 'ticker:BTC', 'price_update'), 10_001 + WINDOW), undefined);
  t.equal(table.firstRecord(key('nope'), 10_000), undefined);
});

t.test('ids older than the window are forgotten as the partition moves on', async (t) => {
  const table = new DedupTable({ windowMs: WINDOW });
  for (let index = 0; index < 100; index++) table.judge(0, 0, key(`m${index}`), index, index * 1_000);
  // Newest timestamp 99 s: ids last seen before 39 s are gone.
  t.equal(table.stats.ids, 61);
  table.judge(0, 1, key('other'), 0, 0);
  t.equal(table.stats.ids, 62, 'each partition ages by its own newest timestamp');
});

t.test('past the count bound the busiest partition forgets its oldest ids first, counted', async (t) => {
  const table = new DedupTable({ windowMs: WINDOW, maxIds: 10 });
  for (let index = 0; index < 3; index++) table.judge(0, 1, key(`quiet${index}`), index, 1_000);
  for (let index = 0; index < 12; index++) table.judge(0, 0, key(`busy${index}`), index, 1_000);
  t.equal(table.stats.ids, 10);
  t.equal(table.stats.evicted, 5);
  t.equal(table.judge(0, 0, key('busy0'), 100, 1_000), false, 'an evicted id is delivered again');
  t.equal(table.judge(0, 1, key('quiet0'), 100, 1_000), true, 'the quiet partition kept its ids');
});

t.test('the remembered positions of skipped repeats are bounded, oldest forgotten first', async (t) => {
  const table = new DedupTable({ windowMs: WINDOW, maxSkippedOffsets: 2 });
  table.judge(0, 0, key('a'), 0, 1_000);
  for (let offset = 1; offset <= 3; offset++) table.judge(0, 0, key('a'), offset, 1_000);
  t.notOk(table.wasSkipped(0, 0, 1));
  t.ok(table.wasSkipped(0, 0, 2));
  t.ok(table.wasSkipped(0, 0, 3));
});

t.test('a window of 0 turns the table off', async (t) => {
  const table = new DedupTable({ windowMs: 0 });
  t.equal(table.judge(0, 0, key('a'), 0, 1_000), false);
  t.equal(table.judge(0, 0, key('a'), 1, 1_000), false);
  t.equal(table.firstRecord(key('a'), 1_000), undefined);
  t.equal(table.stats.ids, 0);
});

t.test('DEDUP_WINDOW_MS: 60 s by default, never longer than the warm-up read (HISTORY_MAX_AGE_MS)', async (t) => {
  t.equal(loadConfig({}).dedupWindowMs, 60_000);
  t.equal(loadConfig({ DEDUP_WINDOW_MS: '0' }).dedupWindowMs, 0);
  t.equal(loadConfig({ HISTORY_MAX_AGE_MS: '30000' }).dedupWindowMs, 30_000, 'the default shrinks with a shorter history');
  t.equal(loadConfig({ DEDUP_WINDOW_MS: '900000', HISTORY_MAX_AGE_MS: '900000' }).dedupWindowMs, 900_000);
  t.throws(() => loadConfig({ DEDUP_WINDOW_MS: '600001' }), /DEDUP_WINDOW_MS must be between 0 and 600000/);
  t.throws(() => loadConfig({ DEDUP_WINDOW_MS: 'soon' }), /DEDUP_WINDOW_MS/);
});
