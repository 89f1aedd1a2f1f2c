import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@fastify/type-provider-typebox';
import { noSecurity } from './schemas.ts';

const healthFields = { status: Type.String(), reason: Type.Optional(Type.String()) };
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

  // Load balancers send new streams only to replicas that answer 200 here.
  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Readiness: may this replica take new streams?',
        response: {
          200: Health('Connected to the bus, consumer in its group, resume history caught up'),
          503: Health('Not ready (starting, Kafka unreachable, or shutting down): `reason` says why'),
        },
        tags: ['operations'],
        security: noSecurity,
      },
    },
    async (_request, reply) => {
    if (app.isShuttingDown()) return reply.code(503).send({ status: 'not ready', reason: 'shutting down' });
    const { ready, reason } = app.bus.readiness();
    if (!ready) return reply.code(503).send({ status: 'not ready', reason: reason ?? 'bus not ready' });
    return { status: 'ready' };
    },
  );
};

export default healthRoutes;
