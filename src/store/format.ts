/**
 * The on-disk store format (version 1): layout, names and the manifest.
 *
 * Owns: where everything lives in a store directory, the format version, and creating,
 * validating and locking a store. The full description for people is STORE-FORMAT.md.
 *
 *   STORE/siblingfs.json   manifest: {"format":"siblingfs-store","version":1,"host":...}
 *   STORE/upper/           the merged view's changes, mirroring host paths (like overlayfs'
 *                          upperdir): siblings, new files, directories, symlinks, FIFOs
 *   STORE/work/            temporary files of copy-ups and renames; emptied at every mount
 *   STORE/lock             the pid of the daemon that has the store mounted
 *
 * Markers are extended attributes in the `user.siblingfs.` namespace on entries of upper/
 * (see XATTR below). Contract: a store is only ever changed by one daemon at a time
 * (the lock), and every change is a sequence of steps each of which leaves a store that
 * mounts again (see src/overlay/overlay.ts for the order of the steps).
 * Does not: know about merged-view semantics; that is src/overlay/.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import crypto from 'node:crypto'
import { SiblingError, isCode } from '../errors.js'

export const STORE_FORMAT = 'siblingfs-store'
/** Version 2 added chunked (sparse, optionally lz4-compressed) siblings and store options. */
export const STORE_VERSION = 2
/** Versions this release opens; older ones are migrated at mount (see migrate()). */
const MIGRATABLE = new Set([1])
export const MAPS_DIR = 'maps'
export const MANIFEST_FILE = 'siblingfs.json'
export const UPPER_DIR = 'upper'
export const WORK_DIR = 'work'
export const LOCK_FILE = 'lock'

/** Extended attributes that carry the store's markers. */
export const XATTR_PREFIX = 'user.siblingfs.'
export const XATTR = {
  /** On a zero-length regular file: the name is deleted in the merged view. Value: "y". */
  whiteout: 'user.siblingfs.wh',
  /** On a directory: the host directory at the same path is hidden. Value: "y". */
  opaque: 'user.siblingfs.opaque',
  /** On a directory: merge the host directory at this host-relative path instead of the
   *  one at the same path (a renamed host directory). Value: the path, "" for the root. */
  redirect: 'user.siblingfs.redirect',
  /** On a sibling: the host entry it was copied up from, as JSON (see Origin). */
  origin: 'user.siblingfs.origin',
  /** On a chunked regular file: the name of its chunk map in maps/. */
  chunks: 'user.siblingfs.chunks'
} as const

/** A user's own xattr whose name collides with our prefix is stored under this one. */
export const XATTR_ESCAPE = 'user.siblingfs.x.'

/**
 * What a sibling was copied up from. `data` says where its bytes are:
 * "host" (a metadata-only sibling: the bytes are still the host original's),
 * or "store" (the sibling holds its own bytes). Setting data to "store" is the commit
 * point of a data copy-up made in place (a sibling with hard links).
 */
export interface Origin {
  /** Host-relative path of the original, '' for the root. */
  path: string
  dev: number
  ino: number
  /** The original's size and mtime (ns, decimal string) when the sibling was made. */
  size: number
  mtimeNs: string
  /** The original's ctime (ns) then: catches an in-place rewrite whose mtime was put back. */
  ctimeNs?: string
  data: 'host' | 'store' | 'chunks'
}

/** Fixed when the store is created; recorded in the manifest. */
export interface StoreOptions {
  /** Bytes per chunk of a chunked sibling. */
  chunkSize: number
  compress: 'none' | 'lz4'
}

/**
 * 64 KiB, as qcow2's default cluster: one changed byte stores 64 KiB (+ a map entry); a
 * 1 GiB file's chunk map has 16,384 16-byte entries (256 KiB, sparse on disk); smaller
 * chunks multiply map entries and per-chunk work, larger ones the bytes stored per change.
 */
