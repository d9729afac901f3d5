/**
 * Open chunked siblings, shared by every handle and stat of the same file.
 *
 * Owns: one ChunkFile per chunk map (by map id), reference-counted by open handles, plus a
 * small set of idle ones kept open so that `stat` of a chunked file (its size lives in the
 * map) costs no open. A ChunkFile's in-memory map must be the only one for its file:
 * two would overwrite each other's entries.
 * Host drift: a chunked sibling reads the chunks it never wrote from its host original,
 * so it depends on that file staying as it was (like a qcow2 overlay on its backing file).
 * At open, the original's (dev, ino, size, mtime) is compared with what the map recorded;
 * when it changed, the file is opened without the host (its unwritten chunks then fail with
 * EIO, logged with the file's name) and `drifted` lists it. Old and new host bytes are
 * never mixed.
 * Empty maps: a chunk map is created without an fsync (copyup.ts, chunks.ts 'at-fsync');
 * a power loss before its file's first fsync may leave it empty (0 bytes). Such a file is
 * taken in the state it was made in, which is the state before any change that was never
 * made durable: its host original as recorded in its origin (or, with no origin, an empty
 * file). The map is rewritten so at the first open (and the data file emptied: nothing
 * refers to its bytes), and that is logged. A missing or damaged map still fails with EIO.
 * Does not: decide which files are chunked (copyup.ts, overlay.ts).
 */
import fs from 'node:fs'
import { LRUCache } from 'lru-cache'
import { SiblingError, isCode } from '../errors.js'
import { log } from '../log.js'
import { ChunkCache, ChunkFile, type ChunkOptions, type HostIdentity } from '../store/chunks.js'
import type { Origin } from '../store/format.js'

export interface ChunkRegistryOptions {
  opts: ChunkOptions
  cache: ChunkCache
  /** `*at` path of a map by id. */
  mapPath: (id: string) => string
  /** Opens the host original (host-relative path) for reading, or throws. */
  openHost: (rel: string) => number
}

interface Entry { file: ChunkFile, refs: number }

export class ChunkRegistry {
  private readonly open = new Map<string, Entry>()
  /** Sizes of chunked files no handle has open (8 bytes of key and value each, ~100 B). */
  private readonly sizes = new LRUCache<string, number>({ max: 65536 })
  private readonly idle: LRUCache<string, ChunkFile>
  /** Map id -> merged path of siblings whose host original changed. */
  readonly drifted = new Map<string, string>()

  constructor (private readonly o: ChunkRegistryOptions) {
    this.idle = new LRUCache<string, ChunkFile>({
      max: 256,
      // Closes a file leaving the idle set, unless it left because a handle took it.
      dispose: (file, id) => { if (this.open.get(id)?.file !== file) file.close() }
    })
  }

  /** The ChunkFile of map `id` for data file `dataPath`, with a reference for a handle. */
  acquire (id: string, dataPath: string, origin: Origin | null, label: string): ChunkFile {
    const e = this.open.get(id)
    if (e !== undefined) { e.refs++; return e.file }
    let file = this.idle.get(id)
    if (file !== undefined) {
      this.sizes.delete(id) // the engine is the truth while open
      this.open.set(id, { file, refs: 1 })
      this.idle.delete(id) // dispose sees it is open and leaves it
      return file
    }
    file = this.openFile(id, dataPath, origin, label)
    this.sizes.delete(id)
    this.open.set(id, { file, refs: 1 })
    return file
  }

  /**
   * Takes over a ChunkFile just made for map `id` (by a copy-up or a create), so that the
   * handle that follows opens nothing: it is kept in the idle set until acquired. A file
   * already known under `id` wins; the newcomer is closed.
   */
  adopt (id: string, file: ChunkFile): void {
    if (this.open.has(id) || this.idle.has(id)) { file.close(); return }
    this.sizes.delete(id)
    this.idle.set(id, file)
  }

  release (id: string): void {
    const e = this.open.get(id)
    if (e === undefined) return
    if (--e.refs > 0) return
    this.open.delete(id)
    this.sizes.set(id, e.file.size)
    this.idle.set(id, e.file)
  }

  /**
   * The logical size of a chunked file: from its engine when open, else from a cache of
   * sizes filled by reading only map headers. `git status` on a compressed store stats
   * every file; opening each map whole (table, three descriptors) made it 5x slower.
   */
  size (id: string, origin: Origin | null): number {
    const e = this.open.get(id)
    if (e !== undefined) return e.file.size
    const idle = this.idle.peek(id)
    if (idle !== undefined) return idle.size
    let size = this.sizes.get(id)
    if (size === undefined) {
      try {
        size = ChunkFile.peekSize(this.o.mapPath(id))
      } catch (err) {
        if (isCode(err, 'ENOENT')) throw new SiblingError('EIO', `its chunk map maps/${id} is missing`, { cause: err })
        if (!ChunkFile.isEmptyMap(this.o.mapPath(id))) throw err
        size = initialState(origin).size // rewritten at its first open
      }
      this.sizes.set(id, size)
    }
    return size
  }

