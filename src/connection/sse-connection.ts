import type { Socket } from 'node:net';
import type { ServerResponse } from 'node:http';
import type { StreamEndReason, SubscriptionSink } from './subscription.ts';

/**
 * One event stream's connection: the bytes a subscription produces go straight to the client's
 * socket, as they are. A frame built once per event (or per batch) is written to every
 * subscriber without a copy, a per-connection queue, a stream pipeline or a promise: per
 * subscriber and batch the cost is one `socket.write`. Idle, a connection is this object and
 * what Node keeps for any open response.
 *
 * HTTP/1.1 responses stay chunked, as every client and proxy expects: a shared frame gets its
 * chunk framing once per fan-out, not once per subscriber. Writing past the response
 * object is only right once its headers are on the socket: a response queued behind another one
 * on the same connection (HTTP/1.1 pipelining) writes through the response instead, which keeps
 * the order.
 *
 * Bounded memory: a client whose unsent bytes grow past `maxBufferedBytes` is sent `overflow`
 * and cut off (it resumes from its last id), wherever those bytes wait: in the socket, or in the
 * response while it is queued behind another; events of a conflating kind (tickers) that arrive while they are past the
 * high-water mark are conflated to the latest per channel and sent on `drain`.
 */

export interface ConnectionStats {
  /** SSE frames (events and control frames) written. */
  framesWritten: number;
  bytesWritten: number;
  /** Frames of a conflating kind (tickers) replaced by a newer event of their channel while their client was behind. */
  conflated: number;
  /** Streams ended because the client could not keep up. */
  slowClientDisconnects: number;
}

export interface SseConnectionOptions {
  maxBufferedBytes: number;
  stats: ConnectionStats;
  /** The frame a client too slow to keep up is sent last. */
  overflowFrame: Buffer;
  /** Called once when the connection ends, whoever ends it, with what it sent and why it ended. */
  onEnd: (connection: SseConnection, summary: StreamSummary) => void;
  /** Told when a client is cut off for being too slow (for a log line with context). */
  onSlowClient?: (bufferedBytes: number) => void;
}

/** What one stream sent, and why it ended (for its end-of-stream log line). */
export interface StreamSummary {
  reason: StreamEndReason;
  /** Frames written: events, and control frames (its starting id, `reset`, heartbeats), as ConnectionStats counts them. */
  events: number;
  /** Bytes of those frames. */
  bytes: number;
}

/** A client that does not read would hold the unsent bytes of an ended stream forever. */
const LINGER_MS = 2000;

const CRLF = Buffer.from('\r\n');

/**
 * The HTTP/1.1 chunk (size line, frame, CRLF) of the frame written last. One entry is enough:
 * a shared frame is written to its subscribers one after the other (a hub flush, the heartbeat
 * loop: runs of up to 64 streams in the hub's slices), and keeping no more means frames kept in
 * the history carry no copy.
 */
let lastFrame: Buffer | undefined;
let lastChunk: Buffer = Buffer.alloc(0);

function chunkOf(frame: Buffer): Buffer {
  if (frame !== lastFrame) {
    const sizeLine = Buffer.from(`${frame.length.toString(16)}\r\n`, 'latin1');
    lastChunk = Buffer.concat([sizeLine, frame, CRLF], sizeLine.length + frame.length + CRLF.length);
    lastFrame = frame;
  }
  return lastChunk;
}

/**
 * Node keeps a response's header block (`_header`, read by libraries such as `on-headers`) for
 * the response's whole life, as the string it built by appending each header: a rope of ~30
 * pieces, ~1 KB that a stream, which lives for hours, holds for nothing. Encoding the string
 * once makes V8 flatten it in place (one piece); the pieces are then garbage. Measured with heap
 * snapshots of 2,000 idle streams (docs/BENCHMARKS.md, "Reconnect storms, idle memory and the
 * Kafka-path stalls").
 */
function flattenHeaderBlock(response: ServerResponse): void {
  const head = (response as unknown as { _header?: unknown })._header;
  if (typeof head === 'string') Buffer.from(head, 'latin1');
}

export class SseConnection implements SubscriptionSink {
  /**
   * Heartbeat ticks since the last write: every write sets it to 0, the shared heartbeat timer
   * adds one per tick and pings the connection when it reaches its count (a ping is a write, so
   * it starts the count again: an idle stream gets one comment per heartbeat period, not one
   * every other period).
   */
  idleTicks = 0;
  readonly #response: ServerResponse;
  readonly #socket: Socket;
  readonly #options: SseConnectionOptions;
  #conflated: Map<string, Buffer> | undefined;
  #ended = false;
  #events = 0;
  #bytes = 0;
  /** True once the headers went straight to the socket: frames may then bypass the response. */
  #direct = false;
  /** Whether the body is chunk-encoded (HTTP/1.1) or not (an HTTP/1.0 client). */
  #chunked = false;
  readonly #onClose = (): void => this.end(undefined, 'client-left');
  readonly #onDrain = (): void => this.#flushConflated();

