import * as crypto from 'node:crypto';

/** `crypto.hash` (a one-shot digest: Node 20.12 and later), or null before it. */
const oneShot: typeof crypto.hash | null = typeof crypto.hash === 'function' ? crypto.hash : null;

/**
 * SHA-256 of `data` (FIPS 180-4), 32 bytes. One-shot where Node has it: a `createHash` object
 * per call is a native object the garbage collector finalises one by one, which on paths taken
 * per event or per request cost more in collection than the digest itself (~2 µs per call;
 * docs/BENCHMARKS.md, deep resume, fourth round). Before Node 20.12, `createHash`.
 */
export function sha256(data: crypto.BinaryLike): Buffer {
  return oneShot === null ? crypto.createHash('sha256').update(data).digest() : oneShot('sha256', data, 'buffer');
}
