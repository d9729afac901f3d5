/**
 * Unit tests of chunked siblings (src/store/chunks.ts) and their codec (src/store/lz4.ts).
 *
 * - A seeded randomized model test: thousands of random writes, reads, truncates, fsyncs and
 *   close/open cycles on files of several sizes (below one chunk, a few chunks, larger than
 *   the cache), with and without a host original (dense, and with holes), compressed and
 *   not, compared byte for byte with an in-memory Buffer. SIBLINGFS_CHUNKS_SEED=<n> repeats
 *   a run; the seed is in every failure message.
 * - Corruption: a flipped byte in a stored chunk, a truncated data file, a damaged map entry
 *   or header, a shrunken host file.
 * - Cost: a 1-byte write in the middle of a 256 MiB host-backed file.
 * - Crash: a child process writing at random is SIGKILLed at random times; the file must
 *   open, verify, and hold the old or the new version of every chunk of the last operation.
 */
import test, { type ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ChunkCache, ChunkFile, DEFAULT_CHUNK_SIZE, MAP_ENTRY_SIZE, MAP_HEADER_SIZE, type ChunkOptions, type HostIdentity } from '../../src/store/chunks.js'
import { checksum, compress, decompress } from '../../src/store/lz4.js'
import { SiblingError } from '../../src/errors.js'

const BASE_SEED = process.env.SIBLINGFS_CHUNKS_SEED !== undefined
  ? Number(process.env.SIBLINGFS_CHUNKS_SEED)
  : crypto.randomInt(1, 2 ** 31)

/** xorshift32: a small seeded PRNG. */
class Rng {
  private x: number
  constructor (seed: number) { this.x = (seed >>> 0) || 0x9e3779b9 }
  next (): number {
    let x = this.x
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    this.x = x
    return x
  }
  /** Integer in [0, n). */
  int (n: number): number { return n <= 0 ? 0 : Math.floor((this.next() / 0x100000000) * n) }
  chance (p: number): boolean { return this.next() / 0x100000000 < p }
  pick<T> (xs: readonly T[]): T { return xs[this.int(xs.length)]! }
}

/** Data that is random, compressible, or zeros. */
function data (rng: Rng, n: number): Buffer {
  const b = Buffer.allocUnsafe(n)
  const kind = rng.int(3)
  if (kind === 0) {
    for (let i = 0; i < n; i++) b[i] = rng.next() & 0xff
  } else if (kind === 1) {
    const unit = Buffer.from(`line ${rng.int(1000)} of some text; `)
    for (let i = 0; i < n; i++) b[i] = unit[i % unit.length]!
  } else {
    b.fill(0)
  }
  return b
}

