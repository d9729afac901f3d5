/**
 * The merged view: POSIX semantics of a host tree with the store's changes on top.
 *
 * Owns: what every file-system operation means, as ext4 would answer it, expressed as
 * steps on the two layers: the host tree (read-only, never written, never chmod-ed) and
 * STORE/upper (writable). Paths are merged-view paths ('/', '/a/b').
 *
 * Error handling: every failure is thrown as an error with an errno name in `code`
 * (SiblingError, or Node's own fs errors, which carry the same field); the FUSE boundary
 * turns it into an errno. Operations return a value, or a Promise when they may wait for a
 * data copy-up (open for writing, truncate) or for copy-ups to finish (namespace changes).
 *
 * Crash safety: each operation is one atomic step on the store (a rename, an exchange, an
 * xattr write), prepared by steps that change nothing visible. The one exception, a rename
 * whose source must leave a whiteout behind, is covered by an intent file in work/ that the
 * next mount completes (`replayIntents`).
 *
 * Does not: talk to FUSE (src/fuse/), or know the store's files beyond format.ts' names.
 */
import fs from 'node:fs'
import { fail, isCode } from '../errors.js'
import { XATTR, XATTR_ESCAPE, XATTR_PREFIX, storePaths, type Origin, type StoreOptions } from '../store/format.js'
import { fgetxattr, lgetxattr, llistxattr, lremovexattr, lsetxattr, mknod as mknodAt, readdirTyped, renameat2, RENAME_EXCHANGE, utimensat } from '../sys/native.js'
import { log, logOnce } from '../log.js'
import { ChunkCache, type ChunkFile } from '../store/chunks.js'
import { ChunkRegistry } from './chunkreg.js'
import { CopyUp } from './copyup.js'
import { DIRECT_FH, HandleTable, type Handle } from './handles.js'
import { InodeTable, type UpperInfo } from './inodes.js'
import { Resolver, at, isWhiteout, joinPath, lstatOrNull, splitPath, type DirNode } from './resolve.js'

const C = fs.constants
const O_ACCMODE = 3
/** Open flags passed on to the store's descriptor of a writable handle. */
const PASS_FLAGS = C.O_APPEND | C.O_SYNC | C.O_DSYNC
const S_IFMT = 0o170000
const S_ISGID = 0o2000

/** Who makes a request: new entries belong to them (when the daemon runs as root). */
export interface Caller { uid: number, gid: number, pid: number }

/** The attributes of a merged-view entry. */
export interface Attr {
  st: fs.BigIntStats
  ino: number
  size: bigint
  nlink: number
}

/** A directory listing: parallel arrays of names, merged inode numbers and st_mode types. */
export interface DirListing {
  names: string[]
  inos: number[]
  modes: number[]
}

/** d_type -> the S_IFMT bits of st_mode. */
const DT_TO_MODE: Record<number, number> = { 1: C.S_IFIFO, 2: C.S_IFCHR, 4: C.S_IFDIR, 6: C.S_IFBLK, 8: C.S_IFREG, 10: C.S_IFLNK, 12: C.S_IFSOCK }

export interface StatFs {
  bsize: number, frsize: number, blocks: number, bfree: number, bavail: number
  files: number, ffree: number, favail: number, namemax: number
}

export interface OverlayOptions {
  /** Real path of the host tree. */
  host: string
  /** Store root (format.ts layout). */
  store: string
  /** How many directories to keep resolved (2 descriptors each). */
  maxDirs?: number
  /** The store's options (from its manifest). */
  options: StoreOptions
  /** Bytes of decompressed chunks to keep in memory. */
  chunkCacheBytes: number
}

/**
 * The kernel's caches, as far as the overlay must correct them. The kernel keeps one node
 * (with its attributes) per name it looked up, and libfuse's path API cannot tell it that
 * two names are hard links of one file. Patched fuse-native refreshes the other names
 * itself after a write, setattr or link through one of them; what only the overlay can
 * map to an inode, a name of several removed by unlink or rename, it reports here, with
 * the inode number the view shows (fuse-native's invalidateInode). `onlyShared`: only if
 * the kernel holds two or more names of it.
 */
export interface KernelCache {
  invalidateInode (ino: number, onlyShared: boolean): void
  /**
   * Directory `p` lists exactly directory `fd`: a host directory (it has no store copy), or
   * a store directory made in the sandbox whose entries all carry their own inode numbers
   * (no origin records, no whiteouts). Its readdir (and lookups in it) may be answered from
   * that directory from now on, with inode numbers base + ino and `selfIno`/`parentIno` for
   * '.' and '..' (fuse-native's setHostDir), until `dirChanged` for it or an ancestor.
   * 'live': a directory with both a store copy (`upper`, an origin record on it) and host
   * directory `fd`: each entry is looked up as `lookup` does, in the store copy first
   * (inode numbers upper.base + ino there; an entry with an origin is asked of the
   * overlay), then in the host directory; its own attributes are the store copy's, with
   * link count 1 (as `attrOf` shows it). It stays right whatever the overlay changes in it.
   * `upper.copyUp`: its host directory is the one at its own path (not renamed), so that a
   * first write of a host file in it may be answered by the FUSE layer (adoptCopiedUp).
   */
  listedHostDir (p: string, fd: number, base: number, selfIno: number, parentIno: number, kind: 'host' | 'store' | 'live', upper?: { fd: number, base: number, copyUp: boolean }): void
  /** What `p` (and with `subtree`, the directories below it) list may change. */
  dirChanged (p: string, subtree: boolean): void
}

/** An entry found in one layer. `path` is its `*at` path. */
interface Found {
  dir: DirNode
  name: string
  layer: 'upper' | 'host'
  path: string
  st: fs.BigIntStats
}

export class Overlay {
  readonly resolver: Resolver
  readonly inodes: InodeTable
  /** Host devices whose directory listings gave every entry's type (d_type). */
  private readonly typedDevs = new Set<number>()
  readonly handles = new HandleTable()
  readonly copyup: CopyUp
  readonly chunks: ChunkRegistry
  /** The store's maps/ directory (O_PATH), for the FUSE layer's C fast paths too. */
  readonly mapsFd: number
  /** Whether the daemon may chown (runs as root): chown, and trusted.* xattrs, need it. */
  readonly canChown: boolean
  private readonly hostReadFlags: number
  private readonly workFd: number
  private readonly upperRoot: string
  private intentCounter = 0
  /**
   * Hidden files: libfuse renames a file that is unlinked while open to
   * `<dir>/.fuse_hidden<hex>` and unlinks that name at the last release. We move such a
   * file to work/ instead, so it is in no directory of the merged view; this map finds it
   * by the name libfuse uses. work/ is emptied at mount, which is what should happen to
   * them after a crash. Merged path -> `*at` path in work/.
   */
  private readonly hidden = new Map<string, string>()
  /** Set by the FUSE layer once mounted; until then there is no kernel cache to correct. */
  kernel: KernelCache = { invalidateInode () {}, listedHostDir () {}, dirChanged () {} }

