/**
 * Chunked siblings (store format version 2): sparse, optionally lz4-compressed copies of a
 * host file, like a qcow2 image over a backing file.
 *
 * A chunked sibling's bytes are split into fixed-size chunks. A chunk the sandbox wrote is
 * in the store (in the data file, the sibling in upper/, with its entry in a map file); a
 * chunk it never wrote still reads from the host original below `hostLimit`, and as zeros
 * above it. Changing one byte of a 10 GiB file stores one chunk. STORE-FORMAT.md ("Chunked
 * siblings") is the description of the files for people; this module is its only writer.
 *
 * Contract:
 * - Every call is synchronous and leaves the files in a state that open() accepts, even if
 *   the process is killed between any two system calls: a chunk is committed by one 16-byte
 *   pwrite of its map entry (its new version is written beforehand to the chunk's other
 *   slot), a size change by one 64-byte pwrite of the map header (after the data).
 * - Every stored chunk is checked against its CRC-32 before use (and before the lz4 decoder
 *   sees it); a bad chunk fails alone with SiblingError 'EIO', the others keep working.
 * - Errors are SiblingErrors with errno-name codes (EIO, EINVAL, EBADF, EFBIG) or Node fs
 *   errors from the underlying calls (ENOSPC, ...).
 * Does not: decide which files are chunked, watch the host for changes (it reports a host
 * file shorter than expected through `hostShort`, nothing more), lock, or serialize callers:
 * one ChunkFile per file and one call at a time (the daemon is single-threaded).
 */
import fs from 'node:fs'
import path from 'node:path'
import { LRUCache } from 'lru-cache'
import { SiblingError, isCode } from '../errors.js'
import { fallocate, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../sys/native.js'
import { fsyncDir } from './format.js'
import { checksum, compressInto, compressLimit, decompressInto } from './lz4.js'

/**
 * 64 KiB: qcow2's default cluster size, and the same trade-off. A 1-byte write costs one
 * 64 KiB chunk (read-modify-write, and 64 KiB of store at most, less when it compresses);
 * the map costs 16 bytes per chunk, so a 1 GiB file's map is 256 KiB, and sparse: only the
 * 4 KiB pages of entries of chunks actually written are allocated.
 */
export const DEFAULT_CHUNK_SIZE = 65536
export const MIN_CHUNK_SIZE = 4096
export const MAX_CHUNK_SIZE = 1 << 24

export const MAP_MAGIC = 'SFSCHNK1'
export const MAP_VERSION = 1
export const MAP_HEADER_SIZE = 64
export const MAP_ENTRY_SIZE = 16

/** Largest logical size: the data file holds two slots per chunk, so its offsets reach twice that. */
const MAX_SIZE = 2 ** 51

// Map header fields (little-endian), see STORE-FORMAT.md.
const H_MAGIC = 0 // 8 bytes "SFSCHNK1"
const H_VERSION = 8 // u16
const H_FLAGS = 10 // u16
const H_CHUNK = 12 // u32
const H_SIZE = 16 // u64
const H_LIMIT = 24 // u64
const H_INO = 32 // u64
const H_HSIZE = 40 // u64
const H_MTIME = 48 // i64, ns
const H_DEV = 56 // u32
const H_CRC = 60 // u32, CRC-32 of bytes 0..59
const HF_COMPRESS = 1 // new chunks are compressed (the setting at create; informational)
const HF_HOST = 2 // the host identity fields are set
const HF_KNOWN = HF_COMPRESS | HF_HOST

// Map entry fields.
const E_SLOT = 0 // u8: 0 absent, 1 or 2
const E_FLAGS = 1 // u8: bit 0 compressed
const E_STORED = 4 // u32 bytes in the slot
const E_RAW = 8 // u32 bytes of content (the rest of the chunk reads as zeros)
const E_CRC = 12 // u32 CRC-32 of the stored bytes
const EF_COMPRESSED = 1

const PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE

/** The host original a chunked sibling was made from (as in the origin xattr). */
export interface HostIdentity { dev: number, ino: number, size: number, mtimeNs: string }

export interface ChunkOptions {
  /** A power of two from 4 KiB to 16 MiB; DEFAULT_CHUNK_SIZE unless there is a reason. */
  chunkSize: number
  /** Store new versions of chunks lz4-compressed when that makes them 1/16 smaller. */
  compress: boolean
}

/**
 * The decompressed (and verified) content of recently used chunks, shared by all the chunked
 * files of a mount and bounded in bytes. Only partial reads and partial writes fill it;
 * whole-chunk reads and writes go around it, so a sequential scan does not evict it.
 */
export class ChunkCache {
  readonly maxBytes: number
  private readonly lru: LRUCache<string, Buffer> | null
  private serial = 0

  constructor (maxBytes: number) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
      throw new SiblingError('EINVAL', `chunk cache size must be a whole number of bytes, not ${maxBytes}`)
    }
    this.maxBytes = maxBytes
    this.lru = maxBytes === 0
      ? null
      : new LRUCache<string, Buffer>({ maxSize: maxBytes, sizeCalculation: (b) => Math.max(1, b.length) })
  }

  /** Bytes held now. */
  get bytes (): number { return this.lru?.calculatedSize ?? 0 }

  /** @internal A key prefix unique to one open ChunkFile. */
  prefix (): string { return `${++this.serial}:` }
  /** @internal */
  get (key: string): Buffer | undefined { return this.lru?.get(key) }
  /** @internal The cache keeps `buf`; the caller must not change it afterwards except via update(). */
  set (key: string, buf: Buffer): void { this.lru?.set(key, buf) }
  /** @internal */
  delete (key: string): void { this.lru?.delete(key) }
  /** @internal Drops every chunk of one file. */
  dropPrefix (prefix: string): void {
    if (this.lru === null) return
    const doomed: string[] = []
    for (const k of this.lru.keys()) if (k.startsWith(prefix)) doomed.push(k)
    for (const k of doomed) this.lru.delete(k)
  }
}

