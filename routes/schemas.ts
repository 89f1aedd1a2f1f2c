import { Type } from '@fastify/type-provider-typebox';
import { ChannelName } from '../src/events.ts';

/** Reply and parameter schemas shared by several routes. */

export const ErrorReply = Type.Object(
  { statusCode: Type.Integer(), error: Type.String(), message: Type.String() },
  { $id: 'ErrorReply', description: 'Every 4xx/5xx answer' },
);

export const AcceptedReply = Type.Object({
  id: Type.Optional(Type.String({ description: 'The chat message id (for DELETE)' })),
  eventId: Type.String({ description: 'The SSE id the event will carry' }),
});

export const RoomParams = Type.Object({ room: ChannelName });
export const SymbolParams = Type.Object({ symbol: ChannelName });

export const errorReplies = {
  400: ErrorReply,
  413: ErrorReply,
  415: ErrorReply,
  503: ErrorReply,
};

export const eventStreamReply = {
  200: {
    description: 'A text/event-stream that stays open',
    content: { 'text/event-stream': { schema: Type.String() } },
  },
  400: ErrorReply,
};
