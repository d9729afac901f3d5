/**
 * Path resolution: merged-view path -> the directories that make it up, without ever
 * following a symbolic link out of the host tree or the store.
 *
 * Owns: the cache of directory nodes (DirNode), each holding O_PATH descriptors of its
 * upper directory (in STORE/upper) and of the host directory merged under it.
 * Every access below a directory goes through `/proc/self/fd/<dirfd>/<name>`, which is
 * how this code spells `fstatat(dirfd, name)` / `openat(dirfd, name)` in Node: the kernel
 * resolves exactly one component, `name`, relative to the directory the descriptor holds.
 * Directories are opened one component at a time with O_NOFOLLOW|O_DIRECTORY, so a
 * symbolic link raced into a path (by a sandboxed program renaming in the store, or by
 * anyone changing the host) is never traversed: the open fails with ELOOP/ENOTDIR instead.
 *
 * Contract:
 * - `dir(path)` returns the node of a merged directory or throws ENOENT/ENOTDIR.
 * - A node stays valid until `invalidate()` drops it; callers that keep a node across an
 *   await `ref()` it, and its descriptors are closed only when the last ref is gone.
 * - The daemon is the only writer of the store, so what a node says about upper/ stays true
 *   until the daemon changes it, and every such change calls `invalidate()` or updates
 *   the node. The host side follows the coherence contract in the README.
 * Does not: decide merged semantics (whiteouts, copy-up); see overlay.ts.
 */
import fs from 'node:fs'
import { LRUCache } from 'lru-cache'
import { SiblingError, isCode } from '../errors.js'
import { lgetxattr } from '../sys/native.js'
import { XATTR } from '../store/format.js'

/** O_PATH (Linux, same value on x86_64 and arm64); Node's fs.constants lacks it. */
const O_PATH = 0o10000000
const DIR_FLAGS = O_PATH | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW

/** The `*at` path of `name` inside the directory held by `fd`. */
export function at (fd: number, name: string): string {
  return '/proc/self/fd/' + String(fd) + '/' + name
}

/** Opens directory `name` below directory fd `parent` without following links. */
export function openDirAt (parent: number, name: string): number {
  return fs.openSync(at(parent, name), DIR_FLAGS)
}

/** Opens an absolute directory path as the root of a layer (links allowed only here). */
export function openRootDir (p: string): number {
  return fs.openSync(p, O_PATH | fs.constants.O_DIRECTORY)
}

/** lstat that answers null instead of throwing for a missing entry (the common miss). */
export function lstatOrNull (p: string): fs.BigIntStats | null {
  return fs.lstatSync(p, { bigint: true, throwIfNoEntry: false }) ?? null
}

/** Whether an upper entry is a whiteout: an empty regular file marked by xattr. */
export function isWhiteout (p: string, st: fs.BigIntStats): boolean {
  return st.isFile() && st.size === 0n && lgetxattr(p, XATTR.whiteout) !== null
}

/** Splits '/a/b/c' into ['/a/b', 'c']; the root has no parent. */
export function splitPath (p: string): [string, string] {
  const i = p.lastIndexOf('/')
  return [i <= 0 ? '/' : p.slice(0, i), p.slice(i + 1)]
}

export function joinPath (dir: string, name: string): string {
  return dir === '/' ? '/' + name : dir + '/' + name
}

/** A directory of the merged view. */
export class DirNode {
  /** -1 when the directory has no upper (store) copy yet. */
  upperFd = -1
  /** -1 when no host directory is merged here (none exists, or opaque). */
  hostFd = -1
  /** Host-relative path of the host directory merged here ('' = host root), or null. */
  hostRel: string | null = null
  /** st_dev of the host directory (for inode numbers of its entries); -1 until asked. */
  hostDev = -1
  /** The directory's inode number in the view (readdir's '.' and '..'); -1 until asked.
   *  Fixed for the node's life: a copy-up keeps it, a rename or rmdir drops the node. */
  ino = -1
  refs = 0
  dropped = false

  constructor (readonly path: string) {}

  get hasUpper (): boolean { return this.upperFd >= 0 }
  get hasHost (): boolean { return this.hostFd >= 0 }

  upperAt (name: string): string { return at(this.upperFd, name) }
  hostAt (name: string): string { return at(this.hostFd, name) }
  /** The upper directory itself, as a path xattr calls can use. */
  get upperSelf (): string { return at(this.upperFd, '.') }

  ref (): this { this.refs++; return this }
  unref (): void {
    this.refs--
    if (this.refs === 0 && this.dropped) this.close()
  }

  close (): void {
    if (this.upperFd >= 0) fs.closeSync(this.upperFd)
    if (this.hostFd >= 0) fs.closeSync(this.hostFd)
    this.upperFd = -1
    this.hostFd = -1
  }
}

function hostRelJoin (rel: string, name: string): string {
  return rel === '' ? name : rel + '/' + name
}

export interface ResolverOptions {
  hostRoot: string
  upperRoot: string
  /** How many directory nodes to keep open (two descriptors each at most). */
  maxDirs: number
}

