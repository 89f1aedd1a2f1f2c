import t from 'tap';
import { ledgerKey, MessageLedger } from '../../src/dispatch/message-ledger.ts';

const WINDOW = 10_000;
const at = (partition: number, offset: number) => ({ slot: 0, partition, offset });
const key = (id: string) => ledgerKey('room:lobby', id);

t.test('the first message record of an id owns it; a delete marks it, the first delete is kept', async (t) => {
  const ledger = new MessageLedger({ windowMs: WINDOW });
  ledger.recordMessage(key('m1'), 'ann', at(0, 5), 1_000);
  ledger.recordMessage(key('m1'), 'bob', at(0, 6), 1_001);
  t.match(ledger.lookup(key('m1'), 1_002), { author: 'ann', message: at(0, 5), deletion: null }, 'a reuse of the id does not take it over');
  t.equal(ledger.lookup(ledgerKey('room:other', 'm1'), 1_002), undefined, 'ids are per room');
  ledger.recordDelete(key('m1'), at(0, 7), 1_003);
  ledger.recordDelete(key('m1'), at(0, 8), 1_004);
  t.same(ledger.lookup(key('m1'), 1_005)?.deletion, at(0, 7));
  ledger.recordDelete(key('never'), at(0, 9), 1_005);
  t.equal(ledger.lookup(key('never'), 1_005), undefined, 'a delete of an unknown message adds nothing');
  ledger.recordMessage(key('m2'), null, at(0, 10), 1_006);
  t.equal(ledger.lookup(key('m2'), 1_006)?.author, null, 'a message without author');
});

t.test('entries older than the window are forgotten: by the partition\'s newer records, and by the clock at lookup', async (t) => {
  const ledger = new MessageLedger({ windowMs: WINDOW });
  ledger.recordMessage(key('old'), 'ann', at(0, 1), 1_000);
  ledger.recordMessage(key('other-partition'), 'ann', at(1, 1), 1_000);
  t.ok(ledger.lookup(key('old'), 1_000 + WINDOW), 'at the edge of the window');
  t.equal(ledger.lookup(key('old'), 1_001 + WINDOW), undefined, 'past it, by the clock');
  ledger.recordMessage(key('new'), 'bob', at(0, 2), 1_001 + WINDOW);
  t.equal(ledger.stats.entries, 2, 'the old entry of partition 0 was dropped; partition 1 keeps its own');
  t.ok(ledger.lookup(key('new'), 1_001 + WINDOW));
});

t.test('past maxEntries the oldest of the busiest partition go first, counted', async (t) => {
  const ledger = new MessageLedger({ windowMs: WINDOW, maxEntries: 3 });
  ledger.recordMessage(key('p1'), 'a', at(1, 1), 1_000);
  for (let offset = 0; offset < 3; offset++) ledger.recordMessage(key(`p0-${offset}`), 'a', at(0, offset), 1_000 + offset);
  t.same(ledger.stats, { entries: 3, evicted: 1 });
  t.equal(ledger.lookup(key('p0-0'), 1_005), undefined, 'the busiest partition\'s oldest');
  t.ok(ledger.lookup(key('p1'), 1_005));
  t.ok(ledger.lookup(key('p0-2'), 1_005));
});
