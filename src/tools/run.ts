/**
 * `siblingfs run`: a command inside the sandbox, seeing the merged view at the host's path.
 *
 * Contract: mounts HOST in a private, empty directory (never inside HOST or the store),
 * runs CMD, and when CMD ends unmounts and returns CMD's exit status with the changes.
 * - isolate "bwrap": bubblewrap makes a mount namespace where the merged view is bound over
 *   HOST's own path and the store is hidden behind an empty tmpfs; the rest of the system
 *   is as it was. CMD starts in the same directory the caller is in.
 * - isolate "chroot": the merged view becomes CMD's root directory (for a HOST that is a
 *   whole root tree; needs root).
 * - isolate "none": CMD runs with its working directory inside the mount; absolute paths
 *   to HOST still reach the real host (read-only use only is then the user's promise).
 * SIGINT, SIGTERM and SIGHUP are passed on to CMD; the mount stays until CMD is gone.
 * Does not: print (the command module does).
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { SiblingError } from '../errors.js'
import { buildConfig, resolveHostAndStore, within } from '../daemon/config.js'
import { startDaemon } from '../daemon/main.js'
import type { CacheOptions } from '../fuse/mount.js'
import type { RequestedOptions } from '../store/format.js'
import { diffStore, summarize, type Change, type DiffSummary } from './diff.js'

export type Isolation = 'bwrap' | 'chroot' | 'none'

export interface RunOptions {
  host: string
  store?: string
  isolate: Isolation
  cmd: string[]
  cwd: string
  cache: CacheOptions
  storeOptions: RequestedOptions
  chunkCacheBytes: number
}

export interface RunResult {
  exitCode: number
  store: string
  changes: Change[]
  summary: DiffSummary
}

function which (bin: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = path.join(dir, bin)
    try { fs.accessSync(p, fs.constants.X_OK); return p } catch { /* next */ }
  }
  return null
}

/** A fresh, empty mount point outside `host` and `store`. */
function makeMountpoint (host: string, store: string): string {
  const uid = process.getuid?.() ?? 0
  const candidates = [
    process.env.XDG_RUNTIME_DIR !== undefined && process.env.XDG_RUNTIME_DIR !== '' ? path.join(process.env.XDG_RUNTIME_DIR, 'siblingfs') : '',
    uid === 0 ? '/run/siblingfs' : '',
    path.join(os.tmpdir(), `siblingfs-${uid}`)
  ].filter(c => c !== '')
  for (const base of candidates) {
    let real: string
    try {
      fs.mkdirSync(base, { recursive: true, mode: 0o700 })
      real = fs.realpathSync(base)
    } catch { continue }
    if (within(real, host) || within(real, store) || within(host, real)) continue
    return fs.mkdtempSync(path.join(real, 'mnt-'))
  }
  throw new SiblingError('SFS_NO_MOUNTPOINT', `found no place outside ${host} for the private mount point`, {
    hint: 'set XDG_RUNTIME_DIR or TMPDIR to a directory outside the host tree', exitCode: 73
  })
}

function commandFor (o: RunOptions, host: string, store: string, mnt: string): { file: string, args: string[], cwd: string } {
  const [cmd, ...args] = o.cmd
  if (o.isolate === 'none') {
    const cwd = within(o.cwd, host) ? path.join(mnt, path.relative(host, o.cwd)) : mnt
    // Not spawn's `cwd`: libuv's spawn waits for the child's chdir, and a chdir into the
    // mount waits for this very process to answer. The shell changes directory after exec.
    return { file: '/bin/sh', args: ['-c', 'cd "$0" && exec "$@"', cwd, cmd, ...args], cwd: '/' }
  }
  if (o.isolate === 'chroot') {
    if (process.geteuid?.() !== 0) {
      throw new SiblingError('SFS_CHROOT_NEEDS_ROOT', '--isolate chroot needs root', { hint: 'run as root, or use --isolate bwrap', exitCode: 77 })
    }
    return { file: which('chroot') ?? '/usr/sbin/chroot', args: [mnt, cmd, ...args], cwd: '/' }
  }
  const bwrap = which('bwrap')
  if (bwrap === null) {
    throw new SiblingError('SFS_NO_BWRAP', 'bubblewrap (bwrap) is not installed', {
      hint: 'install it (apt-get install bubblewrap), or pass --isolate none', exitCode: 69
    })
  }
  const cwd = within(o.cwd, host) ? o.cwd : host
  const bargs = ['--dev-bind', '/', '/', '--bind', mnt, host]
  if (!within(host, store)) bargs.push('--tmpfs', store)
  bargs.push('--chdir', cwd, '--die-with-parent', '--', cmd, ...args)
  return { file: bwrap, args: bargs, cwd: '/' }
}

export async function runSandboxed (o: RunOptions): Promise<RunResult> {
  if (o.cmd.length === 0) throw new SiblingError('SFS_USAGE', 'no command to run', { hint: 'siblingfs run -- CMD [ARGS...]', exitCode: 64 })
  const pre = resolveHostAndStore(o.host, o.store, o.storeOptions)
  const mnt = makeMountpoint(pre.host, pre.store)
  let daemon
  try {
    const cfg = buildConfig({ host: o.host, mountpoint: mnt, store: o.store, cache: o.cache, storeOptions: o.storeOptions, chunkCacheBytes: o.chunkCacheBytes })
    const spec = commandFor(o, cfg.host, cfg.store, mnt)
    daemon = await startDaemon(cfg)
    const exitCode = await spawnAndWait(spec)
    await daemon.stop()
    const changes = diffStore(cfg.host, cfg.store)
    return { exitCode, store: cfg.store, changes, summary: summarize(changes) }
  } finally {
    if (daemon !== undefined) await daemon.stop()
    try { fs.rmdirSync(mnt) } catch { /* still busy: lazily unmounted */ }
  }
}

function spawnAndWait (spec: { file: string, args: string[], cwd: string }): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(spec.file, spec.args, { cwd: spec.cwd, stdio: 'inherit' })
    const forward = (sig: NodeJS.Signals): void => { child.kill(sig) }
    const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']
    for (const s of sigs) process.on(s, forward)
    const cleanup = (): void => { for (const s of sigs) process.off(s, forward) }
    child.on('error', (err) => {
      cleanup()
      reject(new SiblingError('SFS_SPAWN', `could not run ${spec.file}: ${err.message}`, { cause: err, hint: 'check the command name and PATH', exitCode: 127 }))
    })
    child.on('exit', (code, signal) => {
      cleanup()
      resolve(code ?? (128 + (signal !== null ? os.constants.signals[signal] : 0)))
    })
  })
}
