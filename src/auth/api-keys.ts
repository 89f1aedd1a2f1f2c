import { timingSafeEqual } from 'node:crypto';
import { sha256 } from '../sha256.ts';

/**
 * Service API keys, compared in constant time: each configured key is hashed once and the
 * presented key's hash is compared against every entry, so neither the match position nor
 * the key length leaks through timing.
 */
export class ApiKeys {
  readonly #entries: Array<{ digest: Buffer; service: string }>;

  constructor(keys: ReadonlyMap<string, string>) {
    this.#entries = [...keys].map(([key, service]) => ({ digest: digest(key), service }));
  }

  get size(): number {
    return this.#entries.length;
  }

  /** The service a key belongs to, or null. */
  serviceFor(presented: string): string | null {
    const presentedDigest = digest(presented);
    let service: string | null = null;
    for (const entry of this.#entries) {
      if (timingSafeEqual(entry.digest, presentedDigest)) service = entry.service;
    }
    return service;
  }
}

function digest(value: string): Buffer {
  return sha256(value);
}
