import type { Socket } from 'node:net';
import fp from 'fastify-plugin';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { bodyFrame, commentFrame, retryFrame } from '../src/connection/sse-frame.ts';
import { httpError } from './errors.ts';
import { ReplaySlots, ReplayTurns } from '../src/connection/replay-turns.ts';
import { REPLAY_SLICE_MS, Subscription, type ChannelRef, type StartFrom, type SubscriptionContext } from '../src/connection/subscription.ts';
import { SseConnection } from '../src/connection/sse-connection.ts';
import { tooManyPositions } from '../src/connection/cursor.ts';
import type { PresenceIdentity } from '../src/presence/statement.ts';

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
  /** Who holds the stream, for the presence of its channels whose kind tracks it (README, "Presence"); null/absent: anonymous. */
  identity?: PresenceIdentity | null;
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
  /** Frames of a conflating kind (tickers) replaced by a newer event of their channel while their client was behind. */
  conflated: number;
  /** Stream requests told to come back later (`unavailable`) because the replica was at MAX_STREAMS. */
  refusedAtCapacity: number;
  /** Stream requests refused with 429 at MAX_STREAMS_PER_IP. */
  refusedPerIp: number;
  /** Stream requests told to come back later because the replica was not ready yet. */
  refusedStarting: number;
  /** Stream requests told to come back later because the replica was shutting down. */
  refusedDraining: number;
  heartbeats: number;
  /** Open streams by channel kind (its name), and `multi` for streams of several channels. */
  open: Record<string, number>;
}

interface OpenStream {
  connection: SseConnection;
  endAt: number | null;
}

const EXPIRY_CHECK_INTERVAL_MS = 1000;
/**
 * On shutdown, after the drain: how long requests still in progress get before every connection
 * is closed (an ended stream's last bytes need a moment too; see LINGER_MS in sse-connection).
 */
const CONNECTION_GRACE_MS = 2000;
/** How often, during that grace, connections that turned idle are closed. */
const IDLE_SWEEP_MS = 100;
/** How far the reconnect delays of streams refused at MAX_STREAMS are spread (past SSE_RETRY_MS). */
const CAPACITY_RETRY_SPREAD_MS = 5000;

/** Why a stream request was told to come back later (the `unavailable` event's `reason`). */
export type UnavailableReason = 'starting' | 'draining' | 'at-capacity';

/** Heartbeat timer ticks per HEARTBEAT_MS: how finely a stream's silence is measured. */
const HEARTBEAT_TICKS = 4;

const STREAM_HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-transform',
  // Proxies that buffer responses (nginx) would hold events back.
  'X-Accel-Buffering': 'no',
};

/** `?since=` is epoch milliseconds or an ISO-8601 time; anything else was refused by the schema. */
export function parseSince(value: string): number {
  return /^\d+$/.test(value) ? Number(value) : Date.parse(value);
}

/**
 * The id a stream request resumes from, if any: the header EventSource resends on reconnect
 * wins over the URL's `?lastEventId=`. An empty id is no id (EventSource sends none then, but
 * fetch-based clients send an empty header): it must not hide the URL's.
 */
export function resumeIdOf(request: FastifyRequest): string | undefined {
  const header = request.headers['last-event-id'];
  const query = request.query as { lastEventId?: string } | undefined;
  const nonEmpty = (value: string | undefined) => (value === undefined || value === '' ? undefined : value);
  return nonEmpty(Array.isArray(header) ? header[0] : header) ?? nonEmpty(query?.lastEventId);
}

/** Where a stream starts: its resume id (`resumeIdOf`), else `?since=`, else live. */
function startFrom(request: FastifyRequest): StartFrom {
  const id = resumeIdOf(request);
  if (id !== undefined) return { kind: 'cursor', id };
  const since = (request.query as { since?: string } | undefined)?.since;
  if (since !== undefined) return { kind: 'time', timestamp: parseSince(since) };
  return { kind: 'live' };
}

