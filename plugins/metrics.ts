import { readdir, stat } from 'node:fs/promises';
import fp from 'fastify-plugin';
import type { onResponseHookHandler } from 'fastify';
import { Type } from 'typebox';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { BUS_CLIENT_ERROR_KINDS } from '../src/bus/types.ts';
import { errorReply, noSecurity, operatorSecurity } from '../routes/schemas.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** This app's own Prometheus registry: several apps in one process never share metrics. */
    metrics: Registry;
  }
}

const PREFIX = 'sse_gateway_';

/**
 * The routes whose answers count as publishes: those tagged `publish` in their schema (the
 * built-ins' and every declared kind's `POST /streams/<kind>/:channel/<type>`). The `route`
 * label is the URL pattern: as many values as routes, never a channel name.
 */
function isPublishRoute(route: { schema?: { tags?: readonly string[] } }): boolean {
  return route.schema?.tags?.includes('publish') === true;
}

/** Statuses that mean the request reached the bus: 202 acknowledged, 503 not (in time). */
const BUS_OUTCOME_STATUSES = new Set([202, 503]);

/**
 * prom-client default collectors whose every scrape walks every handle of the process (each
 * socket of each stream): `nodejs_active_handles*` (`process._getActiveHandles()`, grouped by
 * class name) and `nodejs_active_resources*` (a string per handle, timer and request). At
 * 11,000 streams a scrape held the event loop ~40 ms with these and `process_open_fds` (a
 * `readdirSync` of /proc/self/fd): docs/BENCHMARKS.md, "a /metrics scrape holds the event loop
 * in proportion to the number of streams". Left out: `sse_gateway_open_streams` counts streams
 * (what nearly all those handles are), `process_open_fds` (kept, read below) every socket.
 */
export const HANDLE_WALKING_DEFAULTS = ['nodejs_active_handles', 'nodejs_active_handles_total', 'nodejs_active_resources', 'nodejs_active_resources_total'];

/**
 * Open file descriptors without listing them: Linux (6.2 and later) reports their count as the
 * size of /proc/self/fd; older kernels report 0, and then the directory is listed, off the event
 * loop (the listing's fd itself not counted, as prom-client does). Null where there is no /proc.
 */
export async function openFileDescriptors(): Promise<number | null> {
  try {
    const { size } = await stat('/proc/self/fd');
    if (size > 0) return size;
    return (await readdir('/proc/self/fd')).length - 1;
  } catch {
    return null;
  }
}

/** From "instantly" to just past the longest PUBLISH_TIMEOUT_MS one would configure. */
const PUBLISH_BUCKETS = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** End-to-end: a healthy replica stays in the low tens of milliseconds; a lagging one drifts to minutes. */
const END_TO_END_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/**
 * A histogram without labels for the event path, where prom-client's own `observe` (labels
 * converted, validated and hashed on every call) would cost more than the rest of an event's
 * bookkeeping: an observation is a bucket search and three additions. Registered in a prom-client
 * registry, it is exported exactly as a prom-client histogram is (`_bucket{le}` cumulative,
 * `+Inf`, `_sum`, `_count`; all zero before the first observation).
 */
