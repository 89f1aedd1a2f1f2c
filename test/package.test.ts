import { spawn, execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { chatMessages, messageTexts, openStream, until } from './helpers/sse-client.ts';
import type { Teardowns } from './helpers/fixture.ts';
import { postJson, uniqueName } from './helpers/gateway.ts';

/**
 * What users and the Docker image get: the package as `npm pack` makes it (its `files` list is
 * the one list of what ships; deploy/Dockerfile installs this same tarball). Packed, installed
 * into an empty project from the tarball with `npm install --omit=dev`, started with plain Node:
 * it serves the page and /readyz, and `kafka-sse-gateway/client` works from plain JavaScript
 * (.mjs), type-checks from TypeScript without Node's types, and bundles for the browser.
 */

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
// npm installs and a build on a shared machine: far more than the per-file default.
t.setTimeout(600_000);

const work = mkdtempSync(join(tmpdir(), 'kafka-sse-gateway-package-'));
// Not a teardown: the children below run in it until the very end.
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
// Children run as a user's would: without tap's loaders (NODE_OPTIONS) or npm's test settings.
const childEnv: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, ...(process.env.npm_config_cache ? { npm_config_cache: process.env.npm_config_cache } : {}) };
const project = join(work, 'consumer');
let installed = '';
let files: string[] = [];