function einval (what: string): SiblingError {
  return new SiblingError('EINVAL', what)
}

function checkOptions (opts: ChunkOptions): void {
  const cs = opts.chunkSize
  if (!Number.isSafeInteger(cs) || cs < MIN_CHUNK_SIZE || cs > MAX_CHUNK_SIZE || (cs & (cs - 1)) !== 0) {
    throw einval(`chunk size must be a power of two from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}, not ${cs}`)
  }
}

function writeU64 (buf: Buffer, off: number, n: number): void {
  buf.writeUInt32LE(n % 0x100000000, off)
  buf.writeUInt32LE(Math.floor(n / 0x100000000), off + 4)
}

/** A u64 field, or -1 when it does not fit in a safe integer. */
function readU64 (buf: Buffer, off: number): number {
  const hi = buf.readUInt32LE(off + 4)
  if (hi >= 0x200000) return -1
  return hi * 0x100000000 + buf.readUInt32LE(off)
}

/** Reads until `len` bytes or EOF; returns the count. */
function preadFull (fd: number, buf: Buffer, off: number, len: number, pos: number): number {
  let done = 0
  while (done < len) {
    const n = fs.readSync(fd, buf, off + done, len - done, pos + done)
    if (n === 0) break
    done += n
  }
  return done
}

function pwriteFull (fd: number, buf: Buffer, off: number, len: number, pos: number): void {
  let done = 0
  while (done < len) done += fs.writeSync(fd, buf, off + done, len - done, pos + done)
}

function closeQuietly (fd: number): void {
  try { fs.closeSync(fd) } catch { /* already failing */ }
}

function checkIo (buf: Buffer, len: number, pos: number): void {
  if (!Buffer.isBuffer(buf)) throw einval('buffer expected')
  if (!Number.isSafeInteger(len) || len < 0 || len > buf.length) throw einval(`bad length ${len} for a buffer of ${buf.length} bytes`)
  if (!Number.isSafeInteger(pos) || pos < 0) throw einval(`bad offset ${pos}`)
}

function checkHost (host: HostIdentity | null): void {
  if (host === null) return
  const ok = Number.isSafeInteger(host.dev) && host.dev >= 0 && host.dev <= 0xffffffff &&
    Number.isSafeInteger(host.ino) && host.ino >= 0 &&
    Number.isSafeInteger(host.size) && host.size >= 0 &&
    typeof host.mtimeNs === 'string' && /^-?\d{1,19}$/.test(host.mtimeNs) &&
    BigInt(host.mtimeNs) >= -(2n ** 63n) && BigInt(host.mtimeNs) < 2n ** 63n
  // dev is 32 bits: Linux' dev_t (12-bit major, 20-bit minor) as stat encodes it.
  if (!ok) throw einval(`bad host identity ${JSON.stringify(host)}`)
}

/**
 * Files the caller made ahead for `ChunkFile.create`, open read-write and empty: `data` (at
 * dataPath) and `map` (at mapPath; 'at-fsync' only). The new engine owns them; on failure
 * they are closed (not removed: the caller made them).
 */
export interface GivenFds { data?: number, map?: number }

const shared = new Map<number, { scratch: Buffer, cbuf: Buffer }>()

/**
 * The work buffers of chunk size `cs`, one pair per process: every call into a ChunkFile is
 * synchronous and uses them only until it returns (what outlives a call, the cache's copy,
 * is a copy), so the files of a mount can share them. A ChunkFile of its own each would
 * cost 128 KiB per open or idle file, and a fresh allocation at every copy-up.
 */
function buffersFor (cs: number): { scratch: Buffer, cbuf: Buffer } {
  let b = shared.get(cs)
  if (b === undefined) {
    b = { scratch: Buffer.alloc(cs), cbuf: Buffer.alloc(Math.max(compressLimit(cs), 64)) }
    shared.set(cs, b)
  }
  return b
}

export class ChunkFile {
  /** Basename of the map file. */
  readonly id: string
  private dataPathNow: string
  readonly mapPath: string
  /** Set when a read found the host file shorter than `hostLimit` (the missing bytes read as zeros): drift. The caller may reset it. */
  hostShort = false

