/**
 * Helpers for the programs, crash, CLI and signal tests (sandbox.ts and mountkit.ts stay as
 * they are).
 *
 * - `cli(args, opts)`: runs `node dist/src/cli/main.js ARGS` synchronously (optionally under
 *   a prefix command such as bwrap) and returns status, stdout, stderr.
 * - `tempRoot(t)`: a fresh /tmp/siblingfs-test-XXXX directory removed at teardown.
 * - `freshDirs(t, tree)`: {root, host, mnt, store} like startMount makes them (host built,
 *   mnt empty, store absent), removed at teardown; pass it as `dirs` to startMount.
 * - `waitExit(child, ms)`: the child's exit code/signal, or null on timeout.
 * - `killTree(pid)`: SIGKILL of one process we started (by PID, never by name).
 * - `lazyUnmount(p)`: `fusermount -u -z` when p is still in /proc/self/mountinfo.
 * - `mulberry32(seed)`: a small seeded random number generator (logged seeds make runs
 *   repeatable).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { ExecutionContext } from 'ava'
import { CLI, isMounted, makeTree, type TreeNode } from './sandbox.js'

export interface CliResult { status: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

export function cli (args: string[], opts: { env?: NodeJS.ProcessEnv, cwd?: string, timeout?: number, prefix?: string[] } = {}): CliResult {
  const prefix = opts.prefix ?? []
  const argv = [...prefix, process.execPath, CLI, ...args]
  const r = spawnSync(argv[0], argv.slice(1), {
    cwd: opts.cwd, env: { ...process.env, ...opts.env }, encoding: 'utf8', timeout: opts.timeout ?? 60000
  })
  return { status: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '' }
}

/** Mount points below `dir` (from /proc/self/mountinfo). */
export function mountsBelow (dir: string): string[] {
  const out: string[] = []
  for (const l of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = l.split(' ')[4]
    if (mp !== undefined && mp.startsWith(dir + '/')) out.push(mp.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
  }
  return out
}

/**
 * Aborts the FUSE connection of every mount below `dir` (`umount -f` does that for FUSE, and
 * frees processes stuck waiting on a daemon that cannot answer), then detaches them.
 */
export function forceUnmountBelow (dir: string): string[] {
  const found = mountsBelow(dir)
  for (const mp of found.reverse()) {
    spawnSync('umount', ['-f', mp])
    if (isMounted(mp)) spawnSync('fusermount', ['-u', '-z', mp])
  }
  return found
}

export function tempRoot (t: ExecutionContext): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'siblingfs-test-'))
  t.teardown(() => {
    forceUnmountBelow(root)
    fs.rmSync(root, { recursive: true, force: true })
  })
  return root
}

/**
 * Runs the CLI as a child process without blocking the test's event loop. On timeout it
 * calls `rescue` (e.g. forceUnmountBelow), then SIGKILLs the CLI's PID; `timedOut` says so.
 */
export async function cliAsync (args: string[], opts: { env?: NodeJS.ProcessEnv, cwd?: string, timeout?: number, rescue?: () => void } = {}): Promise<CliResult & { timedOut: boolean }> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  let r = await waitExit(child, opts.timeout ?? 60000)
  let timedOut = false
  if (r === null) {
    timedOut = true
    opts.rescue?.()
    r = await waitExit(child, 5000)
    if (r === null) {
      killPid(child.pid)
      r = await waitExit(child, 5000)
    }
  }
  // 'exit' may come before the last output: wait for the pipes to close too (briefly: a
  // grandchild left behind could hold them open)
  await Promise.race([
    new Promise(resolve => child.stdout.closed && child.stderr.closed ? resolve(null) : child.once('close', resolve)),
    sleep(3000)
  ])
  return { status: r?.code ?? null, signal: r?.signal ?? null, stdout, stderr, timedOut }
}

export interface Dirs { root: string, host: string, mnt: string, store: string }

export function freshDirs (t: ExecutionContext, tree: { [name: string]: TreeNode } = {}): Dirs {
  const root = tempRoot(t)
  const d = { root, host: path.join(root, 'host'), mnt: path.join(root, 'mnt'), store: path.join(root, 'store') }
  fs.mkdirSync(d.mnt)
  makeTree(d.host, tree)
  return d
}

export function waitExit (child: ChildProcess, ms: number): Promise<{ code: number | null, signal: NodeJS.Signals | null } | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode })
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms)
    child.once('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal }) })
  })
}

export function killPid (pid: number | undefined, sig: NodeJS.Signals = 'SIGKILL'): void {
  if (pid === undefined) return
  try { process.kill(pid, sig) } catch { /* already gone */ }
}

export function lazyUnmount (p: string): boolean {
  if (!isMounted(p)) return false
  spawnSync('fusermount', ['-u', '-z', p])
  return true
}

export function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

export function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}

/** The lines of a text, without a trailing empty one. */
export function lines (s: string): string[] {
  const l = s.split('\n')
  if (l.length > 0 && l[l.length - 1] === '') l.pop()
  return l
}