export class Resolver {
  private readonly cache: LRUCache<string, DirNode>
  private readonly root: DirNode
  /** fd of the host root, for host-relative walks (redirects, origins). */
  readonly hostRootFd: number

  constructor (opts: ResolverOptions) {
    this.root = new DirNode('/')
    this.root.upperFd = openRootDir(opts.upperRoot)
    this.root.hostFd = openRootDir(opts.hostRoot)
    this.root.hostRel = ''
    this.root.ref() // never closed while mounted
    this.hostRootFd = this.root.hostFd
    this.cache = new LRUCache<string, DirNode>({
      max: opts.maxDirs,
      dispose: (node) => this.drop(node)
    })
  }

  private drop (node: DirNode): void {
    node.dropped = true
    if (node.refs === 0) node.close()
  }

  /** The node of merged directory `p` ('/' or '/a/b'). Throws ENOENT or ENOTDIR. */
  dir (p: string): DirNode {
    if (p === '/') return this.root
    const hit = this.cache.get(p)
    if (hit !== undefined) return hit
    const [parentPath, name] = splitPath(p)
    const parent = this.dir(parentPath)
    const node = this.child(parent, name, p)
    this.cache.set(p, node)
    return node
  }

  /** Builds the node for `name` in `parent` from what is on disk. */
  private child (parent: DirNode, name: string, p: string): DirNode {
    const node = new DirNode(p)
    let redirect: string | null = null
    let opaque = false
    if (parent.hasUpper) {
      try {
        node.upperFd = openDirAt(parent.upperFd, name)
      } catch (err) {
        if (isCode(err, 'ENOTDIR') || isCode(err, 'ELOOP')) {
          // A non-directory in the store hides anything below it: a whiteout (deleted)
          // or a file/symlink the sandbox put there.
          const up = parent.upperAt(name)
          const st = lstatOrNull(up)
          if (st !== null && isWhiteout(up, st)) throw new SiblingError('ENOENT', 'ENOENT: ' + p, { path: p })
          throw new SiblingError('ENOTDIR', 'ENOTDIR: ' + p, { path: p })
        }
        if (!isCode(err, 'ENOENT')) throw err
      }
      if (node.upperFd >= 0) {
        const self = node.upperSelf
        const r = lgetxattr(self, XATTR.redirect)
        if (r !== null) redirect = r.toString('utf8')
        else opaque = lgetxattr(self, XATTR.opaque) !== null
      }
    }
    if (redirect !== null) {
      node.hostFd = this.openHostDir(redirect)
      node.hostRel = node.hostFd >= 0 ? redirect : null
    } else if (!opaque && parent.hasHost) {
      try {
        node.hostFd = openDirAt(parent.hostFd, name)
        node.hostRel = hostRelJoin(parent.hostRel ?? '', name)
      } catch (err) {
        if (isCode(err, 'ENOTDIR') || isCode(err, 'ELOOP')) {
          if (node.upperFd < 0) { node.close(); throw new SiblingError('ENOTDIR', 'ENOTDIR: ' + p, { path: p }) }
        } else if (!isCode(err, 'ENOENT')) {
          node.close()
          throw err
        }
      }
    }
    if (node.upperFd < 0 && node.hostFd < 0) throw new SiblingError('ENOENT', 'ENOENT: ' + p, { path: p })
    return node
  }

  /** Opens a host directory by host-relative path, one component at a time; -1 if absent. */
  openHostDir (rel: string): number {
    let fd = fs.openSync(at(this.hostRootFd, '.'), DIR_FLAGS)
    if (rel === '') return fd
    for (const part of rel.split('/')) {
      if (part === '' || part === '.' || part === '..') { fs.closeSync(fd); return -1 }
      let next: number
      try {
        next = openDirAt(fd, part)
      } catch (err) {
        fs.closeSync(fd)
        if (isCode(err, 'ENOENT') || isCode(err, 'ENOTDIR') || isCode(err, 'ELOOP')) return -1
        throw err
      }
      fs.closeSync(fd)
      fd = next
    }
    return fd
  }

  /**
   * Told, before the change is visible, whenever what the directory `p` (and those below
   * it) lists may change: it got a store copy, or was renamed or removed. The FUSE layer
   * uses it to stop answering readdir and lookups of `p` from what it was told `p` is
   * made of.
   */
  onChange: (p: string) => void = () => {}

  /** Directory `node` just got a store copy (copyup.upperDir). */
  gainedUpper (node: DirNode): void {
    this.onChange(node.path)
  }

  /** Drops the node of `p` and of every directory below it (after rename, rmdir, ...). */
  invalidate (p: string): void {
    this.onChange(p)
    if (p === '/') { this.cache.clear(); return }
    this.cache.delete(p)
    const prefix = p + '/'
    for (const key of [...this.cache.keys()]) {
      if (key.startsWith(prefix)) this.cache.delete(key)
    }
  }

  /** Number of cached directory nodes (for status and memory bounds). */
  get size (): number { return this.cache.size }

  close (): void {
    this.cache.clear()
    this.root.close()
  }
}
