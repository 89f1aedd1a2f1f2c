/**
 * A real Apache Kafka (4.1.1, KRaft) for tests and local development, without Docker.
 *
 * - ensureKafkaJars(): resolves the broker jars once with Maven (scripts/kafka/pom.xml) into a
 *   cache outside git.
 * - startKafka(): formats storage and starts 1 or 3 combined broker+controller JVMs on
 *   127.0.0.1 with free ports, waits until an admin client sees them, and returns a handle.
 *
 * No orphan JVMs: each JVM runs under a small bash watchdog that kills it when the Node
 * process that started it is gone, and stop() / process 'exit' kill what is left.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes, createHash } from 'node:crypto'
import { existsSync, openSync, closeSync, readFileSync, rmSync, statSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile, open } from 'node:fs/promises'
import { createServer } from 'node:net'
import { freePort } from '../ports.ts'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { Kafka, logLevel, type SASLOptions } from 'kafkajs'

export const KAFKA_VERSION = '4.1.1'

const HERE = fileURLToPath(new URL('.', import.meta.url))
const POM = join(HERE, 'pom.xml')
const LOG4J_CONFIG = join(HERE, 'log4j2.properties')
const READY_TIMEOUT_MS = 90_000
const STOP_GRACE_MS = 15_000
const MARKER = '.complete'

export type ScramMechanism = 'SCRAM-SHA-256' | 'SCRAM-SHA-512'

export interface StartKafkaOptions {
  /** 1 (default) or 3 combined broker+controller nodes. */
  nodes?: 1 | 3
  /** Make the client listener SASL_PLAINTEXT with this SCRAM user (nodes=1 only). */
  sasl?: { mechanism: ScramMechanism; username: string; password: string }
  /** Broker log file (stdout/stderr of the JVM). With 3 nodes, `.<i>` is appended. Default: inside dataDir. */
  logFile?: string
  /**
   * Client listener port of node 0 (node i listens on `port + i`), for a fixed KAFKA_BROKERS.
   * Default: free ports. Throws before starting anything when one of them is in use.
   */
  port?: number
}

export interface KafkaCluster {
  /** "127.0.0.1:port" of each node's client listener, index = node index. */
  brokers: string[]
  /** SIGTERM all nodes, wait (SIGKILL after ~15 s), remove dataDir. Idempotent. */
  stop(): Promise<void>
  /** Stop one node (same grace/kill rules); its ports and data stay. */
  stopNode(i: number): Promise<void>
  /** Start a stopped node again on the same ports and data dir; resolves when it serves clients. */
  startNode(i: number): Promise<void>
  /** Temp directory holding every node's config, data and (default) log. */
  dataDir: string
  /** Pid of each node's JVM (undefined while that node is stopped). */
  jvmPids(): Array<number | undefined>
  /** kafkajs `sasl` option matching `opts.sasl`, or undefined. */
  saslConfig?: SASLOptions
}

// ---------------------------------------------------------------------------------------------
// Jars

function cacheRoot(): string {
  return process.env.KAFKA_SSE_CACHE ?? join(homedir(), '.cache', 'kafka-sse-gateway')
}

let jarsPromise: Promise<string> | undefined

/** Directory containing every jar the broker needs; resolves them with Maven on first use. */
export function ensureKafkaJars(): Promise<string> {
  jarsPromise ??= resolveJars().catch((err: unknown) => {
    jarsPromise = undefined
    throw err
  })
  return jarsPromise
}