  constructor (opts: OverlayOptions) {
    const sp = storePaths(opts.store)
    this.upperRoot = sp.upper
    this.resolver = new Resolver({ hostRoot: opts.host, upperRoot: sp.upper, maxDirs: opts.maxDirs ?? 4096 })
    this.workFd = fs.openSync(sp.work, 0o10000000 | C.O_DIRECTORY)
    const hostSt = fs.statSync(opts.host)
    const storeSt = fs.statSync(sp.upper)
    this.inodes = new InodeTable(hostSt.dev, storeSt.dev)
    this.canChown = process.geteuid?.() === 0
    this.hostReadFlags = C.O_RDONLY | C.O_NOFOLLOW | (this.canChown ? C.O_NOATIME : 0)
    this.mapsFd = fs.openSync(sp.maps, 0o10000000 | C.O_DIRECTORY)
    const chunkOpts = { chunkSize: opts.options.chunkSize, compress: opts.options.compress === 'lz4' }
    const cache = new ChunkCache(opts.chunkCacheBytes)
    const mapPath = (id: string): string => at(this.mapsFd, id)
    this.copyup = new CopyUp({
      resolver: this.resolver, inodes: this.inodes, workFd: this.workFd, canChown: this.canChown, hostReadFlags: this.hostReadFlags,
      chunks: { opts: chunkOpts, cache, mapPath, adopt: (id, file) => this.chunks.adopt(id, file) },
      gotUpper: (node) => { this.liveNow(node) }
    })
    this.chunks = new ChunkRegistry({ opts: chunkOpts, cache, mapPath, openHost: (rel) => this.copyup.openHost(rel) })
    this.resolver.onChange = (p) => this.kernel.dirChanged(p, true)
    this.initRoot()
    this.replayIntents()
  }

  /** The store's root takes the host root's owner, mode and times once, at creation. */
  private initRoot (): void {
    const root = this.resolver.dir('/')
    const self = root.upperSelf
    const ust = fs.lstatSync(self, { bigint: true })
    if (this.inodes.origin(self, ust) !== null) return
    const hself = at(root.hostFd, '.')
    const hst = fs.lstatSync(hself, { bigint: true })
    this.copyup.copyMeta(hself, self, hst, { path: '', dev: Number(hst.dev), ino: Number(hst.ino), size: 0, mtimeNs: String(hst.mtimeNs), data: 'store' })
  }

  close (): void {
    this.copyup.close()
    this.handles.closeAll()
    this.chunks.closeAll()
    this.resolver.close()
    fs.closeSync(this.workFd)
    fs.closeSync(this.mapsFd)
  }

  // ---- lookup -------------------------------------------------------------------------

  /** The entry `name` of `dir` in the layer that shows it, or null. */
  private lookup (dir: DirNode, name: string): Found | null {
    if (dir.hasUpper) {
      const up = dir.upperAt(name)
      const st = lstatOrNull(up)
      if (st !== null) {
        if (isWhiteout(up, st)) return null
        return { dir, name, layer: 'upper', path: up, st }
      }
    }
    if (dir.hasHost) {
      const hp = dir.hostAt(name)
      const st = lstatOrNull(hp)
      if (st !== null) return { dir, name, layer: 'host', path: hp, st }
    }
    return null
  }

  private find (p: string): Found {
    const hid = this.hidden.get(p)
    if (hid !== undefined) {
      const root = this.resolver.dir('/')
      return { dir: root, name: '', layer: 'upper', path: hid, st: fs.lstatSync(hid, { bigint: true }) }
    }
    if (p === '/') {
      const root = this.resolver.dir('/')
      const self = root.upperSelf
      return { dir: root, name: '.', layer: 'upper', path: self, st: fs.lstatSync(self, { bigint: true }) }
    }
    const [dp, name] = splitPath(p)
    const f = this.lookup(this.resolver.dir(dp), name)
    if (f === null) fail('ENOENT', p)
    return f
  }

  /** Whether the host side of `dir` has an entry `name` (which a change must hide). */
  private hostHas (dir: DirNode, name: string): boolean {
    return dir.hasHost && lstatOrNull(dir.hostAt(name)) !== null
  }

  private attrOf (f: Found): Attr {
    const st = f.st
    if (f.layer === 'host') {
      return { st, ino: this.inodes.map(Number(st.dev), Number(st.ino)), size: st.size, nlink: Number(st.nlink) }
    }
    const info = this.inodes.info(f.path, st)
    const o = info.origin
    const size = info.chunks !== null
      ? this.chunkedSize(info, f.path)
      : (o !== null && o.data === 'host' && st.isFile() ? this.metacopySize(o) : st.size)
    if (o === null) return { st, ino: this.inodes.map(Number(st.dev), Number(st.ino)), size, nlink: Number(st.nlink) }
    const ino = this.inodes.map(o.dev, o.ino)
    if (st.isDirectory()) {
      // A directory merged with a host directory: its link count would count only the
      // store's subdirectories. 1 tells find(1) and friends "unknown", as btrfs does.
      return { st, ino, size, nlink: 1 }
    }
    return { st, ino, size, nlink: Number(st.nlink) }
  }

  /**
   * The size of a chunked file, from its map. A missing or damaged map must not take the
   * directory down with it: the file then shows size 0 (its opens and reads fail with EIO),
   * and the problem is logged once.
   */
  private chunkedSize (info: UpperInfo, dataPath: string): bigint {
    const id = info.chunks as string
    try {
      return BigInt(this.chunks.size(id, info.origin))
    } catch (err) {
      logOnce('map:' + id, `${this.viewPath(dataPath)}: ${err instanceof Error ? err.message : String(err)} (siblingfs fsck says more)`)
      return 0n
    }
  }

  /** A metadata-only sibling shows its host original's bytes, so its size is the original's
   *  now (not when the sibling was made: the original may have changed, see status). */
  private metacopySize (o: Origin): bigint {
    return this.copyup.hostStat(o.path)?.size ?? BigInt(o.size)
  }

  // ---- reading the tree -----------------------------------------------------------------

  getattr (p: string): Attr {
    return this.attrOf(this.find(p))
  }

  /** Attributes through an open handle (fstat); works after the name is gone. */
  fgetattr (p: string | null, fh: number): Attr {
    if (p !== null) {
      try { return this.getattr(p) } catch (err) { if (!isCode(err, 'ENOENT')) throw err }
    }
    const h = this.handle(fh)
    this.engineOf(h)
    // A chunked file: the data file's attributes with the engine's size (the data file
    // holds two slots per chunk, see STORE-FORMAT.md).
    const st = fs.fstatSync(h.chunks !== null ? h.chunks.file.descriptors.data : h.fd, { bigint: true })
    return { st, ino: h.ino, size: h.chunks !== null ? BigInt(h.chunks.file.size) : st.size, nlink: Number(st.nlink) }
  }

