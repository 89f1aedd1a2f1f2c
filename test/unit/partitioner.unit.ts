import t from 'tap';
import { createRequire } from 'node:module';
import { partitionForKey } from '../../src/bus/partitioner.ts';

const require = createRequire(import.meta.url);
// kafkajs's own Java-compatible murmur2, the reference the embedded bus must agree with.
const kafkajsMurmur2 = require('kafkajs/src/producer/partitioners/default/murmur2.js') as (key: string) => number;

t.test('the embedded bus places keys on the partitions Kafka would', async (t) => {
  const keys = ['lobby', 'a', 'ab', 'abc', 'abcd', 'DOGE', 'team-42', 'ünïcödé', 'x'.repeat(64)];
  for (const key of keys) {
    for (const partitions of [1, 6, 7, 64]) {
      t.equal(partitionForKey(key, partitions), (kafkajsMurmur2(key) & 0x7fffffff) % partitions, `${key} / ${partitions}`);
    }
  }
});
