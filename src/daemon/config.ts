/**
 * Checking what the user asked for, before anything is created or changed.
 *
 * Owns: turning command-line paths into a validated DaemonConfig. Every check that fails
 * throws a SiblingError whose message says what is wrong and whose hint says what to do;
 * nothing on disk is touched until all checks pass.
 * Checks: HOST is a directory; MOUNTPOINT is an empty directory that is not a mount point;
 * neither the mount point nor the store lies inside HOST, HOST does not lie inside the store
 * or the mount point, and the store does not lie inside the mount point; /dev/fuse exists;
 * the store, if it exists, is a siblingfs store of this format version for this host.
 */
import fs from 'node:fs'
import path from 'node:path'
import { SiblingError, isCode } from '../errors.js'
import { isMountPoint, type CacheOptions } from '../fuse/mount.js'
import { checkOptions, defaultStoreDir, readManifest, type RequestedOptions } from '../store/format.js'

export interface DaemonConfig {
  host: string
  mountpoint: string
  store: string
  allowOther: boolean
  debug: boolean
  cache: CacheOptions
  /** Store options asked for (checked against an existing store). */
  storeOptions: RequestedOptions
  /** Bytes of decompressed chunks to keep in memory. */
  chunkCacheBytes: number
}

const USAGE = 64 // EX_USAGE
const NOINPUT = 66 // EX_NOINPUT

function realDir (p: string, what: string, flag: string): string {
  let real: string
  try {
    real = fs.realpathSync(p)
  } catch (err) {
    throw new SiblingError('SFS_NO_SUCH_DIR', `${what} ${p} does not exist`, {
      cause: err, hint: `create it, or pass an existing directory as ${flag}`, exitCode: NOINPUT
    })
  }
  if (!fs.statSync(real).isDirectory()) {
    throw new SiblingError('SFS_NOT_A_DIR', `${what} ${p} is not a directory`, { hint: `pass a directory as ${flag}`, exitCode: USAGE })
  }
  return real
}

/** Whether `inner` is `outer` or lies below it (both real, absolute paths). */
export function within (inner: string, outer: string): boolean {
  if (outer === '/') return true
  return inner === outer || inner.startsWith(outer + path.sep)
}

/** The real path `p` would have: the real path of its deepest existing ancestor + the rest. */
export function realPathOfMaybe (p: string): string {
  const abs = path.resolve(p)
  const rest: string[] = []
  let cur = abs
  for (;;) {
    try {
      return path.join(fs.realpathSync(cur), ...rest.reverse())
    } catch (err) {
      if (!isCode(err, 'ENOENT')) throw err
      rest.push(path.basename(cur))
      const up = path.dirname(cur)
      if (up === cur) return abs
      cur = up
    }
  }
}

export function checkFuseDevice (): void {
  try {
    fs.accessSync('/dev/fuse', fs.constants.R_OK | fs.constants.W_OK)
  } catch (err) {
    const missing = isCode(err, 'ENOENT')
    throw new SiblingError('SFS_NO_DEV_FUSE', missing ? '/dev/fuse does not exist' : '/dev/fuse is not usable by this user', {
      cause: err,
      hint: missing
        ? 'load the fuse module (modprobe fuse); in a container, pass --device /dev/fuse'
        : 'run as root, or make /dev/fuse readable and writable for this user (it usually is: mode 0666)',
      exitCode: 69
    })
  }
}

export interface ConfigInput {
  host: string
  mountpoint: string
  store?: string
  allowOther?: boolean
  debug?: boolean
  cache: CacheOptions
  storeOptions?: RequestedOptions
  chunkCacheBytes?: number
}

/** Validates the host and store (shared by mount, run, diff and commit). */
export function resolveHostAndStore (hostArg: string, storeArg: string | undefined, want: RequestedOptions = {}): { host: string, store: string } {
  const host = realDir(hostArg, 'the host tree', 'HOST')
  const store = storeArg !== undefined ? realPathOfMaybe(storeArg) : defaultStoreDir(host)
  if (within(store, host)) {
    throw new SiblingError('SFS_STORE_IN_HOST', `the store ${store} lies inside the host tree ${host}`, {
      hint: 'put the store outside the host tree (the host must never change)', exitCode: USAGE
    })
  }
  if (within(host, store)) {
    throw new SiblingError('SFS_HOST_IN_STORE', `the host tree ${host} lies inside the store ${store}`, {
      hint: 'choose a store directory outside the host tree', exitCode: USAGE
    })
  }
  if (fs.existsSync(store) && !fs.statSync(store).isDirectory()) {
    throw new SiblingError('SFS_NOT_A_DIR', `the store ${store} is not a directory`, { hint: 'pass a directory as --store', exitCode: USAGE })
  }
  const man = fs.existsSync(store) ? readManifest(store) : undefined
  if (man !== undefined && man.host !== host) {
    throw new SiblingError('SFS_STORE_HOST', `the store at ${store} belongs to host ${man.host}, not ${host}`, {
      hint: 'use that host tree, or another --store for this one', exitCode: USAGE
    })
  }
  if (man !== undefined) checkOptions(store, man.options, want)
  return { host, store }
}

export function buildConfig (input: ConfigInput): DaemonConfig {
  const { host, store } = resolveHostAndStore(input.host, input.store, input.storeOptions)
  const mountpoint = realDir(input.mountpoint, 'the mount point', 'MOUNTPOINT')
  if (within(mountpoint, host) || within(host, mountpoint)) {
    throw new SiblingError('SFS_MOUNT_IN_HOST', mountpoint === host
      ? `the mount point is the host tree itself (${host})`
      : within(mountpoint, host)
        ? `the mount point ${mountpoint} lies inside the host tree ${host}`
        : `the host tree ${host} lies inside the mount point ${mountpoint}`, {
      hint: 'mount somewhere outside the host tree (`siblingfs run` binds the view over the host path for you)', exitCode: USAGE
    })
  }
  if (within(store, mountpoint) || within(mountpoint, store)) {
    throw new SiblingError('SFS_STORE_IN_MOUNT', `the store ${store} and the mount point ${mountpoint} overlap`, {
      hint: 'keep the store and the mount point apart', exitCode: USAGE
    })
  }
  if (isMountPoint(mountpoint)) {
    throw new SiblingError('SFS_ALREADY_MOUNTED', `${mountpoint} is already a mount point`, {
      hint: `unmount it first (fusermount -u ${mountpoint}), or choose another directory`, exitCode: USAGE
    })
  }
  if (fs.readdirSync(mountpoint).length > 0) {
    throw new SiblingError('SFS_MOUNT_NOT_EMPTY', `the mount point ${mountpoint} is not empty`, {
      hint: 'mount on an empty directory', exitCode: USAGE
    })
  }
  checkFuseDevice()
  const root = process.geteuid?.() === 0
  return {
    host,
    mountpoint,
    store,
    allowOther: input.allowOther ?? root,
    debug: input.debug ?? false,
    cache: input.cache,
    storeOptions: input.storeOptions ?? {},
    chunkCacheBytes: input.chunkCacheBytes ?? 64 * 1048576
  }
}
