/**
 * Counts the open streams of each identity so one token cannot hold unbounded connections.
 * `acquire` hands back a release function that may be called any number of times.
 */
export class StreamQuota {
  readonly #open = new Map<string, number>();

  constructor(readonly maxPerIdentity: number) {}

  /** A release function, or null when the identity is at its cap (0 = no cap). */
  acquire(identity: string): (() => void) | null {
    const current = this.#open.get(identity) ?? 0;
    if (this.maxPerIdentity > 0 && current >= this.maxPerIdentity) return null;
    this.#open.set(identity, current + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const remaining = (this.#open.get(identity) ?? 1) - 1;
      if (remaining <= 0) this.#open.delete(identity);
      else this.#open.set(identity, remaining);
    };
  }

  count(identity: string): number {
    return this.#open.get(identity) ?? 0;
  }
}
