/**
 * "The talk's architecture", kept as a reference server for the benchmark: Fastify +
 * fastify-sse-v2, one EventIterator and one EventEmitter listener per connection, and each
 * event serialised again for every subscriber (fastify-sse-v2 does that when handed objects).
 * Same URL shapes and JSON as the gateway. The emitter uses one event name per room, which is
 * kinder to this baseline than a single shared event with a filter per connection.
 * Env: PORT, HOST.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import { FastifySSEPlugin } from 'fastify-sse-v2';
import { EventIterator } from 'event-iterator';

interface ChatMessage {
  room: string;
  id: string;
  user: string;
  text: string;
  ts: number;
}

const emitter = new EventEmitter();
emitter.setMaxListeners(0);
let sequence = 0;

const app = Fastify({ logger: { level: 'warn' } });
await app.register(FastifySSEPlugin);

app.post<{ Params: { room: string }; Body: { user: string; text: string } }>('/rooms/:room/messages', async (request, reply) => {
  const message: ChatMessage = {
    room: request.params.room,
    id: randomUUID(),
    user: request.body.user,
    text: request.body.text,
    ts: Date.now(),
  };
  sequence += 1;
  emitter.emit(`room:${message.room}`, { message, eventId: String(sequence) });
  return reply.code(202).send({ id: message.id, eventId: String(sequence) });
});

app.get<{ Params: { room: string } }>('/events/:room', (request, reply) => {
  const channel = `room:${request.params.room}`;
  reply.sse(
    new EventIterator<{ id: string; event: string; data: string }>(({ push, stop }) => {
      const listener = ({ message, eventId }: { message: ChatMessage; eventId: string }): void => {
        push({ id: eventId, event: 'message', data: JSON.stringify(message) });
      };
      emitter.on(channel, listener);
      request.raw.on('close', stop);
      return () => emitter.off(channel, listener);
    }),
  );
});

await app.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? '127.0.0.1' });
