import t, { type Test } from 'tap';
import { configWith, type AuthConfig } from '../../src/config.ts';
import { issueToken } from '../../src/auth/issue.ts';
import { startGateway, uniqueName } from '../helpers/gateway.ts';
import { openStream, until } from '../helpers/sse-client.ts';

/**
 * A ticker's chart history (`GET /tickers/:symbol/history`) is the symbol's prices in another
 * shape: whoever may not stream the symbol may not read them either (README, "Chart history").
 */

const SECRET = 'history-test-secret-of-at-least-32-chars';
const SERVICE_KEY = 'history-service-key-0123456789abcdef';
const token = (claims: Record<string, unknown>) => issueToken({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims }, SECRET, 'HS256');
const secured = (auth: Partial<AuthConfig> = {}) => ({
  auth: { ...configWith().auth, jwtSecret: SECRET, serviceApiKeys: new Map([[SERVICE_KEY, 'prices']]), ...auth },
});

type History = { symbol: string; points: Array<{ ts: number; price: number }> };

/** Posts `price` for `symbol` with the service key and waits until `reader` sees it in the history. */
async function postPrice(t: Test, url: string, symbol: string, price: number, reader: Record<string, string>): Promise<void> {
  const posted = await fetch(`${url}/tickers/${symbol}/prices`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': SERVICE_KEY },
    body: JSON.stringify({ price, currency: 'USD' }),
  });
  t.equal(posted.status, 202, 'the price is published');
  await until(async () => {
    const response = await fetch(`${url}/tickers/${symbol}/history`, { headers: reader });
    return response.status === 200 && ((await response.json()) as History).points.at(-1)?.price === price;
  }, 10000, `${symbol}'s history holding ${price}`);
}

t.test('with auth on, a private ticker\'s history needs the same read grant as its stream: 401 without a token, 403 without the ticker', async (t) => {
  const gateway = await startGateway(t, secured());
  const symbol = uniqueName('SYM');
  const granted = { authorization: `Bearer ${token({ sub: 'trader', tickers: [symbol] })}` };
  const other = { authorization: `Bearer ${token({ sub: 'other', tickers: ['ETH'] })}` };
  await postPrice(t, gateway.url, symbol, 64123.5, granted);

  const anonymous = await fetch(`${gateway.url}/tickers/${symbol}/history`);
  t.equal(anonymous.status, 401, 'no token: 401');
  t.match(anonymous.headers.get('content-type'), /^application\/json/);
  t.match(anonymous.headers.get('www-authenticate'), /^Bearer /);
  const refusal = (await anonymous.json()) as Record<string, unknown>;
  t.match(refusal, { statusCode: 401, error: 'Unauthorized', message: /token/ });
  t.notOk('points' in refusal, 'no prices in the refusal');

  const notGranted = await fetch(`${gateway.url}/tickers/${symbol}/history`, { headers: other });
  t.equal(notGranted.status, 403, 'a token without the ticker: 403');
  t.match(await notGranted.json(), { statusCode: 403, error: 'Forbidden' });

  const allowed = await fetch(`${gateway.url}/tickers/${symbol}/history`, { headers: granted });
  t.equal(allowed.status, 200, 'a token granting the ticker: 200');
  t.match(await allowed.json(), { symbol, points: [{ price: 64123.5 }] });
  const byQuery = await fetch(`${gateway.url}/tickers/${symbol}/history?window=1h&token=${granted.authorization.slice('Bearer '.length)}`);
  t.equal(byQuery.status, 200, 'the token as ?token=, as streams take it');

  // The stream answers the same three callers alike.
  t.equal((await openStream(t, `${gateway.url}/tickers/${symbol}/events`)).status, 401, 'its stream: 401 without a token');
  t.equal((await openStream(t, `${gateway.url}/tickers/${symbol}/events`, other)).status, 403, 'its stream: 403 without the ticker');
});

t.test('a ticker public per PUBLIC_TICKERS has an open history, with auth on; and with auth off every history is open', async (t) => {
  const symbol = uniqueName('PUB');
  const withPublic = await startGateway(t, secured({ publicTickers: [`${symbol.slice(0, 4)}*`] }));
  await postPrice(t, withPublic.url, symbol, 1.5, {});
  const privateOne = await fetch(`${withPublic.url}/tickers/${uniqueName('PRIV')}/history`);
  t.equal(privateOne.status, 401, 'a ticker that is not public still needs a token there');

  const open = await startGateway(t);
  const response = await fetch(`${open.url}/tickers/${uniqueName('ANY')}/history`);
  t.equal(response.status, 200, 'auth off: open');
  t.match(await response.json(), { points: [] });
});

t.test('the OpenAPI document says the history authenticates as streams do, and documents 401 and 403', async (t) => {
  const gateway = await startGateway(t, secured());
  // any: the OpenAPI document, walked as JSON.
  const document: any = await (await fetch(`${gateway.url}/docs/json`)).json();
  const operation = document.paths['/tickers/{symbol}/history'].get;
  t.same(operation.security, [{ bearerToken: [] }, { tokenCookie: [] }, { tokenQuery: [] }, {}]);
  t.ok(operation.responses['401'] && operation.responses['403'], '401 and 403 documented');
});
