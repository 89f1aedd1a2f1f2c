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
import { eventIdOf } from '../src/event-id.ts';
import { AcceptedReply, errorReplies, RoomParams, SymbolParams } from './schemas.ts';

/** Publishing: each answers 202 only once the bus has acknowledged the record. */
const publishRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const topics = { chat: app.config.chatTopic, ticker: app.config.tickerTopic };

  app.post(
    '/rooms/:room/messages',
    {
      schema: {
        summary: 'Post a chat message to a room',
        params: RoomParams,
        body: Type.Object({ user: ChatUser, text: ChatText }, { additionalProperties: false }),
        response: { 202: AcceptedReply, ...errorReplies },
      },
    },
    async (request, reply) => {
      const { messageId, record } = chatMessageRecord(topics, request.params.room, request.body);
      const position = await app.bus.publish(record);
      return reply.code(202).send({ id: messageId, eventId: eventIdOf(position) });
    },
  );

  app.delete(
    '/rooms/:room/messages/:id',
    {
      schema: {
        summary: 'Delete a chat message (publishes a `delete` event)',
        params: Type.Object({ room: RoomParams.properties.room, id: MessageId }),
        response: { 202: AcceptedReply, ...errorReplies },
      },
    },
    async (request, reply) => {
      const position = await app.bus.publish(chatDeleteRecord(topics, request.params.room, request.params.id));
      return reply.code(202).send({ id: request.params.id, eventId: eventIdOf(position) });
    },
  );

  app.post(
    '/tickers/:symbol/prices',
    {
      schema: {
        summary: 'Publish a price for a ticker symbol',
        params: SymbolParams,
        body: Type.Object({ price: Price, currency: Currency }, { additionalProperties: false }),
        response: { 202: AcceptedReply, ...errorReplies },
      },
    },
    async (request, reply) => {
      const position = await app.bus.publish(priceUpdateRecord(topics, request.params.symbol, request.body));
      return reply.code(202).send({ eventId: eventIdOf(position) });
    },
  );
};

export default publishRoutes;
