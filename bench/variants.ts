/**
 * The file systems under test, each mounted fresh over the same host data.
 *
 * Owns: probing whether a variant can run here, mounting it over `host` in a private run
 * directory (separate upper/work/store dirs per mount), waiting until the mount is ready,
 * reading the daemon's peak RSS (VmHWM) just before unmounting, and unmounting (always:
 * callers use try/finally, and every mount/daemon is registered with exec.ts for the signal
 * and exit handlers).
 * Contract: `mount()` either returns a ready mount or throws having left nothing mounted and
 * no daemon running. `unmount()` is idempotent and leaves the mount point unmounted (lazily
 * detached as a last resort) and the daemon gone.
 * Does not: time anything.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {
  alive, isMountPoint, must, registerDaemon, registerMount, run, sleep, unregisterDaemon, unregisterMount
} from './exec.js'

export type VariantName = 'native' | 'overlayfs' | 'fuse-overlayfs' | 'unionfs-fuse' | 'siblingfs' | 'siblingfs-lz4' | 'siblingfs-1s' | 'siblingfs-spin'
/** The variants run by default. */
export const DEFAULT_VARIANTS: readonly VariantName[] = ['native', 'overlayfs', 'fuse-overlayfs', 'unionfs-fuse', 'siblingfs', 'siblingfs-lz4']
/** `siblingfs-1s` (opt-in): siblingfs with 1 s kernel caches (host changes seen within a
 *  second), to see what that costs against the default 60 s. `siblingfs-spin` (opt-in):
 *  siblingfs with `--spin-wait 100`, to see what waiting awake for answers gives. */
export const ALL_VARIANTS: readonly VariantName[] = [...DEFAULT_VARIANTS, 'siblingfs-1s', 'siblingfs-spin']

export interface Mounted {
  variant: VariantName
  /** The merged view of the host directory (for native: the host directory itself). */
  view: string
  /** Where the variant keeps changes (upper dir / store); null for native. */
  store: string | null
  /** A fresh directory to write new things into: inside the view, or for native a new
   *  empty directory next to it (never the host). */
  writeDir: string
  pid: number | null
  /** Peak RSS of the daemon in KiB, read at unmount (null: no daemon). */
  peakRssKiB: number | null
  unmount: () => Promise<void>
}

export interface VariantEnv {
  repo: string
  /** The siblingfs CLI entry (dist/src/cli/main.js). */
  cli: string
  logDir: string
}

export interface Variant {
  name: VariantName
  /** null when usable; otherwise why it is skipped. */
  probe: (env: VariantEnv, scratch: string) => Promise<string | null>
  mount: (env: VariantEnv, host: string, runDir: string) => Promise<Mounted>
}

function readHwmKiB (pid: number): number | null {
  try {
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? null : parseInt(m[1], 10)
  } catch { return null }
}

async function waitFor (cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (cond()) return true
    await sleep(20)
  }
  return cond()
}

function tail (file: string, lines = 6): string {
  try { return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join(' | ') } catch { return '' }
}

/** Unmounts `mnt` (fuse or kernel), stops `pid`; escalates to a lazy detach and SIGKILL. */
async function teardown (mnt: string, kind: 'fuse' | 'kernel', pid: number | null, viaSignal: boolean): Promise<void> {
  try {
    if (pid !== null && viaSignal && alive(pid)) {
      process.kill(pid, 'SIGTERM')
      await waitFor(() => !alive(pid), 15_000)
    }
    if (isMountPoint(mnt)) {
      const r = kind === 'fuse'
        ? await run('fusermount', ['-u', mnt], { timeoutMs: 30_000 })
        : await run('umount', [mnt], { timeoutMs: 60_000 })
      if (r.code !== 0 || isMountPoint(mnt)) {
        await sleep(500)
        if (isMountPoint(mnt)) {
          if (kind === 'fuse') await run('fusermount', ['-u', '-z', mnt], { timeoutMs: 30_000 })
          else await run('umount', ['-l', mnt], { timeoutMs: 30_000 })
        }
      }
    }
    if (pid !== null) {
      if (!await waitFor(() => !alive(pid), 10_000)) {
        try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
        await waitFor(() => !alive(pid), 5_000)
      }
    }
  } finally {
    if (!isMountPoint(mnt)) unregisterMount(mnt)
    if (pid === null || !alive(pid)) { if (pid !== null) unregisterDaemon(pid) }
  }
  if (isMountPoint(mnt)) throw new Error(`could not unmount ${mnt}`)
}

