// Proves the Kafka test harness (scripts/kafka/kafka.ts, scripts/test.ts) and kafkajs 2.2.4
// against Kafka 4.1.1: produce/consume on the shared broker, and a broker restart.
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Kafka, logLevel, type KafkaMessage } from 'kafkajs'
import { brokerClassArchive, pidAlive, startKafka, type KafkaCluster } from '../scripts/kafka/kafka.ts'

// Starting a private broker can take a while on a cold machine; tap's default is 30 s per file.
t.setTimeout(180_000)

function client(brokers: string[]): Kafka {
  return new Kafka({
    clientId: `harness-${process.pid}`,
    brokers,
    logLevel: logLevel.NOTHING,
    retry: { retries: 8, initialRetryTime: 200 },
  })
}

t.test('shared broker: create topic, produce 3, consume them in order', { timeout: 60_000 }, async (t) => {
  let brokers = process.env.KAFKA_BROKERS?.split(',').filter(Boolean)
  let own: KafkaCluster | undefined
  if (!brokers?.length) {
    // Run directly with `tap` (not `npm test`): start a broker for this file.
    own = await startKafka()
    t.teardown(() => own?.stop())
    brokers = own.brokers
  }
  const kafka = client(brokers)
  const topic = `harness-${randomUUID()}`
  const admin = kafka.admin()
  await admin.connect()
  t.teardown(() => admin.disconnect())
  t.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true }), true)

  const producer = kafka.producer()
  await producer.connect()
  t.teardown(() => producer.disconnect())
  await producer.send({
    topic,
    messages: [1, 2, 3].map((i) => ({ key: 'k', value: `message-${i}` })),
  })

  const consumer = kafka.consumer({ groupId: `harness-${randomUUID()}` })
  await consumer.connect()
  t.teardown(() => consumer.disconnect())
  await consumer.subscribe({ topic, fromBeginning: true })
  const got: KafkaMessage[] = []
  const done = new Promise<void>((resolve) => {
    void consumer.run({
      eachMessage: async ({ message }) => {
        got.push(message)
        if (got.length === 3) resolve()
      },
    })
  })
  const giveUp = new AbortController()
  await Promise.race([
    done,
    sleep(45_000, undefined, { signal: giveUp.signal }).then(() => {
      throw new Error(`timed out: got ${got.length} of 3 messages`)
    }),
  ]).finally(() => giveUp.abort())
  t.same(
    got.map((m) => m.value?.toString()),
    ['message-1', 'message-2', 'message-3'],
  )
  t.same(
    got.map((m) => m.offset),
    ['0', '1', '2'],
  )
})

t.test('own broker: stopNode/startNode, produce after restart, stop leaves no JVM', { timeout: 150_000 }, async (t) => {
  const cluster = await startKafka()
  t.teardown(() => cluster.stop())
  const [pid] = cluster.jvmPids()
  t.ok(pid && pidAlive(pid), 'JVM running')
  // Started from the class-sharing archive when this machine has one (scripts/kafka/kafka.ts,
  // classSharingFor; without one, e.g. a JDK without its base archive, brokers start without),
  // and the JVM accepted it: with -Xshare:auto an unusable archive is only a warning in the log.
  const archive = await brokerClassArchive()
  const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
  if (archive === undefined) {
    t.notOk(args.some((arg) => arg.startsWith('-XX:SharedArchiveFile=')), 'no class-sharing archive here, and the broker is not told of one')
  } else {
    t.ok(args.includes(`-XX:SharedArchiveFile=${archive}`), `the broker runs from the class-sharing archive (${archive})`)
    const brokerLog = readFileSync(join(cluster.dataDir, 'node-0', 'kafka.log'), 'utf8')
    t.notMatch(brokerLog, /shared archive|CDS archive|-Xshare/i, 'and its log has no warning about it')
  }

  const kafka = client(cluster.brokers)
  const topic = `restart-${randomUUID()}`
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true })
  await admin.disconnect()

  const producer = kafka.producer()
  await producer.connect()
  await producer.send({ topic, messages: [{ value: 'before' }] })
  await producer.disconnect()

  await cluster.stopNode(0)
  t.notOk(pidAlive(pid!), 'JVM gone after stopNode')
  await cluster.startNode(0)
  const [pid2] = cluster.jvmPids()
  t.ok(pid2 && pid2 !== pid && pidAlive(pid2), 'new JVM after startNode')

  const producer2 = kafka.producer()
  await producer2.connect()
  const [meta] = await producer2.send({ topic, messages: [{ value: 'after' }] })
  await producer2.disconnect()
  t.equal(meta?.baseOffset, '1', 'data survived the restart; produce works after it')

  await cluster.stop()
  t.notOk(pidAlive(pid2!), 'JVM gone after stop')
  t.same(cluster.jvmPids(), [undefined])
})
