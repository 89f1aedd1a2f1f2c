/**
 * `npm run kafka [-- --nodes 3] [--port 9092]`: run a throwaway Kafka on 127.0.0.1 in the foreground.
 * Prints `KAFKA_BROKERS=host:port[,…]` on stdout; Ctrl-C (SIGINT) or SIGTERM stops it cleanly.
 */
import { parseArgs } from 'node:util'
import { jarsCached, startKafka, type KafkaCluster, type ScramMechanism } from './kafka.ts'

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '1' },
    port: { type: 'string' },
    'sasl-user': { type: 'string' },
    'sasl-password': { type: 'string' },
    'sasl-mechanism': { type: 'string', default: 'SCRAM-SHA-256' },
    help: { type: 'boolean', short: 'h' },
  },
})

if (values.help) {
  process.stderr.write(
    'usage: npm run kafka [-- --nodes 1|3] [--port N] [--sasl-user U --sasl-password P [--sasl-mechanism SCRAM-SHA-256|SCRAM-SHA-512]]\n' +
      '  --port N   the client port (node i of 3 listens on N+i); default: a free port\n',
  )
  process.exit(0)
}

const nodes = Number(values.nodes)
if (nodes !== 1 && nodes !== 3) {
  process.stderr.write(`--nodes must be 1 or 3, got ${values.nodes}\n`)
  process.exit(2)
}
const port = values.port === undefined ? undefined : Number(values.port)
if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port + nodes - 1 <= 65535)) {
  process.stderr.write(`--port must be a TCP port (1-65535), got ${values.port}\n`)
  process.exit(2)
}
const mechanismArg = values['sasl-mechanism']
if (mechanismArg !== 'SCRAM-SHA-256' && mechanismArg !== 'SCRAM-SHA-512') {
  process.stderr.write(`--sasl-mechanism must be SCRAM-SHA-256 or SCRAM-SHA-512\n`)
  process.exit(2)
}
const mechanism: ScramMechanism = mechanismArg
const sasl =
  values['sasl-user'] !== undefined
    ? { mechanism, username: values['sasl-user'], password: values['sasl-password'] ?? '' }
    : undefined

let cluster: KafkaCluster | undefined
let stopping = false

async function shutdown(signal: NodeJS.Signals): Promise<void> {
  if (stopping) {
    process.stderr.write('second signal: exiting now (the watchdog kills the JVMs)\n')
    process.exit(130)
  }
  stopping = true
  process.stderr.write(`${signal}: stopping Kafka…\n`)
  await cluster?.stop()
  process.stderr.write('Kafka stopped\n')
  process.exit(0)
}
process.on('SIGINT', (s) => void shutdown(s))
process.on('SIGTERM', (s) => void shutdown(s))

const t0 = Date.now()
if (!jarsCached()) process.stderr.write('first run: Maven will download the Kafka jars (tens of MB)…\n')
process.stderr.write(`starting Kafka (${nodes} node${nodes === 1 ? '' : 's'})…\n`)
try {
  cluster = await startKafka({ nodes, ...(sasl ? { sasl } : {}), ...(port !== undefined ? { port } : {}) })
} catch (err) {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
}
if (stopping) {
  await cluster.stop()
  process.exit(0)
}
process.stderr.write(`Kafka ready in ${((Date.now() - t0) / 1000).toFixed(1)}s; data in ${cluster.dataDir}; Ctrl-C to stop\n`)
process.stdout.write(`KAFKA_BROKERS=${cluster.brokers.join(',')}\n`)
if (sasl) process.stdout.write(`KAFKA_SASL_MECHANISM=${sasl.mechanism}\nKAFKA_SASL_USERNAME=${sasl.username}\n`)
// Keep the event loop alive until a signal arrives.
setInterval(() => undefined, 1 << 30)