interface DaemonSpec {
  cmd: string
  args: string[]
  /** Ready when this returns true (given the log text). */
  ready: (logText: string) => boolean
  /** Stop by SIGTERM (the daemon unmounts itself) rather than fusermount -u. */
  stopBySignal: boolean
}

/** Starts a FUSE daemon in the foreground (output to a log file, never a pipe: the harness
 *  blocks in long commands and a full pipe would stall the daemon). */
async function startFuseDaemon (variant: VariantName, spec: DaemonSpec, mnt: string, logFile: string): Promise<{ pid: number, unmount: () => Promise<void>, hwm: () => number | null }> {
  const fd = fs.openSync(logFile, 'w')
  registerMount(mnt, 'fuse')
  let child
  try {
    child = spawn(spec.cmd, spec.args, { stdio: ['ignore', fd, fd], detached: false })
  } finally { fs.closeSync(fd) }
  const pid = child.pid
  if (pid === undefined) { unregisterMount(mnt); throw new Error(`${variant}: could not start ${spec.cmd}`) }
  registerDaemon(pid)
  let exited = false
  child.on('exit', () => { exited = true })
  const ok = await waitFor(() => exited || (isMountPoint(mnt) && spec.ready(fs.readFileSync(logFile, 'utf8'))), 90_000)
  if (!ok || exited) {
    await teardown(mnt, 'fuse', pid, true).catch(() => {})
    throw new Error(`${variant}: mount did not come up${exited ? ' (daemon exited)' : ' (timeout)'}: ${tail(logFile)}`)
  }
  let done = false
  return {
    pid,
    hwm: () => readHwmKiB(pid),
    unmount: async () => {
      if (done) return
      done = true
      await teardown(mnt, 'fuse', pid, spec.stopBySignal)
    }
  }
}

function dirs (runDir: string, ...names: string[]): string[] {
  return names.map((n) => { const p = path.join(runDir, n); fs.mkdirSync(p, { recursive: true }); return p })
}

async function fuseVariant (name: VariantName, env: VariantEnv, runDir: string, host: string, spec: (mnt: string, store: string, work: string) => DaemonSpec, storeMade: boolean): Promise<Mounted> {
  const [mnt, work] = dirs(runDir, 'mnt', 'work')
  const store = path.join(runDir, 'store')
  if (storeMade) fs.mkdirSync(store, { recursive: true })
  let logFile = path.join(env.logDir, `${path.basename(runDir)}.log`)
  for (let i = 2; fs.existsSync(logFile); i++) logFile = path.join(env.logDir, `${path.basename(runDir)}.${i}.log`)
  const d = await startFuseDaemon(name, spec(mnt, store, work), mnt, logFile)
  const m: Mounted = {
    variant: name, view: mnt, store, writeDir: path.join(mnt, 'bench-new'), pid: d.pid, peakRssKiB: null,
    unmount: async () => { m.peakRssKiB = d.hwm() ?? m.peakRssKiB; await d.unmount() }
  }
  try {
    fs.mkdirSync(m.writeDir, { recursive: true })
  } catch (err) { await m.unmount(); throw err }
  return m
}

let compressFlag: boolean | undefined

/** siblingfs mounted with `flags` added to `siblingfs mount HOST MNT --store STORE`. */
function siblingfsVariant (name: VariantName, flags: string[]): Variant {
  return {
    name,
    probe: async (env) => fs.existsSync(env.cli) ? null : `${env.cli} is missing (npm run build)`,
    mount: (env, host, runDir) => fuseVariant(name, env, runDir, host, (mnt, store) => ({
      cmd: process.execPath, args: [env.cli, 'mount', host, mnt, '--store', store, ...flags],
      ready: (log) => log.includes('siblingfs: mounted'), stopBySignal: true
    }), false)
  }
}

