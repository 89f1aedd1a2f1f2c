import t from 'tap';
import type { RecordMetadata, TopicMessages } from 'kafkajs';
import { PublishQueue } from '../../src/bus/publish-queue.ts';
import { partitionForKey } from '../../src/bus/partitioner.ts';
import type { OutgoingRecord, Position } from '../../src/bus/types.ts';

/**
 * PublishQueue: a partition's publishes that arrive while its send is under way go out together
 * in its next send, each answered with its own offset; partitions never share a send (one
 * partition per produce request) and never have two sends under way at once; a batch refused
 * as too large is sent again record by record. Kafka is a fake that appends each send's records
 * to the partition each message names and answers when the test says so.
 */

const PARTITIONS = 6;
const partitionOf = (record: OutgoingRecord) => partitionForKey(record.key, PARTITIONS);

class FakeKafka {
  readonly sends: TopicMessages[][] = [];
  readonly logs = new Map<string, string[]>();
  readonly #waiting: Array<() => void> = [];
  failNext: Error | null = null;
  /** A send whose values add up to more than this is refused whole, as a broker does past `max.message.bytes`. */
  maxBatchBytes = Infinity;

  send = (topicMessages: TopicMessages[]): Promise<RecordMetadata[]> => {
    this.sends.push(topicMessages);
    return new Promise((resolve, reject) => {
      this.#waiting.push(() => {
        if (this.failNext !== null) {
          const error = this.failNext;
          this.failNext = null;
          reject(error);
          return;
        }
        const bytes = topicMessages.flatMap(({ messages }) => messages).reduce((sum, message) => sum + String(message.value).length, 0);
        if (bytes > this.maxBatchBytes) {
          reject(Object.assign(new Error('The request included a message larger than the max message size the server will accept'), { type: 'MESSAGE_TOO_LARGE', retriable: false }));
          return;
        }
        const answers: RecordMetadata[] = [];
        for (const { topic, messages } of topicMessages) {
          const bases = new Map<number, number>();
          for (const message of messages) {
            const partition = message.partition ?? partitionForKey(String(message.key), PARTITIONS);
            const log = this.logs.get(`${topic}:${partition}`) ?? [];
            this.logs.set(`${topic}:${partition}`, log);
            if (!bases.has(partition)) bases.set(partition, log.length);
            log.push(String(message.value));
          }
          for (const [partition, base] of bases) answers.push({ topicName: topic, partition, errorCode: 0, baseOffset: String(base) });
        }
        resolve(answers);
      });
    });
  };

  /** Answers the oldest send under way. */
  answer(): void {
    this.#waiting.shift()?.();
  }

  /** Answers every send, also those the answers set off, until none is under way. */
  async answerAll(): Promise<void> {
    do {
      while (this.#waiting.length > 0) this.answer();
      await new Promise((resolve) => setImmediate(resolve));
    } while (this.#waiting.length > 0);
  }

  texts(send: number): string[] {
    return this.sends[send]!.flatMap(({ messages }) => messages.map((message) => JSON.parse(String(message.value)).text as string));
  }
}

const record = (key: string, text: string, topic = 'chat'): OutgoingRecord => ({ topic, key, value: JSON.stringify({ text }), headers: {} });

/** Where the fake wrote a record: its position. */
function positionIn(kafka: FakeKafka, text: string): Position | undefined {
  for (const [at, log] of kafka.logs) {
    const offset = log.indexOf(JSON.stringify({ text }));
    if (offset >= 0) {
      const [topic, partition] = at.split(':');
      return { topic: topic!, partition: Number(partition), offset: String(offset) };
    }
  }
  return undefined;
}

t.test("a publish goes out at once; a partition's publishes arriving while its send is under way go together in its next send; partitions never share one", async (t) => {
  const kafka = new FakeKafka();
  const queue = new PublishQueue(kafka.send, partitionOf, { sendsInFlight: 5, recordsPerSend: 500, bytesPerSend: 1 << 20 });
  const first = queue.enqueue(record('room-a', 'a0'));
  t.equal(kafka.sends.length, 1, 'sent at once');
  const rest = [];
  for (let i = 1; i <= 10; i++) for (const room of ['a', 'b', 'c']) rest.push(queue.enqueue(record(`room-${room}`, `${room}${i}`, room === 'c' ? 'ticker' : 'chat')));
  t.same([kafka.texts(1), kafka.texts(2)], [['b1'], ['c1']], "other rooms' first publishes went at once, each in a send of its own");
  t.equal(kafka.sends.length, 3, "room a's wait for its send");
  await kafka.answerAll();
  await first.position;
  t.same(kafka.texts(3), Array.from({ length: 10 }, (_, i) => `a${i + 1}`), "room a's ten in one send");
  t.same(kafka.texts(4), Array.from({ length: 9 }, (_, i) => `b${i + 2}`), "room b's nine in one send");
  for (const send of kafka.sends) t.equal(new Set(send.flatMap(({ messages }) => messages.map((message) => message.partition))).size, 1, 'one partition per send');
  t.ok(kafka.sends.flat().flatMap(({ messages }) => messages).every((message) => message.partition === partitionForKey(String(message.key), PARTITIONS)), "each message names its key's partition");
  const positions = await Promise.all(rest.map((sent) => sent.position));
  for (const [index, position] of positions.entries()) {
    const text = `${['a', 'b', 'c'][index % 3]}${Math.floor(index / 3) + 1}`;
    t.same(position, positionIn(kafka, text), `${text}: the position Kafka wrote it at`);
  }
});

t.test('sendsInFlight bounds the sends under way; limits on records and bytes split a room\'s publishes', async (t) => {
  const kafka = new FakeKafka();
  const queue = new PublishQueue(kafka.send, partitionOf, { sendsInFlight: 2, recordsPerSend: 3, bytesPerSend: 100 });
  // Partitions 4, 0 and 3; 'k' is on 2.
  const others = [queue.enqueue(record('x', 'x0')), queue.enqueue(record('y', 'y0')), queue.enqueue(record('z1', 'z0'))];
  t.equal(kafka.sends.length, 2, 'two sends under way; the third room waits');
  const sent = [queue.enqueue(record('k', 'k0'))];
  for (let i = 1; i <= 4; i++) sent.push(queue.enqueue(record('k', `c${i}`)));
  sent.push(queue.enqueue(record('k', 'x'.repeat(150))));
  sent.push(queue.enqueue(record('k', 'd')));
  kafka.answer();
  await others[0]!.position;
  await new Promise((resolve) => setImmediate(resolve));
  t.same(kafka.texts(2), ['z0'], 'the room that waited longest goes next');
  await kafka.answerAll();
  const texts = kafka.sends.slice(3).map((_, index) => kafka.texts(index + 3));
  t.same(texts, [['k0', 'c1', 'c2'], ['c3', 'c4'], ['x'.repeat(150)], ['d']], 'at most 3 records; none past 100 bytes unless alone');
  const positions = await Promise.all(sent.map((entry) => entry.position));
  const first = Number(positions[0]!.offset);
  t.same(positions.map((position) => Number(position.offset) - first), [0, 1, 2, 3, 4, 5, 6], "the room's partition, in the order published");
  t.same(positions[3], positionIn(kafka, 'c3'), 'where Kafka wrote it');
});

t.test('a failed send fails its own publishes only; an abandoned publish that has not gone out never goes', async (t) => {
  const kafka = new FakeKafka();
  const queue = new PublishQueue(kafka.send, partitionOf, { sendsInFlight: 5, recordsPerSend: 500, bytesPerSend: 1 << 20 });
  const first = queue.enqueue(record('k', 'first'));
  const abandoned = queue.enqueue(record('k', 'abandoned'));
  const second = queue.enqueue(record('k', 'second'));
  const third = queue.enqueue(record('k', 'third'));
  abandoned.abandon();
  abandoned.position.catch(() => undefined);
  kafka.failNext = new Error('The producer is disconnected');
  kafka.answer();
  await t.rejects(first.position, /disconnected/, 'the failed send rejects its publish');
  await new Promise((resolve) => setImmediate(resolve));
  t.same(kafka.texts(1), ['second', 'third'], 'the abandoned one was left out');
  await t.rejects(abandoned.position, /abandoned before it was sent/);
  const other = queue.enqueue(record('other', 'elsewhere'));
  kafka.failNext = new Error('Request timed out');
  kafka.answer();
  await t.rejects(second.position, /timed out/);
  await t.rejects(third.position, /timed out/, 'every publish of the send');
  kafka.answer();
  t.same(await other.position, { topic: 'chat', partition: partitionForKey('other', PARTITIONS), offset: '0' }, "another room's send is its own");
  const later = queue.enqueue(record('k', 'later'));
  kafka.answer();
  t.same(await later.position, { topic: 'chat', partition: partitionForKey('k', PARTITIONS), offset: '0' }, 'the queue goes on after failures');
});

t.test('a batch refused as too large goes again in halves, leaving out publishes abandoned meanwhile; a record too large alone is refused once, alone', async (t) => {
  const kafka = new FakeKafka();
  kafka.maxBatchBytes = 100;
  const queue = new PublishQueue(kafka.send, partitionOf, { sendsInFlight: 5, recordsPerSend: 500, bytesPerSend: 1 << 20 });
  const first = queue.enqueue(record('k', 'first'));
  // Values of 51, 51, 131 and 12 bytes ({"text":"…"}), and one to be abandoned.
  const y = queue.enqueue(record('k', 'y'.repeat(40)));
  const gone = queue.enqueue(record('k', 'gone'));
  const z = queue.enqueue(record('k', 'z'.repeat(40)));
  const w = queue.enqueue(record('k', 'w'.repeat(120)));
  const v = queue.enqueue(record('k', 'v'));
  kafka.answer();
  await first.position;
  await new Promise((resolve) => setImmediate(resolve));
  t.same(kafka.texts(1).map((text) => text[0]), ['y', 'g', 'z', 'w', 'v'], 'the five together');
  gone.abandon();
  await kafka.answerAll();
  t.same(kafka.sends.slice(2).map((_, index) => kafka.texts(index + 2).map((text) => text[0])), [['y', 'z'], ['y'], ['z'], ['w', 'v'], ['w'], ['v']], 'refused: halves, without the abandoned one, until each fits or is alone');
  await t.rejects(gone.position, /abandoned before it was sent/, 'the abandoned one is never sent');
  t.same([(await y.position).offset, (await z.position).offset], ['1', '2']);
  await t.rejects(w.position, /larger than the max message size/, 'the one too large alone is refused alone, once');
  t.equal(kafka.sends.filter((send) => send[0]!.messages.length === 1 && String(send[0]!.messages[0]!.value).includes('www')).length, 1);
  t.same((await v.position).offset, '3', 'and the next still goes, in order');
  const later = [queue.enqueue(record('k', 'a'.repeat(30))), queue.enqueue(record('k', 'b'.repeat(30))), queue.enqueue(record('k', 'c'.repeat(30)))];
  await kafka.answerAll();
  await Promise.all(later.map((entry) => entry.position));
  t.ok(kafka.sends.slice(-3).every((send) => send[0]!.messages.length === 1), "the topic's later batches stay under half the refused size");
});

t.test('one key in two topics: two keys, never one send', async (t) => {
  const kafka = new FakeKafka();
  const queue = new PublishQueue(kafka.send, partitionOf, { sendsInFlight: 1, recordsPerSend: 500, bytesPerSend: 1 << 20 });
  const blocker = queue.enqueue(record('other', 'blocker'));
  const chat = queue.enqueue(record('room', 'to chat', 'chat'));
  const presence = queue.enqueue(record('room', 'to presence', 'chat.presence'));
  await kafka.answerAll();
  await blocker.position;
  t.same((await chat.position).topic, 'chat');
  t.same((await presence.position).topic, 'chat.presence');
  t.same(kafka.sends.map((send) => send.map(({ topic, messages }) => [topic, messages.length])), [[['chat', 1]], [['chat', 1]], [['chat.presence', 1]]]);
  t.same(positionIn(kafka, 'to presence')?.topic, 'chat.presence', 'written to its own topic');
});

t.test("a busy key goes to the back of the line: the others' turns come first", async (t) => {
  const kafka = new FakeKafka();
  const queue = new PublishQueue(kafka.send, partitionOf, { sendsInFlight: 1, recordsPerSend: 2, bytesPerSend: 1 << 20 });
  const all = [queue.enqueue(record('hot', 'h0'))];
  for (let i = 1; i <= 6; i++) all.push(queue.enqueue(record('hot', `h${i}`)));
  // Partitions 0 (hot), 1 and 3.
  all.push(queue.enqueue(record('quiet-1', 'q1')), queue.enqueue(record('quiet-3', 'q2')));
  await kafka.answerAll();
  await Promise.all(all.map((entry) => entry.position));
  t.same(kafka.sends.map((_, index) => kafka.texts(index)), [['h0'], ['h1', 'h2'], ['q1'], ['q2'], ['h3', 'h4'], ['h5', 'h6']]);
});

t.test('limits: a batch may reach bytesPerSend exactly; an answer for other than one partition fails the send', async (t) => {
  const kafka = new FakeKafka();
  const size = (text: string) => 'k'.length + JSON.stringify({ text }).length;
  const queue = new PublishQueue(kafka.send, partitionOf, { sendsInFlight: 1, recordsPerSend: 500, bytesPerSend: size('aa') + size('bb') });
  const sent = [queue.enqueue(record('k', 'x')), queue.enqueue(record('k', 'aa')), queue.enqueue(record('k', 'bb')), queue.enqueue(record('k', 'c'))];
  await kafka.answerAll();
  await Promise.all(sent.map((entry) => entry.position));
  t.same(kafka.sends.map((_, index) => kafka.texts(index)), [['x'], ['aa', 'bb'], ['c']]);
  const odd = new PublishQueue(async () => [
    { topicName: 'chat', partition: 0, errorCode: 0, baseOffset: '0' },
    { topicName: 'chat', partition: 1, errorCode: 0, baseOffset: '0' },
  ], partitionOf);
  await t.rejects(odd.enqueue(record('k', 'x')).position, /no offset/);
});

t.test('size counts publishes until answered, abandoned ones until dropped', async (t) => {
  const kafka = new FakeKafka();
  const queue = new PublishQueue(kafka.send, partitionOf, { sendsInFlight: 1, recordsPerSend: 500, bytesPerSend: 1 << 20 });
  const first = queue.enqueue(record('k', 'first'));
  const waiting = Array.from({ length: 10 }, (_, i) => queue.enqueue(record('k', `w${i}`)));
  for (const entry of waiting) entry.abandon();
  t.equal(queue.size, 11, 'abandoned, still queued');
  kafka.answer();
  await first.position;
  await Promise.allSettled(waiting.map((entry) => entry.position));
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(queue.size, 0, 'dropped at their turn');
  t.equal(kafka.sends.length, 1, 'none of them sent');
});

t.test('two keys on one partition: the second waits for the first send and never goes out beside it (kafkajs would hand it the first one\'s sequence numbers if that failed)', async (t) => {
  const kafka = new FakeKafka();
  const queue = new PublishQueue(kafka.send, partitionOf, { sendsInFlight: 8, recordsPerSend: 500, bytesPerSend: 1 << 20 });
  // 'room-a', 'k' and 'z' are all on partition 2; 'other' is on 4.
  const first = queue.enqueue(record('room-a', 'a0'));
  const sameKeyLater = [queue.enqueue(record('k', 'k0')), queue.enqueue(record('z', 'z0')), queue.enqueue(record('room-a', 'a1'))];
  const elsewhere = queue.enqueue(record('other', 'o0'));
  t.same(kafka.sends.map((_, index) => kafka.texts(index)), [['a0'], ['o0']], 'only the other partition went beside the first send');
  kafka.failNext = new Error('Request timed out');
  kafka.answer();
  await t.rejects(first.position, /timed out/);
  await new Promise((resolve) => setImmediate(resolve));
  t.same(kafka.texts(2), ['k0', 'z0', 'a1'], "the partition's three keys together, after the failed send answered");
  await kafka.answerAll();
  const positions = await Promise.all(sameKeyLater.map((entry) => entry.position));
  t.same(positions.map((position) => [position.partition, position.offset]), [[2, '0'], [2, '1'], [2, '2']], 'each its own offset, in order');
  t.same((await elsewhere.position).partition, 4);
});
