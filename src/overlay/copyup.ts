/**
 * Copy-up: making the store's sibling of a host entry.
 *
 * Owns: the three kinds of promotion into STORE/upper, and their crash-safe order.
 * - `upperDir(node)`: gives a merged directory an upper directory (and its parents).
 *   mkdir in place, then owner, xattrs, origin, times. A crash in between leaves an upper
 *   directory that merges the same host directory: nothing visible changes.
 * - `meta(dir, name)`: a metadata-only sibling of a host entry (for chmod, chown, utimens,
 *   xattrs, rename and link of a file whose bytes do not change). Built complete in work/
 *   (a regular file gets no bytes, and origin data="host"), then renamed into place: the
 *   rename is the commit point.
 * - `data(...)`: the bytes. For a host entry or a metadata-only sibling with one link:
 *   a temp file in work/, data copied, metadata copied, fsync, rename into place (commit).
 *   For a metadata-only sibling with several hard links (one inode with several names, which
 *   a rename would split): the bytes are copied into the sibling itself, fsync, and the
 *   origin's data field flips to "store" (commit; before it, readers still use the host).
 * Each data copy-up runs at most once per sibling at a time: concurrent openers await the
 * same promise. The copy itself runs off the event loop (copy_file_range in libuv's pool)
 * while other requests are served; the `Gate` keeps namespace changes (unlink, rename,
 * rmdir, link) from running while a copy is in flight, so the copy's final rename always
 * lands at the name it was made for.
 * Temp names are `<pid>-<counter>`: the pid tells daemons apart in a store another daemon
 * crashed in (work/ is emptied at mount, but a name must never collide before that), and
 * the counter is unique within this single-threaded process.
 * Does not: decide when to copy up; overlay.ts does.
 */
import fs from 'node:fs'
import { SiblingError, isCode } from '../errors.js'
import crypto from 'node:crypto'
import { ChunkFile, type ChunkCache, type ChunkOptions, type HostIdentity } from '../store/chunks.js'
import { SPARE_PREFIX, SPARSE_MIN_BYTES, XATTR_ESCAPE, XATTR_PREFIX, type Origin } from '../store/format.js'
import { RENAME_NOREPLACE, lgetxattr, llistxattr, lsetxattr, mknod, renameat2, utimensat } from '../sys/native.js'
import { at, lstatOrNull, splitPath, type DirNode, type Resolver } from './resolve.js'
import type { InodeTable } from './inodes.js'

const NS = 1000000000n

/** Seconds and nanoseconds of a bigint ns timestamp. */
export function secNsec (ns: bigint): [number, number] {
  return [Number(ns / NS), Number(ns % NS)]
}

/** Waits namespace changes out while data copy-ups are in flight. */
export class Gate {
  private active = 0
  private waiters: Array<() => void> = []

  enter (): void { this.active++ }

  leave (): void {
    this.active--
    if (this.active === 0) {
      const w = this.waiters
      this.waiters = []
      for (const resolve of w) resolve()
    }
  }

  /** Resolves when no copy-up is in flight; null (no promise) when none is. */
  quiet (): Promise<void> | null {
    if (this.active === 0) return null
    return new Promise(resolve => this.waiters.push(resolve))
  }
}

export interface CopyUpContext {
  resolver: Resolver
  inodes: InodeTable
  /** O_PATH descriptor of STORE/work. */
  workFd: number
  /** Whether the daemon may chown (it runs as root). */
  canChown: boolean
  /** Flags for reading host files: O_RDONLY|O_NOFOLLOW, plus O_NOATIME when root, so that
   *  reading through the sandbox does not even change the host's access times. */
  hostReadFlags: number
  /** Chunked siblings: engine options, the shared cache, where maps live, and who takes
   *  over the engine of a sibling just made (the registry: its first handle opens nothing). */
  chunks: { opts: ChunkOptions, cache: ChunkCache, mapPath: (id: string) => string, adopt: (id: string, file: ChunkFile) => void }
  /** Told when a merged directory has just got its store copy (upperDir). */
  gotUpper?: (node: DirNode) => void
}