async function resolveJars(): Promise<string> {
  const base = join(cacheRoot(), `kafka-${KAFKA_VERSION}`)
  const libs = join(base, 'libs')
  const want = createHash('sha256').update(await readFile(POM)).digest('hex')
  const complete = async (): Promise<boolean> => {
    try {
      return (await readFile(join(libs, MARKER), 'utf8')).trim() === want
    } catch {
      return false
    }
  }
  if (await complete()) return libs

  await mkdir(base, { recursive: true })
  const lock = join(base, '.lock')
  await acquireLock(lock)
  try {
    if (await complete()) return libs // another process finished while we waited
    process.stderr.write(`fetching Kafka ${KAFKA_VERSION} jars with Maven (first run only)…\n`)
    const tmp = join(base, `libs.tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
    await rm(tmp, { recursive: true, force: true })
    try {
      await runMaven(tmp)
      await writeFile(join(tmp, MARKER), want + '\n')
      await rm(libs, { recursive: true, force: true })
      await rename(tmp, libs)
    } finally {
      await rm(tmp, { recursive: true, force: true })
    }
    return libs
  } finally {
    await rm(lock, { recursive: true, force: true })
  }
}

async function acquireLock(lock: string): Promise<void> {
  const deadline = Date.now() + 10 * 60_000
  for (;;) {
    try {
      await mkdir(lock)
      await writeFile(join(lock, 'owner'), `${process.pid}\n`)
      return
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    // Stale lock: its owner died (pid gone) or it is older than 10 minutes.
    try {
      const owner = Number((await readFile(join(lock, 'owner'), 'utf8')).trim())
      const age = Date.now() - (await stat(lock)).mtimeMs
      if ((owner > 0 && !pidAlive(owner)) || age > 10 * 60_000) {
        await rm(lock, { recursive: true, force: true })
        continue
      }
    } catch {
      // owner file not written yet, or lock just released: retry
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for lock ${lock}`)
    await sleep(250)
  }
}

function runMaven(outDir: string): Promise<void> {
  const mvn = process.env.MVN ?? 'mvn'
  const args = [
    '-q',
    '-B',
    '-Dstyle.color=never',
    '-f',
    POM,
    `-Dkafka.libs.dir=${outDir}`,
    'dependency:copy-dependencies',
  ]
  return new Promise((resolve, reject) => {
    const child = spawn(mvn, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: HERE })
    const out: Buffer[] = []
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => out.push(b))
    child.on('error', (err) => reject(new Error(`cannot run ${mvn}: ${err.message}`)))
    child.on('close', (code, signal) => {
      if (code === 0) return resolve()
      const text = Buffer.concat(out).toString('utf8')
      process.stderr.write(text)
      reject(new Error(`${mvn} ${args.join(' ')} failed (code ${code ?? signal})`))
    })
  })
}

// ---------------------------------------------------------------------------------------------
// Helpers

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Distinct free ports (a port freed by one probe could be handed out again by the next), none of `taken`. */
async function freePorts(n: number, taken: readonly number[] = []): Promise<number[]> {
  const ports = new Set<number>()
  while (ports.size < n) {
    const port = await freePort()
    if (!taken.includes(port)) ports.add(port)
  }
  return [...ports]
}

/** Throws when something already listens on 127.0.0.1:`port`. */
async function ensurePortFree(port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(err.code === 'EADDRINUSE' ? `port ${port} is in use: pick another --port` : `port ${port}: ${err.message}`)),
    )
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve()))
  })
}

/** Same format as Kafka's Uuid.toString(): 16 random bytes, base64url without padding. */
function randomClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url')
    if (!id.startsWith('-')) return id
  }
}

function tail(file: string, lines = 40): string {
  try {
    const text = readFileSync(file, 'utf8')
    return text.split('\n').slice(-lines - 1).join('\n')
  } catch {
    return '(no log)'
  }
}

function javaBin(): string {
  return process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java'
}

