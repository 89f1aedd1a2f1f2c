import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { ChannelRef } from '../src/connection/subscription.ts';
import { channelKey } from '../src/channels/records.ts';
import { channelPartition } from '../src/bus/shards.ts';
import { resumeIdOf } from '../plugins/event-stream.ts';

/**
 * Sharded mode (README, "Sharded mode"; docs/SCALING.md): the one check of whether this replica
 * serves a request about some channels, shared by the streams and by every route that reads
 * what only the replicas consuming a channel's partition know (the message ledger for edits,
 * deletes and publishes with an `id`; chart history).
 */

const ShardElsewhere = Type.Object({
  channel: Type.String({ description: 'kind:name' }),
  partition: Type.Integer(),
  peer: Type.Union([Type.String(), Type.Null()], { description: "The owning group's base URL (SHARD_PEERS), null when not configured" }),
});

/** Answers only sharded replicas give (SHARD_PARTITIONS), for a route's response schema. */
export const shardReplies = {
  307: Type.Null({
    description:
      'Sharded mode: every channel named (and a stream\'s resume id) lives on partitions another shard group consumes, named in SHARD_PEERS: `Location` is the same request there (EventSource and fetch follow it; a 307 keeps the method and body)',
  }),
  409: Type.Object(
    { statusCode: Type.Integer(), error: Type.String(), message: Type.String(), elsewhere: Type.Array(ShardElsewhere) },
    {
      description:
        'Sharded mode: a channel (or a position of a stream\'s resume id) lives on a partition this replica does not consume, and no single peer owns them all (channels of several shard groups on one stream, or no SHARD_PEERS)',
    },
  ),
};

/**
 * Sharded mode: true when this replica serves a request about `channels` (always when not
 * sharded); otherwise the reply has been sent: a 307 to the same request at the one peer owning
 * everything asked, or a 409 naming what lives elsewhere. `stream`: the request is a stream, so
 * the partitions of its resume id count too.
 */
export function servedHere(request: FastifyRequest, reply: FastifyReply, channels: readonly ChannelRef[], { stream = false } = {}): boolean {
  const { shards, dispatcher } = request.server;
  if (shards === null) return true;
  const placements = channels.map(({ kind: kindName, name }) => {
    const kind = dispatcher.registry.get(kindName);
    const key = channelKey(kind.name, name);
    return { channel: key, partition: channelPartition(name, kind.partitioning, dispatcher.partitionCount(kind.slot), dispatcher.partitionOf(key)) };
  });
  const id = stream ? resumeIdOf(request) : undefined;
  // An id that does not decode is the stream's business (it answers with `reset`).
  const resumePartitions = id === undefined ? [] : (request.server.cursorCodec.decode(id) ?? []).map((entry) => entry.partition);
  const decision = shards.decide(placements, resumePartitions);
  if (decision.action === 'serve') return true;
  if (decision.action === 'redirect') {
    request.log.debug({ to: decision.url }, 'request redirected to the shard group owning its partition');
    void reply.redirect(`${decision.url}${request.url}`, 307);
    return false;
  }
  void reply.code(409).send({ statusCode: 409, error: 'Conflict', message: decision.message, elsewhere: decision.elsewhere });
  return false;
}

/**
 * A preHandler for a route about one channel of `kind`, named by path parameter `param`: on a
 * sharded replica not consuming the channel's partition it answers 307 or 409 (`servedHere`).
 * `applies`: when given, only requests it returns true for are checked (a publish without an
 * `id` depends on no replica's state and is taken anywhere).
 */
export function shardGuard(kind: string, param: string, applies?: (request: FastifyRequest) => boolean) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    if (request.server.shards === null || (applies !== undefined && !applies(request))) return undefined;
    const name = (request.params as Record<string, string>)[param]!;
    return servedHere(request, reply, [{ kind, name }]) ? undefined : reply;
  };
}

/** For `shardGuard`: the request's body carries an `id` (a publish whose answer depends on the ledger). */
export const hasBodyId = (request: FastifyRequest): boolean => {
  const body = request.body as { id?: unknown } | null | undefined;
  return typeof body === 'object' && body !== null && body.id !== undefined;
};
