import t from 'tap';
import { buildTruth, missingCount, scoreClient, seqOfText, textOfSeq, type TruthRecord } from '../../scripts/chaos/accounting.ts';

/** The chaos suite's verdict is only as honest as this counting: each kind of fault must show. */

const record = (room: string, seq: number, id = `k${seq}`): TruthRecord => ({ room, seq, id });

t.test('a client that received every message of its rooms once, in order, scores clean', async (t) => {
  const truth = buildTruth([record('a', 1), record('b', 2), record('a', 3)]);
  const score = scoreClient(truth, { rooms: ['a', 'b'], received: new Map([['a', [1, 3]], ['b', [2]]]) });
  t.same(score, { lost: 0, duplicated: 0, duplicatedFromKafkaCopies: 0, outOfOrder: 0, unknown: 0, lostByRoom: {}, lostSeqs: [] });
});

t.test('losses, duplicates and reordering are each counted', async (t) => {
  const truth = buildTruth([record('a', 1), record('a', 2), record('a', 3), record('a', 4), record('b', 5)]);
  const score = scoreClient(truth, { rooms: ['a', 'b'], received: new Map([['a', [1, 3, 2, 3]], ['b', []]]) });
  t.equal(score.lost, 2, 'seq 4 of a and seq 5 of b');
  t.same(score.lostByRoom, { a: 1, b: 1 });
  t.same(score.firstLost, { room: 'a', seq: 4 });
  t.same(score.lostSeqs, [4, 5]);
  t.equal(score.duplicated, 1, 'seq 3 twice');
  t.equal(score.outOfOrder, 1, 'seq 2 after seq 3');
});

t.test('a message Kafka does not hold for that room is reported, not silently accepted', async (t) => {
  const truth = buildTruth([record('a', 1)]);
  t.equal(scoreClient(truth, { rooms: ['a'], received: new Map([['a', [1, 99]]]) }).unknown, 1);
});

t.test('a publish retry written twice under two ids is a duplicated publish, and each receipt a duplicate', async (t) => {
  const truth = buildTruth([record('a', 1, 'x'), record('a', 1, 'y'), record('a', 2)]);
  t.equal(truth.duplicatedPublishes, 1);
  t.equal(truth.repeatedIds, 0);
  t.same(truth.rooms.get('a'), [1, 2], 'the message counts once in what clients must receive');
  const score = scoreClient(truth, { rooms: ['a'], received: new Map([['a', [1, 1, 1, 2]]]) });
  t.equal(score.duplicated, 2);
  t.equal(score.duplicatedFromKafkaCopies, 1, 'the second copy Kafka holds; the third receipt is a delivery duplicate');
});

t.test('a record repeating an id already held is counted apart', async (t) => {
  const truth = buildTruth([record('a', 1, 'x'), record('a', 1, 'x')]);
  t.equal(truth.repeatedIds, 1);
  t.equal(truth.duplicatedPublishes, 0);
});

t.test('missingCount counts what a client still lacks', async (t) => {
  const truth = buildTruth([record('a', 1), record('a', 2), record('b', 3)]);
  const seen = new Map([['a', new Set([1])]]);
  t.equal(missingCount(truth, ['a', 'b'], (room) => seen.get(room)), 2);
});

t.test('seq round-trips through a message text, padded or not', async (t) => {
  t.equal(seqOfText(textOfSeq(42)), 42);
  t.equal(seqOfText(textOfSeq(7, 200)), 7);
  t.equal(textOfSeq(7, 200).length, 200);
  t.equal(seqOfText('hello'), undefined);
  t.equal(seqOfText('c-1'), undefined);
  t.equal(seqOfText(5), undefined);
});
