/**
 * `npm test [-- <tap args>]`: runs tap against a real Kafka.
 * First it installs the system tools some tests drive (chromium, haproxy, promtool) from
 * Debian's packages where it can (scripts/test-tools.ts); where it cannot, it says so, the
 * tests needing them skip with the reason, and the reasons are repeated after tap's summary.
 * If KAFKA_BROKERS is unset, starts one single-node cluster (scripts/kafka/kafka.ts), passes
 * its address to tap through KAFKA_BROKERS, and stops it when tap exits. If KAFKA_BROKERS is
 * set, uses it and starts nothing. Meanwhile it copies the project into TEST_BUILD_DIR and
 * compiles it there (buildProjectForTests), and tap runs the compiled tests in that copy; if that
 * fails, tap runs the sources through tsx. Exits with tap's exit code.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { constants } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { pidAlive, startKafka, type KafkaCluster } from './kafka/kafka.ts'
import { ensureTestTools, MISSING_TOOLS_ENV, PROJECT_ROOT_ENV, realMachine, TEST_BUILD_DIR, TEST_SERVER_ENTRY_ENV, TEST_TOOLS } from './test-tools.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const tapBin = join(root, 'node_modules', '.bin', 'tap')

let cluster: KafkaCluster | undefined
let tap: ChildProcess | undefined
let signalled: NodeJS.Signals | undefined
let missingTools = new Map<string, string>()

function reportMissingTools(): void {
  for (const [name, reason] of missingTools) {
    const tool = TEST_TOOLS.find((candidate) => candidate.name === name)
    process.stderr.write(`SKIPPED ${tool?.neededBy ?? name}: ${reason}\n`)
  }
}

async function finish(code: number): Promise<never> {
  reportMissingTools()
  removeCompiledTree()
  if (cluster) {
    const c = cluster
    cluster = undefined
    await c.stop().catch((err: unknown) => {
      process.stderr.write(`stopping Kafka failed: ${String(err)}\n`)
    })
  }
  process.exit(code)
}

function onSignal(signal: NodeJS.Signals): void {
  if (signalled) {
    // second signal: give up waiting (the JVM watchdog kills the broker once we are gone)
    process.exit(128 + (constants.signals[signal] ?? 2))
  }
  signalled = signal
  // Said on stderr so that a run stopped from outside (a CI runner's limit, Ctrl-C) reads as such in its log.
  process.stderr.write(`npm test: received ${signal}; stopping tap and Kafka\n`)
  if (tap?.pid !== undefined && tap.exitCode === null && tap.signalCode === null) {
    // tap waits for its test processes, so signal its whole process group (tap is detached,
    // so a terminal Ctrl-C reaches only us), and insist if it has not exited after 20 s.
    killTapGroup(signal)
    setTimeout(() => killTapGroup('SIGKILL'), 20_000).unref()
  } else {
    void finish(128 + (constants.signals[signal] ?? 2))
  }
}

/**
 * The project as the tests run it: a copy in TEST_BUILD_DIR with every TypeScript file compiled
 * beside its source (tsc with types unchecked: `npm run typecheck` checks them), so tap's test
 * processes and the servers they spawn run JavaScript with plain Node, as `npm start` runs
 * dist/server.js, instead of through tsx's module hooks. Those cost ~2.7 ms per module loaded
 * (Node 20 sends each to the hooks' thread and back; TypeBox alone is ~370 modules), 3–5 CPU-s
 * per test process, on a run that is CPU-bound. A copy, not an output folder: what tests read
 * beside their code (README, deploy/, public/, the .ts sources that `npm pack` builds and that
 * tests run through tsx as users do) is where they expect it. node_modules is linked, not copied.
 * Resolves with the copy's root, or null (with the reason on stderr) when the build fails: the
 * tests then run from the sources through tsx.
 */
