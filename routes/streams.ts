import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ChannelName } from '../src/channels/contract.ts';
import { MAX_CURSOR_LENGTH } from '../src/connection/cursor.ts';
import type { ChannelRef } from '../src/connection/subscription.ts';
import { parseSince } from '../plugins/event-stream.ts';
import { httpError } from '../plugins/errors.ts';
import { streamReplies, streamSecurity } from './schemas.ts';
import type { ChannelKind } from '../src/channels/kind.ts';
import { servedHere, shardReplies } from './shard-guard.ts';
import { isPresentableName, type PresenceIdentity } from '../src/presence/statement.ts';

const ResumeQuery = {
  lastEventId: Type.Optional(
    Type.String({ maxLength: MAX_CURSOR_LENGTH, description: 'Resume after this event id (the Last-Event-ID header wins when both are sent)' }),
  ),
  since: Type.Optional(
    Type.String({
      pattern: '^(\\d{1,15}|\\d{4}-\\d{2}-\\d{2}(T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,9})?)?(Z|[+-]\\d{2}:?\\d{2})?)?)$',
      description: 'Start at this time: epoch milliseconds or ISO-8601',
    }),
  ),
  name: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 64,
      description: "With auth off: the name this stream is listed under in its rooms' presence (marked `verified: false`); ignored with auth on (the token's `name` is used)",
    }),
  ),
};

const STREAM_DESCRIPTION =
  'Server-Sent Events. `id:` is an opaque resume cursor (send it back as Last-Event-ID). ' +
  'Besides the channel events: `position` (an `id:` with no channel event), `reset` {reason} when the requested position cannot be honoured ' +
  '(reload state; the stream continues live), `lag` {behindMs} and `live` around a long replay, ' +
  '`overflow` before a too-slow client is disconnected, `auth_expired` when the token expires or the stream reaches MAX_STREAM_LIFETIME_MS, ' +
  '`unavailable` {reason, retryMs} when this replica cannot take the stream now (it ends; EventSource reconnects). ' +
  '`presence` (rooms, and kinds with `presence` on): who is in the channel, a snapshot first, then joins and leaves (no `id:`; `?name=` names the stream with auth off). ' +
  'The 200 response lists every event with its data schema. With auth on, a token (Authorization: Bearer, ' +
  'the AUTH_COOKIE cookie or `?token=`) is needed unless every channel is public (PUBLIC_ROOMS, PUBLIC_TICKERS, a declared kind\'s `access.public`).';

/**
 * Checks the start time and `?name=`, then (sharded) that the channels live here, then the
 * caller's right to every channel (401/403), then streams until the grant expires. Its
 * presence identity: the token's (`sub`, `name`), else with auth off the `?name=` it gives
 * itself (unverified), else none (anonymous).
 */
async function openStream(request: FastifyRequest, reply: FastifyReply, channels: ChannelRef[], since: string | undefined, name: string | undefined) {
  if (since !== undefined && !Number.isFinite(parseSince(since))) throw httpError(400, 'querystring/since is not a valid time');
  if (name !== undefined && !isPresentableName(name)) throw httpError(400, 'querystring/name must be 1 to 64 printable characters, with plain spaces only between words');
  if (!servedHere(request, reply, channels, { stream: true })) return reply;
  const grant = await request.authorizeSubscription(channels);
  let identity: PresenceIdentity | null = null;
  if (grant.identity !== null) identity = { sub: grant.identity, name: grant.displayName ?? grant.identity, verified: true };
  else if (name !== undefined && !request.server.authEnabled) identity = { sub: null, name, verified: false };
  return reply.streamChannels(channels, { endAt: grant.expiresAt, identity });
}

const describeEvents = (kind: ChannelKind) =>
  [...kind.eventTypes.values()].map((type) => `\`${type.name}\` {${[kind.name, ...type.fields, 'ts'].join(',')}}`).join(', ');

/** `GET path`: the stream of one channel of `kind`, named by the path parameter `param`. */
export function channelStream(app: FastifyInstance, path: string, kind: ChannelKind, param: string, summary: string): void {
  app.withTypeProvider<TypeBoxTypeProvider>().get(
    path,
    {
      schema: {
        summary,
        description: `${STREAM_DESCRIPTION} Events: ${describeEvents(kind)}.`,
        params: Type.Object({ [param]: ChannelName }),
        querystring: Type.Object(ResumeQuery),
        response: { ...streamReplies([kind]), ...shardReplies },
        tags: ['streams'],
        security: streamSecurity,
      },
    },
    async (request, reply) => {
      const name = (request.params as Record<string, string>)[param]!;
      return openStream(request, reply, [{ kind: kind.name, name }], request.query.since, request.query.name);
    },
  );
}

/** Every kind's channels at /streams/<kind>/:channel, and several channels of any kinds at /events. */
const streamRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const kinds = app.channels.kinds;
  for (const kind of kinds) channelStream(app, `/streams/${kind.name}/:channel`, kind, 'channel', `${kind.description} (one ${kind.name} channel)`);

  app.get(
    '/events',
    {
      schema: {
        summary: 'Several channels of any kinds on one connection',
        description: `${STREAM_DESCRIPTION} \`?room=a&room=b&ticker=DOGE\` (one parameter per kind: ${kinds.map((kind) => `\`${kind.name}\``).join(', ')}): the events of every channel named, each with its channel in the data; one id resumes them all.`,
        querystring: Type.Object({
          ...Object.fromEntries(kinds.map((kind) => [kind.name, Type.Optional(Type.Array(ChannelName, { maxItems: 1000 }))])),
          ...ResumeQuery,
        }),
        response: { ...streamReplies(kinds), ...shardReplies },
        tags: ['streams'],
        security: streamSecurity,
      },
    },
    async (request, reply) => {
      const query = request.query as Record<string, string[] | string | undefined>;
      const channels: ChannelRef[] = kinds.flatMap((kind) => {
        const names = query[kind.name];
        return Array.isArray(names) ? [...new Set(names)].map((name) => ({ kind: kind.name, name })) : [];
      });
      if (channels.length === 0) throw httpError(400, `name at least one channel: /events?room=a&ticker=B (kinds: ${kinds.map((kind) => kind.name).join(', ')})`);
      if (channels.length > app.config.maxChannelsPerStream) {
        throw httpError(400, `at most ${app.config.maxChannelsPerStream} channels per stream, got ${channels.length}`);
      }
      return openStream(request, reply, channels, typeof query.since === 'string' ? query.since : undefined, typeof query.name === 'string' ? query.name : undefined);
    },
  );
};

export default streamRoutes;
