/**
 * Test helpers: real mounts served by a daemon in a child process.
 *
 * - `makeTree(dir, tree)` builds a fixture from a JSON-like tree.
 * - `hashTree(dir)` hashes everything about a tree that a change could touch (names, types,
 *   modes, owners, sizes, mtimes, ctimes, link counts, contents, link targets, xattrs);
 *   atimes are left out (reading a file may update its atime on the host).
 * - `startMount(opts)` makes /tmp/siblingfs-test-XXXX/{host,mnt,store}, builds the host
 *   fixture, starts `siblingfs mount` as a child process and waits for its ready line.
 *   `stop()` sends SIGTERM, waits, and falls back to `fusermount -u -z` and SIGKILL of the
 *   child's PID; `cleanup()` also removes the directory. `useMount(t, ...)` registers the
 *   cleanup with t.teardown, so mounts go away when a test fails too.
 * Sync fs calls into the mount are fine here: the mount is served by another process.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { ExecutionContext } from 'ava'
import { lgetxattr, llistxattr } from '../../src/sys/native.js'

export const REPO = path.resolve(__dirname, '..', '..', '..')
export const CLI = path.join(REPO, 'dist', 'src', 'cli', 'main.js')

/** A file's content (string or Buffer), a directory (object), or a special entry. */
export type TreeNode = string | Buffer | { [name: string]: TreeNode } | { $symlink: string } | { $mode: number, $content: string | Buffer }

export function makeTree (dir: string, tree: { [name: string]: TreeNode }): void {
  fs.mkdirSync(dir, { recursive: true })
  for (const [name, node] of Object.entries(tree)) {
    const p = path.join(dir, name)
    if (typeof node === 'string' || Buffer.isBuffer(node)) fs.writeFileSync(p, node)
    else if ('$symlink' in node) fs.symlinkSync((node as { $symlink: string }).$symlink, p)
    else if ('$mode' in node) {
      const n = node as { $mode: number, $content: string | Buffer }
      fs.writeFileSync(p, n.$content)
      fs.chmodSync(p, n.$mode)
    } else makeTree(p, node as { [name: string]: TreeNode })
  }
}

function xattrsOf (p: string): string {
  try {
    return llistxattr(p).sort().map(n => `${n}=${lgetxattr(p, n)?.toString('hex') ?? ''}`).join(',')
  } catch { return '' }
}

export function hashTree (dir: string): string {
  const h = crypto.createHash('sha256')
  const walk = (rel: string): void => {
    const p = path.join(dir, rel)
    const st = fs.lstatSync(p, { bigint: true })
    h.update(`${rel}\0${st.mode}\0${st.uid}\0${st.gid}\0${st.nlink}\0${st.mtimeNs}\0${st.ctimeNs}\0${xattrsOf(p)}\0`)
    if (st.isFile()) { h.update(String(st.size)); h.update(fs.readFileSync(p)) } else if (st.isSymbolicLink()) h.update(fs.readlinkSync(p))
    else if (st.isDirectory()) for (const n of fs.readdirSync(p).sort()) walk(path.join(rel, n))
  }
  walk('')
  return h.digest('hex')
}

export interface MountOptions {
  host?: { [name: string]: TreeNode }
  /** Extra command-line flags for `siblingfs mount`. */
  args?: string[]
  /** Reuse directories of an earlier mount (remount the same store). */
  dirs?: { root: string, host: string, mnt: string, store: string }
  env?: NodeJS.ProcessEnv
}

export interface Mount {
  root: string
  host: string
  mnt: string
  store: string
  upper: string
  child: ChildProcess
  /** Everything the daemon wrote to stderr so far. */
  stderr: () => string
  /** Host tree hash taken right after the fixture was built. */
  hostHash: string
  /** Path inside the mount. */
  m: (rel: string) => string
  /** Path inside the store's upper tree. */
  u: (rel: string) => string
  /** Path inside the host. */
  h: (rel: string) => string
  stop: () => Promise<number | null>
  cleanup: () => Promise<void>
}

export function isMounted (p: string): boolean {
  const info = fs.readFileSync('/proc/self/mountinfo', 'utf8')
  return info.split('\n').some(l => l.split(' ')[4] === p)
}

