import net from 'node:net';
import t, { type Test } from 'tap';
import { startGateway } from '../helpers/gateway.ts';

/**
 * Refusals the README promises as JSON `{statusCode, error, message}` that came from below the
 * routes: @fastify/cors's preflight check, Node's HTTP server (a request without Host, an
 * unsupported Expect) and the JSON parser's prototype-poisoning check.
 */

interface RawAnswer {
  statusLine: string;
  headers: Record<string, string>;
  body: string;
}

/**
 * Writes `request` as raw bytes and reads the first answer; resolves once the server has sent
 * it all (by Content-Length) or closed the connection; fails after 5 s without either. A
 * `100 Continue` interim answer is handed to `onContinue` and not returned.
 */
function rawRequest(port: number, request: string, onContinue?: (socket: net.Socket) => void): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let received = Buffer.alloc(0);
    let settled = false;
    const parse = (): RawAnswer | null => {
      let text = received.toString('latin1');
      if (onContinue && text.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) {
        received = received.subarray('HTTP/1.1 100 Continue\r\n\r\n'.length);
        const callback = onContinue;
        onContinue = undefined;
        callback(socket);
        text = received.toString('latin1');
      }
      const end = text.indexOf('\r\n\r\n');
      if (end === -1) return null;
      const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n');
      const headers = Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
      const body = received.subarray(Buffer.byteLength(text.slice(0, end + 4), 'latin1'));
      const length = Number(headers['content-length'] ?? NaN);
      if (Number.isFinite(length) && body.length < length) return null;
      return { statusLine, headers, body: body.toString('utf8') };
    };
    const finish = (error: Error | null, answer?: RawAnswer) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      if (error) reject(error);
      else resolve(answer!);
    };
    socket.setTimeout(5000, () => finish(new Error(`no complete answer within 5 s: ${JSON.stringify(received.toString('latin1'))}`)));
    socket.on('connect', () => socket.write(request, 'latin1'));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const answer = parse();
      if (answer) finish(null, answer);
    });
    socket.on('close', () => {
      const answer = parse();
      if (answer) finish(null, answer);
      else finish(new Error(`connection closed without a complete answer: ${JSON.stringify(received.toString('latin1'))}`));
    });
    socket.on('error', (error) => finish(error));
  });
}

/** Asserts a JSON error answer with this status, and returns its message. */
function jsonError(t: Test, answer: RawAnswer, statusLine: string): string {
  t.equal(answer.statusLine, statusLine);
  t.match(answer.headers['content-type'], /^application\/json/);
  const body = JSON.parse(answer.body) as { statusCode: number; error: string; message: string };
  t.equal(body.statusCode, Number(statusLine.split(' ')[1]));
  t.equal(body.error, statusLine.split(' ').slice(2).join(' '));
  t.type(body.message, 'string');
  return body.message;
}

const port = (url: string) => Number(new URL(url).port);

t.test('OPTIONS that is no CORS preflight answers a JSON 400 saying what a preflight needs', async (t) => {
  const gateway = await startGateway(t, { corsOrigins: ['https://app.example'] });
  for (const [what, headers] of [
    ['no preflight headers', {}],
    ['Origin without Access-Control-Request-Method', { origin: 'https://app.example' }],
    ['Access-Control-Request-Method without Origin', { 'access-control-request-method': 'POST' }],
  ] as const) {
    const response = await fetch(`${gateway.url}/rooms/lobby/messages`, { method: 'OPTIONS', headers });
    t.equal(response.status, 400, what);
    t.match(response.headers.get('content-type'), /^application\/json/, `${what}: JSON`);
    t.match(await response.json(), { statusCode: 400, error: 'Bad Request', message: /preflight.*Origin.*Access-Control-Request-Method/ }, what);
  }
  const unknownRoute = await fetch(`${gateway.url}/no/such/route`, { method: 'OPTIONS' });
  t.equal(unknownRoute.status, 400);
  t.match(unknownRoute.headers.get('content-type'), /^application\/json/);
  const preflight = await fetch(`${gateway.url}/rooms/lobby/messages`, {
    method: 'OPTIONS',
    headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
  });
  t.equal(preflight.status, 204, 'a real preflight is answered as before');
});

t.test('an HTTP/1.1 request without Host answers a JSON 400 and closes; HTTP/1.0 needs none', async (t) => {
  const gateway = await startGateway(t);
  const answer = await rawRequest(port(gateway.url), 'GET /healthz HTTP/1.1\r\n\r\n');
  t.match(jsonError(t, answer, 'HTTP/1.1 400 Bad Request'), /Host/);
  t.equal(answer.headers.connection, 'close');
  const refusedPost = await rawRequest(port(gateway.url), 'POST /rooms/lobby/messages HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 23\r\n\r\n{"user":"a","text":"b"}');
  t.match(jsonError(t, refusedPost, 'HTTP/1.1 400 Bad Request'), /Host/, 'a publish without Host is refused too');
  const old = await rawRequest(port(gateway.url), 'GET /healthz HTTP/1.0\r\n\r\n');
  t.match(old.statusLine, /^HTTP\/1\.[01] 200 /, 'HTTP/1.0 has no Host requirement');
});

t.test('an Expect other than 100-continue answers a JSON 417 and closes; 100-continue still works', async (t) => {
  const gateway = await startGateway(t);
  const body = '{"user":"a","text":"b"}';
  const head = (expect: string) =>
    `POST /rooms/lobby/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nExpect: ${expect}\r\n\r\n`;
  const answer = await rawRequest(port(gateway.url), `${head('foo')}${body}`);
  t.match(jsonError(t, answer, 'HTTP/1.1 417 Expectation Failed'), /Expect.*100-continue/);
  t.equal(answer.headers.connection, 'close');
  t.notMatch(answer.body, 'foo', 'the header value is not echoed');

  const continued = await rawRequest(port(gateway.url), head('100-continue'), (socket) => socket.write(body));
  t.equal(continued.statusLine, 'HTTP/1.1 202 Accepted', 'the body sent after 100 Continue is published');
});

t.test('a JSON body with a prototype-poisoning key is refused saying so, not as invalid JSON', async (t) => {
  const gateway = await startGateway(t);
  const post = async (text: string) => {
    const response = await fetch(`${gateway.url}/rooms/lobby/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text });
    return { status: response.status, body: (await response.json()) as { statusCode: number; error: string; message: string } };
  };
  const proto = await post('{"__proto__": {"polluted": true}, "user": "a", "text": "b"}');
  t.equal(proto.status, 400);
  t.same(proto.body, { statusCode: 400, error: 'Bad Request', message: 'body/__proto__ is not allowed as a key' });
  const nested = await post('{"user": "a", "text": "b", "meta": [{"\\u005f_proto__": 1}]}');
  t.match(nested.body, { statusCode: 400, message: 'body/meta/0/__proto__ is not allowed as a key' }, 'at any depth, however the key is escaped');
  const constructor = await post('{"constructor": {"prototype": {"x": 1}}, "user": "a", "text": "b"}');
  t.match(constructor.body, { statusCode: 400, message: /^body\/constructor\/prototype is not allowed/ });
  const invalid = await post('{"user": "a",');
  t.match(invalid.body, { statusCode: 400, message: /not valid JSON/ }, 'invalid JSON is still said to be invalid');
  const fine = await post('{"user": "a", "text": "__proto__"}');
  t.equal(fine.status, 202, '"__proto__" as a value is just text');
});