  /**
   * The merged entries of directory `p`, with '.' and '..' first, as ext4 lists them, with
   * the inode number and file type of each (what getdents reports; nothing more is needed).
   * Host entries come from one getdents pass without a stat each: ~0.3 µs an entry instead
   * of ~3 µs for an lstat through /proc/self/fd, which is most of a 10,000-entry listing.
   */
  readdir (p: string): DirListing {
    let parentIno = this.parentIno(p)
    const node = this.resolver.dir(p) // after the parent's: a node used below is the last resolved
    if (node.ino < 0) node.ino = this.getattr(p).ino
    if (parentIno < 0) parentIno = node.ino
    const out: DirListing = { names: ['.', '..'], inos: [node.ino, parentIno], modes: [C.S_IFDIR, C.S_IFDIR] }
    const seen = new Set<string>()
    let plain = true // no upper entry carries an origin (its inode number is its own)
    this.eachUpper(node, seen, (f) => {
      const ino = this.attrOf(f).ino
      if (ino !== this.inodes.map(Number(f.st.dev), Number(f.st.ino))) plain = false
      out.names.push(f.name)
      out.inos.push(ino)
      out.modes.push(Number(f.st.mode))
      return true
    })
    // Made in the sandbox (no host part), no entry from the host, no whiteout (they only
    // stand in front of host entries), itself without an origin: the store directory is
    // the listing, and the next ones can come from it directly.
    if (!node.hasHost && node.hasUpper && plain && seen.size === out.names.length - 2 && p !== '/') {
      const st = fs.lstatSync(node.upperSelf, { bigint: true })
      if (node.ino === this.inodes.map(Number(st.dev), Number(st.ino))) {
        this.kernel.listedHostDir(p, node.upperFd, this.inodes.map(Number(st.dev), 0), node.ino, parentIno, 'store')
      }
    }
    if (node.hasHost) {
      const [names, inos, types] = readdirTyped(at(node.hostFd, ''))
      if (node.hostDev < 0) node.hostDev = Number(fs.lstatSync(at(node.hostFd, '.'), { bigint: true }).dev)
      const dev = node.hostDev
      let typed = true
      for (let i = 0; i < names.length; i++) {
        const name = names[i]
        if (seen.has(name)) continue
        let mode = DT_TO_MODE[types[i]] ?? 0
        let ino = inos[i]
        if (mode === 0) { // DT_UNKNOWN: this file system does not fill d_type
          typed = false
          const st = lstatOrNull(node.hostAt(name))
          if (st === null) continue
          mode = Number(st.mode)
          ino = Number(st.ino)
        }
        out.names.push(name)
        out.inos.push(this.inodes.map(dev, ino))
        out.modes.push(mode)
      }
      if (typed) this.typedDevs.add(dev)
      // Only the host's entries, all typed: the next listings can come from the host directly.
      if (typed && !node.hasUpper) this.kernel.listedHostDir(p, node.hostFd, this.inodes.map(dev, 0), node.ino, parentIno, 'host')
      // With a store copy: lookups can be answered from both, entry by entry.
      else if (typed) {
        const ust = fs.lstatSync(node.upperSelf, { bigint: true })
        if (this.inodes.origin(node.upperSelf, ust) !== null) {
          const copyUp = node.hostRel === (p === '/' ? '' : p.slice(1))
          this.kernel.listedHostDir(p, node.hostFd, this.inodes.map(dev, 0), node.ino, parentIno, 'live', { fd: node.upperFd, base: this.inodes.map(Number(ust.dev), 0), copyUp })
        }
      }
    }
    return out
  }

  /**
   * Calls `fn` for each visible entry of `node`'s upper directory until it returns false
   * (then returns false); adds every name it saw, whiteouts too, to `seen`.
   */
  private eachUpper (node: DirNode, seen: Set<string>, fn: (f: Found) => boolean): boolean {
    if (!node.hasUpper) return true
    for (const name of fs.readdirSync(at(node.upperFd, ''))) {
      const up = node.upperAt(name)
      const st = lstatOrNull(up)
      if (st === null) continue
      seen.add(name)
      if (isWhiteout(up, st)) continue
      if (!fn({ dir: node, name, layer: 'upper', path: up, st })) return false
    }
    return true
  }

  /** Calls `fn` for each visible entry of `node` until it returns false. */
  private eachEntry (node: DirNode, fn: (f: Found) => boolean): void {
    const seen = new Set<string>()
    if (!this.eachUpper(node, seen, fn)) return
    if (node.hasHost) {
      for (const name of fs.readdirSync(at(node.hostFd, ''))) {
        if (seen.has(name)) continue
        const hp = node.hostAt(name)
        const st = lstatOrNull(hp)
        if (st === null) continue
        if (!fn({ dir: node, name, layer: 'host', path: hp, st })) return
      }
    }
  }

  private isEmptyDir (node: DirNode): boolean {
    let empty = true
    this.eachEntry(node, () => { empty = false; return false })
    return empty
  }

  readlink (p: string): string {
    const f = this.find(p)
    if (!f.st.isSymbolicLink()) fail('EINVAL', p)
    return fs.readlinkSync(f.path)
  }

  access (p: string, _mode: number): void {
    this.find(p)
  }

  statfs (): StatFs {
    const s = fs.statfsSync(this.upperRoot)
    return { bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, favail: s.ffree, namemax: 255 }
  }

  // ---- open files -----------------------------------------------------------------------

  private handle (fh: number): Handle {
    let h = this.handles.get(fh)
    // A pending writer opened in C may have had its first write answered in C since
    // (adoptCopiedUp): that event comes first.
    if (h?.layer === 'pending' && h.native === true) { this.handles.sync(); h = this.handles.get(fh) }
    if (h === undefined) fail('EBADF', String(fh))
    return h
  }

  /**
   * Opens `p`. Read-only opens of unchanged files use the host original, no copy. An open
   * for writing of an unchanged file copies nothing yet: the handle reads the original, and
   * its first write (or ftruncate) makes the sibling, once, however many handles wait on it
   * (`materialize`). So `touch`, or a program that opens read-write and only reads (sqlite
   * does), leaves the data alone. O_TRUNC makes an empty sibling at once.
   */
  open (p: string, flags: number): number | Promise<number> {
    const f = this.find(p)
    if (f.st.isDirectory()) {
      if ((flags & O_ACCMODE) !== C.O_RDONLY) fail('EISDIR', p)
    }
    const writes = (flags & O_ACCMODE) !== C.O_RDONLY || (flags & C.O_TRUNC) !== 0
    if (!writes) return this.openRead(f)
    if (!f.st.isFile()) fail('EINVAL', p)
    if ((flags & C.O_TRUNC) !== 0) {
      const pending = this.copyup.data(f.dir, f.name, true)
      if (pending === null) return this.openWrite(f.dir, f.name, flags)
      return pending.then(() => this.openWrite(f.dir, f.name, flags))
    }
    if (f.layer === 'upper' && this.inodes.origin(f.path, f.st)?.data !== 'host') return this.openWrite(f.dir, f.name, flags)
    const fh = this.openRead(f, false) // its first write must reach JS
    const h = this.handles.get(fh) as Handle
    h.layer = 'pending'
    h.flags = flags
    return fh
  }

