import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync } from 'fastify';
import fastifyStatic from '@fastify/static';

/**
 * public/ sits at the repository root; this file runs from plugins/ (tsx, tests) or from
 * dist/plugins/ (the build), so look one and two levels up.
 */
function publicRoot(): string {
  const candidates = ['../public/', '../../public/'].map((relative) => fileURLToPath(new URL(relative, import.meta.url)));
  const found = candidates.find((dir) => existsSync(`${dir}index.html`));
  if (found === undefined) throw new Error(`the demo page is missing: looked for index.html in ${candidates.join(', ')}`);
  return found;
}

/**
 * Serves the demo page (public/) at `/`. Encapsulated, not shared: nothing else needs
 * `reply.sendFile`. Only the files present at startup get routes (no wildcard), so every other
 * path still reaches the app's JSON 404.
 */
const staticFiles: FastifyPluginAsync = async (app) => {
  await app.register(fastifyStatic, {
    root: publicRoot(),
    prefix: '/',
    wildcard: false,
    index: 'index.html',
    // The page is small and changes with the gateway: revalidate rather than cache stale code.
    cacheControl: true,
    maxAge: 0,
  });
};

export default staticFiles;