function jvmArgs(libs: string, heap: string[], classSharing: string[]): string[] {
  return [
    ...heap,
    ...classSharing,
    '-XX:-UsePerfData',
    // A throwaway broker lives minutes: the C1 compiler alone and the serial collector roughly
    // halve the CPU a start costs (measured: 10 -> 6 CPU-s), which on a 2-core machine running
    // the tests is time every other test file waits.
    '-XX:TieredStopAtLevel=1',
    '-XX:+UseSerialGC',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${LOG4J_CONFIG}`,
    '-cp',
    `${libs}/*`,
  ]
}

function runJava(args: string[], logFile: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const fd = openSync(logFile, 'a')
    const child = spawn(javaBin(), args, { stdio: ['ignore', fd, fd] })
    closeSync(fd)
    child.on('error', reject)
    child.on('close', (code) => {
      if (code === 0) resolve()
      else reject(new Error(`java ${args.slice(-6).join(' ')} exited ${code}\n${tail(logFile)}`))
    })
  })
}

/**
 * bash watchdog around the JVM: forwards TERM/INT/HUP to java; a background poller kills java
 * (TERM, then KILL after 15 s) when the Node parent or the wrapper itself disappears.
 * argv: $1 = node pid, $2 = pid file, rest = java command.
 */
const WATCHDOG = `
NODE_PID=$1; PID_FILE=$2; shift 2
"$@" &
JPID=$!
echo "$JPID" > "$PID_FILE"
trap 'kill -TERM "$JPID" 2>/dev/null' TERM INT HUP
WRAPPER=$$
(
  while kill -0 "$JPID" 2>/dev/null; do
    if ! kill -0 "$NODE_PID" 2>/dev/null || ! kill -0 "$WRAPPER" 2>/dev/null; then
      kill -TERM "$JPID" 2>/dev/null
      for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
        kill -0 "$JPID" 2>/dev/null || exit 0
        sleep 1
      done
      kill -KILL "$JPID" 2>/dev/null
      exit 0
    fi
    sleep 1
  done
) &
POLLER=$!
RC=0
while :; do
  wait "$JPID"; RC=$?
  kill -0 "$JPID" 2>/dev/null || break
done
kill "$POLLER" 2>/dev/null
exit "$RC"
`

/**
 * Removes the cluster's data dir once the Node parent is gone without calling stop() (killed by
 * a signal, crash), after the JVMs are gone (their watchdogs kill them). stop() kills it.
 * argv: $1 = node pid, $2 = data dir.
 */
const REAPER = `
NODE_PID=$1; DIR=$2
while kill -0 "$NODE_PID" 2>/dev/null; do sleep 1; done
for _ in $(seq 1 25); do
  alive=
  for f in "$DIR"/node-*/jvm.pid; do
    [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && alive=1
  done
  [ -z "$alive" ] && break
  sleep 1
done
rm -rf "$DIR"
`

function startReaper(dataDir: string): ChildProcess {
  const reaper = spawn('bash', ['-c', REAPER, 'kafka-reaper', String(process.pid), dataDir], {
    stdio: 'ignore',
    detached: true,
  })
  reaper.on('error', () => undefined)
  reaper.unref()
  return reaper
}

// Best-effort cleanup if the process exits without stop(): SIGKILL every JVM group, remove
// the data dirs. (If Node is killed outright, the watchdog does the same.)
const liveNodes = new Set<NodeProc>()
const liveDataDirs = new Set<string>()
let exitHookInstalled = false
function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const n of liveNodes) n.killSync()
    for (const dir of liveDataDirs) {
      try {
        rmSync(dir, { recursive: true, force: true })
      } catch {
        /* best effort */
      }
    }
  })
}

// ---------------------------------------------------------------------------------------------
// One node process

class NodeProc {
  child: ChildProcess | undefined
  jvmPid: number | undefined
  private exited: Promise<void> | undefined

  constructor(
    readonly index: number,
    readonly libs: string,
    readonly nodeDir: string,
    readonly propsFile: string,
    readonly logFile: string,
    readonly pidFile: string,
    /** JVM options for class-data sharing (see {@link ClassSharing}). */
    readonly classSharing: string[],
  ) {}

  get running(): boolean {
    return this.child !== undefined
  }

  async start(): Promise<void> {
    if (this.child) throw new Error(`kafka node ${this.index} is already running`)
    await rm(this.pidFile, { force: true })
    const fd = openSync(this.logFile, 'a')
    const args = [
      '-c',
      WATCHDOG,
      'kafka-watchdog',
      String(process.pid),
      this.pidFile,
      javaBin(),
      ...jvmArgs(this.libs, ['-Xmx512m', '-Xms256m'], this.classSharing),
      'kafka.Kafka',
      this.propsFile,
    ]
    // detached: own process group, so a terminal Ctrl-C reaches us (we stop the node in order)
    // and a final SIGKILL can take the whole group.
    const child = spawn('bash', args, { stdio: ['ignore', fd, fd], detached: true })
    closeSync(fd)
    this.child = child
    liveNodes.add(this)
    this.exited = new Promise<void>((resolve) => {
      child.once('exit', () => {
        if (this.child === child) {
          this.child = undefined
          this.jvmPid = undefined
          liveNodes.delete(this)
        }
        resolve()
      })
    })
    child.once('error', () => {
      /* reported through 'exit' / readiness */
    })
    // The JVM pid is written by the wrapper right after it forks java.
    for (let i = 0; i < 100 && this.child === child; i++) {
      try {
        const pid = Number((await readFile(this.pidFile, 'utf8')).trim())
        if (pid > 0) {
          this.jvmPid = pid
          break
        }
      } catch {
        /* not yet */
      }
      await sleep(20)
    }
  }

