import t from 'tap';
import net from 'node:net';
import { configWith } from '../../src/config.ts';
import { issueToken } from '../../src/auth/issue.ts';
import { startGateway, uniqueName } from '../helpers/gateway.ts';
import { openStream } from '../helpers/sse-client.ts';

/**
 * Hostile input: a few thousand random and malformed requests over raw sockets to a gateway
 * on 127.0.0.1 (auth on, public rooms, embedded bus). No answer may be a 5xx, the process must
 * survive, and afterwards the gateway must still stream a published message. Deterministic
 * per seed: FUZZ_SEED=<n> replays a run; FUZZ_REQUESTS=<n> changes its size.
 */

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 3000);
const CONCURRENCY = 24;
const ANSWER_TIMEOUT_MS = 2000;
const SECRET = 'fuzz-secret-of-at-least-32-characters!!';

// mulberry32: small, seedable, good enough to pick cases.
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let x = state;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const random = prng(SEED);
const int = (max: number) => Math.floor(random() * max);
const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
const chance = (p: number) => random() < p;
const randomBytes = (length: number) => Buffer.from(Array.from({ length }, () => int(256)));
const randomText = (length: number, alphabet = 'abcXYZ019_.-~!*()\'";:@&=+$,/?#[]%\\ <>{}|^`\u00e9\u4e2d\ud83d\ude00') =>
  Array.from({ length }, () => {
    const characters = [...alphabet];
    return characters[int(characters.length)];
  }).join('');

const validToken = issueToken({ sub: 'fuzzer', rooms: ['*'], tickers: ['*'], publish: ['*', 'ticker:*'], exp: Math.floor(Date.now() / 1000) + 3600 }, SECRET, 'HS256');
const noneToken = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"x","rooms":["*"]}').toString('base64url')}.`;

function name(): string {
  return pick([
    () => 'lobby',
    () => `public-${randomText(int(8) + 1, 'abc123')}`,
    () => 'team-a',
    () => 'BTC',
    () => encodeURIComponent(randomText(int(20) + 1)),
    () => randomText(int(10) + 1, 'ab%/.'),
    () => 'a'.repeat(int(3) === 0 ? 65 : 64),
    () => '%00',
    () => '..%2F..%2Fetc%2Fpasswd',
    () => '',
    () => '%E0%A4%A',
  ])();
}

function lastEventId(): string {
  return pick([
    () => randomText(int(40)),
    () => `${int(10)}-${int(1e6)}`,
    () => 'x'.repeat(int(5000)),
    () => Buffer.from(randomText(30)).toString('base64url'),
    () => `${randomText(10, 'abc')}.${randomText(40, 'abcdef0123456789')}`,
    () => '-1',
    () => '99999999999999999999999999',
    () => '\u0000',
  ])();
}

function query(): string {
  const parts: string[] = [];
  for (let i = int(5); i > 0; i--) {
    parts.push(
      pick([
        () => `room=${name()}`,
        () => `ticker=${name()}`,
        () => `token=${pick([validToken, noneToken, randomText(30, 'abc.'), ''])}`,
        () => `lastEventId=${encodeURIComponent(lastEventId())}`,
        () => `since=${pick(['0', '-5', 'yesterday', '2026-13-45', '9'.repeat(20), encodeURIComponent(randomText(10))])}`,
        () => (chance(0.2) ? randomText(int(30)) : encodeURIComponent(randomText(int(30)))),
        () => `room[]=${name()}`,
        () => `room=${Array.from({ length: 50 }, () => 'x').join('&room=')}`,
      ])(),
    );
  }
  return parts.length === 0 ? '' : `?${parts.join('&')}`;
}