  /**
   * Makes the sibling a pending handle waits for (its first write), at the name the file
   * has now (`p`, which libfuse keeps up to date across renames), and points every handle
   * on the same original at it: writers read-write, readers read-only.
   */
  private materialize (h: Handle, p: string | null): void | Promise<void> {
    if (p === null) fail('EIO', 'a pending handle lost its name') // hide() materializes first
    const f = this.find(p)
    const key = h.hostKey as string
    const finish = (): void => {
      if (h.layer !== 'pending') return // another write on this handle got there first
      const up = f.dir.upperAt(f.name)
      this.retarget(key, up, this.inodes.info(up, fs.lstatSync(up, { bigint: true })), p)
    }
    const pending = this.copyup.data(f.dir, f.name, false, f.layer === 'host' ? f.st : undefined)
    if (pending === null) { finish(); return }
    return pending.then(finish)
  }

  /**
   * Opens `f` for reading. `direct` handles (reads served in C, see handles.ts) are used for
   * plain store files and host originals; a pending writer (`allowDirect` false) is not
   * direct, its first write must reach JS.
   */
  private openRead (f: Found, allowDirect = true): number {
    const attr = this.attrOf(f)
    if (f.layer === 'host') {
      const fd = fs.openSync(f.path, this.hostReadFlags)
      const fh = this.handles.add({ fd, chunks: null, flags: C.O_RDONLY, ino: attr.ino, layer: 'host', hostKey: `${f.st.dev}:${f.st.ino}`, direct: allowDirect })
      // The FUSE layer may have made a sibling of it since `find` (adoptCopiedUp): then this
      // handle moves onto it now, with the others.
      if (this.copyup.native !== null) this.handles.sync()
      return fh
    }
    const info = this.inodes.info(f.path, f.st)
    const o = info.origin
    if (o !== null && o.data === 'host' && f.st.isFile()) {
      const fd = this.copyup.openHost(o.path)
      return this.handles.add({ fd, chunks: null, flags: C.O_RDONLY, ino: attr.ino, layer: 'host', hostKey: `${o.dev}:${o.ino}`, direct: allowDirect })
    }
    if (info.chunks !== null) {
      return this.handles.add({ fd: -1, chunks: this.acquireChunks(info, f.path, joinPath(f.dir.path, f.name)), flags: C.O_RDONLY, ino: attr.ino, layer: 'upper', hostKey: null })
    }
    const fd = fs.openSync(f.path, C.O_RDONLY | C.O_NOFOLLOW)
    return this.handles.add({ fd, chunks: null, flags: C.O_RDONLY, ino: attr.ino, layer: 'upper', hostKey: null, direct: allowDirect })
  }

  /** The shared chunk engine of a chunked upper file, with a reference for a handle;
   *  `label` is its path in the view, for messages. */
  private acquireChunks (info: UpperInfo, dataPath: string, label: string): { id: string, file: ChunkFile, label: string } {
    const id = info.chunks as string
    try {
      return { id, file: this.chunks.acquire(id, dataPath, info.origin, label), label }
    } catch (err) {
      log(`cannot open ${label}: ${err instanceof Error ? err.message : String(err)} (siblingfs fsck says more)`)
      throw err
    }
  }

  /** The merged-view path of an upper entry given by its `*at` path, for messages. */
  private viewPath (atPath: string): string {
    let p = atPath
    // `*at` paths (/proc/self/fd/N/name) and open files (/proc/self/fd/N)
    const m = /^\/proc\/self\/fd\/(\d+)(?:\/(.*))?$/.exec(atPath)
    if (m !== null) {
      try {
        const target = fs.readlinkSync('/proc/self/fd/' + m[1])
        p = m[2] === undefined ? target : target + '/' + m[2]
      } catch {
        return atPath
      }
    }
    if (p.startsWith(this.upperRoot + '/')) return p.slice(this.upperRoot.length)
    return p
  }

  /** Opens the (now data-holding) sibling for writing, and moves host readers onto it. */
  private openWrite (dir: DirNode, name: string, flags: number): number {
    const up = dir.upperAt(name)
    const st = fs.lstatSync(up, { bigint: true })
    if (!st.isFile()) fail('EINVAL', name)
    const info = this.inodes.info(up, st)
    const o = info.origin
    const ino = o !== null ? this.inodes.map(o.dev, o.ino) : this.inodes.map(Number(st.dev), Number(st.ino))
    let h: Handle
    if (info.chunks !== null) {
      const chunks = this.acquireChunks(info, up, joinPath(dir.path, name))
      if ((flags & C.O_TRUNC) !== 0 && chunks.file.size !== 0) chunks.file.truncate(0)
      h = { fd: -1, chunks, flags, ino, layer: 'upper', hostKey: null }
    } else {
      h = { fd: fs.openSync(up, C.O_RDWR | C.O_NOFOLLOW | (flags & (PASS_FLAGS | C.O_TRUNC))), chunks: null, flags, ino, layer: 'upper', hostKey: null, direct: true }
    }
    if (o !== null) this.retarget(`${o.dev}:${o.ino}`, up, info, joinPath(dir.path, name))
    return this.handles.add(h)
  }

  /** Points every handle on host original `key` at the sibling `up`: handles waiting to
   *  write get it read-write, readers read-only. */
  private retarget (key: string, up: string, info: UpperInfo, label: string): void {
    this.handles.retarget(key, (r) => {
      if (info.chunks !== null) r.chunks = this.acquireChunks(info, up, label)
      else if (r.layer === 'pending') r.fd = fs.openSync(up, C.O_RDWR | C.O_NOFOLLOW | (r.flags & PASS_FLAGS))
      else r.fd = fs.openSync(up, C.O_RDONLY | C.O_NOFOLLOW)
    })
  }

  read (fh: number, buf: Buffer, len: number, pos: number): number {
    const h = this.handle(fh)
    if (h.chunks !== null || this.engineOf(h)) return this.chunkIo(h, () => (h.chunks as { file: ChunkFile }).file.read(buf, len, pos))
    return fs.readSync(h.fd, buf, 0, len, pos)
  }

  write (p: string | null, fh: number, buf: Buffer, len: number, pos: number): number | Promise<number> {
    const h = this.handle(fh)
    if (h.layer === 'pending') {
      const m = this.materialize(h, p)
      if (m !== undefined) return m.then(() => this.write(p, fh, buf, len, pos))
    }
    if (h.layer !== 'upper') fail('EBADF', String(fh))
    if (h.chunks !== null) {
      const file = h.chunks.file
      // O_APPEND: the kernel sends its idea of the end; the engine's size is the truth.
      return this.chunkIo(h, () => file.write(buf, len, (h.flags & C.O_APPEND) !== 0 ? file.size : pos))
    }
    return fs.writeSync(h.fd, buf, 0, len, pos)
  }

  /** Runs chunk I/O; an integrity error is logged with the file, and answered as EIO. */
  private chunkIo<T> (h: Handle, fn: () => T): T {
    try {
      return fn()
    } catch (err) {
      if (isCode(err, 'EIO') && h.chunks !== null) {
        const msg = (err instanceof Error ? err.message : String(err)).split(h.chunks.file.dataPath).join(h.chunks.label)
        log(`I/O error in ${h.chunks.label} (chunk map ${h.chunks.id}): ${msg}`)
      }
      throw err
    }
  }

  release (fh: number): void {
    const h = this.handles.release(fh)
    if (h?.chunks != null) this.chunks.release(h.chunks.id)
  }