function buildProjectForTests(): Promise<string | null> {
  const builds = join(root, TEST_BUILD_DIR)
  const tree = compiledTree
  try {
    for (const entry of existsSync(builds) ? readdirSync(builds) : []) {
      const owner = /^run-(\d+)$/.exec(entry)?.[1]
      if (owner === undefined || !pidAlive(Number(owner)) || Number(owner) === process.pid) rmSync(join(builds, entry), { recursive: true, force: true })
    }
    const skipped = new Set(['node_modules', '.git', '.tap', 'dist', TEST_BUILD_DIR, 'test-artifacts', 'coverage', '.kafka'])
    for (const entry of readdirSync(root)) {
      if (!skipped.has(entry)) cpSync(join(root, entry), join(tree, entry), { recursive: true })
    }
    symlinkSync(join(root, 'node_modules'), join(tree, 'node_modules'), 'dir')
  } catch (err) {
    rmSync(tree, { recursive: true, force: true })
    process.stderr.write(`copying the project for the tests failed (${err instanceof Error ? err.message : String(err)}); tests run from the sources\n`)
    return Promise.resolve(null)
  }
  return new Promise((resolve) => {
    const tsc = spawn(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json', '--noCheck', '--noEmit', 'false', '--declaration', 'false', '--sourceMap', 'true', '--outDir', tree], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    tsc.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    tsc.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
    tsc.on('error', (err) => {
      process.stderr.write(`compiling the project for the tests failed (${err.message}); tests run from the sources\n`)
      resolve(null)
    })
    tsc.on('close', (code) => {
      if (code === 0) return resolve(tree)
      rmSync(tree, { recursive: true, force: true })
      process.stderr.write(`compiling the project for the tests failed; tests run from the sources:\n${output}\n`)
      resolve(null)
    })
  })
}

/**
 * tap's configuration for a run in the compiled copy: the project's .taprc with the compiled
 * test files, and instead of tsx's hooks Node's source maps, so that a failure names the line
 * of the TypeScript source (the maps point at the project's own files; ~0.4 CPU-s a process),
 * written into the copy (tap reads it through TAP_RCFILE).
 */
function compiledTapConfig(tree: string): string {
  const rc = readFileSync(join(root, '.taprc'), 'utf8')
    .replace('test/**/*.test.ts', 'test/**/*.test.js')
    .replace(/^node-arg:\n(?:\s+- .*\n)+/m, 'node-arg:\n  - --enable-source-maps\n')
  const file = join(tree, '.taprc.compiled')
  writeFileSync(file, rc)
  return file
}

/**
 * `npm test -- <args>` for the compiled copy: a test file named by its .ts path (also as a
 * glob, or as an option's value: `--before=test/x.ts`) is run as its .js.
 */
function compiledTapArgs(args: string[], tree: string): string[] {
  const compiledPath = (path: string): string | null => {
    if (!path.endsWith('.ts')) return null
    const compiled = relative(root, resolve(root, path)).replace(/\.ts$/, '.js')
    return existsSync(join(tree, compiled)) || /[*?[\]{}]/.test(path) ? compiled : null
  }
  return args.map((arg) => {
    const equals = arg.startsWith('--') ? arg.indexOf('=') : -1
    if (equals > 0) {
      const value = compiledPath(arg.slice(equals + 1))
      return value === null ? arg : `${arg.slice(0, equals + 1)}${value}`
    }
    return arg.startsWith('-') ? arg : (compiledPath(arg) ?? arg)
  })
}

/**
 * This run's compiled copy (buildProjectForTests): one per run, so that a run from another
 * terminal does not pull the tree from under this one; removed when the run ends (also when it
 * is stopped while the copy is being made), and copies left by runs that died are removed when
 * the next one starts.
 */
const compiledTree = join(root, TEST_BUILD_DIR, `run-${process.pid}`)

function removeCompiledTree(): void {
  rmSync(compiledTree, { recursive: true, force: true })
}

/**
 * Without a terminal, tap's reporter prints nothing until the whole run ends (its progress
 * display redraws a terminal; in a log it would be noise), so a CI log stayed silent for the
 * run's length (8–9 minutes here), and a run that ended without tap's summary said nothing of
 * what had passed. So, without a terminal, each test file's outcome is printed on stderr as tap
 * completes its results (`.tap/test-results/<file>.tap`, complete once it ends with its
 * `# time=` line): the file, its tests passed and failed, and how long it took; and a line
 * once a minute when no file finished. With a terminal, tap's display says it.
 * Returns the function that stops it when tap exits (after reporting what finished last).
 */
function reportProgressWithoutTerminal(startedAt: number, tapCwd: string): (() => void) | undefined {
  if (process.stdout.isTTY) return undefined
  const resultsDir = join(tapCwd, '.tap', 'test-results')
  const reported = new Set<string>()
  let lastLine = startedAt
  const report = (): void => {
    const now = Date.now()
    for (const result of finishedTestFiles(resultsDir, startedAt, reported)) {
      reported.add(result.file)
      lastLine = now
      const outcome = result.failed > 0 ? `${result.failed} FAILED, ${result.passed} passed` : `${result.passed} passed`
      process.stderr.write(`npm test: ${result.file}: ${outcome} in ${(result.ms / 1000).toFixed(0)} s (${reported.size} files done)\n`)
    }
    if (now - lastLine >= 60_000) {
      lastLine = now
      process.stderr.write(`npm test: ${((now - startedAt) / 60_000).toFixed(0)} min in, ${reported.size} test files done\n`)
    }
  }
  const timer = setInterval(report, 5_000)
  timer.unref()
  return () => {
    clearInterval(timer)
    report() // the files that finished since the last look
  }
}

/** A test file's results as tap wrote them: its top-level tests passed and failed, and its time. */
interface FileResult {
  file: string
  passed: number
  failed: number
  ms: number
}

/** Test files (paths relative to the project) whose tap results were completed after `since` (ms since the epoch), but for those in `known`, which are not read again. */
function finishedTestFiles(resultsDir: string, since: number, known: ReadonlySet<string>): FileResult[] {
  const finished: FileResult[] = []
  const walk = (dir: string): void => {
    let entries
    try {
      entries = readdirSync(dir, { withFileTypes: true })
    } catch {
      return // not written yet
    }
    for (const entry of entries) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.name.endsWith('.tap')) {
        // Named as in the project (the compiled copy runs test/x.test.js for test/x.test.ts).
        const file = relative(resultsDir, path).replace(/\.tap$/, '').replace(/\.js$/, '.ts')
        if (known.has(file) || statSync(path).mtimeMs < since) continue
        const text = readFileSync(path, 'utf8')
        const time = /\n# time=([\d.]+)ms\n*$/.exec(text.slice(-200))
        if (time === null) continue // still running
        finished.push({
          file,
          passed: text.match(/^ok \d+/gm)?.length ?? 0,
          failed: text.match(/^not ok \d+/gm)?.length ?? 0,
          ms: Number(time[1]),
        })
      }
    }
  }
  walk(resultsDir)
  return finished
}

