import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { KeyFileError, parsePublicKeyFile, selectKey, secretKey } from '../../src/auth/keys.ts';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ec384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const pem = (key: typeof rsa.publicKey) => key.export({ type: 'spki', format: 'pem' }).toString();

t.test('PEM public keys: the algorithm comes from the key', async (t) => {
  t.same(parsePublicKeyFile(pem(rsa.publicKey)).map((k) => k.algorithm), ['RS256']);
  t.same(parsePublicKeyFile(pem(ec.publicKey)).map((k) => k.algorithm), ['ES256']);
  t.throws(() => parsePublicKeyFile(pem(ec384.publicKey)), KeyFileError, 'P-384 is not ES256');
  t.throws(() => parsePublicKeyFile('not a key'), KeyFileError);
  t.throws(
    () => parsePublicKeyFile(rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()),
    /private key/,
    'a private key is refused',
  );
});

t.test('JWKS', async (t) => {
  const jwks = {
    keys: [
      { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'r1', alg: 'RS256', use: 'sig' },
      { ...ec.publicKey.export({ format: 'jwk' }), kid: 'e1' },
      { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'enc', use: 'enc' },
    ],
  };
  const keys = parsePublicKeyFile(JSON.stringify(jwks));
  t.same(keys.map((k) => [k.kid, k.algorithm]), [['r1', 'RS256'], ['e1', 'ES256']]);
  t.equal(selectKey(keys, { kid: 'e1', alg: 'ES256' })?.kid, 'e1');
  t.equal(selectKey(keys, { kid: 'e1', alg: 'RS256' }), null, 'kid and alg must agree');
  t.equal(selectKey(keys, { alg: 'RS256' })?.kid, 'r1', 'the only key of that algorithm');
  t.equal(selectKey(keys, { kid: 'nope', alg: 'RS256' }), null);
  t.equal(selectKey(keys, { alg: 'none' }), null);
  t.equal(selectKey(keys, { alg: 'HS256' }), null, 'no HS256 against a public key');

  t.throws(() => parsePublicKeyFile('{"keys": []}'), KeyFileError);
  t.throws(() => parsePublicKeyFile('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'), KeyFileError);
  t.throws(() => parsePublicKeyFile(JSON.stringify({ keys: [rsa.privateKey.export({ format: 'jwk' })] })), /private key/);
  t.throws(() => parsePublicKeyFile(JSON.stringify({ keys: [{ ...ec.publicKey.export({ format: 'jwk' }), alg: 'RS256' }] })), /says alg/);
  t.throws(() => parsePublicKeyFile('{ not json'), KeyFileError);
});

t.test('a shared secret is HS256', async (t) => {
  t.same(selectKey([secretKey('s'.repeat(32))], { alg: 'HS256' })?.algorithm, 'HS256');
  t.equal(selectKey([secretKey('s'.repeat(32))], { alg: 'RS256' }), null);
});
