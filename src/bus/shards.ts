import { partitionForKey } from './partitioner.ts';

/**
 * Sharded mode (README, "Sharded mode"; docs/SCALING.md): a replica consumes only a configured
 * set of partitions — the same set in every channel topic — and serves only the streams of
 * channels living there. Which replica owns a channel is Kafka's own arithmetic: the channel's
 * partition, `positive(murmur2(utf8 name)) mod partitions` as Kafka's DefaultPartitioner and
 * the gateway's producer compute it (src/bus/partitioner.ts), or the partition its records were
 * actually seen on. The load balancer computes the same (deploy/shard-route.lua).
 *
 * Everything here is pure: parsing the settings and deciding where a stream belongs.
 */

/** Most partitions a set may name (Kafka allows more, but a shard set that large is a typo). */
const MAX_PARTITION = 99_999;

/**
 * Parses a partition set: comma-separated partitions and inclusive ranges, e.g. `0-5,9`.
 *
 * @returns the partitions, ascending, each once.
 * @throws Error whose message says what is wrong with which entry (the caller names the setting).
 */
export function parsePartitionSet(raw: string): number[] {
  const partitions = new Set<number>();
  const entries = raw.split(',').map((entry) => entry.trim());
  for (const entry of entries) {
    const match = /^(\d{1,5})(?:\s*-\s*(\d{1,5}))?$/.exec(entry);
    if (match === null) throw new Error(`entry "${entry}" is not a partition (e.g. 3) or a range of partitions (e.g. 0-5)`);
    const first = Number(match[1]);
    const last = match[2] === undefined ? first : Number(match[2]);
    if (last < first) throw new Error(`range "${entry}" ends before it starts`);
    if (last > MAX_PARTITION) throw new Error(`partition ${last} is beyond ${MAX_PARTITION}`);
    for (let partition = first; partition <= last; partition++) partitions.add(partition);
  }
  return [...partitions].sort((a, b) => a - b);
}

/** Writes a partition set back in its shortest form: `[0,1,2,5]` → `0-2,5`. */
export function formatPartitionSet(partitions: Iterable<number>): string {
  const sorted = [...new Set(partitions)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let index = 0; index < sorted.length; ) {
    let end = index;
    while (end + 1 < sorted.length && sorted[end + 1] === sorted[end]! + 1) end++;
    parts.push(end === index ? String(sorted[index]) : `${sorted[index]}-${sorted[end]}`);
    index = end + 1;
  }
  return parts.join(',');
}

/** Another shard group: the partitions it owns and where its streams are served. */
export interface ShardPeer {
  partitions: number[];
  /** Base URL (`http(s)://host[:port][/prefix]`, no trailing slash) a stream request is redirected to. */
  url: string;
}

/**
 * Parses SHARD_PEERS: `;`-separated `partitions=base-url` entries, e.g.
 * `2-3=https://shard-b.example.com;4-5=https://shard-c.example.com`.
 *
 * @param own this replica's partitions: a peer naming one of them would redirect to itself.
 * @throws Error saying which entry is wrong and why.
 */
export function parseShardPeers(raw: string, own: readonly number[]): ShardPeer[] {
  const peers: ShardPeer[] = [];
  const claimed = new Map<number, string>(own.map((partition) => [partition, 'this replica (SHARD_PARTITIONS)']));
  for (const entry of raw.split(';').map((item) => item.trim()).filter((item) => item !== '')) {
    const equals = entry.indexOf('=');
    if (equals < 0) throw new Error(`entry "${entry}" is not partitions=url (e.g. 2-3=https://shard-b.example.com)`);
    const partitions = parsePartitionSet(entry.slice(0, equals));
    const url = entry.slice(equals + 1).trim().replace(/\/+$/, '');
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new Error(`entry "${entry}": "${url}" is not a URL`);
    }
    if ((parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || parsed.search !== '' || parsed.hash !== '') {
      throw new Error(`entry "${entry}": "${url}" must be an http(s) base URL without query or fragment`);
    }
    for (const partition of partitions) {
      const owner = claimed.get(partition);
      if (owner !== undefined) throw new Error(`partition ${partition} is named twice (by ${owner} and by ${url})`);
      claimed.set(partition, url);
    }
    peers.push({ partitions, url });
  }
  if (peers.length === 0) throw new Error('names no peer');
  return peers;
}

/** One channel of a stream request, where it lives. */
export interface ChannelPlacement {
  /** As the client named it: `room:lobby`, `ticker:DOGE`. */
  channel: string;
  /** Its partition, or null when this replica cannot tell (a kind written by another partitioner, not seen yet). */
  partition: number | null;
}