  /**
   * How the FUSE layer may open host files itself (read-only, in a directory it lists from
   * the host, see KernelCache.listedHostDir) and hand them over with `adoptHostOpen`: the
   * open flags used here for host files (any size may be direct, see handles.ts).
   */
  get hostOpen (): { flags: number, maxSize: number } {
    return { flags: this.hostReadFlags & ~(C.O_RDONLY | C.O_NOFOLLOW), maxSize: Number.MAX_SAFE_INTEGER }
  }

  /** A read-only direct handle opened by the FUSE layer (hostOpen) on a host file, or on a
   *  store file that holds its own bytes (no origin), (dev, ino); or (`created`) the
   *  read-write handle of a file it created in a directory made in the sandbox, as
   *  `create` would have; or (`chunked`) the read-only handle of the data file of a chunked
   *  sibling made in the sandbox, whose reads the FUSE layer serves itself (see
   *  `engineOf` for the rest); registered as if `open` or `create` had made it. */
  adoptOpen (fh: number, dev: number, ino: number, layer: 'host' | 'upper', created = false, chunked = false): void {
    const fd = fh & ~DIRECT_FH
    const hostKey = layer === 'host' ? `${dev}:${ino}` : null
    const got = this.handles.add({ fd, chunks: null, flags: created ? C.O_RDWR : C.O_RDONLY, ino: this.inodes.map(dev, ino), layer, hostKey, direct: true, engineLater: chunked, native: true })
    if (got !== fh) fail('EIO', `adopted handle ${fh} became ${got}`)
  }

  /** An open for writing (`flags`, no O_TRUNC) of host file (dev, ino) that the FUSE layer
   *  answered itself (hostOpen): a read-only direct handle on the host file whose requests
   *  all come here (forwarded), registered as the pending handle `open` would have made. */
  adoptPending (fh: number, dev: number, ino: number, flags: number): void {
    const fd = fh & ~DIRECT_FH
    const got = this.handles.add({ fd, chunks: null, flags, ino: this.inodes.map(dev, ino), layer: 'pending', hostKey: `${dev}:${ino}`, direct: true, forwarded: true, native: true })
    if (got !== fh) fail('EIO', `adopted handle ${fh} became ${got}`)
  }

  /**
   * The FUSE layer used the spare files it had for a copy-up (CopyUp.refillNative): when
   * `fh` is not 0, the first write of that pending handle (adoptPending) made its file a
   * chunked sibling there, as `materialize` would have, and `dataFd` is the sibling's data
   * file (closed here); every handle on the host original moves onto it, as after a copy-up
   * here. Either way the FUSE layer gets new spares.
   */
  adoptCopiedUp (fh: number, dataFd: number): void {
    this.copyup.nativeSpareUsed()
    if (fh === 0) return
    try {
      const h = this.handles.get(fh)
      if (h === undefined || h.layer !== 'pending' || h.hostKey === null) return // released, or JS got there first
      const up = fs.readlinkSync(`/proc/self/fd/${dataFd}`)
      const info = this.inodes.info(up, fs.fstatSync(dataFd, { bigint: true }))
      if (info.chunks === null) fail('EIO', `the sibling made in C at ${up} has no chunk map record`)
      this.retarget(h.hostKey, up, info, this.viewPath(up))
    } finally {
      fs.closeSync(dataFd)
    }
  }

  /**
   * Whether handle `h` reads through a chunk engine that it has just been given: a chunked
   * sibling the FUSE layer opened gets its engine only when JS must read through it (what C
   * could not answer, fstat after an unlink), not at every open. Until its release the map
   * stays where it is (an unlink or a rename over an open file moves it to work/ first), so
   * it can be had then; if not, EIO, logged.
   */
  private engineOf (h: Handle): boolean {
    if (h.engineLater !== true) return false
    try {
      const id = fgetxattr(h.fd, XATTR.chunks)
      if (id === null) fail('EIO', 'its chunk map record is gone')
      // ChunkFile opens the data file by a path without following links: the file's own.
      const dataPath = fs.readlinkSync(`/proc/self/fd/${h.fd}`)
      const a = fs.fstatSync(h.fd)
      const b = fs.lstatSync(dataPath)
      if (a.dev !== b.dev || a.ino !== b.ino) fail('EIO', 'it moved while being opened')
      h.chunks = this.acquireChunks({ origin: null, chunks: id.toString('utf8') }, dataPath, this.viewPath(dataPath))
      h.engineLater = false
      return true
    } catch (err) {
      log(`cannot read ${this.viewPath(`/proc/self/fd/${h.fd}`)}: ${err instanceof Error ? err.message : String(err)} (siblingfs fsck says more)`)
      fail('EIO', 'a chunked file without its engine')
    }
  }

  fsync (fh: number, datasync: boolean): void {
    const h = this.handle(fh)
    if (h.layer !== 'upper') return // nothing of ours to flush; the host is not ours to touch
    if (h.chunks !== null) { h.chunks.file.fsync(datasync); return }
    if (datasync) fs.fdatasyncSync(h.fd)
    else fs.fsyncSync(h.fd)
  }

  fsyncdir (p: string): void {
    const node = this.resolver.dir(p)
    if (!node.hasUpper) return
    const fd = fs.openSync(at(node.upperFd, '.'), C.O_RDONLY | C.O_DIRECTORY)
    try { fs.fsyncSync(fd) } finally { fs.closeSync(fd) }
  }

  truncate (p: string, size: number): void | Promise<void> {
    const f = this.find(p)
    if (f.st.isDirectory()) fail('EISDIR', p)
    if (!f.st.isFile()) fail('EINVAL', p)
    const pending = this.copyup.data(f.dir, f.name, size === 0)
    if (pending === null) { this.truncateUpper(f.dir.upperAt(f.name), size, p); return }
    return pending.then(() => this.truncateUpper(f.dir.upperAt(f.name), size, p))
  }

  private truncateUpper (up: string, size: number, label: string): void {
    const st = fs.lstatSync(up, { bigint: true })
    const info = this.inodes.info(up, st)
    if (info.chunks === null) { fs.truncateSync(up, size); return }
    const c = this.acquireChunks(info, up, label)
    try { c.file.truncate(size) } finally { this.chunks.release(c.id) }
  }

  ftruncate (p: string | null, fh: number, size: number): void | Promise<void> {
    const h = this.handle(fh)
    if (h.layer === 'pending') {
      const m = this.materialize(h, p)
      if (m !== undefined) return m.then(() => this.ftruncate(p, fh, size))
    }
    if (h.layer !== 'upper') fail('EBADF', String(fh))
    if (h.chunks !== null) h.chunks.file.truncate(size)
    else fs.ftruncateSync(h.fd, size)
  }

  // ---- new entries ----------------------------------------------------------------------

  /**
   * Prepares `name` in `dir` for a new entry: gives the directory an upper copy and says
   * whether a whiteout must be replaced. Throws EEXIST when the name is taken.
   */
  private prepareNew (dir: DirNode, name: string): { whiteout: boolean, parent: fs.BigIntStats } {
    this.copyup.upperDir(dir)
    const up = dir.upperAt(name)
    const st = lstatOrNull(up)
    if (st !== null && !isWhiteout(up, st)) fail('EEXIST', name)
    if (st === null && this.hostHas(dir, name)) fail('EEXIST', name)
    return { whiteout: st !== null, parent: fs.lstatSync(dir.upperSelf, { bigint: true }) }
  }