/** An empty file made ahead in work/, open read-write; `name` in work/. */
interface Spare { path: string, name: string, fd: number }

/** Where the FUSE layer takes the spare files of the copy-ups it makes itself (fuse-native's
 *  giveSpare and takeSpare; Overlay.adoptCopiedUp says when it used them). */
export interface NativeSpares {
  give: (dataFd: number, dataName: string, mapFd: number, mapName: string, id: string) => boolean
  take: () => boolean
}

/** A copy-up's commit: renames `tmp` to `dst`, which must not exist; false if it does (a
 *  sibling the FUSE layer made meanwhile, Overlay.adoptCopiedUp: the caller uses that one). */
function commitNew (tmp: string, dst: string): boolean {
  try {
    renameat2(tmp, dst, RENAME_NOREPLACE)
    return true
  } catch (err) {
    if (isCode(err, 'EEXIST')) return false
    throw err
  }
}

export class CopyUp {
  private counter = 0
  private readonly inflight = new Map<string, Promise<void>>()
  readonly gate = new Gate()
  /**
   * Files made ahead for the next copy-up: its temp file and a chunk map, empty, open
   * read-write, in work/ (emptied at every mount; removed at close). Making a file costs
   * 40-250 us on the ext4 of the machines this runs on, more than all the other system
   * calls of a copy-up together, and its journal work slows the calls after it; made
   * ahead (once the copy-up that used them has answered, see `refill`), a copy-up only
   * renames them into place.
   */
  private spareData: Spare | null = null
  private spareMap: Spare | null = null
  private refillQueued = false
  private closed = false
  /** The FUSE layer's pair (see NativeSpares), while it holds one. */
  private nativeSpares: { data: Spare, map: Spare } | null = null
  native: NativeSpares | null = null
  private readonly mapIdPrefix = crypto.randomBytes(8).toString('hex')
  private mapCounter = 0

  constructor (private readonly ctx: CopyUpContext) {}

  /** A fresh path in work/. */
  tmp (): string {
    return at(this.ctx.workFd, String(process.pid) + '-' + String(++this.counter))
  }

  /** Makes the files made ahead that are missing (at mount, and after each use). A failure
   *  (a full disk) leaves the slot empty: copy-ups then make their own files. */
  refill (): void {
    this.refillQueued = false
    if (this.closed) return
    const make = (mode: number): Spare | null => {
      const name = SPARE_PREFIX + String(process.pid) + '-' + String(++this.counter)
      const path = at(this.ctx.workFd, name)
      try {
        return { path, name, fd: fs.openSync(path, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_RDWR | fs.constants.O_NOFOLLOW, mode) }
      } catch {
        return null
      }
    }
    if (this.spareData === null) this.spareData = make(0o600)
    if (this.spareMap === null) this.spareMap = make(0o644)
    if (this.native !== null && this.nativeSpares === null) {
      const data = make(0o600)
      const map = make(0o644)
      if (data !== null && map !== null && this.native.give(data.fd, data.name, map.fd, map.name, this.newMapId())) {
        this.nativeSpares = { data, map }
      } else {
        for (const sp of [data, map]) if (sp !== null) this.drop(sp)
      }
    }
  }

  /** The FUSE layer used (or removed) the pair it held: it gets another one soon. */
  nativeSpareUsed (): void {
    this.nativeSpares = null
    this.queueRefill()
  }

  private drop (sp: Spare): void {
    try { fs.closeSync(sp.fd) } catch { /* closing anyway */ }
    fs.rmSync(sp.path, { force: true })
  }

  /** Refills after the current request has been answered (setImmediate runs after it). */
  private queueRefill (): void {
    if (this.refillQueued || this.closed) return
    this.refillQueued = true
    setImmediate(() => { this.refill() })
  }

  /** A new empty file in work/, open read-write (0600): the one made ahead, if any. */
  private newTemp (): Spare {
    const s = this.spareData
    if (s !== null) {
      this.spareData = null
      this.queueRefill()
      return s
    }
    const path = this.tmp()
    return { path, name: '', fd: fs.openSync(path, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_RDWR | fs.constants.O_NOFOLLOW, 0o600) }
  }

