import fp from 'fastify-plugin';
import cors from '@fastify/cors';

/** Browsers on other origins may read streams and publish only from the configured origins. */
export default fp(
  async (app) => {
    await app.register(cors, {
      origin: app.config.corsOrigins,
      methods: ['GET', 'HEAD', 'POST', 'DELETE', 'OPTIONS'],
      allowedHeaders: ['Content-Type', 'Authorization', 'Last-Event-ID'],
      maxAge: 600,
      // Cookies (a token for EventSource) only ever go to origins named in the allow-list.
      credentials: app.config.corsOrigins !== true,
    });
  },
  { name: 'cors', fastify: '5.x', dependencies: ['gateway'] },
);
