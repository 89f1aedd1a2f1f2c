import t from 'tap';
import type { Message, RecordMetadata, TopicMessages } from 'kafkajs';
import { PublishQueue, recordingPartitioner } from '../../src/bus/publish-queue.ts';
import { partitionForKey } from '../../src/bus/partitioner.ts';
import type { OutgoingRecord, Position } from '../../src/bus/types.ts';

/**
 * PublishQueue: publishes that arrive while sends are under way go out together in the next
 * send, each answered with its own offset. Kafka is a fake that appends each send's records to
 * its partitions (with kafkajs's own DefaultPartitioner, through recordingPartitioner) and
 * answers when the test says so.
 */

const PARTITIONS = 6;

class FakeKafka {
  readonly sends: TopicMessages[][] = [];
  readonly logs = new Map<string, Message[]>();
  readonly #waiting: Array<() => void> = [];
  readonly #partitioner = recordingPartitioner();
  readonly partitionOf = this.#partitioner.partitionOf;
  readonly #choose = this.#partitioner.createPartitioner();
  failNext: Error | null = null;

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
        const answers: RecordMetadata[] = [];
        for (const { topic, messages } of topicMessages) {
          const bases = new Map<number, number>();
          for (const message of messages) {
            const partition = this.#choose({ topic, message, partitionMetadata: Array.from({ length: PARTITIONS }, (_, id) => ({ partitionId: id, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0] })) });
            const log = this.logs.get(`${topic}:${partition}`) ?? [];
            this.logs.set(`${topic}:${partition}`, log);
            if (!bases.has(partition)) bases.set(partition, log.length);
            log.push(message);
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

  get waiting(): number {
    return this.#waiting.length;
  }
}

const record = (key: string, text: string, topic = 'chat'): OutgoingRecord => ({ topic, key, value: JSON.stringify({ text }), headers: {} });

/** Where the fake wrote a record's value: its position. */
function positionIn(kafka: FakeKafka, value: string): Position | undefined {
  for (const [at, log] of kafka.logs) {
    const offset = log.findIndex((message) => message.value === value);
    if (offset >= 0) {
      const [topic, partition] = at.split(':');
      return { topic: topic!, partition: Number(partition), offset: String(offset) };
    }
  }
  return undefined;
}

t.test('a publish goes out at once; those arriving while sends are under way go together in the next one, each with its own position', async (t) => {
  const kafka = new FakeKafka();
  const queue = new PublishQueue(kafka.send, kafka.partitionOf, { sendsInFlight: 1, recordsPerSend: 500, bytesPerSend: 1 << 20 });
  const first = queue.enqueue(record('room-a', 'first'));
  t.equal(kafka.sends.length, 1, 'sent at once');
  const rest = Array.from({ length: 40 }, (_, i) => queue.enqueue(record(`room-${i % 7}`, `r${i}`, i % 2 === 0 ? 'chat' : 'ticker')));
  t.equal(kafka.sends.length, 1, 'nothing more while the first is under way');
  kafka.answer();
  await first.position;
  t.equal(kafka.sends.length, 2, 'the 40 went out in one send');
  t.same(kafka.sends[1]!.map(({ topic, messages }) => [topic, messages.length]), [['chat', 20], ['ticker', 20]]);
  kafka.answer();
  const positions = await Promise.all(rest.map((sent) => sent.position));
  for (const [i, position] of positions.entries()) {
    t.same(position, positionIn(kafka, JSON.stringify({ text: `r${i}` })), `r${i}: the position Kafka wrote it at`);
  }
  t.equal(positions[0]!.partition, partitionForKey('room-0', PARTITIONS), "kafkajs's DefaultPartitioner (murmur2) chose the partition");
});

t.test('sendsInFlight sends go out before any waits; limits on records and bytes split the rest', async (t) => {
  const kafka = new FakeKafka();
  const queue = new PublishQueue(kafka.send, kafka.partitionOf, { sendsInFlight: 2, recordsPerSend: 3, bytesPerSend: 100 });
  const sent = [queue.enqueue(record('k', 'a')), queue.enqueue(record('k', 'b'))];
  t.equal(kafka.sends.length, 2, 'two sends under way');
  for (let i = 0; i < 4; i++) sent.push(queue.enqueue(record('k', `c${i}`)));
  sent.push(queue.enqueue(record('k', 'x'.repeat(150))));
  sent.push(queue.enqueue(record('k', 'd')));
  kafka.answer();
  await sent[0]!.position;
  t.same(kafka.sends[2]!.flatMap(({ messages }) => messages.map((message) => JSON.parse(String(message.value)).text)), ['c0', 'c1', 'c2'], 'at most 3 records');
  kafka.answer();
  await sent[1]!.position;
  t.same(kafka.sends[3]!.flatMap(({ messages }) => messages.map((message) => JSON.parse(String(message.value)).text)), ['c3'], 'a record that would pass 100 bytes waits for the next send');
  // Answer everything until nothing more is sent.
  do {
    while (kafka.waiting > 0) kafka.answer();
    await new Promise((resolve) => setImmediate(resolve));
  } while (kafka.waiting > 0);
  t.same(kafka.sends[4]!.flatMap(({ messages }) => messages.map((message) => String(message.value).length)), [150 + '{"text":""}'.length], 'a record larger than the limit goes alone');
  t.equal(kafka.sends.length, 6, 'then the last one');
  const positions = await Promise.all(sent.map((entry) => entry.position));
  t.same(positions.map((position) => position.offset), ['0', '1', '2', '3', '4', '5', '6', '7'], 'one partition, in the order published');
});

t.test('a failed send fails each of its publishes; an abandoned publish that has not gone out never goes', async (t) => {
  const kafka = new FakeKafka();
  const queue = new PublishQueue(kafka.send, kafka.partitionOf, { sendsInFlight: 1, recordsPerSend: 500, bytesPerSend: 1 << 20 });
  const first = queue.enqueue(record('k', 'first'));
  const abandoned = queue.enqueue(record('k', 'abandoned'));
  const second = queue.enqueue(record('k', 'second'));
  const third = queue.enqueue(record('k', 'third'));
  abandoned.abandon();
  abandoned.position.catch(() => undefined);
  kafka.failNext = new Error('The producer is disconnected');
  kafka.answer();
  await t.rejects(first.position, /disconnected/, 'the failed send rejects its publish');
  t.same(kafka.sends[1]!.flatMap(({ messages }) => messages.map((message) => JSON.parse(String(message.value)).text)), ['second', 'third'], 'the abandoned one was left out');
  kafka.failNext = new Error('Request timed out');
  kafka.answer();
  await t.rejects(second.position, /timed out/);
  await t.rejects(third.position, /timed out/, 'every publish of the send');
  t.equal(kafka.waiting, 0);
  const later = queue.enqueue(record('k', 'later'));
  kafka.answer();
  t.same(await later.position, { topic: 'chat', partition: partitionForKey('k', PARTITIONS), offset: '0' }, 'the queue goes on after failures');
});