  /** A new empty chunk map at `mapPath`, open read-write: the one made ahead renamed there;
   *  -1 when there is none (or it cannot be moved): ChunkFile.create makes it. */
  private newMap (mapPath: string): number {
    const s = this.spareMap
    if (s === null) return -1
    this.spareMap = null
    this.queueRefill()
    try {
      fs.renameSync(s.path, mapPath)
      return s.fd
    } catch {
      fs.closeSync(s.fd)
      fs.rmSync(s.path, { force: true })
      return -1
    }
  }

  /** Closes and removes the files made ahead; refills nothing after. */
  close (): void {
    this.closed = true
    for (const s of [this.spareData, this.spareMap]) if (s !== null) this.drop(s)
    this.spareData = null
    this.spareMap = null
    // The FUSE layer's pair, unless it used it (its event not seen yet).
    if (this.nativeSpares !== null && this.native?.take() === true) { this.drop(this.nativeSpares.data); this.drop(this.nativeSpares.map) }
    this.nativeSpares = null
  }

  /** Ensures merged directory `node` has an upper directory. */
  upperDir (node: DirNode): void {
    if (node.hasUpper) return
    const [parentPath, name] = splitPath(node.path)
    const parent = this.ctx.resolver.dir(parentPath)
    this.upperDir(parent)
    const hostSelf = at(node.hostFd, '.')
    const st = fs.lstatSync(hostSelf, { bigint: true })
    const up = parent.upperAt(name)
    try {
      fs.mkdirSync(up, Number(st.mode) & 0o7777)
    } catch (err) {
      if (!isCode(err, 'EEXIST')) throw err
    }
    this.copyMeta(hostSelf, up, st, { path: node.hostRel ?? '', dev: Number(st.dev), ino: Number(st.ino), size: 0, mtimeNs: String(st.mtimeNs), data: 'store' })
    this.ctx.resolver.gainedUpper(node)
    node.upperFd = fs.openSync(up, 0o10000000 | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW)
    this.ctx.gotUpper?.(node)
  }

  /**
   * Copies owner, mode, user xattrs, the origin record and times from host entry `src`
   * (stat `st`) onto store entry `dst`.
   */
  copyMeta (src: string, dst: string, st: fs.BigIntStats, origin: Origin | null, fromHost = true, dstSt?: fs.BigIntStats): void {
    const isLink = st.isSymbolicLink()
    if (this.ctx.canChown) fs.lchownSync(dst, Number(st.uid), Number(st.gid))
    if (!isLink) {
      fs.chmodSync(dst, Number(st.mode) & 0o7777) // after chown, which clears set-id bits
      for (const name of safeList(src)) {
        if (!name.startsWith('user.')) continue
        let stored = name
        if (name.startsWith(XATTR_PREFIX)) {
          // From the host, a user's own user.siblingfs.* name is escaped; from the store,
          // escaped names are copied and our markers are not (the caller writes its own).
          if (fromHost) stored = XATTR_ESCAPE + name.slice(XATTR_PREFIX.length)
          else if (!name.startsWith(XATTR_ESCAPE)) continue
        }
        const v = lgetxattr(src, name)
        if (v !== null) lsetxattr(dst, stored, v, 0)
      }
      if (origin !== null) this.ctx.inodes.setOrigin(dst, dstSt ?? fs.lstatSync(dst, { bigint: true }), origin)
    }
    const [as, an] = secNsec(st.atimeNs)
    const [ms, mn] = secNsec(st.mtimeNs)
    utimensat(dst, as, an, ms, mn, true)
  }