function waitExit (child: ChildProcess, ms: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode)
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms)
    child.once('exit', (code) => { clearTimeout(timer); resolve(code) })
  })
}

export async function startMount (o: MountOptions = {}): Promise<Mount> {
  let dirs = o.dirs
  if (dirs === undefined) {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'siblingfs-test-'))
    dirs = { root, host: path.join(root, 'host'), mnt: path.join(root, 'mnt'), store: path.join(root, 'store') }
    fs.mkdirSync(dirs.mnt)
    makeTree(dirs.host, o.host ?? {})
  }
  const { root, host, mnt, store } = dirs
  const hostHash = hashTree(host)
  const child = spawn(process.execPath, [CLI, 'mount', host, mnt, '--store', store, ...(o.args ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env }
  })
  let err = ''
  let out = ''
  child.stderr?.on('data', (d: Buffer) => { err += d.toString() })
  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 60000) // a loaded machine (CI) may take long
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('siblingfs: mounted')) { clearTimeout(timer); resolve(true) }
    })
    child.once('exit', () => { clearTimeout(timer); resolve(false) })
  })
  let stopped = false
  const stop = async (): Promise<number | null> => {
    if (stopped) return child.exitCode
    stopped = true
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    let code = await waitExit(child, 10000)
    if (isMounted(mnt)) spawnSync('fusermount', ['-u', '-z', mnt])
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      process.kill(child.pid, 'SIGKILL')
      code = await waitExit(child, 5000)
    }
    return code
  }
  const mount: Mount = {
    root, host, mnt, store,
    upper: path.join(store, 'upper'),
    child,
    stderr: () => err,
    hostHash,
    m: (rel) => path.join(mnt, rel),
    u: (rel) => path.join(store, 'upper', rel),
    h: (rel) => path.join(host, rel),
    stop,
    cleanup: async () => {
      await stop()
      if (o.dirs === undefined) fs.rmSync(root, { recursive: true, force: true })
    }
  }
  if (!ready) {
    await mount.cleanup()
    throw new Error(`siblingfs did not mount: ${err || out}`)
  }
  return mount
}

/** startMount, with cleanup registered on the test (also runs when the test fails). */
export async function useMount (t: ExecutionContext, o: MountOptions = {}): Promise<Mount> {
  const m = await startMount(o)
  t.teardown(m.cleanup)
  return m
}

/** The errno name a sync fs call throws, or 'OK'. */
/**
 * What STORE/work/ holds, but the empty files a mounted daemon keeps there for its next
 * copy-up (`spare-*`, STORE-FORMAT.md): after a clean run, nothing.
 */
export function workEntries (store: string): string[] {
  return fs.readdirSync(path.join(store, 'work')).filter(n => !n.startsWith('spare-'))
}

export function errOf (fn: () => unknown): string {
  try { fn(); return 'OK' } catch (e) { return (e as NodeJS.ErrnoException).code ?? String(e) }
}

/** Reads the store's markers on an upper entry. */
export function storeInfo (p: string): { exists: boolean, whiteout: boolean, opaque: boolean, redirect: string | null, origin: { path: string, data: string } | null } {
  const st = fs.lstatSync(p, { throwIfNoEntry: false })
  if (st === undefined) return { exists: false, whiteout: false, opaque: false, redirect: null, origin: null }
  const sym = st.isSymbolicLink()
  const get = (n: string): Buffer | null => sym ? null : lgetxattr(p, 'user.siblingfs.' + n)
  const origin = get('origin')
  return {
    exists: true,
    whiteout: st.isFile() && st.size === 0 && get('wh') !== null,
    opaque: get('opaque') !== null,
    redirect: get('redirect')?.toString() ?? null,
    origin: origin === null ? null : JSON.parse(origin.toString()) as { path: string, data: string }
  }
}

export const fuseAvailable = fs.existsSync('/dev/fuse')

/** Runs a shell command (bash -c) and returns its status and output. */
export function sh (cmd: string, opts: { cwd?: string, env?: NodeJS.ProcessEnv, timeout?: number } = {}): { status: number | null, stdout: string, stderr: string } {
  const r = spawnSync('bash', ['-c', cmd], { cwd: opts.cwd, env: { ...process.env, ...opts.env }, encoding: 'utf8', timeout: opts.timeout ?? 120000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}
