import type { BusRecord, RecordPage } from './types.ts';

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

/** Header value kinds in a packed page. */
const ABSENT = 0;
const BYTES = 1;
const TEXT = 2;

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

/** Headers as bytes: per header its kind (absent, bytes, text), name length (u16), name, value length (u32), value. */
function packHeaders(headers: BusRecord['headers']): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(headers)) {
    const nameBytes = Buffer.from(name, 'utf8');
    const valueBytes = value === undefined ? Buffer.alloc(0) : typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    const head = Buffer.alloc(7);
    head.writeUInt8(value === undefined ? ABSENT : typeof value === 'string' ? TEXT : BYTES, 0);
    head.writeUInt16BE(nameBytes.length, 1);
    head.writeUInt32BE(valueBytes.length, 3);
    parts.push(head.subarray(0, 3), nameBytes, head.subarray(3), valueBytes);
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
    while (at < to) {
      const kind = bytes.readUInt8(at);
      const nameLength = bytes.readUInt16BE(at + 1);
      const name = bytes.toString('utf8', at + 3, at + 3 + nameLength);
      const valueLength = bytes.readUInt32BE(at + 3 + nameLength);
      const valueStart = at + 7 + nameLength;
      const value = bytes.subarray(valueStart, valueStart + valueLength);
      headers[name] = kind === ABSENT ? undefined : kind === TEXT ? value.toString('utf8') : value;
      at = valueStart + valueLength;
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