  /**
   * Makes a metadata-only sibling of host entry `name` in `dir` (which must show the host
   * entry). Returns the sibling's stat.
   */
  meta (dir: DirNode, name: string): fs.BigIntStats {
    this.upperDir(dir)
    const src = dir.hostAt(name)
    const st = fs.lstatSync(src, { bigint: true })
    const mode = Number(st.mode)
    const made = st.isFile() ? this.newTemp() : null // a regular file's mode is copyMeta's
    const tmp = made?.path ?? this.tmp()
    try {
      if (made !== null) {
        fs.closeSync(made.fd)
      } else if (st.isSymbolicLink()) {
        fs.symlinkSync(fs.readlinkSync(src), tmp)
      } else if (st.isDirectory()) {
        throw new SiblingError('EISDIR', 'EISDIR: ' + name, { path: name })
      } else {
        mknod(tmp, mode, Number(st.rdev))
      }
      this.copyMeta(src, tmp, st, this.originOf(dir, name, st, 'host'))
      if (!commitNew(tmp, dir.upperAt(name))) fs.rmSync(tmp, { force: true }) // made by the FUSE layer meanwhile
    } catch (err) {
      fs.rmSync(tmp, { force: true })
      throw err
    }
    return fs.lstatSync(dir.upperAt(name), { bigint: true })
  }

  private originOf (dir: DirNode, name: string, st: fs.BigIntStats, data: Origin['data']): Origin {
    const rel = dir.hostRel === null || dir.hostRel === '' ? name : dir.hostRel + '/' + name
    return { path: rel, dev: Number(st.dev), ino: Number(st.ino), size: Number(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs), data }
  }

  /**
   * Makes sure `name` in `dir` is a sibling that holds its own bytes, copying them from the
   * host when needed. `truncateTo0` skips the copy (O_TRUNC, truncate to 0).
   * Resolves when the sibling is committed; rejects with the errno of the failure, leaving
   * the merged view as it was.
   */
  data (dir: DirNode, name: string, truncateTo0: boolean, hostSt?: fs.BigIntStats): Promise<void> | null {
    const up = dir.upperAt(name)
    const ust = hostSt !== undefined ? null : lstatOrNull(up)
    let origin: Origin | null = null
    if (ust !== null) {
      if (!ust.isFile()) return null
      origin = this.ctx.inodes.origin(up, ust)
      if (origin === null || origin.data !== 'host') return null // already holds its bytes
    }
    const key = dir.path + '\0' + name
    const running = this.inflight.get(key)
    if (running !== undefined) return running
    this.upperDir(dir)
    const hostSize = origin !== null ? origin.size : Number((hostSt ?? fs.lstatSync(dir.hostAt(name), { bigint: true })).size)
    if (this.compress || hostSize >= SPARSE_MIN_BYTES) {
      this.chunked(dir, name, ust, origin, truncateTo0) // no bytes to copy: done at once
      return null
    }
    dir.ref()
    this.gate.enter()
    const p = this.copyData(dir, name, ust, origin, truncateTo0).finally(() => {
      this.inflight.delete(key)
      this.gate.leave()
      dir.unref()
    })
    this.inflight.set(key, p)
    return p
  }

  private async copyData (dir: DirNode, name: string, ust: fs.BigIntStats | null, origin: Origin | null, truncateTo0: boolean): Promise<void> {
    const up = dir.upperAt(name)
    // Source of the bytes: the host entry of this name, or the origin of a sibling (a
    // renamed, metadata-only sibling reads from where it came from).
    const srcFd = origin === null
      ? fs.openSync(dir.hostAt(name), this.ctx.hostReadFlags)
      : this.openHost(origin.path)
    try {
      if (ust !== null && ust.nlink > 1n) {
        // Hard-linked metadata-only sibling: fill it in place, then flip data to "store".
        const fd = fs.openSync(up, fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW)
        try {
          fs.ftruncateSync(fd, 0)
          if (!truncateTo0) await copyBytes(srcFd, fd)
          fs.fsyncSync(fd)
        } finally {
          fs.closeSync(fd)
        }
        if (origin !== null) this.ctx.inodes.setOrigin(up, ust, { ...origin, data: 'store' })
        return
      }
      // One link: build the whole sibling in work/, then rename it into place.
      const made = this.newTemp()
      const tmp = made.path
      let fd = made.fd
      try {
        if (!truncateTo0) await copyBytes(srcFd, fd)
        fs.fsyncSync(fd)
        fs.closeSync(fd)
        fd = -1
        if (ust !== null) {
          // A metadata-only sibling already holds the current metadata and origin.
          this.copyMeta(up, tmp, ust, { ...(origin as Origin), data: 'store' }, false)
        } else {
          const hst = fs.fstatSync(srcFd, { bigint: true })
          this.copyMeta(dir.hostAt(name), tmp, hst, this.originOf(dir, name, hst, 'store'))
        }
        if (ust !== null) {
          fs.renameSync(tmp, up)
          this.ctx.inodes.forget(ust)
        } else if (!commitNew(tmp, up)) {
          fs.rmSync(tmp, { force: true }) // a sibling the FUSE layer made meanwhile holds the bytes
        }
      } catch (err) {
        if (fd >= 0) fs.closeSync(fd)
        fs.rmSync(tmp, { force: true })
        throw err
      }
    } finally {
      fs.closeSync(srcFd)
    }
  }