export class CountingHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly labelNames: readonly string[] = [];
  readonly #bounds: readonly number[];
  /** Observations per bucket, not cumulative; the last one is above every bound (+Inf). */
  readonly #counts: Float64Array;
  #sum = 0;
  #count = 0;
  #cleared = false;

  constructor(readonly name: string, readonly help: string, buckets: readonly number[], registry: Registry) {
    this.#bounds = [...buckets].sort((a, b) => a - b);
    this.#counts = new Float64Array(this.#bounds.length + 1);
    // The registry only calls get() (and reset()) on what it holds; the cast restates that.
    registry.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  /** `value` in the histogram's unit; it falls in the first bucket whose bound is ≥ it (Prometheus' `le`). */
  observe(value: number): void {
    const bounds = this.#bounds;
    let index = 0;
    while (index < bounds.length && value > bounds[index]!) index += 1;
    this.#counts[index]! += 1;
    this.#sum += value;
    this.#count += 1;
    this.#cleared = false;
  }

  /** As prom-client's: no series at all until the next observation (before the first one, zeros). */
  reset(): void {
    this.#counts.fill(0);
    this.#sum = 0;
    this.#count = 0;
    this.#cleared = true;
  }

  /** The shape prom-client's registry formats (what its own Histogram's get() returns). */
  get(): { name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> } {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    if (this.#cleared) return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
    let cumulative = 0;
    this.#bounds.forEach((bound, index) => {
      cumulative += this.#counts[index]!;
      values.push({ labels: { le: bound }, value: cumulative, metricName: `${this.name}_bucket` });
    });
    values.push({ labels: { le: '+Inf' }, value: this.#count, metricName: `${this.name}_bucket` });
    values.push({ labels: {}, value: this.#sum, metricName: `${this.name}_sum` });
    values.push({ labels: {}, value: this.#count, metricName: `${this.name}_count` });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

/**
 * Prometheus metrics at `GET /metrics`. Almost everything is read at scrape time from the
 * counters the gateway keeps anyway (dispatcher, stream and bus state), so the event path pays
 * nothing for metrics; only the once-per-event observer and the publish routes' onResponse hook
 * do any work per event or request. No label carries a room, symbol or client: their number is
 * unbounded.
 */
export default fp(
  async (app) => {
    const registry = new Registry();
    app.decorate('metrics', registry);
    collectDefaultMetrics({ register: registry });
    for (const name of HANDLE_WALKING_DEFAULTS) registry.removeSingleMetric(name);
    // prom-client's own lists the directory on the event loop (readdirSync) at every scrape.
    registry.removeSingleMetric('process_open_fds');
    if (process.platform === 'linux') {
      new Gauge({
        name: 'process_open_fds',
        help: 'Number of open file descriptors.',
        registers: [registry],
        async collect() {
          const count = await openFileDescriptors();
          if (count !== null) this.set(count);
        },
      });
    }

    const { dispatcher, bus, hub } = app;
    const registers = [registry];

    // Counters mirrored from state the gateway already keeps: set, not incremented, on scrape.
    const mirroredCounter = (name: string, help: string, read: () => number) =>
      new Counter({
        name: PREFIX + name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name: PREFIX + name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });

    mirroredCounter('records_consumed_total', 'Records read from the bus, valid or not', () => dispatcher.stats.recordsConsumed);
    mirroredCounter(
      'records_skipped_total',
      'Records skipped because they break the record contract',
      () => dispatcher.stats.recordsSkipped,
    );
    mirroredCounter(
      'events_delivered_total',
      'Events handed to a stream, counted once per receiving stream',
      () => dispatcher.stats.deliveries,
    );
    mirroredCounter(
      'frames_written_total',
      'Frames written to client sockets: events, and control frames such as a stream\'s starting position',
      () => app.streamStats.framesWritten,
    );
    mirroredCounter('bytes_written_total', 'Bytes of frames written to client sockets', () => app.streamStats.bytesWritten);
    mirroredCounter('streams_opened_total', 'Event streams opened', () => app.streamStats.opened);
    mirroredCounter('events_conflated_total', 'Ticker prices replaced by a newer one of the same symbol while their client was behind (not sent)', () => app.streamStats.conflated);
    mirroredCounter('streams_refused_total', 'Streams refused at a cap: MAX_STREAMS (200 with event: unavailable, retried) or MAX_STREAMS_PER_IP (429)', () => app.streamStats.refusedAtCapacity + app.streamStats.refusedPerIp);
    mirroredCounter('heartbeats_total', 'Heartbeat comments sent to streams idle for HEARTBEAT_MS', () => app.streamStats.heartbeats);
    mirroredCounter('streams_closed_total', 'Event streams closed, for any reason', () => app.streamStats.closed);
    mirroredCounter(
      'slow_client_disconnects_total',
      'Streams ended because the client fell more than STREAM_MAX_BUFFERED_BYTES behind (it resumes from its last id)',
      () => app.streamStats.slowClientDisconnects,
    );
    new Gauge({
      name: `${PREFIX}open_streams`,
      help: 'Event streams open now, by kind: room, ticker, or multi (several channels on one stream)',
      labelNames: ['kind'],
      registers,
      collect() {
        for (const [kind, open] of Object.entries(app.streamStats.open)) this.set({ kind }, open);
      },
    });
    new Counter({
      name: `${PREFIX}resumes_total`,
      help: 'Streams that resumed from a position (Last-Event-ID or since), by where the missed events came from',
      labelNames: ['from'],
      registers,
      collect() {
        this.reset();
        this.inc({ from: 'memory' }, app.streamStats.resumesFromMemory);
        this.inc({ from: 'kafka' }, app.streamStats.resumesFromKafka);
      },
    });
    mirroredCounter(
      'resume_resets_total',
      'Resume positions that could not be honoured (invalid, unknown or expired): the client got `event: reset` and starts live',
      () => app.streamStats.resets,
    );
    gauge('history_events', 'Events held in the in-memory resume history', () => app.history.totalEvents);
    gauge('history_bytes', 'Bytes held in the in-memory resume history, as HISTORY_MAX_TOTAL_BYTES counts them (text, frame buffers, ~1 KB per event)', () => app.history.totalBytes);
    gauge('history_channels', 'Rooms and symbols with events in the in-memory resume history', () => app.history.channelCount);
    gauge('active_channels', 'Rooms and ticker symbols with at least one open stream', () => hub.channelCount);
    gauge('bus_ready', '1 when the bus is ready (what /readyz reports), else 0', () => (bus.readiness().ready ? 1 : 0));
    new Gauge({
      name: `${PREFIX}bus_info`,
      help: 'Always 1; the label names the bus this replica runs on (kafka or memory)',
      labelNames: ['kind'],
      registers,
      collect() {
        this.set({ kind: bus.kind }, 1);
      },
    });
    new Counter({
      name: `${PREFIX}kafka_client_errors_total`,
      help:
        'Kafka client errors, by kind: consumer_crash (the consumer stopped on an error and is restarted), ' +
        'request_timeout (a broker did not answer in time), publish_failed (a publish rejected or not acknowledged in time)',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        // Every kind is exported, as 0 on the embedded bus too, so alerts and dashboards find the series.
        for (const kind of BUS_CLIENT_ERROR_KINDS) this.inc({ kind }, bus.stats?.clientErrors[kind] ?? 0);
      },
    });
    mirroredCounter(
      'kafka_reconnects_total',
      'Times the Kafka client got back to the brokers after losing them (consumer back in its group, producer reconnected)',
      () => bus.stats?.reconnects ?? 0,
    );
    new Gauge({
      name: `${PREFIX}consumer_lag_records`,
      help: "Records in the partition this replica has not consumed yet (end offset - next offset, as of the consumer's last fetch)",
      labelNames: ['topic', 'partition'],
      registers,
      collect() {
        // Reset so that a partition no longer assigned disappears instead of freezing at its last value.
        this.reset();
        for (const { topic, partition, next, highWatermark } of bus.partitionPositions()) {
          const lag = BigInt(highWatermark) - BigInt(next);
          this.set({ topic, partition: String(partition) }, Number(lag > 0n ? lag : 0n));
        }
      },
    });

    // Both are fed once per event: counted in plain numbers here, handed to prom-client on scrape
    // (its labelled inc and observe hash their labels on every call).
    const eventCounts = new Map<string, number>();
    new Counter({
      name: `${PREFIX}events_total`,
      help: 'Valid events consumed, by event type (message, edit, delete, price_update, and the types of declared kinds)',
      labelNames: ['type'],
      registers,
      collect() {
        this.reset();
        for (const [type, count] of eventCounts) this.inc({ type }, count);
      },
    });
    const endToEnd = new CountingHistogram(
      `${PREFIX}end_to_end_latency_seconds`,
      'From the record timestamp (publish time) to the event being handed to its streams; live records only (not the warm-up read at startup to fill the history)',
      END_TO_END_BUCKETS,
      registry,
    );
    dispatcher.observe((event, record, _subscribers, live) => {
      eventCounts.set(event.type, (eventCounts.get(event.type) ?? 0) + 1);
      // Warm-up records are old by design: as latency samples they would only say how old.
      // Clocks of producer and gateway may disagree by a little: never report negative latency.
      if (live) endToEnd.observe(Math.max(0, Date.now() - record.timestamp) / 1000);
    });

    const publishRequests = new Counter({
      name: `${PREFIX}publish_requests_total`,
      help: 'Publish requests answered, by route and HTTP status',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    const publishDuration = new Histogram({
      name: `${PREFIX}publish_duration_seconds`,
      help: 'Publish requests from arrival to answer: 202 once the bus acknowledged, 503 when it did not',
      labelNames: ['method', 'route', 'status'],
      buckets: PUBLISH_BUCKETS,
      registers,
    });
    // On the publish routes only, as they are declared (they are registered after this plugin):
    // a hook on every request would cost every other request a promise and a route lookup.
    app.addHook('onRoute', (route) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      for (const method of methods) {
        if (method === 'HEAD' || !isPublishRoute(route as { schema?: { tags?: readonly string[] } })) continue;
        // One labelled child per status, made on its first use: prom-client hashes the labels of
        // every `inc({...})` otherwise.
        const byStatus = new Map<number, { requests: Counter.Internal; duration: Histogram.Internal<'method' | 'route' | 'status'> }>();
        const countAnswer: onResponseHookHandler = (request, reply, done) => {
          const status = reply.statusCode;
          let children = byStatus.get(status);
          if (children === undefined) {
            const labels = { method: request.method, route: route.url, status: String(status) };
            children = { requests: publishRequests.labels(labels), duration: publishDuration.labels(labels) };
            byStatus.set(status, children);
          }
          children.requests.inc();
          if (BUS_OUTCOME_STATUSES.has(status)) children.duration.observe(reply.elapsedTime / 1000);
          done();
        };
        const existing = route.onResponse === undefined ? [] : Array.isArray(route.onResponse) ? route.onResponse : [route.onResponse];
        route.onResponse = [...existing, countAnswer];
      }
    });

    app.get(
      '/metrics',
      {
        // Aggregates include private rooms' traffic: operator-only like /status, unless METRICS_PUBLIC.
        config: { admin: !app.config.auth.metricsPublic },
        schema: {
          summary: 'Prometheus metrics',
          tags: ['operations'],
          security: app.config.auth.metricsPublic ? noSecurity : operatorSecurity,
          description:
            'Prometheus text exposition format (see the README "Operations" section for the list). ' +
            'Includes the default Node.js process and event-loop metrics.',
          response: {
            200: {
              description: 'Prometheus text format 0.0.4',
              content: { 'text/plain': { schema: Type.String() } },
            },
            401: errorReply('Tokens or service keys are configured (and METRICS_PUBLIC is not), and no configured service key was sent'),
          },
        },
      },
      async (_request, reply) => {
        const body = await registry.metrics();
        return reply.type(registry.contentType).send(body);
      },
    );
  },
  { name: 'metrics', fastify: '5.x', dependencies: ['gateway', 'event-stream'] },
);
