import { createPublicKey, type KeyObject } from 'node:crypto';

/**
 * The keys tokens are verified with. Each key allows exactly one algorithm, chosen from the
 * key itself (never from the token): RS256 for RSA, ES256 for P-256, HS256 for the shared
 * secret. A token signed with anything else, `none` included, is refused.
 */

export type JwtAlgorithm = 'HS256' | 'RS256' | 'ES256';

export interface VerificationKey {
  /** JWKS `kid`; tokens name the key they were signed with in their header. */
  kid: string | null;
  algorithm: JwtAlgorithm;
  /** PEM (public keys) or the shared secret. */
  material: string;
}

export class KeyFileError extends Error {
  override name = 'KeyFileError';
}

function algorithmOf(key: KeyObject): JwtAlgorithm {
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  throw new KeyFileError(
    `unsupported key type ${key.asymmetricKeyType ?? 'unknown'}${key.asymmetricKeyDetails?.namedCurve ? ` (${key.asymmetricKeyDetails.namedCurve})` : ''}: use RSA (RS256) or EC P-256 (ES256)`,
  );
}

function pemOf(key: KeyObject): string {
  return key.export({ type: 'spki', format: 'pem' }).toString();
}

/** Parses a key file: a PEM public key (or certificate), or a JWKS `{"keys": [...]}`. */
export function parsePublicKeyFile(content: string): VerificationKey[] {
  const trimmed = content.trim();
  if (trimmed.startsWith('{')) return parseJwks(trimmed);
  if (/-----BEGIN (RSA |EC )?PRIVATE KEY-----/.test(trimmed)) {
    throw new KeyFileError('the file holds a private key: give the gateway the public key only');
  }
  let key: KeyObject;
  try {
    key = createPublicKey(trimmed);
  } catch {
    throw new KeyFileError('not a PEM public key or a JWKS document');
  }
  return [{ kid: null, algorithm: algorithmOf(key), material: pemOf(key) }];
}

function parseJwks(json: string): VerificationKey[] {
  let document: unknown;
  try {
    document = JSON.parse(json);
  } catch {
    throw new KeyFileError('not valid JSON');
  }
  const keys = (document as { keys?: unknown }).keys;
  if (!Array.isArray(keys) || keys.length === 0) throw new KeyFileError('a JWKS needs a non-empty "keys" array');
  const result: VerificationKey[] = [];
  for (const [index, jwk] of keys.entries()) {
    if (typeof jwk !== 'object' || jwk === null) throw new KeyFileError(`keys[${index}] is not an object`);
    const { kid, alg, use, d } = jwk as Record<string, unknown>;
    if (use !== undefined && use !== 'sig') continue;
    if (d !== undefined) throw new KeyFileError(`keys[${index}] is a private key: publish public keys only`);
    let key: KeyObject;
    try {
      // any: node's JsonWebKey type is structural; the object came from JSON and is checked by createPublicKey.
      key = createPublicKey({ key: jwk as any, format: 'jwk' });
    } catch {
      throw new KeyFileError(`keys[${index}] is not a usable public key`);
    }
    const algorithm = algorithmOf(key);
    if (alg !== undefined && alg !== algorithm) {
      throw new KeyFileError(`keys[${index}] says alg ${String(alg)} but is a ${algorithm} key`);
    }
    result.push({ kid: typeof kid === 'string' ? kid : null, algorithm, material: pemOf(key) });
  }
  if (result.length === 0) throw new KeyFileError('the JWKS has no signing key');
  return result;
}

export function secretKey(secret: string): VerificationKey {
  return { kid: null, algorithm: 'HS256', material: secret };
}

/**
 * The key a token's header points at: by `kid` when it names one, else the only key (or
 * the only key of the token's algorithm). null when none fits.
 */
export function selectKey(keys: readonly VerificationKey[], header: { kid?: unknown; alg?: unknown }): VerificationKey | null {
  const ofAlgorithm = keys.filter((key) => key.algorithm === header.alg);
  if (typeof header.kid === 'string') return ofAlgorithm.find((key) => key.kid === header.kid) ?? null;
  return ofAlgorithm.length === 1 ? ofAlgorithm[0]! : null;
}