  get compress (): boolean { return this.ctx.chunks.opts.compress }
  get chunkSize (): number { return this.ctx.chunks.opts.chunkSize }
  /** The O_PATH descriptor of STORE/work. */
  get workFd (): number { return this.ctx.workFd }

  /** A new chunk map name: this process's random prefix and a counter (24 hex digits). */
  private newMapId (): string {
    return this.mapIdPrefix + (++this.mapCounter).toString(16).padStart(8, '0')
  }

  /**
   * Makes the new, empty regular file at `p` a chunked file (compressed stores). Returns its
   * engine, which the caller closes if the file is not committed, or hands to the registry
   * (`adopt`) once it is.
   */
  newChunked (p: string): { id: string, file: ChunkFile } {
    const id = this.newMapId()
    const c = this.ctx.chunks
    const mapPath = c.mapPath(id)
    const file = ChunkFile.create(p, mapPath, { size: 0, hostLimit: 0, host: null }, c.opts, c.cache, -1, 'at-fsync', { map: this.newMap(mapPath) })
    try {
      this.ctx.inodes.setChunks(p, fs.lstatSync(p, { bigint: true }), id)
    } catch (err) {
      file.close()
      throw err
    }
    return { id, file }
  }

  /**
   * Makes `name` of `dir` a chunked sibling of its host original: no bytes are copied; the
   * map says every chunk still reads from the host (or, for truncateTo0, that the file is
   * empty). Crash-safe like the other copy-ups: the map is complete before anything refers
   * to it; a map nothing refers to (a crash in between) is removed at the next mount and by
   * `siblingfs fsck --repair`. The map is not synced (the sibling is not either): after a
   * power loss before the file's first fsync it may be empty, which reads as the host
   * original, the state before the change (ChunkRegistry, "empty maps").
   */
  private chunked (dir: DirNode, name: string, ust: fs.BigIntStats | null, origin: Origin | null, truncateTo0: boolean): void {
    const up = dir.upperAt(name)
    let srcFd = origin === null ? fs.openSync(dir.hostAt(name), this.ctx.hostReadFlags) : this.openHost(origin.path)
    const hst = fs.fstatSync(srcFd, { bigint: true })
    const host: HostIdentity = { dev: Number(hst.dev), ino: Number(hst.ino), size: Number(hst.size), mtimeNs: String(hst.mtimeNs) }
    const size = truncateTo0 ? 0 : Number(hst.size)
    const id = this.newMapId()
    const c = this.ctx.chunks
    // The engine takes the host descriptor over (and closes it) once the map exists.
    const create = (dataPath: string, dataFd = -1): ChunkFile => {
      const fd = srcFd
      srcFd = -1
      try {
        // Not synced: a map lost to a power loss reads as the host original (STORE-FORMAT.md).
        const mapPath = c.mapPath(id)
        return ChunkFile.create(dataPath, mapPath, { size, hostLimit: size, host }, c.opts, c.cache, fd, 'at-fsync', { data: dataFd, map: this.newMap(mapPath) })
      } catch (err) {
        fs.closeSync(fd)
        throw err
      }
    }
    let made: ChunkFile | null = null
    try {
      if (ust !== null && ust.nlink > 1n) {
        // Hard-linked metadata-only sibling: map, marker, then the origin flip (commit).
        fs.truncateSync(up, 0)
        made = create(up)
        this.ctx.inodes.setChunks(up, ust, id)
        this.ctx.inodes.setOrigin(up, ust, { ...(origin as Origin), ...identity(hst), data: 'chunks' })
      } else {
        const data = this.newTemp()
        const tmp = data.path
        try {
          const st = fs.fstatSync(data.fd, { bigint: true }) // the new inode's, for its records
          made = create(tmp, data.fd)
          const o: Origin = ust !== null ? { ...(origin as Origin), ...identity(hst), data: 'chunks' } : this.originOf(dir, name, hst, 'chunks')
          this.copyMeta(ust !== null ? up : dir.hostAt(name), tmp, ust ?? hst, o, ust === null, st)
          this.ctx.inodes.setChunks(tmp, st, id)
          if (ust !== null) {
            fs.renameSync(tmp, up)
            this.ctx.inodes.forget(ust)
          } else if (!commitNew(tmp, up)) {
            // The FUSE layer made this sibling meanwhile (Overlay.adoptCopiedUp): use that one.
            fs.rmSync(tmp, { force: true })
            fs.rmSync(c.mapPath(id), { force: true })
            made.close()
            return
          }
          this.ctx.inodes.prime(st, { origin: o, chunks: id })
        } catch (err) {
          fs.rmSync(tmp, { force: true })
          fs.rmSync(c.mapPath(id), { force: true })
          throw err
        }
      }
    } catch (err) {
      made?.close()
      throw err
    } finally {
      if (srcFd >= 0) fs.closeSync(srcFd)
    }
    // Committed: the registry takes the engine over, so that the handle waiting for this
    // copy-up opens nothing again.
    made.moved(up)
    c.adopt(id, made)
  }