/** What a sharded replica does with a stream request. */
export type ShardDecision =
  | { action: 'serve' }
  /** Every channel (and every partition of the resume id) is owned by one peer: send the client there. */
  | { action: 'redirect'; url: string }
  /** Some channels or resume positions live on partitions this replica does not own. */
  | { action: 'refuse'; message: string; elsewhere: Array<{ channel: string; partition: number; peer: string | null }> };

/** The partitions this replica consumes and the other groups it knows of. */
export class ShardMap {
  readonly #owned: ReadonlySet<number>;
  readonly #peers: ReadonlyMap<number, string>;
  readonly partitions: readonly number[];

  constructor(partitions: readonly number[], peers: readonly ShardPeer[] = []) {
    this.partitions = [...partitions];
    this.#owned = new Set(partitions);
    this.#peers = new Map(peers.flatMap((peer) => peer.partitions.map((partition) => [partition, peer.url] as const)));
  }

  owns(partition: number): boolean {
    return this.#owned.has(partition);
  }

  /** The base URL of the group owning `partition`, when SHARD_PEERS names it. */
  peerFor(partition: number): string | undefined {
    return this.#peers.get(partition);
  }

  /**
   * Why this replica cannot run on a topic of `count` partitions (it would own partitions that
   * do not exist), or null when it can. Checked at startup, once Kafka says how many there are.
   */
  layoutProblem(topic: string, count: number): string | null {
    const missing = this.partitions.filter((partition) => partition >= count);
    if (missing.length === 0) return null;
    return `SHARD_PARTITIONS (${formatPartitionSet(this.partitions)}) names partition${missing.length > 1 ? 's' : ''} ${formatPartitionSet(missing)} but topic ${topic} has ${count} partition${count === 1 ? '' : 's'} (0-${count - 1})`;
  }

  /**
   * Where a stream request belongs. `channels`: its channels and their partitions;
   * `resumePartitions`: the partitions its resume id names (none without one). Served here when
   * every known partition is owned (a channel whose partition is unknown is served: this replica
   * sees only its own partitions, so it follows the channel there). Otherwise redirected when
   * one peer owns all of them, else refused, naming each channel and position that lives
   * elsewhere and its owner when known.
   */
  decide(channels: readonly ChannelPlacement[], resumePartitions: readonly number[] = []): ShardDecision {
    const elsewhere: Array<{ channel: string; partition: number; peer: string | null }> = [];
    for (const { channel, partition } of channels) {
      if (partition !== null && !this.owns(partition)) elsewhere.push({ channel, partition, peer: this.peerFor(partition) ?? null });
    }
    const foreignResume = [...new Set(resumePartitions)].filter((partition) => !this.owns(partition));
    if (elsewhere.length === 0 && foreignResume.length === 0) return { action: 'serve' };
    const knownHere = channels.some(({ partition }) => partition !== null && this.owns(partition));
    const targets = new Set([...elsewhere.map((entry) => entry.peer), ...foreignResume.map((partition) => this.peerFor(partition) ?? null)]);
    const [only] = targets;
    if (!knownHere && targets.size === 1 && only !== null && only !== undefined) return { action: 'redirect', url: only };
    const mine = formatPartitionSet(this.partitions);
    const parts: string[] = [];
    if (elsewhere.length > 0) {
      const named = elsewhere.map(({ channel, partition, peer }) => `${channel} (partition ${partition}${peer === null ? '' : `, served at ${peer}`})`);
      parts.push(`${named.join(', ')} ${elsewhere.length === 1 ? 'lives' : 'live'} on partitions this replica does not consume (it consumes ${mine})`);
    }
    if (foreignResume.length > 0) {
      parts.push(`the resume id names partition${foreignResume.length > 1 ? 's' : ''} ${formatPartitionSet(foreignResume)}, which this replica does not consume (it consumes ${mine})`);
    }
    const advice =
      channels.length > 1 && (knownHere || targets.size > 1)
        ? 'channels of different shard groups cannot share one stream: open one stream per group'
        : 'connect through the load balancer, which routes each channel to the replicas consuming its partition';
    return { action: 'refuse', message: `${parts.join('; ')}: ${advice}`, elsewhere };
  }
}

/**
 * The partition a channel lives on as far as routing can tell: where its records were seen
 * (`learned`), else murmur2 of its name for kinds written with Kafka's default partitioner,
 * else null (unknown). `partitions` 0 (not known yet) gives null as well.
 */
export function channelPartition(name: string, partitioning: 'murmur2' | 'any', partitions: number, learned: number | undefined): number | null {
  if (learned !== undefined) return learned;
  if (partitioning !== 'murmur2' || partitions < 1) return null;
  return partitionForKey(name, partitions);
}
