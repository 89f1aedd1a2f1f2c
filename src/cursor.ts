import { createHmac, timingSafeEqual } from 'node:crypto';
import type { ChannelKind, Topics } from './events.ts';

/**
 * SSE ids are resume cursors: for every partition a stream reads, the next offset it has not
 * yet delivered. They are opaque (base64url), the same whichever replica wrote them (they hold
 * Kafka positions, nothing local), and signed with a secret the replicas share, so an edited or
 * forged id is refused instead of steering a replica's reads.
 *
 * Layout before base64url: version byte, entry count, then per entry the topic slot (0 chat,
 * 1 ticker), partition and next offset as unsigned LEB128 varints, then a truncated HMAC-SHA256
 * over the topic names and everything before it.
 */

export type TopicSlot = 0 | 1;

/** The topic slot of each kind of channel: rooms live on the chat topic, symbols on the ticker topic. */
export const SLOT_OF_KIND: Record<ChannelKind, TopicSlot> = { room: 0, ticker: 1 };

export interface CursorEntry {
  slot: TopicSlot;
  partition: number;
  /** The next offset to deliver: everything before it has been delivered. */
  next: number;
}

const VERSION = 1;
const TAG_BYTES = 12;
const MAX_ENTRIES = 256;
/** A cursor longer than this cannot come from us; refuse it before doing any work. */
export const MAX_CURSOR_LENGTH = 4096;

function writeVarint(bytes: number[], value: number): void {
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  bytes.push(rest);
}

function readVarint(bytes: Buffer, start: number): [value: number, next: number] | null {
  let value = 0;
  let scale = 1;
  for (let index = start; index < bytes.length && index < start + 8; index++) {
    const byte = bytes[index]!;
    value += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) return Number.isSafeInteger(value) ? [value, index + 1] : null;
    scale *= 0x80;
  }
  return null;
}

export class CursorCodec {
  readonly #secret: string;
  readonly #context: string;

  constructor(secret: string, topics: Topics) {
    this.#secret = secret;
    // Binding the topic names means ids from a differently configured deployment are refused.
    this.#context = `${topics.chat}\0${topics.ticker}\0`;
  }

  #tag(payload: Buffer): Buffer {
    return createHmac('sha256', this.#secret).update(this.#context).update(payload).digest().subarray(0, TAG_BYTES);
  }

  encode(entries: Iterable<CursorEntry>): string {
    const bytes: number[] = [VERSION];
    const list = [...entries];
    writeVarint(bytes, list.length);
    for (const entry of list) {
      bytes.push(entry.slot);
      writeVarint(bytes, entry.partition);
      writeVarint(bytes, entry.next);
    }
    const payload = Buffer.from(bytes);
    return Buffer.concat([payload, this.#tag(payload)]).toString('base64url');
  }

  /** The entries of a cursor we signed, or null for anything else. */
  decode(id: string): CursorEntry[] | null {
    if (id.length === 0 || id.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(id)) return null;
    const raw = Buffer.from(id, 'base64url');
    if (raw.length <= TAG_BYTES + 2) return null;
    const payload = raw.subarray(0, raw.length - TAG_BYTES);
    const tag = raw.subarray(raw.length - TAG_BYTES);
    if (!timingSafeEqual(tag, this.#tag(payload))) return null;
    if (payload[0] !== VERSION) return null;
    const count = readVarint(payload, 1);
    if (count === null || count[0] > MAX_ENTRIES) return null;
    const entries: CursorEntry[] = [];
    let position = count[1];
    for (let index = 0; index < count[0]; index++) {
      const slot = payload[position];
      if (slot !== 0 && slot !== 1) return null;
      const partition = readVarint(payload, position + 1);
      if (partition === null) return null;
      const next = readVarint(payload, partition[1]);
      if (next === null) return null;
      entries.push({ slot, partition: partition[0], next: next[0] });
      position = next[1];
    }
    return position === payload.length ? entries : null;
  }
}

export function positionKey(slot: TopicSlot, partition: number): string {
  return `${slot}:${partition}`;
}
