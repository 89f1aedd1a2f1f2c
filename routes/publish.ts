import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@fastify/type-provider-typebox';
import {
  ChatText,
  ChatUser,
  Currency,
  MESSAGE_ID_PATTERN,
  MessageId,
  Price,
  channelKey,
  chatDeleteRecord,
  chatMessageRecord,
  priceUpdateRecord,
  type EventType,
} from '../src/events.ts';
import type { OutgoingRecord } from '../src/bus/types.ts';
import { AcceptedReply, authReplies as refusals, errorReplies, errorReply, publishSecurity, RoomParams, SymbolParams } from './schemas.ts';

/** Publishing is authenticated (token or service API key) and rate-limited per IP and identity. */
const authReplies = {
  ...refusals,
  429: errorReply('Over PUBLISH_RATE_PER_IP or PUBLISH_RATE_PER_IDENTITY requests per RATE_LIMIT_WINDOW_MS; with Retry-After'),
};
const docs = { tags: ['publish'], security: publishSecurity };

const PublisherId = Type.Optional(Type.String({
  pattern: MESSAGE_ID_PATTERN,
  minLength: 1,
  maxLength: 64,
  description:
    'Your id for this message (a UUID is a good choice). Send the same id when you retry after a 503 or a lost answer: ' +
    'a repeat of an id already seen in the room within `DEDUP_WINDOW_MS` is not delivered again (README, "Idempotent publishing"). ' +
    'Without it the gateway picks a new one, and a retry is a new message.',
}));

/**
 * Publishing: each answers 202 only once the bus has acknowledged the record, or at once with
 * the first record's event id when this replica already consumed that message id within the
 * dedup window (a retry whose first attempt did land: nothing is written again).
 */
const publishRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const topics = { chat: app.config.chatTopic, ticker: app.config.tickerTopic };
  /** The event id of the record to answer with: the already consumed first one, else the one written now. */
  const publishOnce = async (channel: string, type: EventType, messageId: string | undefined, record: () => OutgoingRecord): Promise<string> => {
    const first = messageId === undefined ? undefined : app.dispatcher.firstRecordOf(channel, type, messageId);
    if (first !== undefined) return app.eventIdFor({ topic: first.topic, partition: first.partition, offset: String(first.offset) });
    return app.eventIdFor(await app.bus.publish(record()));
  };
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
        body: Type.Object({ id: PublisherId, user: Type.Optional(ChatUser), text: ChatText }, { additionalProperties: false }),
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
      const { room } = request.params;
      const { messageId, record } = chatMessageRecord(topics, room, { id: request.body.id, user, text: request.body.text });
      const eventId = await publishOnce(channelKey('room', room), 'message', request.body.id, () => record);
      return reply.code(202).send({ id: messageId, eventId });
    },
  );

  app.delete(
    '/rooms/:room/messages/:id',
    {
      schema: {
        summary: 'Delete a chat message (publishes a `delete` event)',
        description: 'Safe to retry: a repeat within `DEDUP_WINDOW_MS` of a delete already seen is not delivered again.',
        params: Type.Object({ room: RoomParams.properties.room, id: MessageId }),
        response: { 202: AcceptedReply, ...errorReplies, ...authReplies },
        ...docs,
      },
      preHandler: guarded('room'),
    },
    async (request, reply) => {
      const { room, id } = request.params;
      const eventId = await publishOnce(channelKey('room', room), 'delete', id, () => chatDeleteRecord(topics, room, id));
      return reply.code(202).send({ id, eventId });
    },
  );

  app.post(
    '/tickers/:symbol/prices',
    {
      schema: {
        summary: 'Publish a price for a ticker symbol',
        params: SymbolParams,
        body: Type.Object({ id: PublisherId, price: Price, currency: Currency }, { additionalProperties: false }),
        response: { 202: AcceptedReply, ...errorReplies, ...authReplies },
        ...docs,
      },
      preHandler: guarded('ticker'),
    },
    async (request, reply) => {
      const { symbol } = request.params;
      const eventId = await publishOnce(channelKey('ticker', symbol), 'price_update', request.body.id, () => priceUpdateRecord(topics, symbol, request.body));
      return reply.code(202).send({ eventId });
    },
  );
};

export default publishRoutes;