  private readonly cs: number
  private readonly compressNew: boolean
  private readonly cache: ChunkCache
  private readonly key: string
  private dataFd: number
  private mapFd: number
  private hostFd: number
  private sizeNow: number
  private limitNow: number
  private readonly hostId: HostIdentity | null
  /** The map header as on disk. */
  private readonly header: Buffer
  /** The map entries, in memory: entry c at 16*c; at least ceil(size/cs) of them. */
  private table: Buffer
  /** One chunk of content (read-modify-write, verify), and the compressed form of a chunk
   *  (output of compression, input of decompression): shared by every ChunkFile of this
   *  chunk size (see `buffersFor`). */
  private readonly scratch: Buffer
  private readonly cbuf: Buffer
  private readonly ebuf = Buffer.alloc(MAP_ENTRY_SIZE)
  private readonly hbuf = Buffer.alloc(MAP_HEADER_SIZE)
  private canPunch = true
  /** Whether the map's name in maps/ is known to be on disk: set by a durable create or by
   *  the first fsync (which then syncs maps/ once; a file opened later may have been created
   *  'at-fsync', so an opened file starts unknown). */
  private mapNameDurable = false
  private closed = false
  /** Whether map entries and slots past the size, left by a killed process, are gone. */
  private tidied = false

  private constructor (dataPath: string, mapPath: string, dataFd: number, mapFd: number, hostFd: number,
    header: Buffer, table: Buffer, opts: ChunkOptions, cache: ChunkCache) {
    this.id = path.basename(mapPath)
    this.dataPathNow = dataPath
    this.mapPath = mapPath
    this.dataFd = dataFd
    this.mapFd = mapFd
    this.hostFd = hostFd
    this.cs = opts.chunkSize
    this.compressNew = opts.compress
    this.cache = cache
    this.key = cache.prefix()
    this.header = header
    this.table = table
    this.sizeNow = readU64(header, H_SIZE)
    this.limitNow = readU64(header, H_LIMIT)
    this.hostId = (header.readUInt16LE(H_FLAGS) & HF_HOST) === 0
      ? null
      : {
          dev: header.readUInt32LE(H_DEV),
          ino: readU64(header, H_INO),
          size: readU64(header, H_HSIZE),
          mtimeNs: header.readBigInt64LE(H_MTIME).toString()
        }
    const b = buffersFor(this.cs)
    this.scratch = b.scratch
    this.cbuf = b.cbuf
  }

  /**
   * Creates the map at mapPath (tmp + fsync + rename, crash-safe) for a file of logical size
   * `size` whose bytes below `hostLimit` (clamped to `size`) come from the host file `hostFd`
   * (may be -1 when hostLimit is 0). The data file `dataPath` must already exist, empty (the
   * sibling itself in STORE/upper); it is opened O_RDWR, unless the caller passes `dataFd`,
   * a descriptor of it open O_RDWR, which the ChunkFile then owns (and closes on failure
   * too). On success the ChunkFile owns hostFd (close() closes it); on failure the caller
   * still does.
   */
  static create (dataPath: string, mapPath: string, init: { size: number, hostLimit: number, host: HostIdentity | null },
    opts: ChunkOptions, cache: ChunkCache, hostFd: number, durability: 'now' | 'at-fsync' = 'now', given: GivenFds = {}): ChunkFile {
    try {
      return ChunkFile.create1(dataPath, mapPath, init, opts, cache, hostFd, durability, given.data ?? -1, given.map ?? -1)
    } catch (err) {
      if (given.data !== undefined && given.data >= 0) closeQuietly(given.data)
      if (given.map !== undefined && given.map >= 0) closeQuietly(given.map)
      throw err
    }
  }