t.test('npm pack, then npm install --omit=dev of the tarball into an empty project', async (t) => {
  // `npm pack` runs `prepack` (a clean build), so the tarball never carries stale output.
  const packed = await run('npm', ['pack', '--json', '--pack-destination', work], { cwd: root, env: childEnv, maxBuffer: 64 * 1024 * 1024 });
  const [pack] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as [{ filename: string; files: { path: string }[] }];
  files = pack.files.map((file) => file.path);
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  // --prefer-offline: the dependencies `npm ci` just fetched come from npm's cache, not the registry again.
  await run('npm', ['install', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline', join(work, pack.filename)], { cwd: project, env: childEnv, maxBuffer: 64 * 1024 * 1024 });
  installed = join(project, 'node_modules', 'kafka-sse-gateway');
  t.ok(existsSync(join(installed, 'package.json')));
});

t.test('the tarball holds the built server, its plugins and routes, the page, and the client; no sources or tests', async (t) => {
  for (const needed of ['package.json', 'dist/server.js', 'dist/app.js', 'dist/plugins/static.js', 'dist/routes/streams.js', 'public/index.html', 'public/app.js', 'public/style.css', 'dist/src/client/index.js', 'dist/src/client/index.d.ts']) {
    t.ok(files.includes(needed), needed);
  }
  t.same(files.filter((file) => /^(src|test|bench|scripts|deploy)\//.test(file) || file.endsWith('.test.js')), [], 'nothing but what runs');
});

/** The installed server on the embedded bus, on a free port it reports in its first log lines. */
async function startInstalledServer(t: Teardowns, env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [join(installed, 'dist', 'server.js')], {
    cwd: project,
    env: { ...childEnv, NODE_ENV: 'production', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let url: string | undefined;
  await until(
    () => {
      if (child.exitCode !== null) throw new Error(`the installed server exited ${child.exitCode}: ${output}`);
      url = /listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1];
      return url !== undefined;
    },
    30_000,
    'the installed server to listen',
  );
  return url!;
}

t.test('installed from the tarball, the server starts with plain Node and serves the page, /readyz and streams', async (t) => {
  const url = await startInstalledServer(t);
  const page = await fetch(`${url}/`);
  t.equal(page.status, 200);
  t.match(page.headers.get('content-type'), /text\/html/);
  t.match(await page.text(), /<script[^>]+app\.js/);
  t.equal((await fetch(`${url}/app.js`)).status, 200);
  await until(async () => (await fetch(`${url}/readyz`)).status === 200, 20_000, '/readyz');

  // The client entry point from plain JavaScript, as another project would use it.
  const room = uniqueName('room');
  writeFileSync(
    join(project, 'use-client.mjs'),
    `import { roomUrl, subscribe } from 'kafka-sse-gateway/client';
const [base, room] = process.argv.slice(2);
const stream = subscribe(roomUrl(base, room), { getToken: () => undefined });
const timer = setTimeout(() => { console.error('no event within 20 s'); process.exit(2); }, 20000);
stream.on('open', async () => {
  const response = await fetch(new URL('/rooms/' + room + '/messages', base), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'ann', text: 'from a plain .mjs' }) });
  if (response.status !== 202) { console.error('POST answered', response.status); process.exit(3); }
});
for await (const event of stream.iterate(['message'])) {
  console.log(JSON.stringify({ text: event.data.text, user: event.data.user, hasId: typeof event.meta.id === 'string' }));
  stream.close();
}
clearTimeout(timer);
`,
  );
  const result = await run(process.execPath, ['use-client.mjs', url, room], { cwd: project, env: childEnv, timeout: 30_000 });
  t.same(JSON.parse(result.stdout.trim()), { text: 'from a plain .mjs', user: 'ann', hasId: true }, 'the stream got the posted event');
});

t.test('installed from the tarball, on Kafka: a resume older than the in-memory history is read from Kafka (by the range reader thread, as built)', { skip: process.env.KAFKA_BROKERS ? false : 'KAFKA_BROKERS is not set' }, async (t) => {
  const url = await startInstalledServer(t, {
    KAFKA_BROKERS: process.env.KAFKA_BROKERS,
    CHAT_TOPIC: uniqueName('chat'),
    TICKER_TOPIC: uniqueName('ticker'),
    TOPIC_PARTITIONS: '1',
    HISTORY_MAX_EVENTS: '5',
    CURSOR_SECRET: 'package-test-cursor-secret',
  });
  await until(async () => (await fetch(`${url}/readyz`)).status === 200, 60_000, '/readyz');
  const room = uniqueName('room');
  const live = await openStream(t, `${url}/events/${room}`);
  for (let i = 0; i < 30; i++) {
    const posted = await postJson(`${url}/rooms/${room}/messages`, { user: 'ann', text: `n${i}` });
    t.equal(posted.status, 202, `post ${i} accepted`);
  }
  await until(() => messageTexts(live.events).length >= 30, 30_000, '30 messages');
  const first = chatMessages(live.events)[0]!;
  // 29 events after the first, of which the replica keeps the last 5: the rest come from Kafka.
  const resumed = await openStream(t, `${url}/events/${room}`, { 'last-event-id': first.id ?? '' });
  // The stream's other events (a presence snapshot on Kafka) aside: its messages.
  await until(() => messageTexts(resumed.events).length >= 29, 30_000, '29 messages');
  t.same(messageTexts(resumed.events), Array.from({ length: 29 }, (_, i) => `n${i + 1}`), 'every later event once, in order');
});

t.test("the client's types work from TypeScript without Node's types, and it bundles for the browser", async (t) => {
  writeFileSync(
    join(project, 'use-client.ts'),
    `import { roomUrl, subscribe, type ChatMessageEvent, type GatewayStream } from 'kafka-sse-gateway/client';
const stream: GatewayStream = subscribe(roomUrl('https://example.org', 'lobby'), { getToken: async () => 'token' });
stream.on('message', (message: ChatMessageEvent, meta) => document.title = message.text + (meta.id ?? ''));
// @ts-expect-error: price_update carries a price, not text
stream.on('price_update', (update) => update.text);
`,
  );
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', lib: ['es2022', 'dom', 'dom.iterable'], types: [], strict: true, noEmit: true }, files: ['use-client.ts'] }),
  );
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const checked = await run(process.execPath, [tsc, '-p', project], { cwd: project, env: childEnv }).then(
    () => '',
    (error: { stdout?: string }) => error.stdout ?? String(error),
  );
  t.equal(checked, '', 'tsc finds no error');

  // esbuild (tsx's) with the browser platform: fails on any Node built-in the client would pull in.
  const { build } = await import('esbuild');
  const bundle = await build({ entryPoints: [join(project, 'use-client.ts')], bundle: true, platform: 'browser', format: 'esm', write: false, logLevel: 'silent', absWorkingDir: project });
  t.same(bundle.errors, []);
  t.ok(bundle.outputFiles[0]!.text.includes('last-event-id'), 'the bundle holds the client');
});