function tmpdir (t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'siblingfs-chunks-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

function allocated (...files: string[]): number {
  return files.reduce((sum, f) => sum + fs.statSync(f).blocks * 512, 0)
}

function identity (file: string): HostIdentity {
  const st = fs.statSync(file, { bigint: true })
  return { dev: Number(st.dev), ino: Number(st.ino), size: Number(st.size), mtimeNs: st.mtimeNs.toString() }
}

function readAll (f: ChunkFile): Buffer {
  const b = Buffer.alloc(f.size)
  let done = 0
  while (done < f.size) {
    const n = f.read(b.subarray(done), Math.min(b.length - done, 200_000), done)
    if (n === 0) break
    done += n
  }
  return b
}

interface Files { dir: string, data: string, map: string, host: string }

function files (t: ExecutionContext): Files {
  const dir = tmpdir(t)
  const f = { dir, data: path.join(dir, 'data'), map: path.join(dir, 'data.map'), host: path.join(dir, 'host') }
  fs.writeFileSync(f.data, '')
  return f
}

// ---------------------------------------------------------------- codec

test('lz4: round trip, refusal of incompressible data, crc32', (t) => {
  const text = Buffer.from('hello chunked world, '.repeat(4000))
  const c = compress(text)
  t.truthy(c)
  t.true(c!.length < text.length / 10)
  t.deepEqual(decompress(c!, text.length), text)
  t.is(compress(crypto.randomBytes(65536)), null)
  t.is(compress(Buffer.alloc(10)), null)
  t.is(checksum(Buffer.from('123456789')), 0xcbf43926)
  t.is(checksum(Buffer.alloc(0)), 0)
})

test('lz4: malformed input is EIO, never a crash or a wrong length', (t) => {
  const rng = new Rng(BASE_SEED)
  const good = compress(Buffer.from('abcdefgh'.repeat(2000)))!
  const wrongLen = t.throws(() => decompress(good, 16001)) as SiblingError
  t.is(wrongLen.code, 'EIO')
  t.is((t.throws(() => decompress(Buffer.alloc(0), 10)) as SiblingError).code, 'EIO')
  t.is((t.throws(() => decompress(good, 0)) as SiblingError).code, 'EIO')
  let refused = 0
  for (let i = 0; i < 3000; i++) {
    const bad = Buffer.from(i % 2 === 0 ? good : crypto.randomBytes(1 + rng.int(200)))
    for (let k = 0; k <= rng.int(4); k++) bad[rng.int(bad.length)] = rng.next() & 0xff
    try {
      const out = decompress(bad, 16000)
      t.is(out.length, 16000)
    } catch (err) {
      t.is((err as SiblingError).code, 'EIO', `seed ${BASE_SEED}`)
      refused++
    }
  }
  t.true(refused > 1000)
})

// ---------------------------------------------------------------- model test

interface ModelConfig {
  name: string
  cs: number
  compress: boolean
  cacheBytes: number
  /** Host original: none, dense random bytes, or mostly holes. */
  host: 'none' | 'dense' | 'holes'
  hostSize: number
  /** hostLimit = hostSize - hostCut */
  hostCut: number
  size: number
  maxSize: number
  ops: number
}

function makeHost (rng: Rng, file: string, kind: 'dense' | 'holes', size: number): void {
  if (kind === 'dense') {
    fs.writeFileSync(file, data(rng, size))
    return
  }
  const fd = fs.openSync(file, 'w')
  fs.ftruncateSync(fd, size)
  for (let i = 0; i < 6; i++) {
    const len = 1 + rng.int(5000)
    const pos = rng.int(Math.max(1, size - len))
    fs.writeSync(fd, data(rng, Math.min(len, size)), 0, Math.min(len, size), pos)
  }
  fs.closeSync(fd)
}

function runModel (t: ExecutionContext, cfg: ModelConfig, seed: number): void {
  const rng = new Rng(seed)
  const f = files(t)
  const where = `seed ${seed} (SIBLINGFS_CHUNKS_SEED=${BASE_SEED}), config ${cfg.name}`
  const opts: ChunkOptions = { chunkSize: cfg.cs, compress: cfg.compress }
  let cache = new ChunkCache(cfg.cacheBytes)

  let hostFd = -1
  let hostLimit = 0
  let host: HostIdentity | null = null
  let model = Buffer.alloc(cfg.size)
  if (cfg.host !== 'none') {
    makeHost(rng, f.host, cfg.host, cfg.hostSize)
    hostLimit = Math.min(cfg.size, cfg.hostSize - cfg.hostCut)
    fs.readFileSync(f.host).copy(model, 0, 0, hostLimit)
    host = identity(f.host)
    hostFd = fs.openSync(f.host, 'r')
  }
  let file = ChunkFile.create(f.data, f.map, { size: cfg.size, hostLimit, host }, opts, cache, hostFd)
  let size = cfg.size
  const reopen = (): void => {
    file.close()
    if (rng.chance(0.5)) cache = new ChunkCache(cfg.cacheBytes)
    file = ChunkFile.open(f.data, f.map, opts, cache, cfg.host === 'none' ? -1 : fs.openSync(f.host, 'r'))
  }
  t.teardown(() => { try { file.close() } catch {} })

  const counts = { write: 0, read: 0, truncate: 0, reopen: 0 }
  const pickPos = (): number => {
    const r = rng.int(4)
    if (r === 0) return rng.int(size + 1) // anywhere
    if (r === 1) return Math.max(0, rng.int(Math.ceil(cfg.maxSize / cfg.cs) + 1) * cfg.cs + rng.int(9) - 4) // near a chunk boundary
    if (r === 2) return Math.max(0, size + rng.int(2 * cfg.cs) - cfg.cs) // around EOF
    return rng.int(cfg.maxSize)
  }
  const pickLen = (): number => rng.pick([1, 1 + rng.int(100), 1 + rng.int(cfg.cs), cfg.cs, 1 + rng.int(3 * cfg.cs), 2 * cfg.cs])
  const readBuf = Buffer.alloc(4 * cfg.cs + 16)

  for (let i = 0; i < cfg.ops; i++) {
    const op = rng.int(100)
    if (op < 45) {
      const pos = Math.min(pickPos(), cfg.maxSize - 1)
      const len = Math.min(pickLen(), cfg.maxSize - pos)
      const buf = data(rng, len)
      const n = file.write(buf, len, pos)
      t.is(n, len)
      if (pos + len > size) {
        const grown = Buffer.alloc(pos + len)
        model.copy(grown, 0, 0, size)
        model = grown
        size = pos + len
      }
      buf.copy(model, pos)
      counts.write++
    } else if (op < 85) {
      const pos = pickPos()
      const len = Math.min(pickLen(), readBuf.length)
      readBuf.fill(0xee)
      const n = file.read(readBuf, len, pos)
      const expect = Math.max(0, Math.min(len, size - pos))
      if (n !== expect) t.fail(`${where}: op ${i}: read(${len} @ ${pos}) of size ${size} returned ${n}, expected ${expect}`)
      if (!readBuf.subarray(0, n).equals(model.subarray(pos, pos + n))) {
        t.fail(`${where}: op ${i}: read(${len} @ ${pos}) differs from the model`)
        return
      }
      counts.read++
    } else if (op < 94) {
      const newSize = rng.chance(0.6) ? rng.int(size + 1) : Math.min(cfg.maxSize, size + rng.int(2 * cfg.cs))
      file.truncate(newSize)
      const m = Buffer.alloc(newSize)
      model.copy(m, 0, 0, Math.min(size, newSize))
      model = m
      size = newSize
      counts.truncate++
    } else if (op < 95) {
      file.fsync(rng.chance(0.5))
    } else {
      reopen()
      counts.reopen++
    }
    if (file.size !== size) {
      t.fail(`${where}: op ${i}: size ${file.size}, expected ${size}`)
      return
    }
  }
  reopen()
  t.is(file.size, size, where)
  const all = readAll(file)
  if (!all.equals(model)) t.fail(`${where}: final content differs from the model`)
  t.deepEqual(file.verify(), [], where)
  t.false(file.hostShort, where)
  // Sparse: the store holds (about) what the map says is in use, not the unused slots.
  const st = file.stats()
  t.true(st.chunks <= Math.ceil(size / cfg.cs), where)
  const onDisk = allocated(f.data)
  // Each chunk rounds up to a 4 KiB block; 8 KiB more for the file system's own extent-tree
  // blocks (ext4 keeps the index block of a once fragmented file after the holes are punched).
  t.true(onDisk <= st.storedBytes + st.chunks * 4096 + 8192, `${where}: ${onDisk} bytes allocated for ${st.storedBytes} stored in ${st.chunks} chunks`)
  t.log(`${cfg.name}: ${JSON.stringify(counts)}, final size ${size}, ${st.chunks} chunks, ${st.storedBytes} bytes stored, ${onDisk} allocated`)
}

const CONFIGS: ModelConfig[] = [
  { name: 'below one chunk, no host', cs: 4096, compress: false, cacheBytes: 1 << 20, host: 'none', hostSize: 0, hostCut: 0, size: 1000, maxSize: 4000, ops: 2500 },
  { name: 'below one chunk, host, lz4', cs: 4096, compress: true, cacheBytes: 1 << 20, host: 'dense', hostSize: 1500, hostCut: 0, size: 1500, maxSize: 4096, ops: 2500 },
  { name: 'few chunks, dense host cut short, raw', cs: 4096, compress: false, cacheBytes: 1 << 20, host: 'dense', hostSize: 20000, hostCut: 777, size: 20000, maxSize: 30000, ops: 3000 },
  { name: 'few chunks, host with holes, lz4', cs: 4096, compress: true, cacheBytes: 1 << 20, host: 'holes', hostSize: 18000, hostCut: 0, size: 25000, maxSize: 30000, ops: 3000 },
  { name: 'larger than the cache, host with holes, lz4', cs: 4096, compress: true, cacheBytes: 4 * 4096, host: 'holes', hostSize: 250_000, hostCut: 0, size: 250_000, maxSize: 300_000, ops: 4000 },
  { name: 'larger than the cache, no host, raw', cs: 4096, compress: false, cacheBytes: 3 * 4096, host: 'none', hostSize: 0, hostCut: 0, size: 100_000, maxSize: 300_000, ops: 4000 },
  { name: '64 KiB chunks, dense host, lz4, tiny cache', cs: DEFAULT_CHUNK_SIZE, compress: true, cacheBytes: 2 * DEFAULT_CHUNK_SIZE, host: 'dense', hostSize: 300_000, hostCut: 1000, size: 300_000, maxSize: 600_000, ops: 2500 },
  { name: '64 KiB chunks, no host, raw, no cache', cs: DEFAULT_CHUNK_SIZE, compress: false, cacheBytes: 0, host: 'none', hostSize: 0, hostCut: 0, size: 0, maxSize: 600_000, ops: 2500 }
]

CONFIGS.forEach((cfg, i) => {
  test(`model: ${cfg.name}`, (t) => {
    t.log(`seed ${BASE_SEED + i} (SIBLINGFS_CHUNKS_SEED=${BASE_SEED})`)
    runModel(t, cfg, BASE_SEED + i)
  })
})

// ---------------------------------------------------------------- behaviour

const OPTS: ChunkOptions = { chunkSize: 4096, compress: false }

test('files share their work buffers safely: interleaved partial writes and reads of several files, compressed or not', (t) => {
  const rng = new Rng(BASE_SEED ^ 0x5eed)
  const where = `SIBLINGFS_CHUNKS_SEED=${BASE_SEED}`
  const cs = 4096
  const dir = tmpdir(t)
  const cache = new ChunkCache(0) // no cache: every partial write and read goes through the work buffers
  const fileCount = 4
  const size = 8 * cs
  const open: ChunkFile[] = []
  const models: Buffer[] = []
  for (let i = 0; i < fileCount; i++) {
    const host = path.join(dir, `host${i}`)
    const hostBytes = data(rng, size)
    fs.writeFileSync(host, hostBytes)
    fs.writeFileSync(path.join(dir, `data${i}`), '')
    const hostFd = fs.openSync(host, 'r')
    open.push(ChunkFile.create(path.join(dir, `data${i}`), path.join(dir, `map${i}`), { size, hostLimit: size, host: identity(host) },
      { chunkSize: cs, compress: i % 2 === 0 }, cache, hostFd))
    models.push(Buffer.from(hostBytes))
  }
  t.teardown(() => { for (const f of open) f.close() })
  for (let op = 0; op < 400; op++) {
    const i = rng.int(fileCount)
    const f = open[i]!
    const len = 1 + rng.int(cs + 100) // mostly within a chunk: read-modify-write
    const pos = rng.int(size - len)
    if (rng.chance(0.5)) {
      const buf = data(rng, len)
      f.write(buf, len, pos)
      buf.copy(models[i]!, pos)
    } else {
      const got = Buffer.alloc(len)
      t.is(f.read(got, len, pos), len)
      if (!got.equals(models[i]!.subarray(pos, pos + len))) t.fail(`${where}: op ${op}: file ${i} read(${len} @ ${pos}) differs`)
    }
  }
  for (let i = 0; i < fileCount; i++) {
    t.true(readAll(open[i]!).equals(models[i]!), `${where}: file ${i} differs at the end`)
    t.deepEqual(open[i]!.verify(), [])
  }
})

test('bytes beyond hostLimit, after a shrink and an extension, read as zeros', (t) => {
  const f = files(t)
  fs.writeFileSync(f.host, Buffer.alloc(10000, 0x68))
  const file = ChunkFile.create(f.data, f.map, { size: 10000, hostLimit: 9000, host: identity(f.host) }, OPTS, new ChunkCache(1 << 20), fs.openSync(f.host, 'r'))
  t.teardown(() => file.close())
  const b = Buffer.alloc(10000)
  t.is(file.read(b, 10000, 0), 10000)
  t.true(b.subarray(0, 9000).every((x) => x === 0x68))
  t.true(b.subarray(9000).every((x) => x === 0))
  file.write(Buffer.from('xyz'), 3, 5000) // stores chunk 1 (host bytes + xyz)
  file.truncate(4100) // into chunk 1
  t.is(file.hostLimit, 4100)
  file.truncate(10000)
  t.is(file.read(b, 10000, 0), 10000)
  t.true(b.subarray(0, 4100).every((x) => x === 0x68))
  t.true(b.subarray(4100).every((x) => x === 0), 'no old data, no host data in the gap')
  file.write(Buffer.from('q'), 1, 20000) // a write past EOF: the gap reads zeros
  t.is(file.size, 20001)
  t.is(file.read(b, 10000, 10000), 10000)
  t.true(b.subarray(0, 10000).every((x) => x === 0))
  t.deepEqual(file.verify(), [])
})

test('a host file shorter than hostLimit reads as zeros and sets hostShort', (t) => {
  const f = files(t)
  fs.writeFileSync(f.host, Buffer.alloc(20000, 0x68))
  const file = ChunkFile.create(f.data, f.map, { size: 20000, hostLimit: 20000, host: identity(f.host) }, OPTS, new ChunkCache(1 << 20), fs.openSync(f.host, 'r'))
  t.teardown(() => file.close())
  fs.truncateSync(f.host, 5000)
  const b = Buffer.alloc(20000)
  t.is(file.read(b, 4000, 0), 4000)
  t.false(file.hostShort)
  t.is(file.read(b, 20000, 0), 20000)
  t.true(file.hostShort)
  t.true(b.subarray(5000).every((x) => x === 0))
  t.regex(file.verify().join('\n'), /host original is 5000 bytes, shorter than the 20000/)
})

test('opened without its host original (-1), unwritten host bytes fail with EIO, never zeros', (t) => {
  const f = files(t)
  fs.writeFileSync(f.host, Buffer.alloc(20000, 0x68))
  const c = ChunkFile.create(f.data, f.map, { size: 30000, hostLimit: 20000, host: identity(f.host) }, OPTS, new ChunkCache(1 << 20), fs.openSync(f.host, 'r'))
  c.write(Buffer.alloc(4096, 0x77), 4096, 4096) // chunk 1, whole
  c.close()
  const file = ChunkFile.open(f.data, f.map, OPTS, new ChunkCache(1 << 20), -1)
  t.teardown(() => file.close())
  const b = Buffer.alloc(4096)
  const err = t.throws(() => file.read(b, 10, 0)) as SiblingError
  t.is(err.code, 'EIO')
  t.is(err.message, `chunk 0 at offset 0 of ${f.data}: its unwritten bytes are the host original's, which is not available`)
  t.is(file.read(b, 4096, 4096), 4096)
  t.true(b.every((x) => x === 0x77))
  t.is(file.read(b, 4096, 24000), 4096) // past hostLimit: zeros
  t.true(b.every((x) => x === 0))
  t.is((t.throws(() => file.write(Buffer.from('x'), 1, 100)) as SiblingError).code, 'EIO') // needs the host bytes
  file.write(Buffer.alloc(4096, 0x79), 4096, 0) // a whole chunk does not
  t.is(file.read(b, 4096, 0), 4096)
  t.true(b.every((x) => x === 0x79))
  t.regex(file.verify().join('\n'), /host original not available/)
})

test('create and open refuse what they must', (t) => {
  const f = files(t)
  const cache = new ChunkCache(0)
  t.is((t.throws(() => ChunkFile.create(f.data, f.map, { size: 10, hostLimit: 10, host: null }, OPTS, cache, -1)) as SiblingError).code, 'EINVAL')
  t.is((t.throws(() => ChunkFile.create(f.data, f.map, { size: 10, hostLimit: 0, host: null }, { chunkSize: 5000, compress: false }, cache, -1)) as SiblingError).code, 'EINVAL')
  fs.writeFileSync(f.data, 'x')
  t.is((t.throws(() => ChunkFile.create(f.data, f.map, { size: 10, hostLimit: 0, host: null }, OPTS, cache, -1)) as SiblingError).code, 'EINVAL')
  fs.writeFileSync(f.data, '')
  ChunkFile.create(f.data, f.map, { size: 10, hostLimit: 0, host: null }, OPTS, cache, -1).close()
  t.false(fs.existsSync(f.map + '.tmp'))
  const err = t.throws(() => ChunkFile.open(f.data, f.map, { chunkSize: 8192, compress: false }, cache, -1)) as SiblingError
  t.is(err.code, 'EIO')
  t.is(err.message, `chunk map ${f.map}: chunk size 4096, but this mount uses 8192`)
  const file = ChunkFile.open(f.data, f.map, OPTS, cache, -1)
  file.close()
  file.close()
  t.is((t.throws(() => file.read(Buffer.alloc(1), 1, 0)) as SiblingError).code, 'EBADF')
})

// ---------------------------------------------------------------- corruption

/** A file of 8 chunks of 4 KiB, all stored (half compressible), closed. */
function eightChunks (t: ExecutionContext, compressed: boolean): { f: Files, content: Buffer, opts: ChunkOptions } {
  const f = files(t)
  const opts = { chunkSize: 4096, compress: compressed }
  const content = Buffer.alloc(8 * 4096)
  for (let c = 0; c < 8; c++) {
    const part = c % 2 === 0 ? Buffer.from(`chunk ${c} `.repeat(500)) : crypto.randomBytes(4096)
    part.copy(content, c * 4096, 0, 4096)
  }
  const file = ChunkFile.create(f.data, f.map, { size: 0, hostLimit: 0, host: null }, opts, new ChunkCache(1 << 20), -1)
  file.write(content, content.length, 0)
  file.write(Buffer.from('!'), 1, 3 * 4096 + 7) // chunk 3 now in its second slot
  content[3 * 4096 + 7] = 0x21
  file.close()
  return { f, content, opts }
}

function slotOf (f: Files, c: number): number {
  const e = Buffer.alloc(MAP_ENTRY_SIZE)
  const fd = fs.openSync(f.map, 'r')
  fs.readSync(fd, e, 0, MAP_ENTRY_SIZE, MAP_HEADER_SIZE + c * MAP_ENTRY_SIZE)
  fs.closeSync(fd)
  return e[0]!
}

function patch (file: string, pos: number, fn: (b: number) => number): void {
  const fd = fs.openSync(file, 'r+')
  const b = Buffer.alloc(1)
  fs.readSync(fd, b, 0, 1, pos)
  b[0] = fn(b[0]!)
  fs.writeSync(fd, b, 0, 1, pos)
  fs.closeSync(fd)
}

for (const compressed of [false, true]) {
  test(`corruption: a flipped byte in a stored chunk (${compressed ? 'lz4' : 'raw'}) fails that chunk only`, (t) => {
    const { f, content, opts } = eightChunks(t, compressed)
    for (const c of [2, 3]) {
      const slot = slotOf(f, c)
      t.true(slot === 1 || slot === 2)
      patch(f.data, (2 * c + slot - 1) * 4096 + 11, (b) => b ^ 0x40)
    }
    const file = ChunkFile.open(f.data, f.map, opts, new ChunkCache(1 << 20), -1)
    t.teardown(() => file.close())
    const b = Buffer.alloc(4096)
    for (const c of [2, 3]) {
      for (const [len, off] of [[4096, 0], [10, 100]] as const) {
        const err = t.throws(() => file.read(b, len, c * 4096 + off)) as SiblingError
        t.is(err.code, 'EIO')
        t.is(err.message, `chunk ${c} at offset ${c * 4096} of ${f.data}: checksum mismatch`)
      }
    }
    for (const c of [0, 1, 4, 5, 6, 7]) {
      t.is(file.read(b, 4096, c * 4096), 4096)
      t.deepEqual(b, content.subarray(c * 4096, (c + 1) * 4096))
    }
    t.deepEqual(file.verify(), ['chunk 2 (offset 8192): checksum mismatch', 'chunk 3 (offset 12288): checksum mismatch'])
    // A partial write needs the damaged content: refused. A whole-chunk write replaces it.
    t.is((t.throws(() => file.write(Buffer.from('z'), 1, 2 * 4096)) as SiblingError).code, 'EIO')
    file.write(content, 4096, 2 * 4096) // content of chunk 0, whole
    t.is(file.read(b, 4096, 2 * 4096), 4096)
    t.deepEqual(b, content.subarray(0, 4096))
    t.deepEqual(file.verify(), ['chunk 3 (offset 12288): checksum mismatch'])
  })
}

test('corruption: a truncated data file fails the chunks it lost', (t) => {
  const { f, content, opts } = eightChunks(t, false)
  // Chunk 5's slot 1 is at 10*4096; cut in its middle: chunks 5..7 lose their data.
  fs.truncateSync(f.data, 10 * 4096 + 100)
  const file = ChunkFile.open(f.data, f.map, opts, new ChunkCache(1 << 20), -1)
  t.teardown(() => file.close())
  const b = Buffer.alloc(4096)
  t.is(file.read(b, 4096, 4 * 4096), 4096)
  t.deepEqual(b, content.subarray(4 * 4096, 5 * 4096))
  const err = t.throws(() => file.read(b, 100, 5 * 4096)) as SiblingError
  t.is(err.code, 'EIO')
  t.regex(err.message, /^chunk 5 at offset 20480 of .*: stored data missing/)
  const problems = file.verify()
  t.is(problems.length, 3)
  t.regex(problems[0]!, /^chunk 5 \(offset 20480\): stored data missing \(the data file ends within its slot at 40960\)$/)
  t.regex(problems[2]!, /^chunk 7 \(offset 28672\): stored data missing/)
})

test('corruption: a damaged map entry fails its chunk', (t) => {
  const { f, opts } = eightChunks(t, true)
  patch(f.map, MAP_HEADER_SIZE + 6 * MAP_ENTRY_SIZE, () => 7) // slot 7
  patch(f.map, MAP_HEADER_SIZE + 1 * MAP_ENTRY_SIZE + 8, (b) => b + 1) // raw length 4097
  const file = ChunkFile.open(f.data, f.map, opts, new ChunkCache(1 << 20), -1)
  t.teardown(() => file.close())
  const err = t.throws(() => file.read(Buffer.alloc(10), 10, 6 * 4096)) as SiblingError
  t.is(err.code, 'EIO')
  t.regex(err.message, /chunk 6 at offset 24576 of .*: damaged map entry \(slot 7, expected 1 or 2\)/)
  t.deepEqual(file.verify(), ['chunk 1 (offset 4096): damaged map entry (length 4097)', 'chunk 6 (offset 24576): damaged map entry (slot 7, expected 1 or 2)'])
  t.is(file.read(Buffer.alloc(10), 10, 0), 10)
})

test('corruption: a damaged map header makes open fail with a clear EIO', (t) => {
  const { f, opts } = eightChunks(t, false)
  const cache = new ChunkCache(1 << 20)
  const good = fs.readFileSync(f.map)
  const tryOpen = (): SiblingError => {
    const err = t.throws(() => ChunkFile.open(f.data, f.map, opts, cache, -1)) as SiblingError
    t.is(err.code, 'EIO')
    t.true(err.message.startsWith(`chunk map ${f.map}: `))
    fs.writeFileSync(f.map, good)
    return err
  }
  patch(f.map, 20, (b) => b ^ 1) // size
  t.regex(tryOpen().message, /header checksum mismatch/)
  patch(f.map, 0, () => 0x58)
  t.regex(tryOpen().message, /not a chunk map \(bad magic\)/)
  patch(f.map, 8, () => 9)
  t.regex(tryOpen().message, /map version 9; this siblingfs reads version 1/)
  fs.truncateSync(f.map, 30)
  t.regex(tryOpen().message, /too short \(30 bytes\)/)
  ChunkFile.open(f.data, f.map, opts, cache, -1).close()
})

// ---------------------------------------------------------------- cost

test('a 1-byte write in the middle of a 256 MiB host-backed file stores one chunk', (t) => {
  const f = files(t)
  const SIZE = 256 << 20
  const fd = fs.openSync(f.host, 'w')
  fs.ftruncateSync(fd, SIZE)
  fs.writeSync(fd, crypto.randomBytes(1 << 20), 0, 1 << 20, SIZE / 2 - (1 << 19)) // real data around the middle
  fs.closeSync(fd)
  const cache = new ChunkCache(64 << 20)
  const opts = { chunkSize: DEFAULT_CHUNK_SIZE, compress: false }
  const file = ChunkFile.create(f.data, f.map, { size: SIZE, hostLimit: SIZE, host: identity(f.host) }, opts, cache, fs.openSync(f.host, 'r'))
  t.teardown(() => file.close())
  const before = allocated(f.data, f.map)
  const t0 = process.hrtime.bigint()
  file.write(Buffer.from('X'), 1, SIZE / 2 + 12345)
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  const grown = allocated(f.data, f.map) - before
  t.log(`1-byte write: ${ms.toFixed(2)} ms, store grew by ${grown} bytes (data ${allocated(f.data)}, map ${allocated(f.map)}), map length ${fs.statSync(f.map).size}`)
  t.true(grown < 256 << 10, `store grew by ${grown}`)
  t.true(ms < 50, `took ${ms} ms`)
  t.deepEqual(file.stats(), { chunks: 1, storedBytes: DEFAULT_CHUNK_SIZE })
  const b = Buffer.alloc(3)
  file.read(b, 3, SIZE / 2 + 12344)
  const host = Buffer.alloc(3)
  const hfd = fs.openSync(f.host, 'r')
  fs.readSync(hfd, host, 0, 3, SIZE / 2 + 12344)
  fs.closeSync(hfd)
  host[1] = 0x58
  t.deepEqual(b, host)
  t.deepEqual(file.verify(), [])
})

// ---------------------------------------------------------------- crash

/**
 * Runs `fn` as if the process died after `k` state-changing system calls (pwrite,
 * fallocate, ftruncate): the k+1-th and every later one throws instead of running.
 * Returns how many such calls `fn` made (or attempted) in all.
 */
function dieAfter (k: number, fn: () => void): number {
  const nativeMod = require('../../src/sys/native.js') as { fallocate: (...a: unknown[]) => void }
  const real = { writeSync: fs.writeSync, ftruncateSync: fs.ftruncateSync, fallocate: nativeMod.fallocate }
  let calls = 0
  const guard = <A extends unknown[], R>(f: (...a: A) => R) => (...a: A): R => {
    if (calls++ >= k) throw Object.assign(new Error('killed'), { code: 'EKILLED' })
    return f(...a)
  }
  const m = fs as unknown as Record<string, unknown>
  m.writeSync = guard(real.writeSync as (...a: unknown[]) => number)
  m.ftruncateSync = guard(real.ftruncateSync as (...a: unknown[]) => void)
  nativeMod.fallocate = guard(real.fallocate)
  try {
    fn()
  } catch (err) {
    if ((err as { code?: string }).code !== 'EKILLED') throw err
  } finally {
    m.writeSync = real.writeSync
    m.ftruncateSync = real.ftruncateSync
    nativeMod.fallocate = real.fallocate
  }
  return calls
}

test('crash at every system call of writes and truncates: old or new, never exposed garbage', (t) => {
  const root = tmpdir(t)
  const cs = 4096
  const hostBytes = Buffer.alloc(22000)
  for (let i = 0; i < hostBytes.length; i++) hostBytes[i] = 0x41 + (i % 23)
  const hostPath = path.join(root, 'host')
  fs.writeFileSync(hostPath, hostBytes)
  const fill = (n: number, v: number): Buffer => Buffer.alloc(n, v)
  const ops: Array<[string, (f: ChunkFile) => void]> = [
    ['extending write over a stale tail', (f) => f.write(fill(10000, 0x61), 10000, 15000)],
    ['3-byte write', (f) => f.write(fill(3, 0x62), 3, 100)],
    ['whole-chunk write', (f) => f.write(fill(2 * cs, 0x63), 2 * cs, cs)],
    ['shrink', (f) => f.truncate(3000)],
    ['extension over a stale tail', (f) => f.truncate(30000)]
  ]
  let cases = 0
  for (const compressed of [false, true]) {
    const opts = { chunkSize: cs, compress: compressed }
    for (const [name, op] of ops) {
      for (let k = 0; ; k++) {
        const dir = path.join(root, `${compressed ? 'z' : 'r'}-${cases}`)
        fs.mkdirSync(dir)
        const data = path.join(dir, 'data')
        const map = path.join(dir, 'map')
        fs.writeFileSync(data, '')
        // The state before: host-backed, chunks 0..4 stored, then shrunk into chunk 2 (a stale tail).
        const f0 = ChunkFile.create(data, map, { size: 22000, hostLimit: 21000, host: identity(hostPath) }, opts, new ChunkCache(1 << 20), fs.openSync(hostPath, 'r'))
        for (let c = 0; c < 5; c++) f0.write(fill(50, 0x30 + c), 50, c * cs + 1000)
        f0.truncate(9000)
        const before = readAll(f0)
        op(f0)
        const after = readAll(f0)
        f0.close()
        fs.rmSync(dir, { recursive: true })
        fs.mkdirSync(dir)
        fs.writeFileSync(data, '')
        const f1 = ChunkFile.create(data, map, { size: 22000, hostLimit: 21000, host: identity(hostPath) }, opts, new ChunkCache(1 << 20), fs.openSync(hostPath, 'r'))
        for (let c = 0; c < 5; c++) f1.write(fill(50, 0x30 + c), 50, c * cs + 1000)
        f1.truncate(9000)
        const calls = dieAfter(k, () => op(f1))
        f1.close()

        const where = `${name}, ${compressed ? 'lz4' : 'raw'}, killed after ${k} of ${calls} calls`
        const f2 = ChunkFile.open(data, map, opts, new ChunkCache(1 << 20), fs.openSync(hostPath, 'r'))
        t.deepEqual(f2.verify(), [], where)
        const size = f2.size
        t.true(size === before.length || size === after.length, `${where}: size ${size}`)
        const got = readAll(f2)
        for (let a = 0; a < size; a += cs) {
          const g = got.subarray(a, Math.min(size, a + cs))
          const slice = (b: Buffer): Buffer => { const m = Buffer.alloc(g.length); if (a < b.length) b.copy(m, 0, a, Math.min(b.length, a + g.length)); return m }
          const o = slice(before)
          const n = slice(after)
          t.true(g.equals(o) || g.equals(n), `${where}: chunk ${a / cs} is neither old nor new`)
        }
        // Growing it now shows zeros past the size, now and after a reopen: nothing
        // unwritten or stale comes back.
        f2.truncate(size + 5 * cs)
        t.true(readAll(f2).subarray(size).every((x) => x === 0), `${where}: bytes past the size came back`)
        f2.close()
        const f3 = ChunkFile.open(data, map, opts, new ChunkCache(1 << 20), fs.openSync(hostPath, 'r'))
        const grown = readAll(f3)
        t.true(grown.subarray(0, size).equals(got), where)
        t.true(grown.subarray(size).every((x) => x === 0), `${where}: bytes past the size came back after a reopen`)
        t.deepEqual(f3.verify(), [], where)
        f3.close()
        fs.rmSync(dir, { recursive: true })
        cases++
        if (k >= calls) break
      }
    }
  }
  t.log(`${cases} kill points`)
})


/**
 * The child: opens the chunked file and writes (sometimes truncates) at random until killed.
 * It logs each operation before ("B ...") and after ("D") doing it, with fs.writeSync to its
 * stdout pipe: what the parent reads was logged before the kill.
 * argv: chunksModule data map host seed compress
 */
const CHILD = String.raw`
const fs = require('fs')
const [mod, dataPath, mapPath, hostPath, seedArg, comp] = process.argv.slice(1)
const { ChunkFile, ChunkCache } = require(mod)
let x = Number(seedArg) >>> 0 || 1
const rnd = (n) => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return Math.floor(x / 4294967296 * n) }
const file = ChunkFile.open(dataPath, mapPath, { chunkSize: 4096, compress: comp === '1' }, new ChunkCache(8 * 4096), fs.openSync(hostPath, 'r'))
const L = (s) => fs.writeSync(1, s + '\n')
L('ready')
for (let k = 0; ; k++) {
  if (rnd(20) === 0) {
    const size = rnd(300000)
    L('B T ' + size)
    file.truncate(size)
  } else {
    const pos = rnd(280000)
    const len = 1 + rnd(rnd(2) === 0 ? 200 : 20000)
    const fill = rnd(256)
    const step = rnd(3)
    const b = Buffer.alloc(len)
    for (let i = 0; i < len; i++) b[i] = (fill + i * step) & 255
    L('B W ' + pos + ' ' + len + ' ' + fill + ' ' + step)
    file.write(b, len, pos)
  }
  L('D')
}
`

function applyOp (model: Buffer, line: string): Buffer {
  const w = line.split(' ')
  if (w[1] === 'T') {
    const size = Number(w[2])
    const m = Buffer.alloc(size)
    model.copy(m, 0, 0, Math.min(size, model.length))
    return m
  }
  const [pos, len, fill, step] = w.slice(2).map(Number) as [number, number, number, number]
  const m = Buffer.alloc(Math.max(model.length, pos + len)) // a copy: the old version is still needed
  model.copy(m)
  for (let i = 0; i < len; i++) m[pos + i] = (fill + i * step) & 255
  return m
}

test('crash: SIGKILL during random writes leaves a file that opens, verifies, and is old-or-new per chunk', async (t) => {
  const f = files(t)
  const rng = new Rng(BASE_SEED + 100)
  const where = `seed ${BASE_SEED + 100} (SIBLINGFS_CHUNKS_SEED=${BASE_SEED})`
  makeHost(rng, f.host, 'holes', 150_000)
  fs.appendFileSync(f.host, data(rng, 50_000))
  const mod = path.join(__dirname, '..', '..', 'src', 'store', 'chunks.js')
  const create = ChunkFile.create(f.data, f.map, { size: 200_000, hostLimit: 190_000, host: identity(f.host) }, { chunkSize: 4096, compress: false }, new ChunkCache(0), fs.openSync(f.host, 'r'))
  let model = readAll(create)
  create.close()
  let ops = 0
  for (let round = 0; round < 12; round++) {
    const comp = round % 2
    const child = spawn(process.execPath, ['-e', CHILD, mod, f.data, f.map, f.host, String(rng.next()), String(comp)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    const exited = new Promise<void>((resolve) => child.on('close', () => resolve()))
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => { if (out.includes('ready') || child.exitCode !== null) { clearInterval(poll); resolve() } }, 2)
    })
    await new Promise((resolve) => setTimeout(resolve, 5 + rng.int(150)))
    child.kill('SIGKILL')
    await exited
    if (!out.includes('ready')) t.fail(`${where}: round ${round}: child failed: ${err}`)
    t.is(err, '', `${where}: round ${round}: child wrote to stderr`)

    // Replay the log: every op logged D is done; the last one logged B without D is in flight.
    const lines = out.split('\n').filter((l) => l.startsWith('B ') || l === 'D')
    let pending: string | null = null
    for (const l of lines) {
      if (l === 'D') {
        model = applyOp(model, pending!)
        pending = null
        ops++
      } else {
        pending = l
      }
    }
    const next = pending === null ? model : applyOp(model, pending)

    const file = ChunkFile.open(f.data, f.map, { chunkSize: 4096, compress: comp === 1 }, new ChunkCache(1 << 20), fs.openSync(f.host, 'r'))
    try {
      t.deepEqual(file.verify(), [], `${where}: round ${round}`)
      const size = file.size
      if (size !== model.length && size !== next.length) {
        t.fail(`${where}: round ${round}: size ${size}, expected ${model.length} or ${next.length} (in flight: ${pending})`)
        return
      }
      const got = readAll(file)
      const pad = (b: Buffer): Buffer => { const m = Buffer.alloc(size); b.copy(m, 0, 0, Math.min(size, b.length)); return m }
      const oldV = pad(model)
      const newV = pad(next)
      for (let c = 0; c * 4096 < size; c++) {
        const a = c * 4096
        const z = Math.min(size, a + 4096)
        const g = got.subarray(a, z)
        if (!g.equals(oldV.subarray(a, z)) && !g.equals(newV.subarray(a, z))) {
          const diff = (x: Buffer): string => { let i = 0; while (i < g.length && g[i] === x[a + i]) i++; return i === g.length ? 'same' : `first difference at +${i}: ${g[i]} vs ${x[a + i]}` }
          t.fail(`${where}: round ${round}: chunk ${c} is neither the old nor the new version (in flight: ${pending}; size ${size}, old ${model.length}, new ${next.length}; old: ${diff(oldV)}; new: ${diff(newV)})`)
          return
        }
      }
      model = got // the state the next round starts from
    } finally {
      file.close()
    }
  }
  t.log(`${ops} operations completed over 12 kills`)
  t.true(ops > 0)
})