export const DEFAULT_STORE_OPTIONS: StoreOptions = { chunkSize: 65536, compress: 'none' }

/**
 * Host files at least this large are copied up sparsely (only the chunks written are
 * stored); smaller ones are copied whole, which costs less than a chunk map (a 1 MiB copy
 * takes about a millisecond from the page cache). A compressed store chunks every file.
 */
export const SPARSE_MIN_BYTES = 1 << 20

export interface Manifest {
  format: string
  version: number
  /** Absolute, real path of the host tree this store belongs to. */
  host: string
  createdAt: string
  options: StoreOptions
}

export interface StorePaths {
  root: string
  upper: string
  work: string
  maps: string
  manifest: string
  lock: string
}

export function storePaths (root: string): StorePaths {
  return {
    root,
    upper: path.join(root, UPPER_DIR),
    work: path.join(root, WORK_DIR),
    maps: path.join(root, MAPS_DIR),
    manifest: path.join(root, MANIFEST_FILE),
    lock: path.join(root, LOCK_FILE)
  }
}

/** $XDG_DATA_HOME/siblingfs/<host basename>-<hash of host path>, else ~/.local/share/... */
export function defaultStoreDir (hostReal: string, env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_DATA_HOME !== undefined && env.XDG_DATA_HOME !== ''
    ? env.XDG_DATA_HOME
    : path.join(env.HOME ?? os.homedir(), '.local', 'share')
  const hash = crypto.createHash('sha256').update(hostReal).digest('hex').slice(0, 12)
  const name = (path.basename(hostReal) || 'root') + '-' + hash
  return path.join(base, 'siblingfs', name)
}

function parseManifest (file: string): Manifest {
  let raw: string
  try {
    raw = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new SiblingError('SFS_STORE_UNREADABLE', `cannot read the store manifest ${file}`, {
      cause: err, hint: 'check the --store path and its permissions'
    })
  }
  let m: unknown
  try {
    m = JSON.parse(raw)
  } catch (err) {
    throw new SiblingError('SFS_STORE_CORRUPT', `the store manifest ${file} is not valid JSON`, {
      cause: err, hint: 'restore it from a backup, or move the store away and start a new one'
    })
  }
  const man = m as Partial<Manifest>
  if (man === null || typeof man !== 'object' || man.format !== STORE_FORMAT) {
    throw new SiblingError('SFS_STORE_CORRUPT', `${file} is not a siblingfs store manifest`, {
      hint: 'point --store at a siblingfs store, or at an empty or new directory'
    })
  }
  if (man.version !== STORE_VERSION && !MIGRATABLE.has(man.version as number)) {
    throw new SiblingError('SFS_STORE_VERSION',
      `the store at ${path.dirname(file)} has format version ${String(man.version)}; this siblingfs reads version ${STORE_VERSION}`, {
        hint: 'use the siblingfs release that made this store, or a new --store directory'
      })
  }
  if (typeof man.host !== 'string') {
    throw new SiblingError('SFS_STORE_CORRUPT', `${file} does not name its host tree`, {
      hint: 'restore the manifest, or start a new store'
    })
  }
  const o = (man.options ?? {}) as Partial<StoreOptions>
  const options: StoreOptions = {
    chunkSize: typeof o.chunkSize === 'number' ? o.chunkSize : DEFAULT_STORE_OPTIONS.chunkSize,
    compress: o.compress === 'lz4' ? 'lz4' : 'none'
  }
  return { format: man.format, version: man.version as number, host: man.host, createdAt: String(man.createdAt ?? ''), options }
}

/** Reads and validates an existing store's manifest; undefined when the directory has none. */
export function readManifest (root: string): Manifest | undefined {
  const p = storePaths(root)
  if (!fs.existsSync(p.manifest)) return undefined
  return parseManifest(p.manifest)
}

function isEmptyDir (p: string): boolean {
  try { return fs.statSync(p).isDirectory() && fs.readdirSync(p).length === 0 } catch { return false }
}

