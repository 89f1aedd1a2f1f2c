import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@fastify/type-provider-typebox';
import { ChannelName } from '../src/channels/contract.ts';
import { MAX_CURSOR_LENGTH } from '../src/connection/cursor.ts';
import type { ChannelRef } from '../src/connection/subscription.ts';
import { parseSince } from '../plugins/event-stream.ts';
import { httpError } from '../plugins/errors.ts';
import { RoomParams, streamReplies, streamSecurity, SymbolParams } from './schemas.ts';

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
};

const STREAM_DESCRIPTION =
  'Server-Sent Events. `id:` is an opaque resume cursor (send it back as Last-Event-ID). ' +
  'Besides the channel events: `position` (an `id:` with no channel event), `reset` {reason} when the requested position cannot be honoured ' +
  '(reload state; the stream continues live), `lag` {behindMs} and `live` around a long replay, ' +
  '`overflow` before a too-slow client is disconnected, `auth_expired` when the token expires or the stream reaches MAX_STREAM_LIFETIME_MS, ' +
  '`unavailable` {reason, retryMs} when this replica cannot take the stream now (it ends; EventSource reconnects). ' +
  'The 200 response lists every event with its data schema. With auth on, a token (Authorization: Bearer, ' +
  'the AUTH_COOKIE cookie or `?token=`) is needed unless every channel is public (PUBLIC_ROOMS, PUBLIC_TICKERS).';

const eventRoutes: FastifyPluginAsyncTypebox = async (app) => {
  /** Checks the start time, then the caller's right to every channel (401/403), then streams until the grant expires. */
  const openStream = async (request: FastifyRequest, reply: FastifyReply, channels: ChannelRef[], since: string | undefined) => {
    if (since !== undefined && !Number.isFinite(parseSince(since))) throw httpError(400, 'querystring/since is not a valid time');
    const grant = await request.authorizeSubscription(channels);
    return reply.streamChannels(channels, { endAt: grant.expiresAt });
  };

  app.get(
    '/events/:room',
    {
      schema: {
        summary: "A room's chat events",
        description: `${STREAM_DESCRIPTION} Events: \`message\` {room,id,user,text,ts}, \`delete\` {room,id,ts}.`,
        params: RoomParams,
        querystring: Type.Object(ResumeQuery),
        response: streamReplies(['room']),
        tags: ['streams'],
        security: streamSecurity,
      },
    },
    async (request, reply) => openStream(request, reply, [{ kind: 'room', name: request.params.room }], request.query.since),
  );

  app.get(
    '/tickers/:symbol/events',
    {
      schema: {
        summary: "A ticker symbol's price updates",
        description: `${STREAM_DESCRIPTION} Events: \`price_update\` {ticker,price,currency,ts}.`,
        params: SymbolParams,
        querystring: Type.Object(ResumeQuery),
        response: streamReplies(['ticker']),
        tags: ['streams'],
        security: streamSecurity,
      },
    },
    async (request, reply) => openStream(request, reply, [{ kind: 'ticker', name: request.params.symbol }], request.query.since),
  );

  app.get(
    '/events',
    {
      schema: {
        summary: 'Several rooms and tickers on one connection',
        description: `${STREAM_DESCRIPTION} \`?room=a&room=b&ticker=DOGE\`: the events of every channel named, each with its channel in the data; one id resumes them all.`,
        querystring: Type.Object({
          room: Type.Optional(Type.Array(ChannelName, { maxItems: 1000 })),
          ticker: Type.Optional(Type.Array(ChannelName, { maxItems: 1000 })),
          ...ResumeQuery,
        }),
        response: streamReplies(['room', 'ticker']),
        tags: ['streams'],
        security: streamSecurity,
      },
    },
    async (request, reply) => {
      const { room = [], ticker = [], since } = request.query;
      const channels: ChannelRef[] = [
        ...[...new Set(room)].map((name) => ({ kind: 'room' as const, name })),
        ...[...new Set(ticker)].map((name) => ({ kind: 'ticker' as const, name })),
      ];
      if (channels.length === 0) throw httpError(400, 'name at least one room or ticker: /events?room=a&ticker=B');
      if (channels.length > app.config.maxChannelsPerStream) {
        throw httpError(400, `at most ${app.config.maxChannelsPerStream} rooms and tickers per stream, got ${channels.length}`);
      }
      return openStream(request, reply, channels, since);
    },
  );
};

export default eventRoutes;
