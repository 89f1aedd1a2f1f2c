import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { SECURITY, TAGS } from '../routes/schemas.ts';

/**
 * The OpenAPI document at `/docs/json` (and `/docs/yaml`), Swagger UI at `/docs`, both built
 * from the routes' own typebox schemas: each route declares every status it answers, its tag
 * and its security (routes/schemas.ts); the schemes are declared here. Registered before the
 * routes: @fastify/swagger only sees routes added after it, and after auth, whose state
 * (on/off) the document states.
 *
 * OpenAPI 3.1, because its schemas are JSON Schema 2020-12 like typebox's (3.0's
 * `exclusiveMinimum` is a boolean, typebox's a number).
 */
export default fp(
  async (app) => {
    const cookieName = app.config.auth.cookieName;
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'kafka-sse-gateway',
          version: '0.1.0',
          description:
            'Pushes Kafka events to browsers over Server-Sent Events. Event streams (`text/event-stream`) start with ' +
            '`retry:` and a `: connected` comment, then carry one frame per event: `id:` (the event position), ' +
            '`event:` (the type) and one `data:` line of JSON; each stream route\'s 200 response lists its events and ' +
            'their data schemas. Errors are JSON `{statusCode, error, message}`.\n\n' +
            'Auth is off unless JWT_SECRET or JWT_PUBLIC_KEY_FILE is set; the security each route lists applies once it ' +
            `is on. On this instance auth is **${app.authEnabled ? 'on' : 'off'}**.`,
        },
        tags: TAGS.map((tag) => ({ ...tag })),
        components: {
          securitySchemes: {
            [SECURITY.bearer]: {
              type: 'http',
              scheme: 'bearer',
              bearerFormat: 'JWT',
              description: 'A JWT (HS256, RS256 or ES256) in `Authorization: Bearer`: streams, and publishing with a `publish` grant',
            },
            [SECURITY.cookie]: {
              type: 'apiKey',
              in: 'cookie',
              name: cookieName,
              description: `The same JWT in the \`${cookieName}\` cookie (AUTH_COOKIE): streams only`,
            },
            [SECURITY.query]: {
              type: 'apiKey',
              in: 'query',
              name: 'token',
              description: 'The same JWT as `?token=` (EventSource cannot send headers): streams only; redacted in logs',
            },
            [SECURITY.apiKey]: {
              type: 'apiKey',
              in: 'header',
              name: 'X-API-Key',
              description: 'A service key from SERVICE_API_KEYS: publishing as an upstream service, and operator routes (/status)',
            },
          },
        },
      },
    });
    await app.register(swaggerUi, { routePrefix: '/docs' });
  },
  { name: 'docs', fastify: '5.x', dependencies: ['auth'] },
);
