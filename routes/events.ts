import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { channelKey } from '../src/events.ts';
import { eventStreamReply, RoomParams, SymbolParams } from './schemas.ts';

const eventRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/events/:room',
    {
      schema: {
        summary: "A room's chat events",
        description: 'Server-Sent Events: `message` {room,id,user,text,ts} and `delete` {room,id,ts}; `id:` is the event position.',
        params: RoomParams,
        response: eventStreamReply,
      },
    },
    (request, reply) => {
      reply.streamChannels([channelKey('room', request.params.room)]);
    },
  );

  app.get(
    '/tickers/:symbol/events',
    {
      schema: {
        summary: "A ticker symbol's price updates",
        description: 'Server-Sent Events: `price_update` {ticker,price,currency,ts}; `id:` is the event position.',
        params: SymbolParams,
        response: eventStreamReply,
      },
    },
    (request, reply) => {
      reply.streamChannels([channelKey('ticker', request.params.symbol)]);
    },
  );
};

export default eventRoutes;
