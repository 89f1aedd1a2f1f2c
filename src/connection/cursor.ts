import { createCipheriv, hkdfSync, randomFillSync, timingSafeEqual, type Cipher } from 'node:crypto';
import { sha256 } from '../sha256.ts';
import type { Topics } from '../channels/contract.ts';

/**
 * SSE ids are resume cursors: for every partition a stream reads, the next offset it has not
 * yet delivered. They are the same whichever replica wrote them (they hold Kafka positions,
 * nothing local), and **opaque**: sealed with a key derived from the secret the replicas share,
 * so an id tells its holder nothing but "a position this gateway issued" (no offsets to watch
 * grow when other rooms on the partition get messages), and an edited or forged id is refused
 * instead of steering a replica's reads.
 *
 * Sealing is deterministic authenticated encryption in the SIV style (RFC 5297's construction
 * with HMAC-SHA256 as the PRF and AES-256-CTR as the cipher): the tag is a MAC of the plaintext,
 * and the tag is also the counter block, so one position always seals to the same id (replicas
 * agree, shared frames stay shared) and nothing but equality can be learnt from ids.
 *
 * Layout: version byte (clear, so ids of an older layout are recognised and answered with a
 * `reset`), then the encrypted entries, then a 12-byte tag. Plaintext: entry count (varint),
 * then per entry the topic slot (varint: 0 chat, 1 ticker, a declared kind's from its topic name,
 * src/channels/kind.ts), the partition (varint) and the next
 * offset as a fixed 6-byte big-endian integer (fixed so that an id's length says nothing of
 * how far a partition has grown).
 */

/** Which kind's topic a position is in: the kind's `slot` (src/channels/kind.ts). */
export type TopicSlot = number;

export interface CursorEntry {
  slot: TopicSlot;
  partition: number;
  /** The next offset to deliver: everything before it has been delivered. */
  next: number;
}

/** 1: signed but readable (before ids were sealed); refused, so such ids get `reset`. */
const VERSION = 2;
/**
 * Sealed with a random nonce in front of the entries: two ids of one position differ. For ids
 * that are not an event's own (a stream's position when it connects, after a replay page, a
 * multi-channel stream's combined position): equal ids would tell a stranger that no record
 * reached the partition in between, which is activity of rooms they cannot read.
 */
const FRESH_VERSION = 3;
const NONCE_BYTES = 8;
/**
 * Nonces are drawn from the CSPRNG in blocks: one `randomFillSync` per 512 fresh ids instead of
 * one per id (a call cost ~8 µs, ~3 % of opening a stream: reconnect-storm profile, 2026-12-02).
 * Each byte is handed out once.
 */
const noncePool = Buffer.alloc(NONCE_BYTES * 512);
let noncePoolAt = noncePool.length;

function writeNonce(out: Buffer, at: number): void {
  if (noncePoolAt === noncePool.length) {
    randomFillSync(noncePool);
    noncePoolAt = 0;
  }
  noncePool.copy(out, at, noncePoolAt, noncePoolAt + NONCE_BYTES);
  noncePoolAt += NONCE_BYTES;
}
const TAG_BYTES = 12;
const OFFSET_BYTES = 6;
/** Offsets are written in 6 bytes: 2^48 records per partition is beyond any real topic. */
const MAX_OFFSET = 2 ** 48 - 1;
/**
 * Most positions (topic, partition) one id holds: a stream following more is refused when it
 * opens (`tooManyPositions`), so every id the gateway writes is one it reads back. 512 entries
 * of the built-in kinds are ~4.6 KB, ~6.2 KB of base64url (declared kinds' wider slots: at most
 * ~9.6 KB): a `Last-Event-ID` header or `?lastEventId=` that fits within `MAX_HEADER_BYTES`'
 * default (16 KB) beside a token.
 */
export const MAX_CURSOR_ENTRIES = 512;
/** The widest slot (a declared kind's, src/channels/kind.ts `slotForTopic`: below 2^31) and partition (below 2^21) an id is sized for. */
const MAX_SLOT = 2 ** 31 - 1;
const MAX_PARTITION = 2 ** 21 - 1;
/**
 * The longest id the gateway writes (base64url characters): MAX_CURSOR_ENTRIES entries of the
 * widest slot and partition, a fresh id's nonce, the count, the version and the tag. A longer
 * one cannot come from us; refuse it before doing any work.
 */
