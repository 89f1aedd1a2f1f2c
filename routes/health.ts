import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { noSecurity } from './schemas.ts';

const healthFields = {
  status: Type.String({ description: '`ok`, `ready`, `degraded` (ready: still serving, with a reason) or `not ready`' }),
  reason: Type.Optional(Type.String()),
};
const Health = (description: string) => Type.Object(healthFields, { description });

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
          503: Health('Not ready (starting, its own Kafka consumer stuck, or shutting down): `reason` says why'),
        },
        tags: ['operations'],
        security: noSecurity,
      },
    },
    async (_request, reply) => {
      if (app.isShuttingDown()) return reply.code(503).send({ status: 'not ready', reason: 'shutting down' });
      const { ready, reason } = app.bus.readiness();
      if (!ready) return reply.code(503).send({ status: 'not ready', reason: reason ?? 'bus not ready' });
      return reason === undefined ? { status: 'ready' } : { status: 'degraded', reason };
    },
  );
};

export default healthRoutes;