  /** Gives a new entry to its creator, as ext4 would (set-gid directories pass their group). */
  private own (p: string, caller: Caller, parent: fs.BigIntStats, isDir: boolean): void {
    if (!this.canChown) return
    const setgid = (Number(parent.mode) & S_ISGID) !== 0
    fs.lchownSync(p, caller.uid, setgid ? Number(parent.gid) : caller.gid)
    if (setgid && isDir) {
      const st = fs.lstatSync(p)
      fs.chmodSync(p, (st.mode & 0o7777) | S_ISGID)
    }
  }

  /**
   * Makes a new entry with `make(path)` at `name` of `dir`: directly when the name is free in
   * the store, or built in work/ and renamed over the whiteout it replaces (atomic).
   */
  private makeEntry (dir: DirNode, name: string, caller: Caller, isDir: boolean, make: (p: string) => void): void {
    const { whiteout, parent } = this.prepareNew(dir, name)
    const up = dir.upperAt(name)
    if (!whiteout) {
      make(up)
      try {
        this.own(up, caller, parent, isDir)
      } catch (err) {
        fs.rmSync(up, { recursive: true, force: true })
        throw err
      }
      return
    }
    const tmp = this.copyup.tmp()
    try {
      make(tmp)
      this.own(tmp, caller, parent, isDir)
      if (isDir) {
        // A directory re-created where one was deleted starts empty: hide the host's.
        lsetxattr(tmp, XATTR.opaque, Buffer.from('y'), 0)
        renameat2(tmp, up, RENAME_EXCHANGE)
        fs.rmSync(tmp, { force: true }) // the whiteout it replaced
      } else {
        fs.renameSync(tmp, up)
      }
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true })
      throw err
    }
  }

  create (p: string, mode: number, flags: number, caller: Caller): number | Promise<number> {
    const [dp, name] = splitPath(p)
    const dir = this.resolver.dir(dp)
    if (this.lookup(dir, name) !== null) {
      if ((flags & C.O_EXCL) !== 0) fail('EEXIST', p)
      return this.open(p, flags)
    }
    let fd = -1
    let made = null as { id: string, file: ChunkFile } | null // set inside makeEntry's callback
    try {
      this.makeEntry(dir, name, caller, false, (q) => {
        fd = fs.openSync(q, C.O_CREAT | C.O_EXCL | C.O_RDWR | C.O_NOFOLLOW | (flags & PASS_FLAGS), mode & 0o7777)
        if (this.copyup.compress) {
          try { made = this.copyup.newChunked(q) } catch (err) { fs.closeSync(fd); throw err }
        }
      })
    } catch (err) {
      made?.file.close()
      throw err
    }
    const st = fs.fstatSync(fd, { bigint: true })
    const ino = this.inodes.map(Number(st.dev), Number(st.ino))
    if (!this.copyup.compress) return this.handles.add({ fd, chunks: null, flags, ino, layer: 'upper', hostKey: null, direct: true })
    fs.closeSync(fd)
    const up = dir.upperAt(name)
    if (made !== null) { made.file.moved(up); this.chunks.adopt(made.id, made.file) } // its handle opens nothing again
    const chunks = this.acquireChunks(this.inodes.info(up, fs.lstatSync(up, { bigint: true })), up, p)
    return this.handles.add({ fd: -1, chunks, flags, ino, layer: 'upper', hostKey: null })
  }

  mknod (p: string, mode: number, rdev: number, caller: Caller): void {
    const type = mode & S_IFMT
    if ((type === C.S_IFCHR || type === C.S_IFBLK) && caller.uid !== 0) fail('EPERM', p)
    const [dp, name] = splitPath(p)
    this.makeEntry(this.resolver.dir(dp), name, caller, false, (q) => {
      if (type === C.S_IFREG || type === 0) fs.closeSync(fs.openSync(q, C.O_CREAT | C.O_EXCL | C.O_WRONLY, mode & 0o7777))
      else mknodAt(q, mode, rdev)
    })
  }

  mkdir (p: string, mode: number, caller: Caller): void {
    const [dp, name] = splitPath(p)
    this.makeEntry(this.resolver.dir(dp), name, caller, true, (q) => fs.mkdirSync(q, mode & 0o7777))
    this.resolver.invalidate(p)
    this.listedStoreDir(p)
  }

  /** The merged inode number of the parent of directory `p` ('..'); -1 for the root. */
  private parentIno (p: string): number {
    if (p === '/') return -1
    const pp = splitPath(p)[0]
    const parent = this.resolver.dir(pp)
    if (parent.ino < 0) parent.ino = this.getattr(pp).ino
    return parent.ino
  }

  /**
   * A merged directory that has just got its store copy (CopyUp.upperDir: a create, mkdir,
   * rename or copy-up in a host directory) is registered with the FUSE layer as 'live'
   * right away, as its first listing would register it (see readdir), so that lookups,
   * opens and creates in it do not all come here until something lists it (a build writing
   * objects next to its sources never does). Only on a host device whose listings are
   * known to carry file types. Best effort.
   */
  private liveNow (node: DirNode): void {
    if (!node.hasHost || node.upperFd < 0) return
    try {
      if (node.hostDev < 0) node.hostDev = Number(fs.lstatSync(at(node.hostFd, '.'), { bigint: true }).dev)
      if (!this.typedDevs.has(node.hostDev)) return
      const p = node.path
      let parentIno = this.parentIno(p)
      if (node.ino < 0) node.ino = this.getattr(p).ino
      if (parentIno < 0) parentIno = node.ino
      const ust = fs.lstatSync(node.upperSelf, { bigint: true })
      if (this.inodes.origin(node.upperSelf, ust) === null) return
      const copyUp = node.hostRel === (p === '/' ? '' : p.slice(1))
      this.kernel.listedHostDir(p, node.hostFd, this.inodes.map(node.hostDev, 0), node.ino, parentIno, 'live', { fd: node.upperFd, base: this.inodes.map(Number(ust.dev), 0), copyUp })
    } catch { /* the next listing registers it */ }
  }

  /**
   * A directory just made in the sandbox is empty, in the store only and has no origin:
   * lookups and listings in it can be answered from the store directory at once
   * (KernelCache.listedHostDir), without waiting for a first listing by JS. Best effort.
   */
  private listedStoreDir (p: string): void {
    const [dp] = splitPath(p)
    const parent = this.resolver.dir(dp)
    if (parent.ino < 0) parent.ino = this.getattr(dp).ino
    const node = this.resolver.dir(p)
    if (node.hasHost || !node.hasUpper) return
    const st = fs.lstatSync(node.upperSelf, { bigint: true })
    node.ino = this.inodes.map(Number(st.dev), Number(st.ino))
    this.kernel.listedHostDir(p, node.upperFd, this.inodes.map(Number(st.dev), 0), node.ino, parent.ino, 'store')
  }

  symlink (target: string, p: string, caller: Caller): void {
    const [dp, name] = splitPath(p)
    this.makeEntry(this.resolver.dir(dp), name, caller, false, (q) => fs.symlinkSync(target, q))
  }

  async link (src: string, dst: string): Promise<void> {
    await this.copyup.gate.quiet()
    const f = this.find(src)
    if (f.st.isDirectory()) fail('EPERM', src)
    const [ddp, dname] = splitPath(dst)
    const ddir = this.resolver.dir(ddp)
    if (this.lookup(ddir, dname) !== null) fail('EEXIST', dst)
    if (f.layer === 'host') this.copyup.meta(f.dir, f.name)
    const srcUp = f.dir.upperAt(f.name)
    const { whiteout } = this.prepareNew(ddir, dname)
    const up = ddir.upperAt(dname)
    // A name of a file made in the sandbox shows the store's own inode number, exactly what a
    // directory listed from the store (KernelCache.listedHostDir) shows: it can stay so. A
    // file with an origin (copied up from the host) shows the host's number: it cannot.
    if (f.layer === 'host' || this.attrOf(f).ino !== this.inodes.map(Number(f.st.dev), Number(f.st.ino))) {
      this.kernel.dirChanged(ddp, false)
    }
    if (!whiteout) { fs.linkSync(srcUp, up); return }
    const tmp = this.copyup.tmp()
    fs.linkSync(srcUp, tmp)
    try { fs.renameSync(tmp, up) } catch (err) { fs.rmSync(tmp, { force: true }); throw err }
  }

  // ---- removing and renaming --------------------------------------------------------------

  /** Atomically puts a whiteout at `name` of `dir` (which has an upper copy), replacing a non-directory. */
  private whiteout (dir: DirNode, name: string): void {
    const tmp = this.makeWhiteoutFile()
    try { fs.renameSync(tmp, dir.upperAt(name)) } catch (err) { fs.rmSync(tmp, { force: true }); throw err }
  }

  private makeWhiteoutFile (): string {
    const tmp = this.copyup.tmp()
    fs.closeSync(fs.openSync(tmp, C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o600))
    lsetxattr(tmp, XATTR.whiteout, Buffer.from('y'), 0)
    return tmp
  }

  async unlink (p: string): Promise<void> {
    await this.copyup.gate.quiet()
    const hid = this.hidden.get(p)
    if (hid !== undefined) {
      this.hidden.delete(p)
      const id = this.lastChunks(hid, lstatOrNull(hid))
      fs.rmSync(hid, { force: true })
      if (id !== null) this.chunks.remove(id)
      return
    }
    const f = this.find(p)
    if (f.st.isDirectory()) fail('EISDIR', p)
    const id = f.layer === 'upper' ? this.lastChunks(f.path, f.st) : null
    const others = this.sharedIno(f)
    if (!this.hostHas(f.dir, f.name)) {
      fs.unlinkSync(f.path) // only in the store
    } else {
      this.copyup.upperDir(f.dir)
      this.whiteout(f.dir, f.name)
    }
    if (id !== null) this.chunks.remove(id)
    if (others !== null) this.kernel.invalidateInode(others, false)
  }

  /** The view's inode number of `f` when other names of it (hard links in the store) would
   *  see a change of its link count or ctime; else null. */
  private sharedIno (f: Found): number | null {
    return f.layer === 'upper' && !f.st.isDirectory() && f.st.nlink > 1n ? this.attrOf(f).ino : null
  }

  /** The chunk map of an upper file about to lose its last name, or null. */
  private lastChunks (p: string, st: fs.BigIntStats | null): string | null {
    if (st === null || !st.isFile() || st.nlink !== 1n) return null
    return this.inodes.info(p, st).chunks
  }

  async rmdir (p: string): Promise<void> {
    await this.copyup.gate.quiet()
    if (p === '/') fail('EBUSY', p)
    const [dp, name] = splitPath(p)
    const dir = this.resolver.dir(dp)
    const f = this.lookup(dir, name)
    if (f === null) fail('ENOENT', p)
    if (!f.st.isDirectory()) fail('ENOTDIR', p)
    const node = this.resolver.dir(p)
    if (!this.isEmptyDir(node)) fail('ENOTEMPTY', p)
    const hostHas = this.hostHas(dir, name)
    if (f.layer === 'upper') {
      const tmp = hostHas ? this.makeWhiteoutFile() : this.copyup.tmp()
      if (hostHas) renameat2(tmp, f.path, RENAME_EXCHANGE) // the whiteout takes its place
      else fs.renameSync(f.path, tmp)
      this.resolver.invalidate(p)
      fs.rmSync(tmp, { recursive: true, force: true }) // only whiteouts were left in it
    } else {
      this.copyup.upperDir(dir)
      this.whiteout(dir, name)
      this.resolver.invalidate(p)
    }
  }

  async rename (src: string, dst: string): Promise<void> {
    await this.copyup.gate.quiet()
    if (src === dst) { this.find(src); return }
    if (dst.startsWith(src + '/')) fail('EINVAL', dst)
    const [sdp, sname] = splitPath(src)
    const [ddp, dname] = splitPath(dst)
    const sdir = this.resolver.dir(sdp)
    const ddir = this.resolver.dir(ddp)
    const sf = this.lookup(sdir, sname)
    if (sf === null) fail('ENOENT', src)
    if (dname.startsWith('.fuse_hidden') && !sf.st.isDirectory()) return await this.hide(sf, src, dst)
    const df = this.lookup(ddir, dname)
    const isDir = sf.st.isDirectory()
    if (df !== null) {
      if (isDir && !df.st.isDirectory()) fail('ENOTDIR', dst)
      if (!isDir && df.st.isDirectory()) fail('EISDIR', dst)
      if (isDir && !this.isEmptyDir(this.resolver.dir(dst))) fail('ENOTEMPTY', dst)
      if (!isDir && this.attrOf(sf).ino === this.attrOf(df).ino) return // two links of one file
    }
    if (src.startsWith(dst + '/')) fail('ENOTEMPTY', dst) // dst is an ancestor of src: not empty

    // 1. The source gets an upper copy that keeps showing what it shows now.
    this.copyup.upperDir(sdir)
    this.copyup.upperDir(ddir)
    this.kernel.dirChanged(ddp, false) // the entry arriving there may carry an origin
    if (isDir) {
      const node = this.resolver.dir(src)
      this.copyup.upperDir(node)
      const self = node.upperSelf
      if (node.hasHost) {
        if (lgetxattr(self, XATTR.redirect) === null) lsetxattr(self, XATTR.redirect, Buffer.from(node.hostRel ?? ''), 0)
      } else if (lgetxattr(self, XATTR.opaque) === null) {
        lsetxattr(self, XATTR.opaque, Buffer.from('y'), 0)
      }
    } else if (sf.layer === 'host') {
      this.copyup.meta(sdir, sname)
    }
    // 2. A directory being replaced holds at most whiteouts: make it opaque, then empty it,
    //    so that the rename may replace it. Neither step changes what the view shows.
    const dUp = ddir.upperAt(dname)
    const dst0 = lstatOrNull(dUp)
    if (dst0 !== null && dst0.isDirectory()) {
      const dnode = this.resolver.dir(dst)
      lsetxattr(dnode.upperSelf, XATTR.opaque, Buffer.from('y'), 0)
      for (const n of fs.readdirSync(at(dnode.upperFd, ''))) fs.rmSync(dnode.upperAt(n), { recursive: true, force: true })
    }
    // 3. The commit: one rename in the store. 4. A host entry at the source must not show
    //    through: a whiteout, promised by an intent file until it is there.
    const needsWhiteout = this.hostHas(sdir, sname)
    if (isDir && dst0 !== null && !dst0.isDirectory()) {
      // A directory onto a whiteout (a deleted name): rename(2) cannot put a directory over
      // a file, but an exchange can, and it leaves the whiteout at the source, which is
      // exactly what the source needs when a host entry would show through there.
      renameat2(sdir.upperAt(sname), dUp, RENAME_EXCHANGE)
      if (!needsWhiteout) fs.rmSync(sdir.upperAt(sname), { force: true })
      this.resolver.invalidate(src)
      this.resolver.invalidate(dst)
      return
    }
    const intent = needsWhiteout ? this.writeIntent(src) : null
    const dstChunks = dst0 !== null && !dst0.isDirectory() ? this.lastChunks(dUp, dst0) : null
    const replaced = df !== null ? this.sharedIno(df) : null
    fs.renameSync(sdir.upperAt(sname), dUp)
    if (replaced !== null) this.kernel.invalidateInode(replaced, false)
    if (dst0 !== null && !dst0.isDirectory()) this.inodes.forget(dst0)
    if (dstChunks !== null) this.chunks.remove(dstChunks)
    this.resolver.invalidate(src)
    this.resolver.invalidate(dst)
    if (needsWhiteout) this.whiteout(sdir, sname)
    if (intent !== null) fs.rmSync(intent, { force: true })
  }

  /** libfuse hides an open file being unlinked (see `hidden`): move it out of the view. */
  private async hide (f: Found, src: string, hiddenPath: string): Promise<void> {
    const key = f.layer === 'host' ? `${f.st.dev}:${f.st.ino}` : this.originKey(f)
    if (key !== null && this.handles.hasPending(key)) {
      // A handle opened for writing but not written yet would lose its name: make its
      // sibling now, while the file still has one.
      for (const h of this.handles.pendingOn(key)) await this.materialize(h, src)
      f = this.find(src)
    }
    const others = this.sharedIno(f)
    if (f.layer === 'host') this.copyup.meta(f.dir, f.name)
    const target = this.copyup.tmp()
    if (this.hostHas(f.dir, f.name)) {
      fs.linkSync(f.dir.upperAt(f.name), target)
      this.whiteout(f.dir, f.name)
    } else {
      fs.renameSync(f.dir.upperAt(f.name), target)
    }
    this.hidden.set(hiddenPath, target)
    if (others !== null) this.kernel.invalidateInode(others, false)
  }

  /** The host identity of an upper entry's origin, as handles know it, or null. */
  private originKey (f: Found): string | null {
    const o = this.inodes.origin(f.path, f.st)
    return o === null ? null : `${o.dev}:${o.ino}`
  }

  private writeIntent (whiteoutPath: string): string {
    const p = at(this.workFd, `intent-${process.pid}-${++this.intentCounter}.json`)
    fs.writeFileSync(p, JSON.stringify({ whiteout: whiteoutPath }) + '\n', { flag: 'wx' })
    return p
  }

  /** Completes renames a killed daemon left half done (see rename, step 4). */
  private replayIntents (): void {
    for (const n of fs.readdirSync(at(this.workFd, ''))) {
      if (!n.startsWith('intent-')) continue
      const p = at(this.workFd, n)
      try {
        const { whiteout } = JSON.parse(fs.readFileSync(p, 'utf8')) as { whiteout: string }
        const [dp, name] = splitPath(whiteout)
        const dir = this.resolver.dir(dp)
        if (dir.hasUpper && lstatOrNull(dir.upperAt(name)) === null && this.hostHas(dir, name)) this.whiteout(dir, name)
      } catch { /* the parent is gone too: nothing shows through */ }
      fs.rmSync(p, { force: true })
    }
  }

  // ---- metadata -----------------------------------------------------------------------

  /** The upper path of `p`, copying it up (metadata only) when it is still the host's. */
  private upperOf (p: string): string {
    const f = this.find(p)
    if (f.layer === 'upper') return f.path
    if (f.st.isDirectory()) {
      const node = this.resolver.dir(p)
      this.copyup.upperDir(node)
      return node.upperSelf
    }
    this.copyup.meta(f.dir, f.name)
    return f.dir.upperAt(f.name)
  }

  chmod (p: string, mode: number): void {
    fs.chmodSync(this.upperOf(p), mode & 0o7777)
  }

  chown (p: string, uid: number, gid: number): void {
    const u = uid === 0xffffffff ? -1 : uid
    const g = gid === 0xffffffff ? -1 : gid
    if (!this.canChown) {
      const st = this.find(p).st
      if ((u !== -1 && u !== Number(st.uid)) || (g !== -1 && g !== Number(st.gid))) fail('EPERM', p)
    }
    fs.lchownSync(this.upperOf(p), u, g)
  }

  utimens (p: string, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void {
    utimensat(this.upperOf(p), atimeSec, atimeNsec, mtimeSec, mtimeNsec, true)
  }

  // ---- extended attributes ------------------------------------------------------------------

  getxattr (p: string, name: string): Buffer {
    const f = this.find(p)
    const v = lgetxattr(f.path, f.layer === 'upper' ? storedXattr(name) : name)
    if (v === null) fail('ENODATA', p)
    return v
  }

  listxattr (p: string): string[] {
    const f = this.find(p)
    // security.capability is answered "absent" without asking us (src/fuse/mount.ts).
    const names = listOrEmpty(f.path).filter(n => n !== 'security.capability')
    if (f.layer === 'host') return names
    const out: string[] = []
    for (const n of names) {
      if (n.startsWith(XATTR_ESCAPE)) out.push(XATTR_PREFIX + n.slice(XATTR_ESCAPE.length))
      else if (!n.startsWith(XATTR_PREFIX)) out.push(n)
    }
    return out
  }

  setxattr (p: string, name: string, value: Buffer, flags: number): void {
    if (!name.startsWith('user.') && !(this.canChown && name.startsWith('trusted.'))) fail('EOPNOTSUPP', p)
    const f = this.find(p)
    if (f.st.isSymbolicLink()) fail('EPERM', p) // user.* xattrs are not allowed on symlinks
    lsetxattr(this.upperOf(p), storedXattr(name), value, flags)
  }

  removexattr (p: string, name: string): void {
    const f = this.find(p)
    if (f.layer === 'host' && lgetxattr(f.path, name) === null) fail('ENODATA', p)
    lremovexattr(this.upperOf(p), storedXattr(name))
  }
}

/** A user's xattr name as stored: names in our own namespace are escaped. */
function storedXattr (name: string): string {
  return name.startsWith(XATTR_PREFIX) ? XATTR_ESCAPE + name.slice(XATTR_PREFIX.length) : name
}

function listOrEmpty (p: string): string[] {
  try {
    return llistxattr(p)
  } catch (err) {
    if (isCode(err, 'EOPNOTSUPP')) return []
    throw err
  }
}
