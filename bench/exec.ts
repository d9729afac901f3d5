/**
 * Processes and cleanup for the benchmark harness.
 *
 * Owns: running one command in a fresh process and timing it (process.hrtime from spawn to
 * exit), the registry of everything the harness must undo (mounts, daemon PIDs, workload
 * process groups), and the emergency cleanup that runs on SIGINT/SIGTERM/SIGHUP, on an
 * uncaught error and at exit.
 * Contract: every mount the harness makes is registered before the mount call and
 * unregistered only once it is gone; `cleanupSync()` lazily detaches every registered mount
 * and kills every registered PID/process group by its id. Nothing is ever killed by name.
 * Does not: know about variants or workloads.
 */
import { spawn, spawnSync, type StdioOptions } from 'node:child_process'
import fs from 'node:fs'

export interface RunOptions {
  cwd?: string
  env?: NodeJS.ProcessEnv
  /** Kill the command's process group after this long (default 20 min). */
  timeoutMs?: number
  /** Keep stdout (for fio/du/hyperfine output); otherwise it goes to /dev/null. */
  captureStdout?: boolean
}

export interface RunResult {
  code: number | null
  signal: NodeJS.Signals | null
  /** Wall time from spawn to exit, in milliseconds. */
  ms: number
  stdout: string
  stderr: string
  timedOut: boolean
}

const mounts = new Map<string, 'fuse' | 'kernel'>()
const daemons = new Set<number>()
const groups = new Set<number>()

export function registerMount (mnt: string, kind: 'fuse' | 'kernel'): void { mounts.set(mnt, kind) }
export function unregisterMount (mnt: string): void { mounts.delete(mnt) }
export function registerDaemon (pid: number): void { daemons.add(pid) }
export function unregisterDaemon (pid: number): void { daemons.delete(pid) }

/** Runs `cmd args` in its own process group; resolves when it exits (never rejects). */
export function run (cmd: string, args: string[], o: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const stdio: StdioOptions = ['ignore', o.captureStdout === true ? 'pipe' : 'ignore', 'pipe']
    const t0 = process.hrtime.bigint()
    let child
    try {
      child = spawn(cmd, args, { cwd: o.cwd, env: o.env ?? process.env, stdio, detached: true })
    } catch (err) {
      resolve({ code: 127, signal: null, ms: 0, stdout: '', stderr: String(err), timedOut: false })
      return
    }
    const pid = child.pid
    if (pid !== undefined) groups.add(pid)
    let out = ''
    let errText = ''
    let ms = 0
    let timedOut = false
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { out += d })
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { if (errText.length < 20000) errText += d })
    const timer = setTimeout(() => {
      timedOut = true
      if (pid !== undefined) { try { process.kill(-pid, 'SIGKILL') } catch { /* gone */ } }
    }, o.timeoutMs ?? 20 * 60_000)
    child.on('exit', () => { ms = Number(process.hrtime.bigint() - t0) / 1e6 })
    child.on('error', (err) => { errText += String(err) })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      if (pid !== undefined) groups.delete(pid)
      if (ms === 0) ms = Number(process.hrtime.bigint() - t0) / 1e6
      resolve({ code, signal, ms, stdout: out, stderr: errText, timedOut })
    })
  })
}

/** `bash -c script` with pipefail (so a pipeline fails when any part fails). */
export function sh (script: string, o: RunOptions = {}): Promise<RunResult> {
  return run('bash', ['-c', 'set -o pipefail; ' + script], o)
}

/** Throws unless the command exited 0; returns its result. */
export async function must (p: Promise<RunResult>, what: string): Promise<RunResult> {
  const r = await p
  if (r.code !== 0) {
    const why = r.timedOut ? 'timed out' : r.signal !== null ? `killed by ${r.signal}` : `exit ${String(r.code)}`
    throw new Error(`${what}: ${why}: ${r.stderr.trim().split('\n').slice(-4).join(' | ')}`)
  }
  return r
}

export function sleep (ms: number): Promise<void> { return new Promise((resolve) => setTimeout(resolve, ms)) }

function sleepSync (ms: number): void { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms) }

/** Whether `p` is a mount point (field 5 of /proc/self/mountinfo, octal escapes decoded). */
export function isMountPoint (p: string): boolean {
  return mountedPaths().includes(p)
}

export function mountedPaths (): string[] {
  let info: string
  try { info = fs.readFileSync('/proc/self/mountinfo', 'utf8') } catch { return [] }
  const out: string[] = []
  for (const line of info.split('\n')) {
    const f = line.split(' ')
    if (f.length > 4) out.push(f[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
  }
  return out
}

export function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

/** Undoes everything registered, synchronously (usable from signal and exit handlers). */
export function cleanupSync (): void {
  for (const g of groups) { try { process.kill(-g, 'SIGKILL') } catch { /* gone */ } }
  groups.clear()
  // Daemons unmount themselves on SIGTERM (siblingfs, libfuse's handlers in the others).
  for (const pid of daemons) { try { process.kill(pid, 'SIGTERM') } catch { /* gone */ } }
  for (let i = 0; i < 50 && [...mounts.keys()].some(isMountPoint); i++) sleepSync(100)
  for (const [mnt, kind] of [...mounts].reverse()) {
    if (!isMountPoint(mnt)) continue
    if (kind === 'fuse') spawnSync('fusermount', ['-u', '-z', mnt], { stdio: 'ignore', timeout: 10_000 })
    else spawnSync('umount', ['-l', mnt], { stdio: 'ignore', timeout: 10_000 })
  }
  mounts.clear()
  for (let i = 0; i < 30 && [...daemons].some(alive); i++) sleepSync(100)
  for (const pid of daemons) { try { process.kill(pid, 'SIGKILL') } catch { /* gone */ } }
  daemons.clear()
}

let installed = false
/** Installs the signal/exit handlers once. */
export function installCleanupHandlers (): void {
  if (installed) return
  installed = true
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}: unmounting and stopping daemons\n`)
      cleanupSync()
      process.exit(sig === 'SIGINT' ? 130 : 143)
    })
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`bench: uncaught: ${err.stack ?? String(err)}\n`)
    cleanupSync()
    process.exit(1)
  })
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`bench: unhandled rejection: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    cleanupSync()
    process.exit(1)
  })
  process.on('exit', () => { cleanupSync() })
}
