/**
 * Seeded randomized model test of chunked siblings through a real mount.
 *
 * Thousands of random writes, reads, ftruncates, truncates, appends, fsyncs, O_TRUNC opens
 * and close/reopens at random offsets and lengths (biased towards chunk boundaries) on files
 * of several sizes: smaller than a chunk, a few chunks, larger than the `--cache-size 1`
 * MiB chunk cache; some host-backed (known host content), some new. Every read is compared
 * byte for byte with an in-memory Buffer model; whole files are compared now and then,
 * after a remount, and at the end. Kernel page caching is off (`--data-cache none`) in the
 * main configurations, so a reopen reads from the daemon again.
 *
 * The seed is printed (t.log, and in every assertion message). Replay with
 * SIBLINGFS_MODEL_SEED=<seed> (SIBLINGFS_MODEL_OPS=<n> changes the number of operations).
 */
import type { ExecutionContext } from 'ava'
import fs from 'node:fs'
import { hashTree, startMount, storeInfo, useMount, type Mount } from '../helpers/sandbox.js'
import { mtest } from '../helpers/mountkit.js'
import { mulberry32 } from '../helpers/progkit.js'
import { KiB, MiB, blockPattern, chunksId, describeDiff, randomPool, readFull, readMap, textTree } from '../helpers/sparsekit.js'

const SEED = process.env.SIBLINGFS_MODEL_SEED !== undefined ? Number(process.env.SIBLINGFS_MODEL_SEED) : Math.floor(Math.random() * 2 ** 31)
const OPS = process.env.SIBLINGFS_MODEL_OPS !== undefined ? Number(process.env.SIBLINGFS_MODEL_OPS) : 2400
const OPS_AFTER = Math.ceil(OPS / 4)
const MAX_SIZE = 4 * MiB

interface Config { name: string, args: string[], chunkSize: number, compress: boolean }
const CONFIGS: Config[] = [
  { name: 'plain store', args: ['--cache-size', '1', '--data-cache', 'none'], chunkSize: 65536, compress: false },
  { name: 'lz4 store', args: ['--compress', 'lz4', '--cache-size', '1', '--data-cache', 'none'], chunkSize: 65536, compress: true },
  { name: 'lz4 store, 4 KiB chunks, kernel data cache on', args: ['--compress', 'lz4', '--chunk-size', '4096', '--cache-size', '1'], chunkSize: 4096, compress: true }
]

const HOST_FILES: Array<[string, number]> = [
  ['h_small.bin', 20000], // smaller than a 64 KiB chunk
  ['h_few.bin', 200003], // a few chunks
  ['h_mib.bin', MiB], // exactly the sparse threshold
  ['h_big.bin', 2 * MiB + 654321] // larger than the 1 MiB chunk cache
]
const NEW_FILES: Array<[string, number]> = [
  ['n_small.bin', 3000],
  ['n_few.bin', 150001],
  ['n_big.bin', 1536 * KiB + 17]
]

class Model {
  bytes: Buffer
  constructor (init: Buffer) { this.bytes = Buffer.from(init) }
  get size (): number { return this.bytes.length }
  write (at: number, data: Buffer): void {
    const end = at + data.length
    if (end > this.bytes.length) this.resize(end)
    data.copy(this.bytes, at)
  }

  resize (n: number): void {
    this.bytes = n <= this.bytes.length ? Buffer.from(this.bytes.subarray(0, n)) : Buffer.concat([this.bytes, Buffer.alloc(n - this.bytes.length)])
  }
}

/** fd: read-write; ro: read-only, for host files opened before their first write (the
 *  daemon moves such readers onto the sibling at copy-up). */
interface FileState { rel: string, model: Model, fd: number | null, ro: number | null, host: boolean }


function writeFull (fd: number, b: Buffer, pos: number | null): void {
  let done = 0
  while (done < b.length) done += fs.writeSync(fd, b, done, b.length - done, pos === null ? null : pos + done)
}