  async stop(): Promise<void> {
    const child = this.child
    if (!child || child.pid === undefined) return
    const exited = this.exited!
    try {
      process.kill(child.pid, 'SIGTERM') // the wrapper forwards TERM to java and waits for it
    } catch {
      /* already gone */
    }
    // Unref'd bounds: a pending timer would keep the caller's process alive for its full
    // length after the node has stopped (a test file that stops a broker then took 15 s to exit).
    const graceful = await Promise.race([exited.then(() => true), sleep(STOP_GRACE_MS, false, { ref: false })])
    if (!graceful) {
      this.killSync()
      await Promise.race([exited, sleep(5_000, undefined, { ref: false })])
    }
    // Make sure the JVM itself is gone too (it is the wrapper's child).
    const jvm = this.jvmPid
    if (jvm !== undefined) {
      for (let i = 0; i < 50 && pidAlive(jvm); i++) await sleep(100)
      if (pidAlive(jvm)) {
        try {
          process.kill(jvm, 'SIGKILL')
        } catch {
          /* gone */
        }
      }
    }
    this.child = undefined
    this.jvmPid = undefined
    liveNodes.delete(this)
  }

  /**
   * SIGKILL the JVM (the wrapper then reaps it and exits by itself, so no zombie is left);
   * if its pid is not known yet, SIGKILL the wrapper's whole process group.
   */
  killSync(): void {
    const pid = this.child?.pid
    if (this.jvmPid === undefined && pid !== undefined) {
      try {
        process.kill(-pid, 'SIGKILL')
      } catch {
        /* gone */
      }
    }
    if (this.jvmPid !== undefined) {
      try {
        process.kill(this.jvmPid, 'SIGKILL')
      } catch {
        /* gone */
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Cluster

interface NodePorts {
  client: number
  internal: number | undefined
  controller: number
}

function nodeProperties(
  i: number,
  n: number,
  ports: NodePorts[],
  logDir: string,
  sasl: StartKafkaOptions['sasl'],
): string {
  const p = ports[i]!
  const voters = ports.map((q, j) => `${j}@127.0.0.1:${q.controller}`).join(',')
  const minIsr = n === 3 ? 2 : 1
  const props: Record<string, string | number | boolean> = {
    'process.roles': 'broker,controller',
    'node.id': i,
    'controller.quorum.voters': voters,
    'controller.listener.names': 'CONTROLLER',
    'log.dirs': logDir,
    'num.partitions': 6,
    'default.replication.factor': n,
    'min.insync.replicas': minIsr,
    'offsets.topic.replication.factor': n,
    'offsets.topic.num.partitions': 1,
    'transaction.state.log.replication.factor': n,
    'transaction.state.log.min.isr': minIsr,
    'share.coordinator.state.topic.replication.factor': n,
    'share.coordinator.state.topic.min.isr': minIsr,
    'group.initial.rebalance.delay.ms': 0,
    'auto.create.topics.enable': false,
    'delete.topic.enable': true,
  }
  if (sasl) {
    const mech = sasl.mechanism.toLowerCase()
    Object.assign(props, {
      listeners: `CLIENT://127.0.0.1:${p.client},PLAINTEXT://127.0.0.1:${p.internal},CONTROLLER://127.0.0.1:${p.controller}`,
      'advertised.listeners': `CLIENT://127.0.0.1:${p.client},PLAINTEXT://127.0.0.1:${p.internal}`,
      'listener.security.protocol.map': 'CLIENT:SASL_PLAINTEXT,PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
      'inter.broker.listener.name': 'PLAINTEXT',
      'sasl.enabled.mechanisms': sasl.mechanism,
      'listener.name.client.sasl.enabled.mechanisms': sasl.mechanism,
      [`listener.name.client.${mech}.sasl.jaas.config`]:
        'org.apache.kafka.common.security.scram.ScramLoginModule required;',
    })
  } else {
    Object.assign(props, {
      listeners: `PLAINTEXT://127.0.0.1:${p.client},CONTROLLER://127.0.0.1:${p.controller}`,
      'advertised.listeners': `PLAINTEXT://127.0.0.1:${p.client}`,
      'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
      'inter.broker.listener.name': 'PLAINTEXT',
    })
  }
  return (
    Object.entries(props)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join('\n') + '\n'
  )
}

/** Poll describeCluster() through `broker` until it answers (and lists `expectIds`). */
async function waitReady(
  broker: string,
  expectIds: number[],
  nodes: NodeProc[],
  sasl: SASLOptions | undefined,
  deadline: number,
): Promise<void> {
  let lastError = 'no answer yet'
  while (Date.now() < deadline) {
    for (const n of nodes) {
      if (!n.running) {
        // Said first, whatever the tail shows: startKafka starts again on other ports for it.
        const portTaken = readFileSync(n.logFile, 'utf8').includes('Address already in use') ? ' (Address already in use)' : ''
        throw new Error(`kafka node ${n.index} exited during startup${portTaken}. Log tail (${n.logFile}):\n${tail(n.logFile)}`)
      }
    }
    const kafka = new Kafka({
      clientId: 'kafka-harness-ready',
      brokers: [broker],
      logLevel: logLevel.NOTHING,
      connectionTimeout: 1_000,
      requestTimeout: 3_000,
      retry: { retries: 0 },
      ...(sasl ? { sasl } : {}),
    })
    const admin = kafka.admin()
    try {
      await admin.connect()
      const { brokers } = await admin.describeCluster()
      const ids = new Set(brokers.map((b) => b.nodeId))
      if (expectIds.every((id) => ids.has(id))) return
      lastError = `describeCluster lists nodes [${[...ids].join(',')}], want [${expectIds.join(',')}]`
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err)
    } finally {
      await admin.disconnect().catch(() => undefined)
    }
    await sleep(250)
  }
  const logs = nodes.map((n) => `--- node ${n.index} (${n.logFile}):\n${tail(n.logFile)}`).join('\n')
  throw new Error(
    `kafka at ${broker} not ready after ${READY_TIMEOUT_MS / 1000}s (last: ${lastError}). Broker log tail:\n${logs}`,
  )
}

/** Start a throwaway KRaft cluster on 127.0.0.1. Call stop() when done. */
export async function startKafka(opts: StartKafkaOptions = {}): Promise<KafkaCluster> {
  const libs = await ensureKafkaJars()
  const classSharing = await classSharingFor(libs)
  for (let attempt = 1; ; attempt++) {
    try {
      return await startCluster(opts, libs, classSharing)
    } catch (err) {
      // A port free when probed can still be taken by another process before the broker binds
      // it: start again on other ports (never with fixed ones, which the caller chose).
      if (opts.port !== undefined || attempt >= 3 || !/Address already in use/.test(String(err))) throw err
      process.stderr.write(`kafka: a port was taken before a broker could bind it; starting again on other ports\n`)
    }
  }
}

async function startCluster(opts: StartKafkaOptions, libs: string, classSharing: ClassSharing): Promise<KafkaCluster> {
  const n = opts.nodes ?? 1
  if (n !== 1 && n !== 3) throw new Error(`nodes must be 1 or 3, got ${String(n)}`)
  if (opts.sasl && n !== 1) throw new Error('sasl is only supported with nodes=1')
  const sasl = opts.sasl
  const saslConfig: SASLOptions | undefined = sasl
    ? sasl.mechanism === 'SCRAM-SHA-256'
      ? { mechanism: 'scram-sha-256', username: sasl.username, password: sasl.password }
      : { mechanism: 'scram-sha-512', username: sasl.username, password: sasl.password }
    : undefined

  installExitHook()
  const dataDir = await mkdtemp(join(tmpdir(), 'kafka-sse-'))
  liveDataDirs.add(dataDir)
  const reaper = startReaper(dataDir)
  const nodes: NodeProc[] = []
  let stopped = false

  const removeDataDir = (): void => {
    try {
      rmSync(dataDir, { recursive: true, force: true })
    } catch {
      /* best effort */
    }
  }
  const stopAll = async (): Promise<void> => {
    stopped = true
    await Promise.all(nodes.map((nd) => nd.stop()))
    removeDataDir()
    liveDataDirs.delete(dataDir)
    reaper.kill('SIGKILL')
  }

  try {
    const fixed = opts.port === undefined ? [] : Array.from({ length: n }, (_, i) => opts.port! + i)
    for (const port of fixed) await ensurePortFree(port)
    const allPorts = await freePorts(n * (sasl ? 3 : 2), fixed)
    const ports: NodePorts[] = []
    for (let i = 0; i < n; i++) {
      const base = i * (sasl ? 3 : 2)
      ports.push({
        client: fixed[i] ?? allPorts[base]!,
        controller: allPorts[base + 1]!,
        internal: sasl ? allPorts[base + 2]! : undefined,
      })
    }
    const clusterId = randomClusterId()

    await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const dir = join(dataDir, `node-${i}`)
        await mkdir(dir, { recursive: true })
        const propsFile = join(dir, 'server.properties')
        const logFile = opts.logFile ? (n === 1 ? opts.logFile : `${opts.logFile}.${i}`) : join(dir, 'kafka.log')
        await writeFile(propsFile, nodeProperties(i, n, ports, join(dir, 'data'), sasl))
        await (await open(logFile, 'a')).close()
        const fmt = ['format', '-t', clusterId, '-c', propsFile]
        if (sasl) fmt.push('--add-scram', `${sasl.mechanism}=[name=${sasl.username},password=${sasl.password}]`)
        await runJava([...jvmArgs(libs, ['-Xmx256m'], classSharing.tools), 'kafka.tools.StorageTool', ...fmt], logFile)
        nodes[i] = new NodeProc(i, libs, dir, propsFile, logFile, join(dir, 'jvm.pid'), classSharing.broker)
      }),
    )

    await Promise.all(nodes.map((nd) => nd.start()))
    const brokers = ports.map((p) => `127.0.0.1:${p.client}`)
    const ids = nodes.map((nd) => nd.index)
    await waitReady(brokers[0]!, ids, nodes, saslConfig, Date.now() + READY_TIMEOUT_MS)

    const nodeAt = (i: number): NodeProc => {
      const nd = nodes[i]
      if (!nd) throw new Error(`no kafka node ${i} (cluster has ${n})`)
      return nd
    }

    const cluster: KafkaCluster = {
      brokers,
      dataDir,
      saslConfig,
      stop: stopAll,
      jvmPids: () => nodes.map((nd) => nd.jvmPid),
      async stopNode(i: number) {
        await nodeAt(i).stop()
      },
      async startNode(i: number) {
        if (stopped) throw new Error('cluster was stopped')
        const nd = nodeAt(i)
        await nd.start()
        await waitReady(brokers[i]!, [i], [nd], saslConfig, Date.now() + READY_TIMEOUT_MS)
      },
    }
    return cluster
  } catch (err) {
    await stopAll().catch(() => undefined)
    throw err
  }
}