/** Checks that a directory with no manifest may become a store: absent, empty, or half made. */
function assertEmptyOrAbsent (root: string): void {
  let names: string[]
  try {
    names = fs.readdirSync(root)
  } catch (err) {
    if (isCode(err, 'ENOENT')) return
    throw new SiblingError('SFS_STORE_UNREADABLE', `cannot read the store directory ${root}`, { cause: err })
  }
  // What a daemon killed while creating the store leaves (the manifest is written last, so
  // nothing was ever stored): treated as empty.
  const halfMade = names.every(n => [UPPER_DIR, WORK_DIR, MAPS_DIR, LOCK_FILE, MANIFEST_FILE + '.tmp'].includes(n)) &&
    [UPPER_DIR, WORK_DIR, MAPS_DIR].every(d => !names.includes(d) || isEmptyDir(path.join(root, d)))
  if (names.length > 0 && !halfMade) {
    throw new SiblingError('SFS_STORE_NOT_EMPTY', `${root} is not empty and is not a siblingfs store`, {
      hint: 'choose an empty or new directory for --store'
    })
  }
}

/**
 * Opens the store at `root` for `hostReal`, creating it when absent (or empty).
 * Refuses a store made for another host tree or of another format version.
 * Creation is crash-safe: the manifest is written last, by rename.
 */
function writeManifest (root: string, man: Manifest): void {
  const p = storePaths(root)
  const tmp = p.manifest + '.tmp'
  fs.writeFileSync(tmp, JSON.stringify(man, null, 2) + '\n', { mode: 0o644 })
  const fd = fs.openSync(tmp, 'r')
  try { fs.fsyncSync(fd) } finally { fs.closeSync(fd) }
  fs.renameSync(tmp, p.manifest)
  fsyncDir(root)
}

/** Options asked for on the command line; unset ones take the store's (or the defaults). */
export type RequestedOptions = Partial<StoreOptions>

/** Throws when options asked for differ from the ones a store was created with. */
export function checkOptions (root: string, have: StoreOptions, want: RequestedOptions): void {
  for (const k of ['chunkSize', 'compress'] as const) {
    if (want[k] !== undefined && want[k] !== have[k]) {
      const flag = k === 'chunkSize' ? '--chunk-size' : '--compress'
      throw new SiblingError('SFS_STORE_OPTIONS', `the store at ${root} was created with ${flag} ${String(have[k])}, not ${String(want[k])}`, {
        hint: `drop ${flag} (a store's options are fixed when it is created), or use a new --store`, exitCode: 64
      })
    }
  }
}

/**
 * Opens the store at `root` for `hostReal`, creating it when absent (or empty) with the
 * requested options. Refuses a store made for another host tree, of an unknown format
 * version, or with other options than requested. Migrates a version 1 store (which has no
 * chunked siblings) by adding maps/ and rewriting the manifest. Creation is crash-safe: the
 * manifest is written last, by rename.
 */
