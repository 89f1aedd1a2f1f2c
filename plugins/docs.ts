import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';

/**
 * The OpenAPI document at `/docs/json` (and `/docs/yaml`), Swagger UI at `/docs`, both built
 * from the routes' own typebox schemas. Registered before the routes: @fastify/swagger only
 * sees routes added after it.
 *
 * OpenAPI 3.1, because its schemas are JSON Schema 2020-12 like typebox's (3.0's
 * `exclusiveMinimum` is a boolean, typebox's a number).
 */
export default fp(
  async (app) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'kafka-sse-gateway',
          version: '0.1.0',
          description:
            'Pushes Kafka events to browsers over Server-Sent Events. Event streams (`text/event-stream`) start with ' +
            '`retry:` and a `:connected` comment, then carry one frame per event: `id:` (the event position), ' +
            '`event:` (the type) and one `data:` line of JSON. The stream routes list their event types and payloads ' +
            'in their descriptions. Errors are JSON `{statusCode, error, message}`.',
        },
      },
    });
    await app.register(swaggerUi, { routePrefix: '/docs' });
  },
  { name: 'docs', fastify: '5.x' },
);
