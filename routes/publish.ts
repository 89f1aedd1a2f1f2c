import type { FastifyInstance } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { channelKey } from '../src/channels/records.ts';
import type { ChannelKind } from '../src/channels/kind.ts';
import type { OutgoingRecord } from '../src/bus/types.ts';
import { AcceptedReply, authReplies as refusals, ChannelParams, errorReplies, errorReply, publishSecurity } from './schemas.ts';
import { hasBodyId, shardGuard, shardReplies } from './shard-guard.ts';

/** Publishing is authenticated (token or service API key) and rate-limited per IP and identity. */
export const publishAuthReplies = {
  ...refusals,
  429: errorReply('Over PUBLISH_RATE_PER_IP or PUBLISH_RATE_PER_IDENTITY requests per RATE_LIMIT_WINDOW_MS; with Retry-After'),
};
export const publishDocs = { tags: ['publish'], security: publishSecurity };

/**
 * What every publish route shares. `publishOnce`: answers with the event id of the record, which
 * is the already consumed first one when this replica consumed that message id of the channel
 * within the dedup window (a retry whose first attempt did land: nothing is written again), else
 * the one written now, once the bus acknowledged it. `guarded(kind, param)`: the preHandlers
 * (per-IP rate limit, the right to publish to the channel named by path parameter `param`,
 * per-identity rate limit).
 */
export function publishing(app: FastifyInstance) {
  const publishOnce = async (channel: string, type: string, messageId: string | undefined, record: () => OutgoingRecord): Promise<string> => {
    const first = messageId === undefined ? undefined : app.dispatcher.firstRecordOf(channel, type, messageId);
    if (first !== undefined) return app.eventIdFor({ topic: first.topic, partition: first.partition, offset: String(first.offset) });
    return app.eventIdFor(await app.bus.publish(record()));
  };
  const guarded = (kind: string, param: string) => [app.publishRateLimit.perIp, app.authorizePublishing(kind, { param }), app.publishRateLimit.perIdentity];
  return { publishOnce, guarded };
}

/**
 * `POST /streams/<kind>/:channel/<type>` for every event type a kind's declaration lets publish,
 * its body the type's schema. (The built-ins publish through their own routes: routes/built-in/.)
 */
const publishRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { publishOnce, guarded } = publishing(app);
  const authReplies = publishAuthReplies;
  const docs = publishDocs;
  for (const kind of app.channels.kinds) for (const type of kind.publishable) registerPublish(kind, type);

  function registerPublish(kind: ChannelKind, typeName: string): void {
    const type = kind.eventTypes.get(typeName)!;
    app.post(
      `/streams/${kind.name}/:channel/${typeName}`,
      {
        schema: {
          summary: `Publish a ${typeName} event to a ${kind.name} channel`,
          description:
            `${type.description ?? ''} The body is the record value (${kind.topic} topic, key = the channel, header ${kind.eventTypeHeader}: ${typeName}). ` +
            'A string `id` field, when the schema has one, makes retries safe: a repeat within DEDUP_WINDOW_MS is not delivered again.',
          params: ChannelParams,
          // The declared JSON Schema, validated by Fastify's Ajv like every body (no coercion, nothing removed).
          body: type.schema,
          response: { 202: AcceptedReply, ...errorReplies, ...authReplies, ...shardReplies },
          ...docs,
        },
        // Sharded: a publish with an `id` is answered from the owning group's dedup (its repeat's eventId).
        preHandler: [shardGuard(kind.name, 'channel', hasBodyId), ...guarded(kind.name, 'channel')],
      },
      async (request, reply) => {
        const { channel } = request.params as { channel: string };
        const value = request.body as Record<string, unknown>;
        const messageId = typeof value.id === 'string' ? value.id : undefined;
        const eventId = await publishOnce(channelKey(kind.name, channel), typeName, messageId, () => ({
          topic: kind.topic,
          key: channel,
          value: JSON.stringify(value),
          headers: { [kind.eventTypeHeader]: typeName },
        }));
        return reply.code(202).send({ eventId });
      },
    );
  }
};

export default publishRoutes;
