import t from 'tap';
import { channelPartition, formatPartitionSet, parsePartitionSet, parseShardPeers, ShardMap } from '../../src/bus/shards.ts';
import { partitionForKey } from '../../src/bus/partitioner.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { configRefusal } from '../helpers/config.ts';

const KAFKA = { KAFKA_BROKERS: '127.0.0.1:9092', CURSOR_SECRET: 'a-shared-secret-of-16+' };

t.test('SHARD_PARTITIONS: partitions and ranges', async (t) => {
  t.same(parsePartitionSet('0-5,9'), [0, 1, 2, 3, 4, 5, 9]);
  t.same(parsePartitionSet(' 9, 3 - 4 ,3'), [3, 4, 9], 'spaces allowed, sorted, each once');
  t.same(parsePartitionSet('7'), [7]);
  for (const [raw, message] of [
    ['', /entry "" is not a partition/],
    ['a', /entry "a" is not a partition/],
    ['1,,2', /entry "" is not a partition/],
    ['-1', /entry "-1"/],
    ['5-3', /range "5-3" ends before it starts/],
    ['1.5', /entry "1.5"/],
    ['0-100000', /entry "0-100000"/],
  ] as const) {
    t.throws(() => parsePartitionSet(raw), { message }, `"${raw}" refused`);
  }
  t.equal(formatPartitionSet([5, 0, 1, 2, 9, 10, 7]), '0-2,5,7,9-10');
  t.equal(formatPartitionSet(parsePartitionSet('0-5,9')), '0-5,9');
});