// ---------------------------------------------------------------------------------------------
// Class-data sharing

/** JVM options for the broker JVMs and for the storage tool run before each (may be empty). */
interface ClassSharing {
  broker: string[]
  tools: string[]
}

/** Both kinds of JVM started from `archive`, or with no sharing option when there is none. */
function sharingFrom(archive: string | undefined): ClassSharing {
  const options = archive === undefined ? [] : [`-XX:SharedArchiveFile=${archive}`]
  return { broker: options, tools: options }
}

let classArchivePromise: Promise<string | undefined> | undefined

/**
 * Options that start brokers from a class-data-sharing archive: the classes a broker loads while
 * it starts, already parsed and verified, mapped from one file (the JDK's AppCDS with a dynamic
 * archive, JEP 350, Java 13+). Measured here, a one-node cluster is ready in 3.1–3.5 s for ~5
 * CPU-s instead of 5.7–6.3 s for ~8 CPU-s, and `npm test` starts nine brokers on two cores.
 *
 * The archive is made once per jar cache and JDK (its name carries a hash of `java -version`, and
 * it lives inside the libs folder, which a new jar set replaces): a one-node broker started with
 * `-XX:ArchiveClassesAtExit`, stopped once it serves clients (~10 s, said on stderr), then
 * checked by starting a JVM that must use it (`-Xshare:on`), as it is again by every process that
 * starts brokers (one a JVM refuses is made again). Sharing is an optimisation only: if making
 * the archive fails, brokers start without one, the reason is printed once and kept beside the
 * jars, and making it is not tried again for a day.
 */
