import fp from 'fastify-plugin';
import { FastifySSEPlugin } from 'fastify-sse-v2';
import { EventIterator } from 'event-iterator';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { bodyFrame } from '../src/sse-frame.ts';
import { Subscription, type ChannelRef, type StartFrom, type SubscriptionContext } from '../src/subscription.ts';

declare module 'fastify' {
  interface FastifyReply {
    /**
     * Turns this reply into an event stream of the given channels until the client leaves,
     * starting where the request says (Last-Event-ID, `?lastEventId=`, `?since=`), else live.
     */
    streamChannels(channels: readonly ChannelRef[], options?: StreamOptions): FastifyReply;
  }
  interface FastifyInstance {
    openStreamCount(): number;
    streamStats: StreamStats;
  }
}

export interface StreamOptions {
  /** When the stream's authorisation ends (ms since the epoch): it gets `auth_expired` and is ended. */
  endAt?: number | null;
}

export interface StreamStats {
  opened: number;
  closed: number;
  framesWritten: number;
  bytesWritten: number;
  /** Streams ended because the client could not keep up. */
  slowClientDisconnects: number;
  resumesFromMemory: number;
  resumesFromKafka: number;
  resets: number;
  /** Open streams by kind. */
  open: { room: number; ticker: number; multi: number };
}

interface OpenStream {
  end(lastFrame?: Buffer): void;
  endAt: number | null;
}

/** Frames waiting in one connection's queue before it counts as stuck and is ended. */
const MAX_QUEUED_FRAMES = 10_000;
const EXPIRY_CHECK_INTERVAL_MS = 1000;

/** `?since=` is epoch milliseconds or an ISO-8601 time; anything else was refused by the schema. */
export function parseSince(value: string): number {
  return /^\d+$/.test(value) ? Number(value) : Date.parse(value);
}

/** Where a stream starts: the header EventSource resends on reconnect wins over the URL's. */
function startFrom(request: FastifyRequest): StartFrom {
  const header = request.headers['last-event-id'];
  const query = request.query as { lastEventId?: string; since?: string } | undefined;
  const id = (Array.isArray(header) ? header[0] : header) ?? query?.lastEventId;
  if (id !== undefined && id !== '') return { kind: 'cursor', id };
  if (query?.since !== undefined) return { kind: 'time', timestamp: parseSince(query.since) };
  return { kind: 'live' };
}

/**
 * Event streams. fastify-sse-v2 opens the stream (status, headers including CORS, `retry:`);
 * after that each connection's EventIterator carries frames that were built once per event
 * and are written as they are (fastify-sse-v2 would serialise every event again for every
 * subscriber). A Subscription decides what the stream is sent: replay, then live. The
 * subscription ends the moment the client goes away (fastify-sse-v2 does not end iterators
 * itself), and a client too slow to keep its socket buffer under the configured bound is cut
 * off: it reconnects and resumes from its last id.
 */
export default fp(
  async (app) => {
    const { config } = app;
    const openStreams = new Set<OpenStream>();
    const expiring = new Set<OpenStream>();
    const stats: StreamStats = {
      opened: 0,
      closed: 0,
      framesWritten: 0,
      bytesWritten: 0,
      slowClientDisconnects: 0,
      resumesFromMemory: 0,
      resumesFromKafka: 0,
      resets: 0,
      open: { room: 0, ticker: 0, multi: 0 },
    };
    const overflowFrame = bodyFrame('overflow', '{"reason":"client too slow; reconnect to resume"}');
    const authExpiredFrame = bodyFrame('auth_expired', '{"reason":"token expired; reconnect with a fresh token"}');
    const context: SubscriptionContext = {
      hub: app.hub,
      history: app.history,
      dispatcher: app.dispatcher,
      codec: app.cursorCodec,
      rangeReader: app.bus.rangeReader,
      maxReplayEvents: config.resumeMaxEvents,
      maxPendingEvents: MAX_QUEUED_FRAMES,
      lagThresholdMs: config.lagThresholdMs,
    };

    await app.register(FastifySSEPlugin, { retryDelay: config.sseRetryMs });

    app.decorate('openStreamCount', () => openStreams.size);
    app.decorate('streamStats', stats);

    // One timer for every stream whose authorisation expires, not one per stream.
    const expiryTimer = setInterval(() => {
      const now = Date.now();
      for (const stream of expiring) if (stream.endAt !== null && stream.endAt <= now) stream.end(authExpiredFrame);
    }, EXPIRY_CHECK_INTERVAL_MS);
    expiryTimer.unref();

    app.decorateReply('streamChannels', function (this: FastifyReply, channels: readonly ChannelRef[], options: StreamOptions = {}) {
      const reply = this;
      const { request } = reply;
      const socket = reply.raw;
      const kind = channels.length > 1 ? 'multi' : (channels[0]?.kind ?? 'room');
      const openedAt = Date.now();
      let push: (frame: Buffer) => void = () => {};
      let stopQueue: () => void = () => {};
      const frames = new EventIterator<Buffer>(
        (queue) => {
          push = queue.push;
          stopQueue = queue.stop;
          queue.on('highWater', () => stream.end(overflowFrame));
        },
        { highWaterMark: MAX_QUEUED_FRAMES },
      );
      const subscription = new Subscription(context, channels, {
        write: (frame) => push(frame),
        end: (lastFrame) => {
          if (lastFrame !== undefined) push(lastFrame);
          // Let the queue drain what is already in it, then end.
          stopQueue();
        },
      });
      const stream: OpenStream = {
        endAt: options.endAt ?? null,
        end: (lastFrame) => {
          if (!openStreams.delete(stream)) return;
          expiring.delete(stream);
          stats.closed += 1;
          stats.open[kind] -= 1;
          subscription.close();
          stopQueue();
          reply.sseContext?.source.end();
          if (!socket.destroyed) {
            if (lastFrame !== undefined) socket.write(lastFrame);
            socket.end();
          }
          request.log.debug({ channels: channels.length, kind, durationMs: Date.now() - openedAt }, 'stream closed');
        },
      };
      openStreams.add(stream);
      if (stream.endAt !== null) expiring.add(stream);
      stats.opened += 1;
      stats.open[kind] += 1;
      socket.on('close', () => stream.end());

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
            stream.end(overflowFrame);
            return;
          }
        }
        // The subscription ended the stream (replay page full, or too far behind): client resumes.
        stream.end();
      })();

      const from = startFrom(request);
      subscription.start(from).then(
        (outcome) => {
          if (outcome.resumedFrom === 'memory') stats.resumesFromMemory += 1;
          if (outcome.resumedFrom === 'kafka') stats.resumesFromKafka += 1;
          stats.resets += outcome.resets.length;
          request.log.debug({ channels: channels.length, kind, start: from.kind, ...outcome }, 'stream opened');
        },
        (error: unknown) => {
          request.log.error({ err: error }, 'stream failed to start');
          stream.end();
        },
      );
      return reply;
    });

    // Open streams would hold app.close() forever; end them first (clients reconnect elsewhere).
    app.addHook('preClose', async () => {
      clearInterval(expiryTimer);
      for (const stream of [...openStreams]) stream.end();
    });
  },
  { name: 'event-stream', fastify: '5.x', dependencies: ['gateway'] },
);