  private static create1 (dataPath: string, mapPath: string, init: { size: number, hostLimit: number, host: HostIdentity | null },
    opts: ChunkOptions, cache: ChunkCache, hostFd: number, durability: 'now' | 'at-fsync', givenFd: number, givenMapFd: number): ChunkFile {
    if (givenMapFd >= 0 && durability === 'now') throw einval('a map made ahead cannot be made durable by rename')
    checkOptions(opts)
    if (!Number.isSafeInteger(init.size) || init.size < 0 || init.size > MAX_SIZE) throw einval(`bad size ${init.size}`)
    if (!Number.isSafeInteger(init.hostLimit) || init.hostLimit < 0) throw einval(`bad hostLimit ${init.hostLimit}`)
    const hostLimit = Math.min(init.hostLimit, init.size)
    if (hostLimit > 0 && !(Number.isInteger(hostFd) && hostFd >= 0)) throw einval('a host-backed chunked file needs the host fd')
    checkHost(init.host)

    const header = Buffer.alloc(MAP_HEADER_SIZE)
    header.write(MAP_MAGIC, H_MAGIC, 'latin1')
    header.writeUInt16LE(MAP_VERSION, H_VERSION)
    header.writeUInt16LE((opts.compress ? HF_COMPRESS : 0) | (init.host !== null ? HF_HOST : 0), H_FLAGS)
    header.writeUInt32LE(opts.chunkSize, H_CHUNK)
    writeU64(header, H_SIZE, init.size)
    writeU64(header, H_LIMIT, hostLimit)
    if (init.host !== null) {
      writeU64(header, H_INO, init.host.ino)
      writeU64(header, H_HSIZE, init.host.size)
      header.writeBigInt64LE(BigInt(init.host.mtimeNs), H_MTIME)
      header.writeUInt32LE(init.host.dev, H_DEV)
    }
    header.writeUInt32LE(checksum(header.subarray(0, H_CRC)), H_CRC)

    const dataFd = givenFd >= 0 ? givenFd : fs.openSync(dataPath, fs.constants.O_RDWR | fs.constants.O_NOFOLLOW)
    let mapFd = givenMapFd
    try {
      const st = fs.fstatSync(dataFd)
      if (!st.isFile()) throw einval(`${dataPath} is not a regular file`)
      if (st.size !== 0) throw einval(`${dataPath} is not empty; a chunked sibling starts from an empty data file`)
      // 'at-fsync': the map is written in place and not synced (two fsyncs would cost more
      // than the whole create); the file's first fsync makes it durable (see fsync). A
      // killed daemon loses nothing either way (the page cache survives it); a power loss
      // before that fsync may leave the map empty (0 bytes), which readers take as the
      // file's state when it was made (STORE-FORMAT.md, "Empty maps"). Nothing refers to
      // the map before the caller commits the sibling, so no temp name is needed.
      // 'now': temp file, fsync, rename, fsync of maps/.
      const tmp = durability === 'now' ? mapPath + '.tmp' : mapPath
      if (mapFd < 0) mapFd = fs.openSync(tmp, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW, 0o644)
      pwriteFull(mapFd, header, 0, MAP_HEADER_SIZE, 0)
      if (durability === 'now') {
        fs.fsyncSync(mapFd)
        fs.renameSync(tmp, mapPath)
        fsyncDir(path.dirname(mapPath))
      }
      const table = Buffer.alloc(Math.ceil(init.size / opts.chunkSize) * MAP_ENTRY_SIZE)
      const file = new ChunkFile(dataPath, mapPath, dataFd, mapFd, hostFd, header, table, opts, cache)
      file.mapNameDurable = durability === 'now'
      file.tidied = true // a new map has nothing past its size
      return file
    } catch (err) {
      if (givenFd < 0) closeQuietly(dataFd)
      if (mapFd >= 0 && mapFd !== givenMapFd) closeQuietly(mapFd)
      throw err
    }
  }

  /** Whether the map at `mapPath` exists and is empty: made 'at-fsync' and lost to a power
   *  loss before its file's first fsync (see create). */
  static isEmptyMap (mapPath: string): boolean {
    const st = fs.lstatSync(mapPath, { throwIfNoEntry: false })
    return st !== undefined && st.isFile() && st.size === 0
  }

