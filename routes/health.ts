import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@fastify/type-provider-typebox';

const Health = Type.Object({ status: Type.String(), reason: Type.Optional(Type.String()) });

const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/healthz', { schema: { response: { 200: Health } } }, async () => ({ status: 'ok' }));

  // Load balancers send new streams only to replicas that answer 200 here.
  app.get('/readyz', { schema: { response: { 200: Health, 503: Health } } }, async (_request, reply) => {
    if (app.isShuttingDown()) return reply.code(503).send({ status: 'not ready', reason: 'shutting down' });
    const { ready, reason } = app.bus.readiness();
    if (!ready) return reply.code(503).send({ status: 'not ready', reason: reason ?? 'bus not ready' });
    return { status: 'ready' };
  });
};

export default healthRoutes;