async function runModel (t: ExecutionContext, cfg: Config, cfgIndex: number): Promise<void> {
  const seed = SEED + cfgIndex
  const tag = `[seed ${SEED} (SIBLINGFS_MODEL_SEED=${SEED}), ${cfg.name}]`
  t.log(`${tag}: ${OPS} operations, remount, ${OPS_AFTER} more`)
  const rnd = mulberry32(seed)
  const int = (n: number): number => Math.floor(rnd() * n)
  // half random (stored raw), half text and zeros (stored lz4-compressed in an lz4 store)
  const pool = Buffer.concat([randomPool(seed, 2 * MiB), Buffer.concat([...textTree(seed, 2 * MiB).values()]).subarray(0, 3 * MiB / 2), Buffer.alloc(MiB / 2)])
  const cs = cfg.chunkSize
  const hostTree: { [name: string]: Buffer } = {}
  const text = Buffer.concat([...textTree(seed + 1, 3 * MiB).values()])
  HOST_FILES.forEach(([rel, size], i) => { hostTree[rel] = i % 2 === 0 ? blockPattern(size, 1000 + i) : Buffer.from(text.subarray(0, size)) })
  let m: Mount = await useMount(t, { host: hostTree, args: cfg.args })
  // read-only descriptors of the host files, opened before anything is written to them
  const files: FileState[] = HOST_FILES.map(([rel]) => ({ rel, model: new Model(hostTree[rel]), fd: null, ro: fs.openSync(m.m(rel), 'r'), host: true }))
  for (const [rel, size] of NEW_FILES) {
    const at0 = int(pool.length - size)
    const init = Buffer.from(pool.subarray(at0, at0 + size))
    const fd = fs.openSync(m.m(rel), 'w+')
    writeFull(fd, init, 0)
    files.push({ rel, model: new Model(init), fd, ro: null, host: false })
  }
  const history: string[] = []
  let opNo = 0
  const fail = (msg: string): never => {
    throw new Error(`${tag} op #${opNo}: ${msg}\nlast operations:\n  ${history.slice(-15).join('\n  ')}`)
  }
  const fdOf = (f: FileState): number => {
    if (f.fd === null) f.fd = fs.openSync(m.m(f.rel), 'r+')
    return f.fd
  }
  const closeAll = (): void => {
    for (const f of files) {
      if (f.fd !== null) { fs.closeSync(f.fd); f.fd = null }
      if (f.ro !== null) { fs.closeSync(f.ro); f.ro = null }
    }
  }
  const offset = (size: number): number => {
    const r = rnd()
    if (r < 0.3) return Math.max(0, int(Math.ceil((size + 1) / cs) + 1) * cs + int(9) - 4) // near a chunk boundary
    if (r < 0.4) return size + int(3 * cs) // past the end
    return int(size + 1)
  }
  const length = (): number => {
    const r = rnd()
    if (r < 0.45) return 1 + int(64)
    if (r < 0.8) return 1 + int(cs + cs / 2)
    return 1 + int(Math.min(3 * cs + 1000, 300000))
  }
  /** A size for a truncate: mostly near the current one, so files stay large enough. */
  const newSize = (size: number): number => {
    const r = rnd()
    if (r < 0.25) return int(size + 1)
    if (r < 0.6) return size - int(Math.min(size, 2 * cs) + 1)
    if (r < 0.95) return Math.min(MAX_SIZE, size + int(3 * cs))
    return MiB + int(MAX_SIZE - MiB) // a big jump up: a long run of zeros
  }
  const data = (len: number): Buffer => {
    const at = int(pool.length - len)
    return pool.subarray(at, at + len)
  }
  const compareWhole = (f: FileState, what: string): void => {
    let got: Buffer
    try { got = fs.readFileSync(m.m(f.rel)) } catch (e) { return fail(`${what}: reading ${f.rel}: ${(e as Error).message}`) }
    if (!got.equals(f.model.bytes)) fail(`${what}: ${f.rel}: ${describeDiff(got, f.model.bytes)}`)
    const st = fs.statSync(m.m(f.rel))
    if (st.size !== f.model.size) fail(`${what}: ${f.rel}: st_size ${st.size}, model ${f.model.size}`)
  }
  const counts: Record<string, number> = {}

  const step = (): void => {
    opNo++
    const f = files[int(files.length)]
    const r = rnd()
    const size = f.model.size
    let op: string
    try {
      if (r < 0.34) {
        const at = offset(size)
        const len = Math.max(1, Math.min(length(), MAX_SIZE - at))
        if (at >= MAX_SIZE) { op = 'skip'; return }
        const d = data(len)
        op = `write ${f.rel} ${at}+${len}`
        history.push(op)
        writeFull(fdOf(f), d, at)
        f.model.write(at, d)
      } else if (r < 0.64) {
        const at = rnd() < 0.85 ? int(size + 1) : offset(size)
        const len = length()
        const viaRo = rnd() < 0.3
        if (viaRo && f.ro === null) f.ro = fs.openSync(m.m(f.rel), 'r')
        op = `read${viaRo ? '(ro fd)' : ''} ${f.rel} ${at}+${len}`
        history.push(op)
        const got = readFull(viaRo ? f.ro as number : fdOf(f), len, at)
        const want = f.model.bytes.subarray(Math.min(at, size), Math.min(at + len, size))
        if (!got.equals(want)) fail(`${op}: ${describeDiff(got, want)} (file size ${size})`)
      } else if (r < 0.69) {
        const n = newSize(size)
        op = `ftruncate ${f.rel} ${size} -> ${n}`
        history.push(op)
        fs.ftruncateSync(fdOf(f), n)
        f.model.resize(n)
      } else if (r < 0.74) {
        const n = newSize(size)
        op = `truncate ${f.rel} ${size} -> ${n}`
        history.push(op)
        fs.truncateSync(m.m(f.rel), n)
        f.model.resize(n)
      } else if (r < 0.85) {
        op = `close+reopen ${f.rel}`
        history.push(op)
        if (f.fd !== null) { fs.closeSync(f.fd); f.fd = null }
        if (f.ro !== null && rnd() < 0.3) { fs.closeSync(f.ro); f.ro = null }
        if (rnd() < 0.5) fdOf(f)
      } else if (r < 0.88) {
        const len = Math.min(length(), MAX_SIZE - size)
        if (len <= 0) { op = 'skip'; return }
        const d = data(len)
        op = `append ${f.rel} +${len}`
        history.push(op)
        const afd = fs.openSync(m.m(f.rel), 'a')
        try { writeFull(afd, d, null) } finally { fs.closeSync(afd) }
        f.model.write(size, d)
      } else if (r < 0.91) {
        op = `fstat ${f.rel}`
        history.push(op)
        const st = fs.fstatSync(fdOf(f))
        if (st.size !== size) fail(`${op}: st_size ${st.size}, model ${size}`)
      } else if (r < 0.94) {
        op = `fsync ${f.rel}`
        history.push(op)
        if (rnd() < 0.5) fs.fsyncSync(fdOf(f)); else fs.fdatasyncSync(fdOf(f))
      } else if (r < 0.945) {
        op = `open O_TRUNC ${f.rel}`
        history.push(op)
        if (f.fd !== null) { fs.closeSync(f.fd); f.fd = null }
        f.fd = fs.openSync(m.m(f.rel), 'w+')
        f.model.resize(0)
      } else {
        op = `compare ${f.rel}`
        history.push(op)
        compareWhole(f, op)
      }
    } catch (e) {
      if ((e as Error).message.startsWith(tag)) throw e
      return fail(`${history[history.length - 1]}: ${(e as Error).message}`)
    }
    const kind = op.split(/[ (]/)[0]
    counts[kind] = (counts[kind] ?? 0) + 1
  }

  for (let i = 0; i < OPS; i++) step()
  closeAll()
  for (const f of files) compareWhole(f, 'after the first run')
  t.is(hashTree(m.host), m.hostHash, `${tag}: the host tree must not change`)

  // remount and compare everything again, then go on
  t.is(await m.stop(), 0, `${tag}: the daemon stops cleanly`)
  m = await startMount({ dirs: m, args: cfg.args })
  t.teardown(m.cleanup)
  for (const f of files) compareWhole(f, 'after a remount')
  for (let i = 0; i < OPS_AFTER; i++) step()
  closeAll()
  for (const f of files) compareWhole(f, 'at the end')
  t.log(`${tag}: ${opNo} operations: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')}; sizes now ${files.map(f => `${f.rel}=${f.model.size}`).join(' ')}`)
  t.true(opNo >= 2000, `${tag}: at least 2000 operations`)

  // the store: host-backed siblings chunked (or whole copies under 1 MiB in a plain store),
  // every chunk map agrees with the model's size
  let compressed = 0
  let stored = 0
  for (const f of files) {
    const info = storeInfo(m.u(f.rel))
    const id = chunksId(m.u(f.rel))
    if (f.host) {
      t.is(info.origin?.path, f.rel, `${tag}: ${f.rel} is a sibling`)
      const hostSize = HOST_FILES.find(([r]) => r === f.rel)?.[1] ?? 0
      const kind = cfg.compress || hostSize >= MiB ? 'chunks' : 'store'
      // a sibling made by O_TRUNC of a small host file in a plain store is a whole copy too
      t.is(info.origin?.data, kind, `${tag}: ${f.rel} origin.data`)
    }
    if (id !== null) {
      const map = readMap(m.store, id)
      compressed += map.entries.filter(e => (e.flags & 1) === 1).length
      stored += map.entries.length
      t.is(map.size, f.model.size, `${tag}: ${f.rel}: size in the map`)
      t.is(map.chunkSize, cs)
    } else {
      t.false(cfg.compress, `${tag}: ${f.rel}: every file of a compressed store is chunked`)
      t.true(fs.readFileSync(m.u(f.rel)).equals(f.model.bytes), `${tag}: ${f.rel}: the whole copy in upper/`)
    }
  }
  t.log(`${tag}: ${stored} chunks stored at the end, ${compressed} of them lz4-compressed`)
  if (cfg.compress) t.true(compressed > 0 && compressed < stored, `${tag}: both compressed and raw chunks were exercised`)
  t.notRegex(m.stderr(), /I\/O error|error/i, `${tag}: the daemon logged no errors`)
  t.is(hashTree(m.host), m.hostHash, `${tag}: the host tree must not change`)
}

CONFIGS.forEach((cfg, i) => {
  mtest(`random model (${cfg.name}): reads, writes, truncates, reopens, remount`, async (t) => {
    await runModel(t, cfg, i)
  })
})
