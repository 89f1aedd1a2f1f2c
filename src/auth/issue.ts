import { createHmac, createPrivateKey, sign, type KeyObject } from 'node:crypto';
import type { JwtAlgorithm } from './keys.ts';

/**
 * Issues a token the gateway accepts: for tests, and as the reference for services that mint
 * tokens (any JWT library does the same). Claims: `sub`, optional `name`, `rooms`, `tickers`,
 * `publish`, and `exp` (seconds since the epoch).
 */
export function issueToken(
  payload: Record<string, unknown>,
  key: string | KeyObject,
  algorithm: JwtAlgorithm,
  header: Record<string, unknown> = {},
): string {
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${encode({ alg: algorithm, typ: 'JWT', ...header })}.${encode(payload)}`;
  let signature: Buffer;
  if (algorithm === 'HS256') {
    signature = createHmac('sha256', key as string).update(input).digest();
  } else {
    const privateKey = typeof key === 'string' ? createPrivateKey(key) : key;
    // JWS wants ECDSA signatures as r||s, not DER.
    signature = sign('sha256', Buffer.from(input), algorithm === 'ES256' ? { key: privateKey, dsaEncoding: 'ieee-p1363' } : privateKey);
  }
  return `${input}.${signature.toString('base64url')}`;
}
