import fp from 'fastify-plugin';
import { FastifySSEPlugin } from 'fastify-sse-v2';
import { EventIterator } from 'event-iterator';
import type { FastifyReply } from 'fastify';
import { eventFrame } from '../src/sse-frame.ts';

declare module 'fastify' {
  interface FastifyReply {
    /** Turns this reply into an event stream of the given hub channels until the client leaves. */
    streamChannels(channels: readonly string[]): FastifyReply;
  }
  interface FastifyInstance {
    openStreamCount(): number;
    streamStats: StreamStats;
  }
}

export interface StreamStats {
  opened: number;
  closed: number;
  framesWritten: number;
  bytesWritten: number;
  /** Streams ended because the client could not keep up. */
  slowClientDisconnects: number;
}

/** Frames waiting in one connection's queue before it counts as stuck and is ended. */
const MAX_QUEUED_FRAMES = 10_000;

/**
 * Event streams. fastify-sse-v2 opens the stream (status, headers including CORS, `retry:`);
 * after that each connection's EventIterator carries the hub's frames, which are built once
 * per event and written as they are: fastify-sse-v2 would serialise every event again for
 * every subscriber. The subscription ends the moment the client goes away (fastify-sse-v2
 * does not end iterators itself), and a client too slow to keep its socket buffer under the
 * configured bound is cut off: it reconnects and resumes from its last id.
 */
export default fp(
  async (app) => {
    const { config, hub } = app;
    const openStreams = new Set<() => void>();
    const overflowFrame = eventFrame({ event: 'overflow', data: '{"reason":"client too slow; reconnect to resume"}' });

    await app.register(FastifySSEPlugin, { retryDelay: config.sseRetryMs });

    const stats: StreamStats = { opened: 0, closed: 0, framesWritten: 0, bytesWritten: 0, slowClientDisconnects: 0 };
    app.decorate('openStreamCount', () => openStreams.size);
    app.decorate('streamStats', stats);

    app.decorateReply('streamChannels', function (this: FastifyReply, channels: readonly string[]) {
      const reply = this;
      const { request } = reply;
      const socket = reply.raw;
      let stopStream: () => void = () => {};
      const frames = new EventIterator<Buffer>(
        ({ push, stop, on }) => {
          stopStream = stop;
          on('highWater', () => end(overflowFrame));
          const unsubscribes = channels.map((channel) => hub.subscribe(channel, { deliver: push }));
          return () => {
            for (const unsubscribe of unsubscribes) unsubscribe();
          };
        },
        { highWaterMark: MAX_QUEUED_FRAMES },
      );
      const end = (lastFrame?: Buffer): void => {
        if (!openStreams.delete(end)) return;
        stats.closed += 1;
        stopStream();
        reply.sseContext?.source.end();
        if (!socket.destroyed) {
          if (lastFrame !== undefined) socket.write(lastFrame);
          socket.end();
        }
      };
      openStreams.add(end);
      stats.opened += 1;
      socket.on('close', () => end());

      reply.header('X-Accel-Buffering', 'no');
      reply.sse({ comment: 'connected' });

      void (async () => {
        for await (const frame of frames) {
          if (socket.destroyed) break;
          socket.write(frame);
          stats.framesWritten += 1;
          stats.bytesWritten += frame.length;
          if (socket.writableLength > config.streamMaxBufferedBytes) {
            stats.slowClientDisconnects += 1;
            request.log.info({ buffered: socket.writableLength }, 'ending the stream of a client too slow to keep up');
            end(overflowFrame);
            break;
          }
        }
      })();
      return reply;
    });

    // Open streams would hold app.close() forever; end them first (clients reconnect elsewhere).
    app.addHook('preClose', async () => {
      for (const end of [...openStreams]) end();
    });
  },
  { name: 'event-stream', fastify: '5.x', dependencies: ['gateway'] },
);