function killTapGroup(signal: NodeJS.Signals): void {
  if (tap?.pid === undefined) return
  try {
    process.kill(-tap.pid, signal)
  } catch {
    /* already gone */
  }
}
process.on('SIGINT', onSignal)
process.on('SIGTERM', onSignal)

const env = { ...process.env }
missingTools = ensureTestTools(realMachine())
env[MISSING_TOOLS_ENV] = JSON.stringify(Object.fromEntries(missingTools))
reportMissingTools()
// Built while Kafka starts; tests then run compiled, and spawn the server as `npm start` runs it (test/helpers/server-process.ts).
const projectBuilt = buildProjectForTests()
if (!env.KAFKA_BROKERS) {
  const t0 = Date.now()
  process.stderr.write('starting a single-node Kafka for the tests…\n')
  try {
    cluster = await startKafka()
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`)
    await finish(1)
  }
  if (signalled) await finish(128 + (constants.signals[signalled] ?? 2))
  env.KAFKA_BROKERS = cluster!.brokers.join(',')
  process.stderr.write(`Kafka ready at ${env.KAFKA_BROKERS} in ${((Date.now() - t0) / 1000).toFixed(1)}s\n`)
} else {
  process.stderr.write(`using KAFKA_BROKERS=${env.KAFKA_BROKERS}\n`)
}

const compiled = await projectBuilt
let tapCwd = root
let tapArgs = process.argv.slice(2)
if (compiled !== null) {
  env[TEST_SERVER_ENTRY_ENV] = join(compiled, 'server.js')
  env[PROJECT_ROOT_ENV] = root
  env.TAP_RCFILE = compiledTapConfig(compiled)
  tapCwd = compiled
  tapArgs = compiledTapArgs(tapArgs, compiled)
}

const tapStartedAt = Date.now()
tap = spawn(tapBin, tapArgs, { stdio: 'inherit', env, cwd: tapCwd, detached: true })
const stopProgress = reportProgressWithoutTerminal(tapStartedAt, tapCwd)
// If we die without waiting for tap, don't leave its test processes running.
process.on('exit', () => {
  if (tap && tap.exitCode === null && tap.signalCode === null) killTapGroup('SIGKILL')
})
tap.on('error', (err) => {
  process.stderr.write(`cannot run ${tapBin}: ${err.message}\n`)
  void finish(1)
})
tap.on('exit', (code, signal) => {
  stopProgress?.()
  if (signal) process.stderr.write(`tap ended by ${signal}\n`)
  void finish(code ?? 128 + (signal ? (constants.signals[signal] ?? 1) : 1))
})