  constructor(response: ServerResponse, options: SseConnectionOptions) {
    this.#response = response;
    // The request's socket: the response has none yet while it waits behind a pipelined one.
    this.#socket = response.req.socket as Socket;
    this.#options = options;
    this.#socket.on('close', this.#onClose);
  }

  /** Sends the status line, `headers` and `preamble` in one write. */
  open(headers: Record<string, string | number | readonly string[]>, preamble: Buffer): void {
    const response = this.#response;
    response.writeHead(200, headers as Record<string, string | number | string[]>);
    this.#chunked = response.chunkedEncoding;
    response.write(preamble);
    flattenHeaderBlock(response);
    // Nothing held in the response itself: the headers and preamble reached the socket.
    this.#direct = response.socket === this.#socket && response.writableLength === this.#socket.writableLength;
  }

  #send(frame: Buffer): void {
    if (!this.#direct) this.#response.write(frame);
    else this.#socket.write(this.#chunked ? chunkOf(frame) : frame);
  }

  /**
   * Bytes written to this stream that the client has not taken yet, wherever they wait: in the
   * socket (frames written straight to it), or in the response while it waits behind an earlier
   * response on the connection (pipelining: Node holds its body in `outputData` until the
   * socket is its own, where the socket's length does not see it).
   */
  #buffered(): number {
    return this.#direct ? this.#socket.writableLength : this.#response.writableLength;
  }

  /** True while this stream's bytes wait past the high-water mark (the same places as `#buffered`). */
  #needsDrain(): boolean {
    return this.#direct ? this.#socket.writableNeedDrain : this.#response.writableNeedDrain;
  }

  /** What emits `drain` once this stream's buffered bytes went out. */
  #drainSource(): Socket | ServerResponse {
    return this.#direct ? this.#socket : this.#response;
  }

  write(frame: Buffer, events = 1, conflateKey?: string, latest?: Buffer): void {
    if (this.#ended) return;
    if (conflateKey !== undefined && this.#needsDrain()) {
      if (this.#conflated === undefined) {
        this.#conflated = new Map();
        this.#drainSource().on('drain', this.#onDrain);
      }
      if (this.#conflated.has(conflateKey)) this.#options.stats.conflated += 1;
      // Re-inserted, so the map's order stays the order the prices came in.
      this.#conflated.delete(conflateKey);
      this.#conflated.set(conflateKey, latest ?? frame);
      return;
    }
    this.#send(frame);
    this.#count(frame, events);
    const buffered = this.#buffered();
    if (buffered > this.#options.maxBufferedBytes) {
      this.#options.stats.slowClientDisconnects += 1;
      this.#options.onSlowClient?.(buffered);
      this.end(this.#options.overflowFrame, 'overflow');
    }
  }

  #count(frame: Buffer, events: number): void {
    this.idleTicks = 0;
    this.#events += events;
    this.#bytes += frame.length;
    this.#options.stats.framesWritten += events;
    this.#options.stats.bytesWritten += frame.length;
  }

  #flushConflated(): void {
    const conflated = this.#conflated;
    if (conflated === undefined || conflated.size === 0 || this.#ended) return;
    const frames = [...conflated.values()];
    conflated.clear();
    for (const frame of frames) this.write(frame);
  }

  /** Whether `whenWritable` would wait: the client has not taken what was written so far. */
  backedUp(): boolean {
    return !this.#ended && !this.#socket.destroyed && this.#needsDrain();
  }

  /** Resolves once the client has taken what was written (or is gone): a replay goes at its pace. */
  whenWritable(): Promise<void> {
    const socket = this.#socket;
    if (this.#ended || socket.destroyed || !this.#needsDrain()) return Promise.resolve();
    const source = this.#drainSource();
    return new Promise<void>((resolve) => {
      const done = () => {
        source.off('drain', done);
        socket.off('close', done);
        resolve();
      };
      source.once('drain', done);
      socket.once('close', done);
    });
  }

  /**
   * Ends the stream after `lastFrame`; the client reconnects and resumes from its last id.
   * `reason` is only reported to `onEnd` (the default: the client left).
   */
  end(lastFrame?: Buffer, reason: StreamEndReason = 'client-left'): void {
    if (this.#ended) return;
    this.#ended = true;
    const socket = this.#socket;
    // The connection may carry further requests (keep-alive): it keeps no trace of this stream.
    socket.off('close', this.#onClose);
    if (this.#conflated !== undefined) this.#drainSource().off('drain', this.#onDrain);
    this.#conflated = undefined;
    if (!socket.destroyed) {
      if (lastFrame !== undefined) {
        this.#send(lastFrame);
        this.#count(lastFrame, 1);
      }
      this.#response.end();
      // A response still queued behind an earlier one holds its bytes until that one ends, which
      // for a stream may be never: the connection goes (with the stream ahead, which resumes by id).
      if (this.#buffered() > 0) setTimeout(() => socket.destroy(), LINGER_MS).unref();
    }
    this.#options.onEnd(this, { reason, events: this.#events, bytes: this.#bytes });
  }
}
