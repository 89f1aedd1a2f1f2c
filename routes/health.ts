import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@fastify/type-provider-typebox';

const Health = Type.Object({
  status: Type.String({ description: '`ok`, `ready`, `degraded` (ready: still serving, with a reason) or `not ready`' }),
  reason: Type.Optional(Type.String()),
});

const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/healthz', { schema: { response: { 200: Health } } }, async () => ({ status: 'ok' }));

  // Load balancers send new streams only to replicas that answer 200 here. 200 means "this
  // replica can hold streams and serve what it has": trouble every replica shares (a Kafka
  // broker lost, the consumer rejoining) answers 200 `degraded`, so the load balancer never
  // loses every backend at once; 503 only before the bus first started, when this replica's
  // own consumer is stuck, and while shutting down (src/bus/kafka.ts, readiness()).
  app.get('/readyz', { schema: { response: { 200: Health, 503: Health } } }, async (_request, reply) => {
    if (app.isShuttingDown()) return reply.code(503).send({ status: 'not ready', reason: 'shutting down' });
    const { ready, reason } = app.bus.readiness();
    if (!ready) return reply.code(503).send({ status: 'not ready', reason: reason ?? 'bus not ready' });
    return reason === undefined ? { status: 'ready' } : { status: 'degraded', reason };
  });
};

export default healthRoutes;