  /** The stat of a host entry by host-relative path (parents opened without links), or null. */
  hostStat (rel: string): fs.BigIntStats | null {
    const i = rel.lastIndexOf('/')
    const dirFd = this.ctx.resolver.openHostDir(i < 0 ? '' : rel.slice(0, i))
    if (dirFd < 0) return null
    try {
      return lstatOrNull(at(dirFd, i < 0 ? rel : rel.slice(i + 1)))
    } finally {
      fs.closeSync(dirFd)
    }
  }

  /** Opens a host file for reading by host-relative path; no link is followed on the way. */
  openHost (rel: string): number {
    const i = rel.lastIndexOf('/')
    const dirFd = this.ctx.resolver.openHostDir(i < 0 ? '' : rel.slice(0, i))
    if (dirFd < 0) throw new SiblingError('EIO', `the host original ${rel} of a sibling is gone`, { path: rel })
    try {
      return fs.openSync(at(dirFd, i < 0 ? rel : rel.slice(i + 1)), this.ctx.hostReadFlags)
    } catch (err) {
      if (isCode(err, 'ENOENT')) throw new SiblingError('EIO', `the host original ${rel} of a sibling is gone`, { path: rel, cause: err })
      throw err
    }
  }
}

/** What a sibling records of its host original, as it is now (origin fields). */
function identity (st: fs.BigIntStats): Pick<Origin, 'size' | 'mtimeNs' | 'ctimeNs'> {
  return { size: Number(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs) }
}

function safeList (p: string): string[] {
  try {
    return llistxattr(p)
  } catch (err) {
    if (isCode(err, 'EOPNOTSUPP') || isCode(err, 'ENOTSUP')) return []
    throw err
  }
}

function readAsync (fd: number, buf: Buffer, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buf, 0, buf.length, pos, (err, n) => { if (err !== null) reject(err); else resolve(n) })
  })
}

function writeAsync (fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.write(fd, buf, off, len, pos, (err, n) => { if (err !== null) reject(err); else resolve(n) })
  })
}

/** Copies all bytes of `srcFd` into `dstFd` from offset 0, in libuv's pool (1 MiB steps). */
async function copyBytes (srcFd: number, dstFd: number): Promise<void> {
  const buf = Buffer.allocUnsafe(1 << 20)
  let pos = 0
  for (;;) {
    const n = await readAsync(srcFd, buf, pos)
    if (n === 0) break
    let off = 0
    while (off < n) off += await writeAsync(dstFd, buf, off, n - off, pos + off)
    pos += n
  }
}