function path(): string {
  return pick([
    () => `/events/${name()}${query()}`,
    () => `/tickers/${name()}/events${query()}`,
    () => `/events${query()}`,
    () => `/rooms/${name()}/messages${query()}`,
    () => `/rooms/${name()}/messages/${name()}`,
    () => `/tickers/${name()}/prices`,
    () => pick(['/readyz', '/healthz', '/', '/metrics', '/status', '/docs', '/docs/json', '/history/lobby']),
    () => `/${chance(0.3) ? randomText(int(60)) : encodeURIComponent(randomText(int(60)))}`,
    () => `/${'a/'.repeat(int(3000))}`,
    () => '*',
    () => `http://127.0.0.1/${name()}`,
  ])();
}

function body(): Buffer {
  return pick([
    () => Buffer.from(JSON.stringify({ user: randomText(int(70)), text: randomText(int(100)) })),
    () => Buffer.from(JSON.stringify({ text: randomText(int(3000)) })),
    () => Buffer.from(JSON.stringify({ price: pick([1, -1, 0, 1e308, 'NaN', null]), currency: pick(['USD', 'usd', '', 'TOOLONGCURRENCY']) })),
    () => Buffer.from(`${'['.repeat(5000)}${']'.repeat(5000)}`),
    () => Buffer.from('{"__proto__": {"polluted": true}, "user": "a", "text": "b"}'),
    () => Buffer.from('{"constructor": {"prototype": {"x": 1}}}'),
    () => Buffer.from(randomText(int(200))),
    () => randomBytes(int(500)),
    () => Buffer.alloc(20000, 'a'),
    () => Buffer.alloc(0),
  ])();
}

function headerValue(): string {
  return pick([
    () => randomText(int(50), 'abc ;=,'),
    () => (chance(0.2) ? randomBytes(int(30)).toString('latin1') : randomText(int(30), 'abcXYZ019_.-~!*()\'";:@&=+$,/?#[]%\\ <>{}|^`')).replace(/[\r\n]/g, ''),
    () => 'x'.repeat(pick([100, 9000, 20000])),
    () => randomText(int(30)),
  ])();
}

/** One request as raw bytes: some well-formed, some broken in every way HTTP/1.1 can be. */
function request(): Buffer {
  const method = chance(0.92) ? pick(['GET', 'GET', 'GET', 'POST', 'POST', 'DELETE', 'PUT', 'PATCH', 'OPTIONS', 'HEAD']) : pick(['TRACE', 'FOO', 'G\u0000T']);
  const headers: string[] = ['Host: 127.0.0.1'];
  if (chance(0.3)) headers.push(`Last-Event-ID: ${(chance(0.8) ? lastEventId().replace(/[\x00-\x1f\x7f]/g, '') : lastEventId()).replace(/[\r\n]/g, '')}`);
  if (chance(0.3)) headers.push(`Authorization: ${pick([`Bearer ${validToken}`, `Bearer ${noneToken}`, 'Bearer', 'Basic Zm9vOmJhcg==', `Bearer ${randomText(100, 'ab.')}`, headerValue()])}`);
  if (chance(0.2)) headers.push(`Cookie: ${pick([`token=${validToken}`, `token=${randomText(40)}`, headerValue()])}`);
  if (chance(0.2)) headers.push(`X-API-Key: ${headerValue()}`);
  if (chance(0.2)) headers.push(`Origin: ${pick(['http://evil.example', 'null', headerValue()])}`);
  if (chance(0.15)) headers.push(`${randomText(int(20) + 1, 'abcXYZ-_')}: ${headerValue()}`);
  if (chance(0.05)) headers.push(`X-Big: ${'b'.repeat(20000)}`);
  if (chance(0.05)) headers.push(`Bad Header\u0001: yes`);
  const payload = method === 'GET' && chance(0.8) ? Buffer.alloc(0) : body();
  if (payload.length > 0 || chance(0.5)) headers.push(`Content-Type: ${pick(['application/json', 'application/json; charset=utf-16', 'text/plain', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', randomText(10)])}`);
  const framing = int(16);
  if (framing === 0) headers.push(`Content-Length: ${payload.length + int(100) + 1}`);
  else if (framing === 1) headers.push(`Content-Length: ${pick(['-1', 'abc', '1e3', '99999999999999999999'])}`);
  else if (framing === 2) headers.push('Transfer-Encoding: chunked');
  else if (framing === 3) headers.push(`Content-Length: ${payload.length}`, 'Transfer-Encoding: chunked');
  else headers.push(`Content-Length: ${payload.length}`);
  headers.push('Connection: close');
  const version = chance(0.9) ? 'HTTP/1.1' : pick(['HTTP/1.0', 'HTTP/9.9', '']);
  const head = chance(0.03) ? randomText(int(100)) : `${method} ${path()} ${version}`;
  const chunked = framing === 2 && chance(0.5) ? Buffer.from(`${payload.length.toString(16)}\r\n${payload.toString('latin1')}\r\n0\r\n\r\n`, 'latin1') : payload;
  return Buffer.concat([Buffer.from(`${head}\r\n${headers.join('\r\n')}\r\n\r\n`, 'latin1'), chunked]);
}