t.test('SHARD_PEERS: partitions=url entries', async (t) => {
  t.same(parseShardPeers('2-3=https://b.example/; 4=http://c.example:8080/gw', [0, 1]), [
    { partitions: [2, 3], url: 'https://b.example' },
    { partitions: [4], url: 'http://c.example:8080/gw' },
  ]);
  t.throws(() => parseShardPeers('2-3', [0]), { message: /not partitions=url/ });
  t.throws(() => parseShardPeers('2=ftp://b.example', [0]), { message: /http\(s\) base URL/ });
  t.throws(() => parseShardPeers('2=https://b.example/?x=1', [0]), { message: /without query/ });
  t.throws(() => parseShardPeers('2=not a url', [0]), { message: /is not a URL/ });
  t.throws(() => parseShardPeers('0-1=https://b.example', [1]), { message: /partition 1 is named twice \(by this replica/ }, 'a peer owning our partition would redirect to itself');
  t.throws(() => parseShardPeers('2=https://b.example;2=https://c.example', [0]), { message: /partition 2 is named twice/ });
  t.throws(() => parseShardPeers(' ; ', [0]), { message: /names no peer/ });
});

t.test('the settings in the configuration', async (t) => {
  t.same(loadConfig({ ...KAFKA }).shardPartitions, null, 'unset: every partition');
  const config = loadConfig({ ...KAFKA, SHARD_PARTITIONS: '0-2', SHARD_PEERS: '3-5=https://shard-b.example' });
  t.same(config.shardPartitions, [0, 1, 2]);
  t.same(config.shardPeers, [{ partitions: [3, 4, 5], url: 'https://shard-b.example' }]);
  for (const [env, variable, detail] of [
    [{ ...KAFKA, SHARD_PARTITIONS: '2/4' }, 'SHARD_PARTITIONS', /\(2\/4\): entry "2\/4" is not a partition/],
    [{ ...KAFKA, SHARD_PEERS: '3=https://b.example' }, 'SHARD_PEERS', /SHARD_PARTITIONS is not/],
    [{ ...KAFKA, SHARD_PARTITIONS: '0-2', SHARD_PEERS: '2-3=https://b.example' }, 'SHARD_PEERS', /partition 2 is named twice/],
    [{ SHARD_PARTITIONS: '0-2' }, 'SHARD_PARTITIONS', /KAFKA_BROKERS is not/],
  ] as const) {
    const thrown = configRefusal(env);
    t.ok(thrown instanceof ConfigError, `${JSON.stringify(env)} refused`);
    t.equal((thrown as ConfigError).variable, variable);
    t.match((thrown as Error).message, detail);
  }
});

t.test("a channel's partition: where it was seen, else murmur2 for murmur2 kinds, else unknown", async (t) => {
  t.equal(channelPartition('lobby', 'murmur2', 6, undefined), partitionForKey('lobby', 6));
  t.equal(channelPartition('lobby', 'murmur2', 6, 4), 4, 'seen on partition 4: there, whatever murmur2 says');
  t.equal(channelPartition('lobby', 'any', 6, 1), 1);
  t.equal(channelPartition('lobby', 'any', 6, undefined), null, 'another partitioner, not seen yet: unknown');
  t.equal(channelPartition('lobby', 'murmur2', 0, undefined), null, 'partition count not known yet');
});

t.test('where a stream request belongs', async (t) => {
  const alone = new ShardMap([0, 1]);
  const withPeers = new ShardMap([0, 1], [
    { partitions: [2, 3], url: 'https://b.example' },
    { partitions: [4, 5], url: 'https://c.example' },
  ]);
  const here = { channel: 'room:a', partition: 1 };
  const inB = { channel: 'room:b', partition: 2 };
  const inB2 = { channel: 'room:b2', partition: 3 };
  const inC = { channel: 'room:c', partition: 5 };
  const unknown = { channel: 'orders:x', partition: null };

  t.same(alone.decide([here]), { action: 'serve' });
  t.same(alone.decide([unknown]), { action: 'serve' }, 'a channel of unknown partition is followed on the partitions here');
  t.same(alone.decide([here, unknown], [0, 1]), { action: 'serve' });

  t.same(withPeers.decide([inB]), { action: 'redirect', url: 'https://b.example' });
  t.same(withPeers.decide([inB, inB2, unknown]), { action: 'redirect', url: 'https://b.example' }, 'all known channels in one peer');
  t.same(withPeers.decide([inB], [2]), { action: 'redirect', url: 'https://b.example' }, 'its resume id too');

  const single = alone.decide([inB]);
  t.equal(single.action, 'refuse', 'no peer known: refused');
  if (single.action === 'refuse') {
    t.same(single.elsewhere, [{ channel: 'room:b', partition: 2, peer: null }]);
    t.match(single.message, /room:b \(partition 2\) lives on partitions this replica does not consume \(it consumes 0-1\)/);
    t.match(single.message, /load balancer/);
  }
  const across = withPeers.decide([here, inB, inC]);
  t.equal(across.action, 'refuse', 'channels of several groups on one stream');
  if (across.action === 'refuse') {
    t.same(across.elsewhere.map((entry) => entry.peer), ['https://b.example', 'https://c.example']);
    t.match(across.message, /one stream per group/);
  }
  const spanning = withPeers.decide([inB, inC]);
  t.equal(spanning.action, 'refuse', 'two other groups: no single redirect');

  const foreignId = withPeers.decide([here], [1, 4]);
  t.equal(foreignId.action, 'refuse', 'a resume id naming a partition of another group');
  if (foreignId.action === 'refuse') t.match(foreignId.message, /the resume id names partition 4, which this replica does not consume/);
  const mixedId = withPeers.decide([inB], [4]);
  t.equal(mixedId.action, 'refuse', 'the channel in one peer, its id in another');
});

t.test('a shard set beyond the topic is a layout problem naming the setting', async (t) => {
  const map = new ShardMap([2, 3, 4, 5]);
  t.equal(map.layoutProblem('chat', 6), null);
  t.equal(map.layoutProblem('chat', 4), 'SHARD_PARTITIONS (2-5) names partitions 4-5 but topic chat has 4 partitions (0-3)');
  t.equal(new ShardMap([1]).layoutProblem('chat', 1), 'SHARD_PARTITIONS (1) names partition 1 but topic chat has 1 partition (0-0)');
});