/**
 * Event streams. Each stream is a Subscription (what it is sent: replay, then live) writing
 * into an SseConnection (straight to the client's socket: frames built once per event or batch
 * are shared by every subscriber, with no per-connection queue, pipeline or promise). The
 * response is opened here rather than by fastify-sse-v2, whose per-connection async pipeline
 * (it-pushable, it-to-stream, a 16 KB readable) cost more memory and CPU per stream than the
 * whole rest of the stream: see docs/BENCHMARKS.md. The subscription ends the moment the client
 * goes away, and a client too slow to keep its socket buffer under the configured bound is cut
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
      conflated: 0,
      refusedAtCapacity: 0,
      refusedPerIp: 0,
      refusedStarting: 0,
      refusedDraining: 0,
      heartbeats: 0,
      open: Object.fromEntries([...app.channels.kinds.map((kind) => [kind.name, 0] as const), ['multi', 0] as const]),
    };
    const overflowFrame = bodyFrame('overflow', '{"reason":"client too slow; reconnect to resume"}');
    const authExpiredFrame = bodyFrame('auth_expired', '{"reason":"the authorisation ended (token expired, or MAX_STREAM_LIFETIME_MS); reconnect with a fresh token"}');
    const context: SubscriptionContext = {
      hub: app.hub,
      history: app.history,
      dispatcher: app.dispatcher,
      codec: app.cursorCodec,
      rangeReader: app.bus.rangeReader,
      maxReplayEvents: config.resumeMaxEvents,
      maxPendingEvents: config.streamMaxQueuedEvents,
      lagThresholdMs: config.lagThresholdMs,
      replaySlots: new ReplaySlots(config.replayMaxConcurrent),
      replayTurns: new ReplayTurns(REPLAY_SLICE_MS, undefined, config.replaySharePercent / 100),
    };

    const preamble = Buffer.concat([retryFrame(config.sseRetryMs), commentFrame('connected')]);
    // The presence plugin, when registered (before this one) and some kind tracks presence.
    const presence = app.hasDecorator('presence') ? app.presence : null;

    app.decorate('openStreamCount', () => openStreams.size);
    app.decorate('streamStats', stats);

    /**
     * A periodic timer's pass over streams in the hub's slices, never started while its previous
     * one is under way: events go first there, so under a saturated fan-out a pass takes longer,
     * and passes queued behind each other would only repeat the same work.
     */
    const onePassAtATime = (pass: (done: () => void) => void): (() => void) => {
      let running = false;
      const done = (): void => {
        running = false;
      };
      return () => {
        if (running) return;
        running = true;
        pass(done);
      };
    };

    // One timer for every stream whose authorisation expires, not one per stream. The streams of
    // a reconnect storm reach MAX_STREAM_LIFETIME_MS together: they are ended in the hub's slices.
    const endExpired = (stream: OpenStream): void => stream.connection.end(authExpiredFrame, 'auth-expired');
    const expiryPass = onePassAtATime((done) => {
      const now = Date.now();
      const due: OpenStream[] = [];
      for (const stream of expiring) if (stream.endAt !== null && stream.endAt <= now) due.push(stream);
      if (due.length === 0) done();
      else app.hub.sliced(due, endExpired, done);
    });
    const expiryTimer = setInterval(expiryPass, EXPIRY_CHECK_INTERVAL_MS);
    expiryTimer.unref();

    // One timer for all heartbeats: a comment on every stream that sent nothing for HEARTBEAT_MS.
    // It ticks HEARTBEAT_TICKS times per period, so a stream is pinged after between ¾ and all
    // of HEARTBEAT_MS of silence (one tick per period would let it stay silent for up to two).
    const heartbeat = commentFrame();
    // In the hub's slices: streams opened together fall silent together, and twenty thousand
    // heartbeat writes in one stretch would hold every live event up for a third of a second.
    const pingSilent = ({ connection }: OpenStream): void => {
      connection.idleTicks += 1;
      if (connection.idleTicks >= HEARTBEAT_TICKS) {
        // The write starts the connection's idle count again.
        connection.write(heartbeat);
        stats.heartbeats += 1;
      }
    };
    const heartbeatPass = onePassAtATime((done) => app.hub.sliced(openStreams, pingSilent, done));
    const heartbeatTimer = setInterval(heartbeatPass, Math.max(1, Math.floor(config.heartbeatMs / HEARTBEAT_TICKS)));
    heartbeatTimer.unref();

    /** Sockets corked in this turn, uncorked together once its promise jobs have run. */
    let corked: Socket[] = [];
    const uncorkAll = (): void => {
      const sockets = corked;
      corked = [];
      for (const socket of sockets) socket.uncork();
    };
    const corkUntilNextTurn = (socket: Socket): void => {
      socket.cork();
      if (corked.push(socket) === 1) setImmediate(uncorkAll);
    };

    const streamsPerIp = new Map<string, number>();
    let draining = false;
    /** Latched the first time the bus is ready: a replica still starting cannot serve a stream yet. */
    let started = false;
    const isStarted = (): boolean => started || (started = app.bus.readiness().ready);
    /** A reconnect delay spread over `spreadMs`, so clients told to go do not all return at once. */
    /** How much later than SSE_RETRY_MS a client told to come back within `windowMs` may come back, at most (ms). */
    const retrySpreadMs = (windowMs: number): number => Math.max(windowMs, 1000);
    const jitteredRetryMs = (windowMs: number): number => config.sseRetryMs + Math.floor(Math.random() * retrySpreadMs(windowMs));
    const drainRetryMs = (): number => jitteredRetryMs(config.drainWindowMs);

    /**
     * The answer to a stream request this replica cannot serve *now* (starting, draining, at its
     * stream cap). EventSource gives up for good on any answer but 200 text/event-stream
     * (WHATWG HTML, "Server-sent events": "fail the connection"), so the answer is a stream:
     * a jittered `retry:`, `event: unavailable` with the reason and the delay (for clients other
     * than EventSource; `Retry-After` says the same), then the end, on which EventSource
     * reconnects, with its Last-Event-ID, to whichever replica the load balancer picks.
     */
    const comeBackLater = (reply: FastifyReply, reason: UnavailableReason, retryMs: number): FastifyReply => {
      reply.request.log.debug({ reason, retryMs }, 'stream request told to come back later');
      const body = Buffer.concat([retryFrame(retryMs), bodyFrame('unavailable', JSON.stringify({ reason, retryMs }))]);
      return reply.code(200).headers(STREAM_HEADERS).header('Retry-After', String(Math.ceil(retryMs / 1000))).send(body);
    };

    app.decorateReply('streamChannels', function (this: FastifyReply, channels: readonly ChannelRef[], options: StreamOptions = {}) {
      const reply = this;
      const { request } = reply;
      const kind = channels.length > 1 ? 'multi' : (channels[0]?.kind ?? 'multi');
      // HEAD (a probe, a link checker): the stream's headers, no stream behind them.
      if (request.method === 'HEAD') return reply.code(200).headers(STREAM_HEADERS).send();
      // Transient conditions: a retry (here later, or on another replica) will succeed.
      if (draining) {
        stats.refusedDraining += 1;
        return comeBackLater(reply, 'draining', drainRetryMs());
      }
      if (!isStarted()) {
        stats.refusedStarting += 1;
        return comeBackLater(reply, 'starting', jitteredRetryMs(config.sseRetryMs));
      }
      // Every id this stream gets must be one a replica reads back: a stream whose ids would
      // hold more positions than an id can is refused now, not cut short at its first resume.
      // (One channel of a keyed kind follows one partition: no count needed.)
      if (channels.length !== 1 || context.dispatcher.registry.get(kind).partitioning === 'any') {
        const resumeId = resumeIdOf(request);
        const resumingFrom = resumeId === undefined ? undefined : (context.codec.decode(resumeId) ?? undefined);
        const refused = tooManyPositions(Subscription.positionsFollowed(context.dispatcher, channels, resumingFrom));
        if (refused !== null) throw httpError(400, refused);
      }
      if (openStreams.size >= config.maxStreams) {
        stats.refusedAtCapacity += 1;
        return comeBackLater(reply, 'at-capacity', jitteredRetryMs(CAPACITY_RETRY_SPREAD_MS));
      }
      // The per-address cap is the client's own doing (it holds that many streams already): a
      // 429, as for the per-identity cap, which EventSource does not retry.
      const ip = request.ip;
      const fromIp = streamsPerIp.get(ip) ?? 0;
      if (fromIp >= config.maxStreamsPerIp) {
        stats.refusedPerIp += 1;
        reply.header('Retry-After', String(Math.ceil(config.sseRetryMs / 1000)));
        throw httpError(429, `too many streams from this address (at most ${config.maxStreamsPerIp})`);
      }
      streamsPerIp.set(ip, fromIp + 1);
      // Streams are long-lived responses: no socket idle timeout (heartbeats keep proxies awake).
      request.raw.socket.setTimeout(0);
      const openedAt = Date.now();
      const connection: SseConnection = new SseConnection(reply.raw, {
        maxBufferedBytes: config.streamMaxBufferedBytes,
        stats,
        overflowFrame,
        onSlowClient: (buffered) => request.log.info({ buffered }, 'ending the stream of a client too slow to keep up'),
        onEnd: (_connection, { reason, events, bytes }) => {
          if (!openStreams.delete(stream)) return;
          const remaining = (streamsPerIp.get(ip) ?? 1) - 1;
          if (remaining > 0) streamsPerIp.set(ip, remaining);
          else streamsPerIp.delete(ip);
          expiring.delete(stream);
          stats.closed += 1;
          stats.open[kind] = (stats.open[kind] ?? 1) - 1;
          subscription.close();
          leavePresence?.();
          request.log.info({ channels: channels.length, kind, reason, durationMs: Date.now() - openedAt, events, bytes }, 'stream ended');
        },
      });
      const subscription = new Subscription(context, channels, connection);
      const stream: OpenStream = { connection, endAt: options.endAt ?? null };
      openStreams.add(stream);
      if (stream.endAt !== null) expiring.add(stream);
      stats.opened += 1;
      stats.open[kind] = (stats.open[kind] ?? 0) + 1;

      // Headers set so far (CORS, rate limits) go out with the stream's own.
      void reply.hijack();
      // The status line, the headers, the preamble and the stream's first frame (its position,
      // written once the subscription has started, usually in this turn's promise jobs) leave in
      // one write instead of two: a reconnect storm is that many fewer syscalls.
      corkUntilNextTurn(request.raw.socket);
      connection.open({ ...(reply.getHeaders() as Record<string, string | number | string[]>), ...STREAM_HEADERS }, preamble);
      // Presence before anything else: the snapshot of each channel that tracks it (no id, never replayed).
      const presenceChannels = presence === null ? [] : channels.filter((channel) => app.channels.byName(channel.kind)?.presence === true);
      const leavePresence = presence === null || presenceChannels.length === 0 ? undefined : presence.join(presenceChannels, options.identity ?? null, connection);

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
          connection.end(undefined, 'start-failed');
        },
      );
      return reply;
    });

    // Open streams would hold app.close() forever. They are ended spread over the drain window,
    // each told a jittered reconnect delay, so clients move to other replicas gradually instead of
    // all at once (and resume there by id). Then the connections left are closed, so that no
    // socket (an idle keep-alive, a half-sent request head) holds the shutdown.
    app.addHook('preClose', async () => {
      draining = true;
      clearInterval(expiryTimer);
      clearInterval(heartbeatTimer);
      // The streams ended now come back after up to this much longer than usual: presence waits for them.
      presence?.beginDrain(retrySpreadMs(config.drainWindowMs));
      await drainStreams();
      closeLeftConnections();
    });

    async function drainStreams(): Promise<void> {
      const streams = [...openStreams];
      if (streams.length === 0) return;
      app.log.info({ streams: streams.length, windowMs: config.drainWindowMs }, 'draining streams');
      // A few streams every tick, so the last ends as the window closes.
      const tickMs = 100;
      const perTick = Math.max(1, Math.ceil((streams.length * tickMs) / Math.max(config.drainWindowMs, tickMs)));
      await new Promise<void>((resolve) => {
        const endSome = (): void => {
          for (const stream of streams.splice(0, perTick)) stream.connection.end(retryFrame(drainRetryMs()), 'drain');
          if (streams.length === 0) resolve();
          else setTimeout(endSome, tickMs);
        };
        endSome();
      });
    }

    /**
     * Fastify closes the server right after the preClose hooks, and `server.close()` waits for
     * every connection, which a client may hold forever: an idle keep-alive, a connection that
     * sent nothing or half a request head (Node stops enforcing `requestTimeout` once the server
     * is closing). Idle connections are closed at once and as they turn idle; requests still in
     * progress (a publish awaiting Kafka's acknowledgement, an ended stream's last bytes) get
     * CONNECTION_GRACE_MS, then every connection is closed.
     */
    function closeLeftConnections(): void {
      const server = app.server;
      server.closeIdleConnections();
      const sweep = setInterval(() => server.closeIdleConnections(), IDLE_SWEEP_MS);
      const force = setTimeout(() => {
        clearInterval(sweep);
        server.closeAllConnections();
      }, CONNECTION_GRACE_MS);
      sweep.unref();
      force.unref();
      server.once('close', () => {
        clearInterval(sweep);
        clearTimeout(force);
      });
    }
  },
  { name: 'event-stream', fastify: '5.x', dependencies: ['gateway'] },
);