export const MAX_CURSOR_LENGTH = Math.ceil(((1 + NONCE_BYTES + varintLength(MAX_CURSOR_ENTRIES) + MAX_CURSOR_ENTRIES * (varintLength(MAX_SLOT) + varintLength(MAX_PARTITION) + OFFSET_BYTES) + TAG_BYTES) * 4) / 3);

/**
 * Why a stream of this many positions cannot be served, or null when it can: its ids would hold
 * more than MAX_CURSOR_ENTRIES, and an id the gateway could not read back would lose events on
 * the next resume. The message is for a 400 answer.
 */
export function tooManyPositions(positions: number): string | null {
  return positions > MAX_CURSOR_ENTRIES
    ? `this stream would follow ${positions} Kafka partitions; a resumable event id holds at most ${MAX_CURSOR_ENTRIES}: ask for fewer channels per stream`
    : null;
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

function varintLength(value: number): number {
  let length = 1;
  for (let rest = value; rest >= 0x80; rest = Math.floor(rest / 0x80)) length++;
  return length;
}

function writeVarintAt(out: Buffer, at: number, value: number): number {
  let rest = value;
  let position = at;
  while (rest >= 0x80) {
    out[position++] = (rest % 0x80) | 0x80;
    rest = Math.floor(rest / 0x80);
  }
  out[position++] = rest;
  return position;
}

/** Bytes of the plaintext of `entries` (see the layout above). */
function plaintextLength(entries: readonly CursorEntry[]): number {
  let length = varintLength(entries.length);
  for (const entry of entries) length += varintLength(entry.slot) + varintLength(entry.partition) + OFFSET_BYTES;
  return length;
}

/**
 * Writes the plaintext of `entries` into `out` from `at` (exactly `plaintextLength` bytes).
 * Throws RangeError for more than MAX_CURSOR_ENTRIES entries, a slot or partition beyond the
 * widths MAX_CURSOR_LENGTH allows for, or an offset beyond 2^48: an id `decode` would refuse.
 */
function writePlaintext(entries: readonly CursorEntry[], out: Buffer, at: number): void {
  if (entries.length > MAX_CURSOR_ENTRIES) throw new RangeError(`${entries.length} positions in one id (at most ${MAX_CURSOR_ENTRIES})`);
  let position = writeVarintAt(out, at, entries.length);
  for (const entry of entries) {
    if (!Number.isSafeInteger(entry.next) || entry.next < 0 || entry.next > MAX_OFFSET) throw new RangeError(`offset ${entry.next} out of range`);
    if (entry.slot > MAX_SLOT || entry.partition > MAX_PARTITION) throw new RangeError(`slot ${entry.slot} or partition ${entry.partition} out of range`);
    position = writeVarintAt(out, position, entry.slot);
    position = writeVarintAt(out, position, entry.partition);
    out.writeUIntBE(entry.next, position, OFFSET_BYTES);
    position += OFFSET_BYTES;
  }
}

function entriesOf(plaintext: Buffer): CursorEntry[] | null {
  const count = readVarint(plaintext, 0);
  if (count === null || count[0] > MAX_CURSOR_ENTRIES) return null;
  const entries: CursorEntry[] = [];
  let position = count[1];
  for (let index = 0; index < count[0]; index++) {
    const slot = readVarint(plaintext, position);
    if (slot === null) return null;
    const partition = readVarint(plaintext, slot[1]);
    if (partition === null || partition[1] + OFFSET_BYTES > plaintext.length) return null;
    entries.push({ slot: slot[0], partition: partition[0], next: plaintext.readUIntBE(partition[1], OFFSET_BYTES) });
    position = partition[1] + OFFSET_BYTES;
  }
  return position === plaintext.length ? entries : null;
}

export class CursorCodec {
  /** The HMAC key XORed with its inner and outer pads (RFC 2104). */
  readonly #innerPad: Buffer;
  readonly #outerPad: Buffer;
  /** AES-256 in ECB mode, kept open: it encrypts CTR's counter blocks, and ECB keeps no state between calls. */
  readonly #blockCipher: Cipher;

  /**
   * `secret`: CURSOR_SECRET, shared by every replica. The topic names are bound into the keys,
   * so ids from a differently configured deployment are refused.
   */
  constructor(secret: string, topics: Topics) {
    const context = `kafka-sse-gateway cursor v${VERSION}\0${topics.chat}\0${topics.ticker}`;
    // HKDF (RFC 5869) turns one secret into two independent keys: one to authenticate, one to encrypt.
    const keys = Buffer.from(hkdfSync('sha256', secret, 'kafka-sse-gateway', context, 64));
    const macKey = keys.subarray(0, 32);
    // HMAC-SHA256 (RFC 2104): H((K ^ opad) || H((K ^ ipad) || m)), K zero-padded to the 64-byte block.
    const pad = (byte: number) => Buffer.from(Buffer.alloc(64, byte).map((value, index) => value ^ (macKey[index] ?? 0)));
    this.#innerPad = pad(0x36);
    this.#outerPad = pad(0x5c);
    this.#blockCipher = createCipheriv('aes-256-ecb', keys.subarray(32), null).setAutoPadding(false);
  }

  /**
   * HMAC-SHA256(macKey, version || plaintext), cut to TAG_BYTES: byte for byte what createHmac
   * gives, as two digests over the pre-padded key (src/sha256.ts: no native object per tag).
   * `signed` is version || plaintext.
   */
  #tag(signed: Buffer): Buffer {
    const inner = sha256(Buffer.concat([this.#innerPad, signed]));
    return sha256(Buffer.concat([this.#outerPad, inner])).subarray(0, TAG_BYTES);
  }

  /**
   * AES-256-CTR with the tag, zero-padded, as the initial counter block: the same tag always
   * gives the same keystream. Counter blocks are tag || big-endian block number (CTR increments
   * the whole block as one big-endian integer; with the last 4 bytes starting at zero and ids
   * far below 2^32 blocks, that is the same), encrypted in one ECB call, XORed with the data:
   * `data[start, end)` into `out` from `at` (which may be the same bytes: in place).
   */
  #crypt(tag: Buffer, data: Buffer, start: number, end: number, out: Buffer, at: number): void {
    const length = end - start;
    const blocks = Math.ceil(length / 16);
    const counters = Buffer.alloc(blocks * 16);
    for (let block = 0; block < blocks; block++) {
      tag.copy(counters, block * 16);
      counters.writeUInt32BE(block, block * 16 + 12);
    }
    const keystream = this.#blockCipher.update(counters);
    for (let i = 0; i < length; i++) out[at + i] = data[start + i]! ^ keystream[i]!;
  }

  /**
   * The id for these positions: base64url, safe in a header and a URL. The same positions give
   * the same id (an event's own id, shared by every stream and replica), unless `fresh`: then a
   * random nonce makes every id new (positions that are not one event's; see FRESH_VERSION).
   * Throws RangeError for an offset beyond 2^48.
   */
  encode(entries: Iterable<CursorEntry>, fresh = false): string {
    const list = Array.isArray(entries) ? (entries as readonly CursorEntry[]) : [...entries];
    // One buffer, written in place (a deep replay seals an id per event): version, then the
    // plaintext (nonce first when fresh), sealed where it stands, then the tag.
    const nonceBytes = fresh ? NONCE_BYTES : 0;
    const end = 1 + nonceBytes + plaintextLength(list);
    const out = Buffer.allocUnsafe(end + TAG_BYTES);
    out[0] = fresh ? FRESH_VERSION : VERSION;
    if (fresh) writeNonce(out, 1);
    writePlaintext(list, out, 1 + nonceBytes);
    const tag = this.#tag(out.subarray(0, end));
    this.#crypt(tag, out, 1, end, out, 1);
    tag.copy(out, end);
    return out.toString('base64url');
  }

  /** The entries of a cursor we issued, or null for anything else (edited, forged, foreign, older layout). */
  decode(id: string): CursorEntry[] | null {
    if (id.length === 0 || id.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(id)) return null;
    const raw = Buffer.from(id, 'base64url');
    const version = raw[0];
    if (raw.length <= TAG_BYTES + 1 || (version !== VERSION && version !== FRESH_VERSION)) return null;
    const tag = raw.subarray(raw.length - TAG_BYTES);
    // version || plaintext, decrypted in place.
    const signed = raw.subarray(0, raw.length - TAG_BYTES);
    this.#crypt(tag, raw, 1, signed.length, raw, 1);
    if (!timingSafeEqual(tag, this.#tag(signed))) return null;
    const plaintext = signed.subarray(1);
    if (version === FRESH_VERSION) return plaintext.length < NONCE_BYTES ? null : entriesOf(plaintext.subarray(NONCE_BYTES));
    return entriesOf(plaintext);
  }
}

export function positionKey(slot: TopicSlot, partition: number): string {
  return `${slot}:${partition}`;
}