export function openOrCreateStore (root: string, hostReal: string, want: RequestedOptions = {}): Manifest {
  const p = storePaths(root)
  let man = readManifest(root)
  if (man === undefined) {
    assertEmptyOrAbsent(root)
    fs.mkdirSync(root, { recursive: true, mode: 0o700 })
    fs.mkdirSync(p.upper, { recursive: true, mode: 0o755 })
    fs.mkdirSync(p.work, { recursive: true, mode: 0o700 })
    fs.mkdirSync(p.maps, { recursive: true, mode: 0o700 })
    man = { format: STORE_FORMAT, version: STORE_VERSION, host: hostReal, createdAt: new Date().toISOString(), options: { ...DEFAULT_STORE_OPTIONS, ...want } }
    writeManifest(root, man)
    return man
  }
  if (man.host !== hostReal) {
    throw new SiblingError('SFS_STORE_HOST', `the store at ${root} belongs to host ${man.host}, not ${hostReal}`, {
      hint: 'use that host tree, or another --store for this one'
    })
  }
  checkOptions(root, man.options, want)
  for (const d of [p.upper, p.work]) {
    if (!fs.existsSync(d)) {
      throw new SiblingError('SFS_STORE_CORRUPT', `the store at ${root} has no ${path.basename(d)}/ directory`, {
        hint: 'run `siblingfs fsck --repair` on it, or restore it from a backup', exitCode: 73
      })
    }
  }
  if (man.version !== STORE_VERSION) {
    // Version 1 -> 2: same layout, plus maps/ and options in the manifest.
    fs.mkdirSync(p.maps, { recursive: true, mode: 0o700 })
    man = { ...man, version: STORE_VERSION }
    writeManifest(root, man)
  } else if (!fs.existsSync(p.maps)) {
    throw new SiblingError('SFS_STORE_CORRUPT', `the store at ${root} has no maps/ directory`, {
      hint: 'run `siblingfs fsck --repair` on it, or restore it from a backup', exitCode: 73
    })
  }
  return man
}

export function fsyncDir (dir: string): void {
  const fd = fs.openSync(dir, 'r')
  try { fs.fsyncSync(fd) } finally { fs.closeSync(fd) }
}

function pidAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return isCode(err, 'EPERM')
  }
}

/**
 * Takes the store's lock for this process: refuses when a live daemon holds it;
 * takes over a lock left by a dead one. Returns the function that releases it.
 */
export function lockStore (root: string): () => void {
  const p = storePaths(root)
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(p.lock, String(process.pid) + '\n', { flag: 'wx', mode: 0o644 })
      return () => {
        try {
          if (fs.readFileSync(p.lock, 'utf8').trim() === String(process.pid)) fs.unlinkSync(p.lock)
        } catch { /* already gone */ }
      }
    } catch (err) {
      if (!isCode(err, 'EEXIST')) throw err
    }
    const owner = Number.parseInt(fs.readFileSync(p.lock, 'utf8').trim(), 10)
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && pidAlive(owner)) {
      throw new SiblingError('SFS_STORE_BUSY', `the store at ${root} is in use by process ${owner}`, {
        hint: 'unmount that sandbox first (or stop that process), then try again'
      })
    }
    fs.rmSync(p.lock, { force: true }) // stale: its daemon is gone
  }
  throw new SiblingError('SFS_STORE_BUSY', `could not lock the store at ${root}`, { hint: 'try again' })
}

/** Whether a store is locked by a live process other than this one (for commit/discard). */
export function storeLockedBy (root: string): number | undefined {
  try {
    const owner = Number.parseInt(fs.readFileSync(storePaths(root).lock, 'utf8').trim(), 10)
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && pidAlive(owner)) return owner
  } catch { /* no lock */ }
  return undefined
}

/** Prefix of the empty files a mounted daemon keeps in work/ for its next copy-up
 *  (STORE-FORMAT.md): no operation's leftovers. */
export const SPARE_PREFIX = 'spare-'

/** Empties work/: what is there belongs to operations a killed daemon never finished. */
export function cleanWork (root: string): number {
  const work = storePaths(root).work
  let n = 0
  for (const name of fs.readdirSync(work)) {
    if (name.startsWith('intent-')) continue // replayed by the overlay before cleaning
    fs.rmSync(path.join(work, name), { recursive: true, force: true })
    n++
  }
  return n
}

export function parseOrigin (buf: Buffer | null): Origin | null {
  if (buf === null) return null
  try {
    const o = JSON.parse(buf.toString('utf8')) as Origin
    if (typeof o.path !== 'string' || (o.data !== 'host' && o.data !== 'store' && o.data !== 'chunks')) return null
    return o
  } catch {
    return null
  }
}

export function encodeOrigin (o: Origin): Buffer {
  return Buffer.from(JSON.stringify(o))
}