  /** Forgets a map whose file is gone, and deletes the map. */
  remove (id: string): void {
    const e = this.open.get(id)
    if (e !== undefined) return // still open through a handle: removed at the hidden file's unlink
    this.idle.delete(id)
    this.sizes.delete(id)
    fs.rmSync(this.o.mapPath(id), { force: true })
    this.drifted.delete(id)
  }

  private openFile (id: string, dataPath: string, origin: Origin | null, label: string): ChunkFile {
    let hostFd = -1
    const originPath = origin?.path ?? null
    if (originPath !== null) {
      try { hostFd = this.o.openHost(originPath) } catch { hostFd = -1 }
    }
    let file: ChunkFile
    try {
      file = ChunkFile.open(dataPath, this.o.mapPath(id), this.o.opts, this.o.cache, hostFd)
    } catch (err) {
      if (!isCode(err, 'ENOENT') && ChunkFile.isEmptyMap(this.o.mapPath(id))) {
        file = this.rewriteEmpty(id, dataPath, origin, label, hostFd)
      } else {
        if (hostFd >= 0) fs.closeSync(hostFd)
        if (isCode(err, 'ENOENT')) throw new SiblingError('EIO', `its chunk map maps/${id} is missing`, { cause: err })
        throw err
      }
    }
    if (file.hostLimit > 0 && hostFd >= 0 && !sameHost(file.host, origin, fs.fstatSync(hostFd, { bigint: true }))) {
      log(`host original of ${label} (/${originPath ?? ''}) changed since the sibling was made: its unwritten chunks now read as errors (EIO); see \`siblingfs status\``)
      file.close()
      this.drifted.set(id, label)
      return ChunkFile.open(dataPath, this.o.mapPath(id), this.o.opts, this.o.cache, -1)
    }
    if (file.hostLimit > 0 && hostFd < 0) this.drifted.set(id, label)
    return file
  }

  /** An empty map (see "Empty maps" above): the file as it was made. Owns hostFd. */
  private rewriteEmpty (id: string, dataPath: string, origin: Origin | null, label: string, hostFd: number): ChunkFile {
    const init = initialState(origin)
    try {
      if (init.hostLimit > 0 && hostFd < 0) {
        throw new SiblingError('EIO', `its chunk map maps/${id} is empty and its host original /${origin?.path ?? ''} is gone: it cannot be read`)
      }
      fs.truncateSync(dataPath, 0)
      const file = ChunkFile.create(dataPath, this.o.mapPath(id), init, this.o.opts, this.o.cache, init.hostLimit > 0 ? hostFd : -1, 'at-fsync')
      if (init.hostLimit === 0 && hostFd >= 0) fs.closeSync(hostFd)
      log(`${label}: its chunk map maps/${id} was empty (the machine stopped before the file was ever fsynced): it reads as it was made, ${init.host !== null ? `its host original /${origin?.path ?? ''}` : 'empty'}`)
      return file
    } catch (err) {
      if (hostFd >= 0) fs.closeSync(hostFd)
      throw err
    }
  }

  closeAll (): void {
    for (const e of this.open.values()) e.file.close()
    this.open.clear()
    this.idle.clear()
  }
}

/** What a chunked file's map said when it was made: its host original as its origin
 *  records it (chunked copy-up), or, without one, an empty file (made in the sandbox). */
export function initialState (origin: Origin | null): { size: number, hostLimit: number, host: HostIdentity | null } {
  if (origin === null || origin.data !== 'chunks') return { size: 0, hostLimit: 0, host: null }
  return { size: origin.size, hostLimit: origin.size, host: { dev: origin.dev, ino: origin.ino, size: origin.size, mtimeNs: origin.mtimeNs } }
}

/**
 * Whether host file `st` is still the one a chunked sibling was made from: same device,
 * inode, size and mtime as the map recorded, and the same ctime as the origin recorded
 * (ctime catches an in-place rewrite whose mtime was put back, as `rsync --inplace -t` or
 * `touch -r` do; it also changes on a chmod or a new hard link of the original, which then
 * counts as drift too: when in doubt, never mix).
 */
export function sameHost (h: HostIdentity | null, origin: Origin | null, st: fs.BigIntStats): boolean {
  return h !== null && h.dev === Number(st.dev) && h.ino === Number(st.ino) && h.size === Number(st.size) && h.mtimeNs === String(st.mtimeNs) &&
    (origin?.ctimeNs === undefined || origin.ctimeNs === String(st.ctimeNs))
}