function classSharingFor(libs: string): Promise<ClassSharing> {
  return classArchiveFor(libs).then(sharingFrom)
}

/** The archive brokers start from in this process (made or checked once), or undefined when they start without one. */
function classArchiveFor(libs: string): Promise<string | undefined> {
  classArchivePromise ??= ensureClassArchive(libs).catch((err: unknown) => {
    process.stderr.write(`brokers start without a class-sharing archive: ${err instanceof Error ? err.message : String(err)}\n`)
    return undefined
  })
  return classArchivePromise
}

/** Path of a usable archive for `libs` and this JDK, made first if missing; undefined if it cannot be made. */
async function ensureClassArchive(libs: string): Promise<string | undefined> {
  const jdk = await javaVersion()
  const archive = join(libs, `broker-classes-${createHash('sha256').update(jdk).digest('hex').slice(0, 12)}.jsa`)
  const failed = `${archive}.failed`
  if (existsSync(archive) && (await archiveUsable(libs, archive))) return archive
  if (recentFailure(failed)) return undefined
  const lock = `${archive}.lock`
  await acquireLock(lock)
  try {
    // Made by another process while we waited, or there but unusable (jars copied with new
    // times, a truncated file: a JVM can even crash on one), then made again.
    if (existsSync(archive) && (await archiveUsable(libs, archive))) return archive
    if (recentFailure(failed)) return undefined
    process.stderr.write('making the brokers\' class-sharing archive (once per jar cache)…\n')
    for (const old of await readdir(libs)) {
      if (/^broker-classes-.*\.jsa$/.test(old)) await rm(join(libs, old), { force: true }) // another JDK's, or this one unusable
    }
    const tmp = `${archive}.tmp-${process.pid}`
    try {
      const training = await startCluster({ nodes: 1 }, libs, { broker: [`-XX:ArchiveClassesAtExit=${tmp}`], tools: [] })
      await training.stop() // the JVM writes the archive as it exits
      if (!existsSync(tmp)) throw new Error('the broker exited without writing it')
      if (!(await archiveUsable(libs, tmp))) throw new Error('a JVM refuses the archive the broker wrote (-Xshare:on)')
      await rename(tmp, archive)
      return archive
    } catch (err) {
      const reason = `making it failed: ${err instanceof Error ? err.message : String(err)}`
      await writeFile(failed, `${reason}\n`).catch(() => undefined)
      throw new Error(`${reason.split('\n')[0]} (all of it in ${failed}; tried again after a day, or once it is deleted)`)
    } finally {
      await rm(tmp, { force: true })
    }
  } finally {
    await rm(lock, { recursive: true, force: true })
  }
}

