import type { BusRecord, HeaderValue, RecordPage } from './types.ts';

/**
 * A page of records as plain data of a few typed arrays, whatever its length: what the range
 * reader's thread sends (their buffers transferred, not copied) and `PackedRecordPage` reads.
 * Per record `i`: `offsets[i]`, `timestamps[i]`, and in `spans[4i..4i+3]` where its bytes start in
 * `bytes`, then the lengths of its key and value (-1: null) and of its headers, which follow
 * each other there.
 *
 * Why: a page of 500 records as objects (each with its key, value and header buffers) is some
 * 3,000 objects that stay alive while a replay writes the page at its client's pace, across
 * several young-generation collections, each of which copies them: with ten deep replays the
 * collections took 15–50 ms each, every 100–200 ms, and the live streams waited behind them
 * (docs/BENCHMARKS.md, deep resume, fourth round). Packed, a page is a handful of objects;
 * a record is made when its turn comes and dies young.
 */
export interface PackedRecords {
  topic: string;
  partition: number;
  offsets: Float64Array;
  timestamps: Float64Array;
  spans: Int32Array;
  bytes: Uint8Array;
}

/**
 * Header value kinds in a packed page: kafkajs hands a header over as bytes, as null (a null
 * value) or, for a name the record repeats, as an array of them; a string where a caller made one.
 */
const ABSENT = 0;
const BYTES = 1;
const TEXT = 2;
const NULL = 3;
const LIST = 4;

/** The records (all of `topic` and `partition`) packed; `transfer`: the buffers to hand over with them. */
export function packRecords(topic: string, partition: number, records: readonly BusRecord[]): { packed: PackedRecords; transfer: ArrayBuffer[] } {
  const headerBlocks = records.map((record) => packHeaders(record.headers));
  let total = 0;
  for (const [index, record] of records.entries()) total += (record.key?.length ?? 0) + (record.value?.length ?? 0) + headerBlocks[index]!.length;
  const bytes = new Uint8Array(total);
  const offsets = new Float64Array(records.length);
  const timestamps = new Float64Array(records.length);
  const spans = new Int32Array(records.length * 4);
  let at = 0;
  for (const [index, record] of records.entries()) {
    offsets[index] = Number(record.offset);
    timestamps[index] = record.timestamp;
    spans[index * 4] = at;
    spans[index * 4 + 1] = record.key === null ? -1 : record.key.length;
    spans[index * 4 + 2] = record.value === null ? -1 : record.value.length;
    spans[index * 4 + 3] = headerBlocks[index]!.length;
    for (const part of [record.key, record.value, headerBlocks[index]!]) {
      if (part === null) continue;
      bytes.set(part, at);
      at += part.length;
    }
  }
  return { packed: { topic, partition, offsets, timestamps, spans, bytes }, transfer: [bytes.buffer, offsets.buffer, timestamps.buffer, spans.buffer] as ArrayBuffer[] };
}

/**
 * Headers as bytes: per header its name length (u32) and name, then its value: a kind byte
 * (absent, null, bytes, text, or a list: a u32 count of values that follow) and, for bytes and
 * text, a u32 length and the bytes.
 */
function packHeaders(headers: BusRecord['headers']): Buffer {
  const parts: Buffer[] = [];
  const u32 = (value: number) => {
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(value);
    return bytes;
  };
  const packValue = (value: HeaderValue): void => {
    if (Array.isArray(value)) {
      parts.push(Buffer.of(LIST), u32(value.length));
      for (const item of value) packValue(item);
    } else if (value === undefined || value === null) parts.push(Buffer.of(value === null ? NULL : ABSENT));
    else {
      const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : (value as Buffer);
      parts.push(Buffer.of(typeof value === 'string' ? TEXT : BYTES), u32(bytes.length), bytes);
    }
  };
  for (const [name, value] of Object.entries(headers)) {
    const nameBytes = Buffer.from(name, 'utf8');
    parts.push(u32(nameBytes.length), nameBytes);
    packValue(value);
  }
  return Buffer.concat(parts);
}

/** A packed page read record by record (see PackedRecords): keys, values and header values are views of its bytes. */
export class PackedRecordPage implements RecordPage {
  readonly #packed: PackedRecords;
  readonly #bytes: Buffer;

  constructor(packed: PackedRecords) {
    this.#packed = packed;
    this.#bytes = Buffer.from(packed.bytes.buffer, packed.bytes.byteOffset, packed.bytes.byteLength);
  }

  get length(): number {
    return this.#packed.offsets.length;
  }

  offsetAt(index: number): number {
    return this.#packed.offsets[index]!;
  }

  record(index: number): BusRecord {
    const { topic, partition, offsets, timestamps, spans } = this.#packed;
    const start = spans[index * 4]!;
    const keyLength = spans[index * 4 + 1]!;
    const valueLength = spans[index * 4 + 2]!;
    const headersLength = spans[index * 4 + 3]!;
    const valueStart = start + Math.max(keyLength, 0);
    const headersStart = valueStart + Math.max(valueLength, 0);
    return {
      topic,
      partition,
      offset: String(offsets[index]!),
      timestamp: timestamps[index]!,
      key: keyLength < 0 ? null : this.#bytes.subarray(start, start + keyLength),
      value: valueLength < 0 ? null : this.#bytes.subarray(valueStart, valueStart + valueLength),
      headers: this.#headers(headersStart, headersStart + headersLength),
    };
  }

  #headers(from: number, to: number): BusRecord['headers'] {
    const headers: BusRecord['headers'] = {};
    const bytes = this.#bytes;
    let at = from;
    const readValue = (): HeaderValue => {
      const kind = bytes.readUInt8(at);
      at += 1;
      if (kind === ABSENT) return undefined;
      if (kind === NULL) return null;
      if (kind === LIST) {
        const count = bytes.readUInt32BE(at);
        at += 4;
        return Array.from({ length: count }, () => readValue() as Buffer | string);
      }
      const length = bytes.readUInt32BE(at);
      const value = bytes.subarray(at + 4, at + 4 + length);
      at += 4 + length;
      return kind === TEXT ? value.toString('utf8') : value;
    };
    while (at < to) {
      const nameLength = bytes.readUInt32BE(at);
      const name = bytes.toString('utf8', at + 4, at + 4 + nameLength);
      at += 4 + nameLength;
      // Defined, not assigned: a header named `__proto__` stays a header.
      Object.defineProperty(headers, name, { value: readValue(), enumerable: true, writable: true, configurable: true });
    }
    return headers;
  }
}

/** Records already made, as a page (readers on the calling thread). */
export class ArrayRecordPage implements RecordPage {
  constructor(private readonly records: readonly BusRecord[]) {}

  get length(): number {
    return this.records.length;
  }

  offsetAt(index: number): number {
    return Number(this.records[index]!.offset);
  }

  record(index: number): BusRecord {
    return this.records[index]!;
  }
}
