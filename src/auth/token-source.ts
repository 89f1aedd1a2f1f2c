/**
 * Where a request's token comes from. `EventSource` cannot send headers, so streams also
 * accept a cookie or a `?token=` query parameter; publishing accepts the header only (a
 * cookie would let any page the user visits publish in their name).
 */

export type TokenSource = 'header' | 'cookie' | 'query';

export interface TokenCarriers {
  authorization?: string | undefined;
  cookie?: string | undefined;
  /** The raw request URL (path and query string). */
  url?: string | undefined;
}

export type TokenLookup =
  | { found: true; token: string; source: TokenSource }
  | { found: false; malformed?: string };

/** Longer than any reasonable JWT; refusing early keeps hostile input out of the verifier. */
export const MAX_TOKEN_LENGTH = 8192;

function checked(token: string, source: TokenSource): TokenLookup {
  if (token.length === 0) return { found: false };
  if (token.length > MAX_TOKEN_LENGTH) return { found: false, malformed: `token longer than ${MAX_TOKEN_LENGTH} characters` };
  return { found: true, token, source };
}

export function bearerToken(authorization: string | undefined): TokenLookup {
  if (authorization === undefined || authorization === '') return { found: false };
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
  if (match === null) return { found: false, malformed: 'Authorization header is not "Bearer <token>"' };
  return checked(match[1]!, 'header');
}

export function cookieValue(cookieHeader: string | undefined, name: string): string | undefined {
  if (cookieHeader === undefined) return undefined;
  for (const pair of cookieHeader.split(';')) {
    const separator = pair.indexOf('=');
    if (separator < 0 || pair.slice(0, separator).trim() !== name) continue;
    let value = pair.slice(separator + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    try {
      return decodeURIComponent(value);
    } catch {
      return value;
    }
  }
  return undefined;
}

export function queryToken(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  const queryStart = url.indexOf('?');
  if (queryStart < 0) return undefined;
  try {
    return new URLSearchParams(url.slice(queryStart + 1)).get('token') ?? undefined;
  } catch {
    return undefined;
  }
}

/** Header first, then cookie, then query: the most deliberate carrier wins. */
export function findToken(carriers: TokenCarriers, cookieName: string): TokenLookup {
  const header = bearerToken(carriers.authorization);
  if (header.found || header.malformed !== undefined) return header;
  const cookie = cookieValue(carriers.cookie, cookieName);
  if (cookie !== undefined && cookie !== '') return checked(cookie, 'cookie');
  const query = queryToken(carriers.url);
  if (query !== undefined && query !== '') return checked(query, 'query');
  return { found: false };
}

/** The URL with any `token` query value replaced, for logs. */
export function redactTokenInUrl(url: string): string {
  const queryStart = url.indexOf('?');
  if (queryStart < 0) return url;
  const query = url.slice(queryStart + 1);
  if (!/token|%/i.test(query)) return url;
  const redacted = query
    .split('&')
    .map((part) => {
      const separator = part.indexOf('=');
      let key = separator < 0 ? part : part.slice(0, separator);
      try {
        key = decodeURIComponent(key.replace(/\+/g, ' '));
      } catch {
        // An undecodable key cannot be "token" as the server reads it; leave it.
      }
      return key.toLowerCase() === 'token' ? `${part.slice(0, separator < 0 ? part.length : separator)}=[redacted]` : part;
    })
    .join('&');
  return `${url.slice(0, queryStart)}?${redacted}`;
}
