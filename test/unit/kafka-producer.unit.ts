import t from 'tap';
import type { Producer, RecordMetadata, TopicMessages } from 'kafkajs';
import { ReplaceableProducer } from '../../src/bus/kafka-producer.ts';

/**
 * ReplaceableProducer: after a send fails with an unknown outcome, no later send goes out on
 * that producer (whose sequence numbers kafkajs wound back may repeat a written batch); the
 * failed send answers only once a fresh producer is connected; sends under way on the old one
 * finish there before it is disconnected; a refusal for size (nothing written) keeps it.
 * kafkajs's producer is a stand-in that records what each instance was asked to do; the real
 * one, against a three-node Kafka, is in test/broker-loss-kafka.test.ts.
 */

interface Call {
  resolve(value: RecordMetadata[]): void;
  reject(error: unknown): void;
}

class StandIn {
  static made: StandIn[] = [];
  readonly events = { CONNECT: 'connect', DISCONNECT: 'disconnect', REQUEST_TIMEOUT: 'request-timeout' } as const;
  readonly sends: Call[] = [];
  connected = false;
  disconnected = false;
  readonly #listeners = new Map<string, Array<() => void>>();
  readonly id = StandIn.made.length;
  constructor() {
    StandIn.made.push(this);
  }
  on(event: string, listener: () => void): void {
    this.#listeners.set(event, [...(this.#listeners.get(event) ?? []), listener]);
  }
  emit(event: string): void {
    for (const listener of this.#listeners.get(event) ?? []) listener();
  }
  async connect(): Promise<void> {
    if (StandIn.failConnects > 0) {
      StandIn.failConnects -= 1;
      throw new Error('Connection error: connect ECONNREFUSED');
    }
    this.connected = true;
    this.emit('connect');
  }
  async disconnect(): Promise<void> {
    this.disconnected = true;
    this.emit('disconnect');
  }
  sendBatch(_batch: { acks: number; topicMessages: TopicMessages[] }): Promise<RecordMetadata[]> {
    return new Promise((resolve, reject) => this.sends.push({ resolve, reject }));
  }
  static failConnects = 0;
}

const logger = { warn: () => undefined, debug: () => undefined, info: () => undefined, error: () => undefined } as never;
const batch: TopicMessages[] = [{ topic: 'chat', messages: [{ key: 'room', value: '{}', partition: 0 }] }];
const answer = (offset: string): RecordMetadata[] => [{ topicName: 'chat', partition: 0, errorCode: 0, baseOffset: offset }];
const turn = () => new Promise((resolve) => setImmediate(resolve));
/** Polls `done` every 20 ms, up to 5 s (a replacement retries its connect once a second). */
async function until(done: () => boolean): Promise<void> {
  for (const started = Date.now(); !done(); ) {
    if (Date.now() - started > 5000) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function setUp() {
  StandIn.made = [];
  StandIn.failConnects = 0;
  const events = { connects: 0, disconnects: 0, timeouts: 0 };
  const producer = new ReplaceableProducer(
    // A stand-in for kafkajs's Producer: only what ReplaceableProducer calls.
    () => new StandIn() as unknown as Producer,
    { onConnect: () => (events.connects += 1), onDisconnect: () => (events.disconnects += 1), onRequestTimeout: () => (events.timeouts += 1) },
    logger,
  );
  return { producer, events };
}

t.test('a send that failed with an unknown outcome answers at once; every later send waits for a fresh producer and goes on it', async (t) => {
  const { producer, events } = setUp();
  await producer.connectOrKeepTrying();
  const failing = producer.sendBatch(batch);
  const besides = producer.sendBatch(batch);
  const old = StandIn.made[0]!;
  t.equal(old.sends.length, 2);
  StandIn.failConnects = 2;
  old.sends[0]!.reject(Object.assign(new Error('Request Produce(key: 0, version: 7) timed out'), { name: 'KafkaJSRequestTimeoutError' }));
  await t.rejects(failing, /timed out/, "kafkajs's error, at once (outcome unknown)");
  const later = producer.sendBatch(batch);
  await turn();
  t.notOk(producer.connected, 'a replacement that cannot connect: publishing answers 503 at once');
  t.equal(old.sends.length, 2, 'nothing more on the old producer');
  await until(() => producer.connected);
  t.equal(StandIn.made.length, 4, 'two replacements failed to connect, the third connected');
  t.ok(StandIn.made[1]!.disconnected && StandIn.made[2]!.disconnected, 'the ones that failed to connect are let go');
  const fresh = StandIn.made[3]!;
  await turn();
  t.equal(fresh.sends.length, 1, 'the send made during the replacement went on the fresh producer');
  t.equal(old.sends.length, 2, 'and nothing more on the old one');
  t.notOk(old.disconnected, 'the old one still has a send under way');
  old.sends[1]!.resolve(answer('7'));
  t.same(await besides, answer('7'), 'a send under way on the old producer finishes there');
  await turn();
  t.ok(old.disconnected, 'then the old one is disconnected');
  fresh.sends[0]!.resolve(answer('8'));
  t.same(await later, answer('8'));
  t.equal(producer.replacements, 1);
  t.equal(events.disconnects, 1, "one outage, while no replacement could connect; a replaced producer's disconnect is none");
  t.equal(events.connects, 2, 'the first connect and the fresh one');
  old.emit('request-timeout');
  fresh.emit('request-timeout');
  t.equal(events.timeouts, 1, 'events of the current producer only');
});

t.test('a refusal for size wrote nothing: the producer stays', async (t) => {
  const { producer } = setUp();
  await producer.connectOrKeepTrying();
  const refused = producer.sendBatch(batch);
  StandIn.made[0]!.sends[0]!.reject(Object.assign(new Error('The request included a message larger than the max message size the server will accept'), { type: 'MESSAGE_TOO_LARGE' }));
  await t.rejects(refused, /larger than/);
  const next = producer.sendBatch(batch);
  StandIn.made[0]!.sends[1]!.resolve(answer('1'));
  t.same(await next, answer('1'));
  t.equal(StandIn.made.length, 1);
  t.equal(producer.replacements, 0);
});

t.test('two sends failing together replace the producer once; disconnect ends a replacement that cannot connect', async (t) => {
  const { producer } = setUp();
  await producer.connectOrKeepTrying();
  const sends = [producer.sendBatch(batch), producer.sendBatch(batch)];
  const old = StandIn.made[0]!;
  StandIn.failConnects = 1000;
  for (const call of old.sends) call.reject(new Error('Connection error: read ECONNRESET'));
  await t.rejects(sends[0]!, /ECONNRESET/);
  await t.rejects(sends[1]!, /ECONNRESET/);
  const waiting = producer.sendBatch(batch);
  await turn();
  await producer.disconnect();
  await t.rejects(waiting, /closed/, 'a send waiting for the replacement is refused once disconnected');
  t.equal(producer.replacements, 1, 'one replacement for both');
  await t.rejects(producer.sendBatch(batch), /closed/, 'nothing is sent once disconnected');
});

t.test('closed while a replacement connects: the fresh producer is let go, not left connected', async (t) => {
  const { producer } = setUp();
  await producer.connectOrKeepTrying();
  const send = producer.sendBatch(batch);
  const old = StandIn.made[0]!;
  let release!: () => void;
  const connecting = new Promise<void>((resolve) => (release = resolve));
  const originalConnect = StandIn.prototype.connect;
  StandIn.prototype.connect = async function (this: StandIn) {
    await connecting;
    return originalConnect.call(this);
  };
  t.teardown(() => void (StandIn.prototype.connect = originalConnect));
  old.sends[0]!.reject(new Error('Request timed out'));
  await t.rejects(send, /timed out/);
  await producer.disconnect();
  release();
  await until(() => StandIn.made[1]?.disconnected === true);
  t.equal(StandIn.made.length, 2);
  t.ok(StandIn.made[1]!.disconnected, 'the producer that connected after the close is disconnected');
  t.notOk(producer.connected);
});

t.test('a failed send alone on its producer: the producer is let go at once, while the fresh one connects, and that is no outage', async (t) => {
  const { producer, events } = setUp();
  await producer.connectOrKeepTrying();
  let release!: () => void;
  const connecting = new Promise<void>((resolve) => (release = resolve));
  const originalConnect = StandIn.prototype.connect;
  t.teardown(() => void (StandIn.prototype.connect = originalConnect));
  const failing = producer.sendBatch(batch);
  const old = StandIn.made[0]!;
  StandIn.prototype.connect = async function (this: StandIn) {
    await connecting;
    return originalConnect.call(this);
  };
  old.sends[0]!.reject(new Error('Request timed out'));
  await t.rejects(failing, /timed out/);
  await turn();
  t.ok(old.disconnected, 'the failed producer, with no send left, is disconnected');
  t.ok(producer.connected, 'still connected: publishes wait for the fresh producer instead of answering 503');
  t.equal(events.disconnects, 0, 'no outage');
  const waiting = producer.sendBatch(batch);
  release();
  await until(() => StandIn.made[1]?.sends.length === 1);
  StandIn.made[1]!.sends[0]!.resolve(answer('3'));
  t.same(await waiting, answer('3'), 'the waiting send went on the fresh producer');
});

t.test('disconnected during a replacement that cannot connect: waiting sends are refused at once', async (t) => {
  const { producer } = setUp();
  await producer.connectOrKeepTrying();
  const failing = producer.sendBatch(batch);
  StandIn.failConnects = 1000;
  StandIn.made[0]!.sends[0]!.reject(new Error('Connection error: read ECONNRESET'));
  await t.rejects(failing, /ECONNRESET/);
  const waiting = producer.sendBatch(batch);
  await turn();
  const attempts = StandIn.made.length;
  await producer.disconnect();
  await t.rejects(waiting, /closed/);
  t.equal(StandIn.made.length, attempts, "refused before the replacement's next attempt to connect");
});

t.test('a first connect that fails does not hold the replica up: publishing answers 503 until a fresh producer connects in the background', async (t) => {
  const { producer, events } = setUp();
  StandIn.failConnects = 2;
  t.equal(await producer.connectOrKeepTrying(), false, 'resolves at once, not connected');
  t.notOk(producer.connected, 'publishing answers 503 meanwhile');
  t.ok(StandIn.made[0]!.disconnected, 'the producer that failed is let go');
  t.equal(await producer.connectOrKeepTrying(), false, 'asked again while it keeps trying: no second attempt of its own');
  await until(() => producer.connected);
  t.equal(events.connects, 1, 'told once, when a fresh one connected');
  t.equal(StandIn.made.length, 3, 'the first, one fresh that failed, one that connected');
  t.equal(await producer.connectOrKeepTrying(), true);
  const sent = producer.sendBatch(batch);
  StandIn.made[2]!.sends[0]!.resolve(answer('7'));
  t.same(await sent, answer('7'), 'sends go on the producer that connected');
  await producer.disconnect();
});