/**
 * Whether a JVM accepts `archive` with these jars: `-Xshare:on` makes it refuse to start instead
 * of running without (~0.3 CPU-s, once per process that starts brokers). A JVM that crashes on a
 * damaged archive counts as refusing; its crash report goes to the temp folder.
 */
function archiveUsable(libs: string, archive: string): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(javaBin(), [...jvmArgs(libs, ['-Xmx64m'], [`-XX:SharedArchiveFile=${archive}`, '-Xshare:on', `-XX:ErrorFile=${join(tmpdir(), 'kafka-sse-cds-check-%p.log')}`]), '-version'], { stdio: 'ignore' })
    child.on('error', () => resolve(false))
    child.on('close', (code) => resolve(code === 0))
  })
}

/** The archive brokers start from in this process (see classSharingFor), or undefined when they start without one. */
export async function brokerClassArchive(): Promise<string | undefined> {
  return classArchiveFor(await ensureKafkaJars())
}

/** True if making an archive failed less than a day ago (its reason is in `failedFile`). */
function recentFailure(failedFile: string): boolean {
  try {
    return Date.now() - statSync(failedFile).mtimeMs < 24 * 3600_000
  } catch {
    return false
  }
}

/** What `java -version` prints (its stderr): names the JDK build an archive belongs to. */
function javaVersion(): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(javaBin(), ['-version'], { stdio: ['ignore', 'ignore', 'pipe'] })
    let text = ''
    child.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`java -version exited ${code}`))))
  })
}

/** True if `dir` looks like a complete jar cache (for diagnostics). */
export function jarsCached(): boolean {
  return existsSync(join(cacheRoot(), `kafka-${KAFKA_VERSION}`, 'libs', MARKER))
}
