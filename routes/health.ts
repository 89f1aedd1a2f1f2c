import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { noSecurity } from './schemas.ts';

const healthFields = {
  status: Type.String({ description: '`ok`, `ready`, `degraded` (ready: still serving, with a reason) or `not ready`' }),
  reason: Type.Optional(Type.String()),
};
const Health = (description: string) => Type.Object(healthFields, { description });

/**
 * What /readyz may tell anyone once the operator routes need a key: the part that is not ready
 * (or degraded), never the bus's own text, which carries broker addresses and client errors
 * (those stay in /status and the logs). Matched on the bus's reasons (src/bus/kafka.ts,
 * memory.ts) in order; a reason none of them matches gets the generic last one, so a reason
 * worded anew can lose detail here but never leak it.
 */
const PUBLIC_REASONS: ReadonlyArray<[RegExp, string]> = [
  [/^(shutting down|closed)$/, 'shutting down'],
  [/^not started$/, 'starting'],
  [/^Kafka: /, 'kafka unavailable'],
  [/^warming up\b/, 'warming up'],
  [/^the Kafka consumer\b/, 'kafka consumer stuck'],
  [/^degraded: the Kafka consumer\b/, 'kafka consumer rejoining'],
  [/^degraded: the Kafka producer\b/, 'kafka producer disconnected'],
  [/^degraded: Kafka client error\b/, 'kafka client error'],
];

/** `reason` as /readyz shows it to anyone: the short name of its PUBLIC_REASONS entry, else a generic one. */
export function publicReadinessReason(reason: string, ready: boolean): string {
  for (const [pattern, name] of PUBLIC_REASONS) if (pattern.test(reason)) return name;
  return ready ? 'kafka trouble' : 'not ready';
}

const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/healthz',
    {
      schema: {
        summary: 'Liveness',
        response: { 200: Health('The process is up') },
        tags: ['operations'],
        security: noSecurity,
      },
    },
    async () => ({ status: 'ok' }),
  );

  // Load balancers send new streams only to replicas that answer 200 here. 200 means "this
  // replica can hold streams and serve what it has": trouble every replica shares (a Kafka
  // broker lost, the consumer rejoining) answers 200 `degraded`, so the load balancer never
  // loses every backend at once; 503 only before the bus first started, when this replica's
  // own consumer is stuck, and while shutting down (src/bus/kafka.ts, readiness()).
  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Readiness: may this replica take new streams?',
        response: {
          200: Health('Ready (`ready`), or still serving while Kafka trouble every replica shares lasts (`degraded`, with `reason`)'),
          503: Health(
            'Not ready (starting, its own Kafka consumer stuck, or shutting down): `reason` says why; once tokens or service keys are configured, ' +
              'only which part (`kafka unavailable`, `warming up`, `kafka consumer stuck`, `shutting down`…), the details being in /status',
          ),
        },
        tags: ['operations'],
        security: noSecurity,
      },
    },
    async (_request, reply) => {
      if (app.isShuttingDown()) return reply.code(503).send({ status: 'not ready', reason: 'shutting down' });
      const readiness = app.bus.readiness();
      const { ready } = readiness;
      // Whenever /status needs a service key, its details are not handed to anyone here.
      const reason = readiness.reason === undefined || !app.operatorKeyRequired ? readiness.reason : publicReadinessReason(readiness.reason, ready);
      if (!ready) return reply.code(503).send({ status: 'not ready', reason: reason ?? 'bus not ready' });
      return reason === undefined ? { status: 'ready' } : { status: 'degraded', reason };
    },
  );
};

export default healthRoutes;