  /**
   * The logical size recorded in the map at `mapPath`, reading only its header (for stat
   * of a file no handle has open). SiblingError 'EIO' for a damaged header.
   */
  static peekSize (mapPath: string): number {
    const fd = fs.openSync(mapPath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
    try {
      const h = Buffer.alloc(MAP_HEADER_SIZE)
      if (preadFull(fd, h, 0, MAP_HEADER_SIZE, 0) < MAP_HEADER_SIZE ||
        h.toString('latin1', H_MAGIC, H_MAGIC + 8) !== MAP_MAGIC ||
        checksum(h.subarray(0, H_CRC)) !== h.readUInt32LE(H_CRC)) {
        throw new SiblingError('EIO', `chunk map ${mapPath}: damaged header`, { path: mapPath })
      }
      return readU64(h, H_SIZE)
    } finally {
      fs.closeSync(fd)
    }
  }

  /**
   * Opens an existing chunked file. Validates the map header (magic, version, chunk size as
   * opts, checksum): SiblingError 'EIO' naming mapPath otherwise. Changes nothing on disk
   * until the first write or truncate (so status and fsck may open a file a daemon is
   * using); that one first removes what a killed process left past the size (see
   * STORE-FORMAT.md, "Commits and crashes").
   * On success takes ownership of hostFd (closed by close()). -1 means the host original is
   * not available (gone, or changed: the caller compares `host` with it): then reading bytes
   * below hostLimit that were never written fails with EIO (never zeros instead of the host's
   * bytes); written chunks, and bytes from hostLimit on, read as usual.
   */
  static open (dataPath: string, mapPath: string, opts: ChunkOptions, cache: ChunkCache, hostFd: number): ChunkFile {
    checkOptions(opts)
    const mapFd = fs.openSync(mapPath, fs.constants.O_RDWR | fs.constants.O_NOFOLLOW)
    let dataFd = -1
    try {
      const bad = (what: string): SiblingError => new SiblingError('EIO', `chunk map ${mapPath}: ${what}`, {
        path: mapPath, hint: 'run `siblingfs fsck` on the store; the file\'s chunks cannot be located without their map'
      })
      const header = Buffer.alloc(MAP_HEADER_SIZE)
      const mapLen = fs.fstatSync(mapFd).size
      if (preadFull(mapFd, header, 0, MAP_HEADER_SIZE, 0) < MAP_HEADER_SIZE) {
        throw bad(`too short (${mapLen} bytes) for its ${MAP_HEADER_SIZE}-byte header`)
      }
      if (header.toString('latin1', H_MAGIC, H_MAGIC + 8) !== MAP_MAGIC) throw bad('not a chunk map (bad magic)')
      const version = header.readUInt16LE(H_VERSION)
      if (version !== MAP_VERSION) throw bad(`map version ${version}; this siblingfs reads version ${MAP_VERSION}`)
      if (checksum(header.subarray(0, H_CRC)) !== header.readUInt32LE(H_CRC)) throw bad('header checksum mismatch (the header is damaged)')
      const cs = header.readUInt32LE(H_CHUNK)
      if (cs !== opts.chunkSize) throw bad(`chunk size ${cs}, but this mount uses ${opts.chunkSize}`)
      const flags = header.readUInt16LE(H_FLAGS)
      if ((flags & ~HF_KNOWN) !== 0) throw bad(`unknown header flags 0x${flags.toString(16)}`)
      const size = readU64(header, H_SIZE)
      const limit = readU64(header, H_LIMIT)
      if (size < 0 || size > MAX_SIZE) throw bad('impossible size')
      if (limit < 0 || limit > size) throw bad(`hostLimit ${limit} beyond size ${size}`)
      if ((flags & HF_HOST) !== 0 && (readU64(header, H_INO) < 0 || readU64(header, H_HSIZE) < 0)) throw bad('impossible host identity')

      dataFd = fs.openSync(dataPath, fs.constants.O_RDWR | fs.constants.O_NOFOLLOW)
      const n = Math.ceil(size / cs)
      const table = Buffer.alloc(n * MAP_ENTRY_SIZE)
      preadFull(mapFd, table, 0, table.length, MAP_HEADER_SIZE) // beyond the map's EOF: absent (zeros)
      // Entries past the size are not loaded; they are removed before the first change (tidy()).
      return new ChunkFile(dataPath, mapPath, dataFd, mapFd, hostFd, header, table, opts, cache)
    } catch (err) {
      closeQuietly(mapFd)
      if (dataFd >= 0) closeQuietly(dataFd)
      throw err
    }
  }

  /**
   * The descriptors this file reads through, for a reader outside JS that serves reads from
   * what is on disk (patched fuse-native's serveChunked): valid until close(). host is -1
   * when the bytes never written cannot come from the host original.
   */
  get descriptors (): { data: number, map: number, host: number } {
    return { data: this.dataFd, map: this.mapFd, host: this.hostFd }
  }

  get size (): number { return this.sizeNow }

  /** The data file's path, as given to create or open, or to `moved`; for messages. */
  get dataPath (): string { return this.dataPathNow }

  /** The data file got a new name (a copy-up's commit renames it into place): messages
   *  name that. Nothing is reopened by path: the descriptors stay. */
  moved (dataPath: string): void { this.dataPathNow = dataPath }
  get hostLimit (): number { return this.limitNow }
  get host (): HostIdentity | null { return this.hostId === null ? null : { ...this.hostId } }
  get chunkSize (): number { return this.cs }

  // ---- reads ----

  /** Like pread: fills buf[0, n) from `pos`; short only at EOF, 0 at or after it. */
  read (buf: Buffer, len: number, pos: number): number {
    this.checkOpen()
    checkIo(buf, len, pos)
    if (len === 0 || pos >= this.sizeNow) return 0
    const end = Math.min(pos + len, this.sizeNow)
    const cs = this.cs
    let p = pos
    while (p < end) {
      const c = Math.floor(p / cs)
      const cStart = c * cs
      const to = Math.min(end - cStart, cs)
      this.readChunk(c, buf, p - pos, p - cStart, to)
      p = cStart + to
    }
    return end - pos
  }

  /** Bytes [from, to) of chunk c into buf at `at`. */
  private readChunk (c: number, buf: Buffer, at: number, from: number, to: number): void {
    if (!this.isStored(c)) {
      this.readBase(c * this.cs + from, buf, at, to - from)
      return
    }
    const key = this.key + c
    let content = this.cache.get(key)
    if (content === undefined) {
      const rawLen = this.table.readUInt32LE(c * MAP_ENTRY_SIZE + E_RAW)
      if (from === 0 && to >= rawLen) {
        // The whole chunk: straight into the caller's buffer, around the cache.
        this.loadStored(c, buf.subarray(at, at + rawLen))
        buf.fill(0, at + rawLen, at + to)
        return
      }
      content = Buffer.allocUnsafe(rawLen)
      this.loadStored(c, content)
      this.cache.set(key, content)
    }
    const stop = Math.min(to, content.length)
    if (stop > from) content.copy(buf, at, from, stop)
    if (stop < to) buf.fill(0, at + Math.max(0, stop - from), at + (to - from))
  }

  /** The content of absent chunks: host bytes below hostLimit, zeros above. */
  private readBase (abs: number, buf: Buffer, at: number, len: number): void {
    let got = 0
    if (abs < this.limitNow) {
      if (this.hostFd < 0) {
        throw this.chunkError(Math.floor(abs / this.cs), 'its unwritten bytes are the host original\'s, which is not available',
          'the host file changed or disappeared after the sibling was made; see `siblingfs status`')
      }
      const want = Math.min(len, this.limitNow - abs)
      got = preadFull(this.hostFd, buf, at, want, abs)
      if (got < want) this.hostShort = true
    }
    if (got < len) buf.fill(0, at + got, at + len)
  }

  /** Whether chunk c's map entry is all zeros (never written, or dropped). */
  private isAbsent (c: number): boolean {
    const e = c * MAP_ENTRY_SIZE
    const t = this.table
    return e >= t.length || (t.readUInt32LE(e) === 0 && t.readUInt32LE(e + 4) === 0 &&
      t.readUInt32LE(e + 8) === 0 && t.readUInt32LE(e + 12) === 0)
  }

  /** Whether chunk c has a stored version; EIO for a damaged entry. */
  private isStored (c: number): boolean {
    if (this.isAbsent(c)) return false
    const why = this.entryProblem(c)
    if (why !== null) throw this.chunkError(c, why)
    return true
  }

  /** What is wrong with a map entry that is not all zeros, or null. */
  private entryProblem (c: number): string | null {
    const e = c * MAP_ENTRY_SIZE
    const t = this.table
    const slot = t[e + E_SLOT]!
    const flags = t[e + E_FLAGS]!
    const stored = t.readUInt32LE(e + E_STORED)
    const raw = t.readUInt32LE(e + E_RAW)
    if (slot !== 1 && slot !== 2) return `damaged map entry (slot ${slot}, expected 1 or 2)`
    if ((flags & ~EF_COMPRESSED) !== 0 || t.readUInt16LE(e + 2) !== 0) return 'damaged map entry (unknown flags)'
    if (raw < 1 || raw > this.cs) return `damaged map entry (length ${raw})`
    if ((flags & EF_COMPRESSED) !== 0 ? stored < 1 || stored > compressLimit(raw) : stored !== raw) {
      return `damaged map entry (stored length ${stored} for ${raw} bytes)`
    }
    return null
  }

  private chunkError (c: number, why: string, hint = 'run `siblingfs fsck`; this chunk\'s stored data is damaged'): SiblingError {
    return new SiblingError('EIO', `chunk ${c} at offset ${c * this.cs} of ${this.dataPath}: ${why}`, { path: this.dataPath, hint })
  }

  /** Problem reading stored chunk c into `out` (exactly its raw length), or null when `out` holds its content. */
  private tryLoadStored (c: number, out: Buffer): string | null {
    const e = c * MAP_ENTRY_SIZE
    const t = this.table
    const slot = t[e + E_SLOT]!
    const compressed = (t[e + E_FLAGS]! & EF_COMPRESSED) !== 0
    const storedLen = t.readUInt32LE(e + E_STORED)
    const src = compressed ? this.cbuf.subarray(0, storedLen) : out
    const off = this.slotOffset(c, slot)
    const got = preadFull(this.dataFd, src, 0, storedLen, off)
    if (got < storedLen) return `stored data missing (the data file ends within its slot at ${off})`
    if (checksum(src) !== t.readUInt32LE(e + E_CRC)) return 'checksum mismatch'
    if (compressed) {
      try {
        decompressInto(src, out)
      } catch (err) {
        return `compressed data does not decode (${err instanceof Error ? err.message : String(err)})`
      }
    }
    return null
  }

  private loadStored (c: number, out: Buffer): void {
    const why = this.tryLoadStored(c, out)
    if (why !== null) throw this.chunkError(c, why)
  }

  /**
   * The logical content of chunk c into scratch[0, len): bytes below `valid` as read now,
   * zeros from `valid` on (bytes at or beyond the size are unspecified on disk).
   */
  private loadLogical (c: number, valid: number, len: number): void {
    const s = this.scratch
    let have: number
    if (valid <= 0) {
      have = 0
    } else if (this.isStored(c)) {
      const hit = this.cache.get(this.key + c)
      if (hit !== undefined) {
        have = Math.min(hit.length, valid)
        hit.copy(s, 0, 0, have)
      } else {
        const rawLen = this.table.readUInt32LE(c * MAP_ENTRY_SIZE + E_RAW)
        this.loadStored(c, s.subarray(0, rawLen))
        have = Math.min(rawLen, valid)
      }
    } else {
      this.readBase(c * this.cs, s, 0, valid)
      have = valid
    }
    if (have < len) s.fill(0, have, len)
  }

  // ---- writes ----

  /** Writes buf[0, len) at `pos`; extends the size; bytes between the old EOF and `pos` read as zeros. */
  write (buf: Buffer, len: number, pos: number): number {
    this.checkOpen()
    checkIo(buf, len, pos)
    if (len === 0) return 0
    const end = pos + len
    if (end > MAX_SIZE) throw new SiblingError('EFBIG', `a chunked file cannot grow beyond ${MAX_SIZE} bytes`, { path: this.dataPath })
    const cs = this.cs
    this.tidy()
    const oldSize = this.sizeNow
    const newSize = Math.max(oldSize, end)
    try {
      if (newSize > oldSize) {
        this.ensureTable(Math.ceil(newSize / cs))
        this.zeroTail(oldSize, pos, end)
      }
      let p = pos
      while (p < end) {
        const c = Math.floor(p / cs)
        const cStart = c * cs
        const from = p - cStart
        const to = Math.min(end - cStart, cs)
        const clen = Math.min(cs, newSize - cStart) // the chunk's content length after this write
        const at = p - pos
        if (from === 0 && to >= clen) {
          this.storeChunk(c, buf.subarray(at, at + clen), false) // no read needed
        } else {
          this.loadLogical(c, Math.min(clen, Math.max(0, oldSize - cStart)), clen)
          buf.copy(this.scratch, from, at, at + (to - from))
          this.storeChunk(c, this.scratch.subarray(0, clen), true)
        }
        p = cStart + to
      }
      if (newSize > oldSize) this.writeHeader(newSize, this.limitNow) // after the data: the commit of the growth
    } catch (err) {
      if (newSize > oldSize) this.dropBeyondQuietly(Math.ceil(oldSize / cs))
      throw err
    }
    return len
  }

  /**
   * Before the size grows from `oldSize`: the chunk that holds the old EOF must read as zeros
   * beyond it. Its stored version may hold older bytes there (left by a shrink); unless the
   * write [wPos, wEnd) rewrites that chunk anyway, store it again cut at the old EOF.
   */
  private zeroTail (oldSize: number, wPos: number, wEnd: number): void {
    const cs = this.cs
    const keep = oldSize % cs
    if (keep === 0) return
    const b = Math.floor(oldSize / cs)
    const bStart = b * cs
    if (wPos < bStart + cs && wEnd > bStart) return
    if (!this.isStored(b)) return // host bytes stop at hostLimit <= oldSize
    if (this.table.readUInt32LE(b * MAP_ENTRY_SIZE + E_RAW) <= keep) return
    this.loadLogical(b, keep, keep)
    this.storeChunk(b, this.scratch.subarray(0, keep), true)
  }

  /**
   * Stores a new version of chunk c (`content`: its bytes; the rest of the chunk reads as
   * zeros): into the slot not in use, then the map entry (the commit), then the old slot is
   * punched out. `keep`: keep the content cached (partial writes), else drop it from the cache.
   */
  private storeChunk (c: number, content: Buffer, keep: boolean): void {
    const cs = this.cs
    let stored = content
    let flags = 0
    if (this.compressNew) {
      const n = compressInto(content, this.cbuf)
      if (n > 0) {
        stored = this.cbuf.subarray(0, n)
        flags = EF_COMPRESSED
      }
    }
    const e = c * MAP_ENTRY_SIZE
    const oldSlot = this.table[e + E_SLOT]!
    const slot = oldSlot === 1 ? 2 : 1
    const off = this.slotOffset(c, slot)
    pwriteFull(this.dataFd, stored, 0, stored.length, off)
    if (stored.length < cs) this.punch(off + stored.length, cs - stored.length)

    const eb = this.ebuf
    eb.fill(0)
    eb[E_SLOT] = slot
    eb[E_FLAGS] = flags
    eb.writeUInt32LE(stored.length, E_STORED)
    eb.writeUInt32LE(content.length, E_RAW)
    eb.writeUInt32LE(checksum(stored), E_CRC)
    pwriteFull(this.mapFd, eb, 0, MAP_ENTRY_SIZE, MAP_HEADER_SIZE + e) // the commit
    eb.copy(this.table, e)

    const key = this.key + c
    if (keep) {
      const hit = this.cache.get(key)
      if (hit !== undefined && hit.length === content.length) content.copy(hit)
      else this.cache.set(key, Buffer.from(content))
    } else {
      this.cache.delete(key)
    }
    if (oldSlot === 1 || oldSlot === 2) this.punch(this.slotOffset(c, oldSlot), cs)
  }

  private punch (off: number, len: number): void {
    if (!this.canPunch) return
    try {
      fallocate(this.dataFd, PUNCH, off, len)
    } catch (err) {
      // A file system without hole punching keeps unused slots allocated: wasted space only.
      if (isCode(err, 'EOPNOTSUPP') || isCode(err, 'ENOTSUP')) this.canPunch = false
      else throw err
    }
  }

  private slotOffset (c: number, slot: number): number {
    return (2 * c + slot - 1) * this.cs
  }

  private ensureTable (n: number): void {
    const need = n * MAP_ENTRY_SIZE
    if (this.table.length >= need) return
    const t = Buffer.alloc(Math.max(need, Math.min(2 * this.table.length, need + (1 << 20))))
    this.table.copy(t)
    this.table = t
  }

  /** Writes the header with a new size and hostLimit (one pwrite: the commit of a size change). */
  private writeHeader (size: number, hostLimit: number): void {
    const h = this.hbuf
    this.header.copy(h)
    writeU64(h, H_SIZE, size)
    writeU64(h, H_LIMIT, hostLimit)
    h.writeUInt32LE(checksum(h.subarray(0, H_CRC)), H_CRC)
    pwriteFull(this.mapFd, h, 0, MAP_HEADER_SIZE, 0)
    h.copy(this.header)
    this.sizeNow = size
    this.limitNow = hostLimit
  }

  /** Forgets the chunks from n on: map entries, their slots, their cached content. */
  private dropBeyond (n: number): void {
    const from = n * MAP_ENTRY_SIZE
    const t = this.table
    for (let e = from; e + MAP_ENTRY_SIZE <= t.length; e += MAP_ENTRY_SIZE) {
      if (t[e + E_SLOT] !== 0) this.cache.delete(this.key + e / MAP_ENTRY_SIZE)
    }
    if (from < t.length) t.fill(0, from)
    if (fs.fstatSync(this.mapFd).size > MAP_HEADER_SIZE + from) fs.ftruncateSync(this.mapFd, MAP_HEADER_SIZE + from)
    if (fs.fstatSync(this.dataFd).size > 2 * n * this.cs) fs.ftruncateSync(this.dataFd, 2 * n * this.cs)
  }

  /**
   * Before the first change: removes the map entries and slots of chunks wholly past the
   * size, left by a write killed before its size commit or by a shrink killed after it.
   * Growing the file over them would otherwise bring them back.
   */
  private tidy (): void {
    if (this.tidied) return
    this.dropBeyond(Math.ceil(this.sizeNow / this.cs))
    this.tidied = true
  }

  private dropBeyondQuietly (n: number): void {
    try { this.dropBeyond(n) } catch { /* open() drops them too */ }
  }

  /** Shrinks or extends; after a shrink and an extension the gap reads as zeros. */
  truncate (size: number): void {
    this.checkOpen()
    if (!Number.isSafeInteger(size) || size < 0) throw einval(`bad size ${size}`)
    if (size > MAX_SIZE) throw new SiblingError('EFBIG', `a chunked file cannot grow beyond ${MAX_SIZE} bytes`, { path: this.dataPath })
    this.tidy()
    const oldSize = this.sizeNow
    if (size === oldSize) return
    if (size < oldSize) {
      this.writeHeader(size, Math.min(this.limitNow, size)) // the commit
      this.dropBeyond(Math.ceil(size / this.cs))
      return
    }
    this.ensureTable(Math.ceil(size / this.cs))
    this.zeroTail(oldSize, -1, -1)
    this.writeHeader(size, this.limitNow)
  }

  /** Flushes the data file, then the map, so that every write completed before survives a crash. */
  fsync (datasync: boolean): void {
    this.checkOpen()
    if (!this.mapNameDurable) {
      fsyncDir(path.dirname(this.mapPath))
      this.mapNameDurable = true
    }
    if (datasync) {
      fs.fdatasyncSync(this.dataFd)
      fs.fdatasyncSync(this.mapFd)
    } else {
      fs.fsyncSync(this.dataFd)
      fs.fsyncSync(this.mapFd)
    }
  }

  /** Closes the files (and the host fd); a second close does nothing. */
  close (): void {
    if (this.closed) return
    this.closed = true
    this.cache.dropPrefix(this.key)
    const fds = [this.dataFd, this.mapFd, this.hostFd]
    this.dataFd = this.mapFd = this.hostFd = -1
    let first: unknown
    for (const fd of fds) {
      if (fd < 0) continue
      try { fs.closeSync(fd) } catch (err) { first ??= err }
    }
    if (first !== undefined) throw first
  }

  private checkOpen (): void {
    if (this.closed) throw new SiblingError('EBADF', `chunked file ${this.dataPath} is closed`, { path: this.dataPath })
  }

  // ---- fsck ----

  /** Chunks stored and bytes stored (in their slots). */
  stats (): { chunks: number, storedBytes: number } {
    this.checkOpen()
    const n = Math.ceil(this.sizeNow / this.cs)
    let chunks = 0
    let storedBytes = 0
    for (let c = 0; c < n; c++) {
      const e = c * MAP_ENTRY_SIZE
      if (e >= this.table.length) break
      if (this.table[e + E_SLOT] === 0) continue
      chunks++
      storedBytes += this.table.readUInt32LE(e + E_STORED)
    }
    return { chunks, storedBytes }
  }

  /** Checks the map header on disk and every stored chunk; returns the problems found, in words. */
  verify (): string[] {
    this.checkOpen()
    const problems: string[] = []
    const h = Buffer.alloc(MAP_HEADER_SIZE)
    if (preadFull(this.mapFd, h, 0, MAP_HEADER_SIZE, 0) < MAP_HEADER_SIZE) {
      problems.push(`map ${this.mapPath}: header missing`)
    } else if (!h.equals(this.header)) {
      problems.push(`map ${this.mapPath}: header on disk differs from the one in use` +
        (checksum(h.subarray(0, H_CRC)) !== h.readUInt32LE(H_CRC) ? ' (checksum mismatch)' : ''))
    }
    const n = Math.ceil(this.sizeNow / this.cs)
    for (let c = 0; c < n; c++) {
      const e = c * MAP_ENTRY_SIZE
      if (e >= this.table.length) break
      if (this.isAbsent(c)) continue
      let why = this.entryProblem(c)
      if (why === null) {
        try {
          why = this.tryLoadStored(c, this.scratch.subarray(0, this.table.readUInt32LE(e + E_RAW)))
        } catch (err) {
          why = `cannot be read (${err instanceof Error ? err.message : String(err)})`
        }
      }
      if (why !== null) problems.push(`chunk ${c} (offset ${c * this.cs}): ${why}`)
    }
    if (this.limitNow > 0) {
      const hostSize = this.hostFd >= 0 ? fs.fstatSync(this.hostFd).size : -1
      if (hostSize < this.limitNow) {
        problems.push(hostSize < 0
          ? `host original not available: bytes below ${this.limitNow} that were never written cannot be read`
          : `host original is ${hostSize} bytes, shorter than the ${this.limitNow} it provides: the rest reads as zeros`)
      }
    }
    return problems
  }
}