export const VARIANTS: Record<VariantName, Variant> = {
  native: {
    name: 'native',
    probe: async () => null,
    mount: async (_env, host, runDir) => {
      const [rw] = dirs(runDir, 'native-rw')
      return { variant: 'native', view: host, store: null, writeDir: rw, pid: null, peakRssKiB: null, unmount: async () => {} }
    }
  },
  overlayfs: {
    name: 'overlayfs',
    probe: async (_env, scratch) => {
      const [l, u, w, m] = dirs(scratch, 'l', 'u', 'w', 'm')
      fs.writeFileSync(path.join(l, 'f'), 'x')
      registerMount(m, 'kernel')
      const r = await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${l},upperdir=${u},workdir=${w}`, m], { timeoutMs: 30_000 })
      try {
        if (r.code !== 0) return `kernel overlay mount failed: ${r.stderr.trim()}`
        return fs.readFileSync(path.join(m, 'f'), 'utf8') === 'x' ? null : 'kernel overlay mount shows wrong content'
      } finally { await teardown(m, 'kernel', null, false) }
    },
    mount: async (_env, host, runDir) => {
      const [upper, work, mnt] = dirs(runDir, 'upper', 'work', 'mnt')
      registerMount(mnt, 'kernel')
      try {
        await must(run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${host},upperdir=${upper},workdir=${work}`, mnt], { timeoutMs: 60_000 }), 'mount -t overlay')
      } catch (err) { await teardown(mnt, 'kernel', null, false); throw err }
      let done = false
      const m: Mounted = {
        variant: 'overlayfs', view: mnt, store: upper, writeDir: path.join(mnt, 'bench-new'), pid: null, peakRssKiB: null,
        unmount: async () => { if (!done) { done = true; await teardown(mnt, 'kernel', null, false) } }
      }
      try { fs.mkdirSync(m.writeDir, { recursive: true }) } catch (err) { await m.unmount(); throw err }
      return m
    }
  },
  'fuse-overlayfs': {
    name: 'fuse-overlayfs',
    probe: async () => {
      const r = await run('fuse-overlayfs', ['--version'], { captureStdout: true })
      return r.code === 0 ? null : 'fuse-overlayfs is not installed'
    },
    mount: (env, host, runDir) => fuseVariant('fuse-overlayfs', env, runDir, host, (mnt, store, work) => ({
      cmd: 'fuse-overlayfs', args: ['-f', '-o', `lowerdir=${host},upperdir=${store},workdir=${work}`, mnt],
      ready: () => true, stopBySignal: false
    }), true)
  },
  'unionfs-fuse': {
    name: 'unionfs-fuse',
    probe: async () => {
      const r = await run('unionfs', ['--version'], { captureStdout: true })
      return r.code === 0 ? null : 'unionfs (unionfs-fuse) is not installed'
    },
    mount: (env, host, runDir) => fuseVariant('unionfs-fuse', env, runDir, host, (mnt, store) => ({
      cmd: 'unionfs', args: ['-f', '-o', 'cow,max_files=16384', `${store}=RW:${host}=RO`, mnt],
      ready: () => true, stopBySignal: false
    }), true)
  },
  siblingfs: siblingfsVariant('siblingfs', []),
  'siblingfs-1s': siblingfsVariant('siblingfs-1s', ['--attr-timeout', '1', '--entry-timeout', '1', '--negative-timeout', '1']),
  'siblingfs-spin': siblingfsVariant('siblingfs-spin', ['--spin-wait', '100']),
  'siblingfs-lz4': {
    name: 'siblingfs-lz4',
    probe: async (env) => {
      if (!fs.existsSync(env.cli)) return `${env.cli} is missing (npm run build)`
      const r = await run(process.execPath, [env.cli, 'mount', '--help'], { captureStdout: true, timeoutMs: 60_000 })
      compressFlag = /--compress\b/.test(r.stdout + r.stderr)
      return compressFlag ? null : '`siblingfs mount --help` has no --compress flag in this build'
    },
    mount: siblingfsVariant('siblingfs-lz4', ['--compress', 'lz4']).mount
  }
}

/** Bytes used by `dir`: allocated (du -sB1) and apparent (du -sb). */
export async function duBytes (dir: string): Promise<{ allocated: number, apparent: number }> {
  const a = await must(run('du', ['-sB1', dir], { captureStdout: true }), `du -sB1 ${dir}`)
  const b = await must(run('du', ['-sb', dir], { captureStdout: true }), `du -sb ${dir}`)
  return { allocated: parseInt(a.stdout, 10), apparent: parseInt(b.stdout, 10) }
}