/** Sends raw bytes; resolves with the status code of the answer, or null when none came in time. */
function send(port: number, bytes: Buffer): Promise<number | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let received = '';
    let settled = false;
    const finish = (status: number | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(status);
    };
    const timer = setTimeout(() => finish(null), ANSWER_TIMEOUT_MS);
    socket.on('connect', () => socket.write(bytes, () => {}));
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(received);
      if (match) finish(Number(match[1]));
      else if (received.length > 64) finish(-1);
    });
    socket.on('error', () => finish(null));
    socket.on('close', () => finish(/^HTTP\/1\.[01] (\d{3})/.test(received) ? Number(received.slice(9, 12)) : null));
  });
}

t.test(`fuzz: ${REQUESTS} hostile requests (seed ${SEED})`, async (t) => {
  const serverErrors: Array<{ statusCode: number; url: string }> = [];
  const { url: base } = await startGateway(
    t,
    { instanceId: uniqueName('fuzz'), auth: { ...configWith().auth, jwtSecret: SECRET, publicRooms: ['public-*', 'lobby'], publishRatePerIp: 1_000_000 } },
    {
      beforeListen: (app) =>
        app.addHook('onResponse', async (request, reply) => {
          if (reply.statusCode >= 500) serverErrors.push({ statusCode: reply.statusCode, url: request.url.slice(0, 200) });
        }),
    },
  );
  const port = Number(new URL(base).port);

  const statuses = new Map<string, number>();
  const fiveHundreds: string[] = [];
  let next = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < REQUESTS) {
        next += 1;
        const bytes = request();
        const status = await send(port, bytes);
        const key = status === null ? 'no answer' : status === -1 ? 'not HTTP' : String(status);
        statuses.set(key, (statuses.get(key) ?? 0) + 1);
        if (status !== null && status >= 500) fiveHundreds.push(bytes.subarray(0, 300).toString('latin1'));
      }
    }),
  );
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort()))} in ${Date.now() - started} ms`);

  t.same(fiveHundreds, [], 'no 5xx answer (request heads shown on failure)');
  t.same(serverErrors, [], 'no 5xx logged by the server');
  t.ok((statuses.get('200') ?? 0) + (statuses.get('202') ?? 0) > 0, 'some requests were valid and served');
  t.ok([...statuses.keys()].some((status) => status.startsWith('4')), 'most were refused with 4xx');
  t.ok((statuses.get('no answer') ?? 0) < REQUESTS / 5, 'the server answered nearly every request');

  // Still streaming correctly: a fresh POST reaches a fresh stream.
  t.equal((await fetch(`${base}/healthz`)).status, 200);
  const room = `public-${uniqueName('after')}`;
  const stream = await openStream(t, `${base}/events/${room}`);
  t.equal(stream.status, 200);
  const posted = await fetch(`${base}/rooms/${room}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${validToken}` },
    body: JSON.stringify({ text: 'still alive' }),
  });
  t.equal(posted.status, 202);
  const [event] = await stream.waitForEvents(1);
  t.equal(event?.event, 'message');
  t.match(JSON.parse(event!.data), { room, user: 'fuzzer', text: 'still alive' });
});
