import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@fastify/type-provider-typebox';
import {
  ChatText,
  ChatUser,
  Currency,
  MessageId,
  Price,
  chatDeleteRecord,
  chatMessageRecord,
  priceUpdateRecord,
} from '../src/events.ts';
import { AcceptedReply, authReplies as refusals, errorReplies, errorReply, publishSecurity, RoomParams, SymbolParams } from './schemas.ts';

/** Publishing is authenticated (token or service API key) and rate-limited per IP and identity. */
const authReplies = {
  ...refusals,
  429: errorReply('Over PUBLISH_RATE_PER_IP or PUBLISH_RATE_PER_IDENTITY requests per RATE_LIMIT_WINDOW_MS; with Retry-After'),
};
const docs = { tags: ['publish'], security: publishSecurity };

/** Publishing: each answers 202 only once the bus has acknowledged the record. */
const publishRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const topics = { chat: app.config.chatTopic, ticker: app.config.tickerTopic };
  const guarded = (kind: 'room' | 'ticker') => [
    app.publishRateLimit.perIp,
    app.authorizePublishing(kind),
    app.publishRateLimit.perIdentity,
  ];

  app.post(
    '/rooms/:room/messages',
    {
      schema: {
        summary: 'Post a chat message to a room',
        description: 'With auth on, `user` is taken from the token (`name`, else `sub`) and the body\'s `user` is ignored.',
        params: RoomParams,
        body: Type.Object({ user: Type.Optional(ChatUser), text: ChatText }, { additionalProperties: false }),
        response: { 202: AcceptedReply, ...errorReplies, ...authReplies },
        ...docs,
      },
      preHandler: guarded('room'),
    },
    async (request, reply) => {
      // Nobody posts as someone else: a token's identity replaces whatever the body claims.
      const user = request.publisher?.displayName ?? request.body.user;
      if (user === undefined) {
        return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: "body must have required property 'user'" });
      }
      const { messageId, record } = chatMessageRecord(topics, request.params.room, { user, text: request.body.text });
      const position = await app.bus.publish(record);
      return reply.code(202).send({ id: messageId, eventId: app.eventIdFor(position) });
    },
  );

  app.delete(
    '/rooms/:room/messages/:id',
    {
      schema: {
        summary: 'Delete a chat message (publishes a `delete` event)',
        params: Type.Object({ room: RoomParams.properties.room, id: MessageId }),
        response: { 202: AcceptedReply, ...errorReplies, ...authReplies },
        ...docs,
      },
      preHandler: guarded('room'),
    },
    async (request, reply) => {
      const position = await app.bus.publish(chatDeleteRecord(topics, request.params.room, request.params.id));
      return reply.code(202).send({ id: request.params.id, eventId: app.eventIdFor(position) });
    },
  );

  app.post(
    '/tickers/:symbol/prices',
    {
      schema: {
        summary: 'Publish a price for a ticker symbol',
        params: SymbolParams,
        body: Type.Object({ price: Price, currency: Currency }, { additionalProperties: false }),
        response: { 202: AcceptedReply, ...errorReplies, ...authReplies },
        ...docs,
      },
      preHandler: guarded('ticker'),
    },
    async (request, reply) => {
      const position = await app.bus.publish(priceUpdateRecord(topics, request.params.symbol, request.body));
      return reply.code(202).send({ eventId: app.eventIdFor(position) });
    },
  );
};

export default publishRoutes;
