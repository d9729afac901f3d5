/**
 * kill -9 of the daemon during a stream of random writes, truncates and fsyncs into chunked
 * files of a `--compress lz4` store (one large host-backed file, one small host-backed file,
 * two new files), then a lazy unmount, fsck, a remount of the same store, fsck again.
 *
 * The writer (a child node process; its log and its dumps are OUTSIDE the mount) logs every
 * operation before ("b", with the bytes) and after ("d") it runs, and after every completed
 * fsync writes the file's whole model as of that fsync to dumps/<file> and logs "s". After
 * the remount:
 * - every byte that no operation after the file's last completed fsync touched is exactly the
 *   dumped (fsynced) content: what an fsync promised survives;
 * - more strictly, since a killed daemon (unlike a power loss) loses nothing it finished:
 *   the file is the fsynced content plus every later operation that completed ("d"), plus
 *   the one in flight applied in part or not at all (each byte old or new; the size between);
 * - `siblingfs fsck` reports no errors (warnings about work/ or maps/ leftovers are allowed
 *   before the remount); work/ is empty after the remount; the host is unchanged.
 * Seeds and delays are logged; SIBLINGFS_CRASH_SEED=<n> repeats a run's writes.
 */
import test, { type ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fuseAvailable, hashTree, isMounted, startMount, workEntries, type Mount } from '../helpers/sandbox.js'
import { freshDirs, killPid, lazyUnmount, mulberry32, sleep, waitExit } from '../helpers/progkit.js'
import { KiB, MiB, blockPattern, chunksId, describeDiff, fsck, textTree } from '../helpers/sparsekit.js'

const ARGS = ['--compress', 'lz4', '--cache-size', '1']
const CS = 65536
interface FileSpec { rel: string, host: boolean }
const FILES: FileSpec[] = [
  { rel: 'hb.bin', host: true },
  { rel: 'hs.txt', host: true },
  { rel: 'n1.bin', host: false },
  { rel: 'sub/n2.bin', host: false }
]

function hostContent (rel: string): Buffer {
  if (rel === 'hb.bin') return blockPattern(3 * MiB + 123, 77)
  return Buffer.concat([...textTree(78, 50 * KiB).values()]).subarray(0, 50 * KiB)
}

const WRITER = String.raw`
const fs = require('fs')
const path = require('path')
const [mnt, host, logPath, dumpDir, seedArg, filesArg] = process.argv.slice(2)
const files = JSON.parse(filesArg)
const seed = Number(seedArg)
const CS = ${CS}
const mulberry32 = ${mulberry32.toString()}
const rnd = mulberry32(seed)
const int = (n) => Math.floor(rnd() * n)
const logFd = fs.openSync(logPath, 'a')
const L = (o) => fs.writeSync(logFd, JSON.stringify(o) + '\n')
const pool = Buffer.alloc(1 << 20)
for (let i = 0; i < pool.length / 2; i += 4) pool.writeUInt32LE(Math.floor(rnd() * 4294967296), i)
// the second half compresses: short words, repeated with variations
for (let i = pool.length / 2; i < pool.length;) { const w = Buffer.from('chunk ' + int(50) + ' of text; '); w.copy(pool, i); i += w.length }
const models = []
const fds = []
function dump (k) {
  const tmp = path.join(dumpDir, k + '.tmp')
  fs.writeFileSync(tmp, models[k])
  fs.renameSync(tmp, path.join(dumpDir, String(k)))
}
function resize (k, n) {
  const b = models[k]
  models[k] = n <= b.length ? Buffer.from(b.subarray(0, n)) : Buffer.concat([b, Buffer.alloc(n - b.length)])
}
let i = 0
try {
  fs.mkdirSync(path.join(mnt, 'sub'), { recursive: true })
  files.forEach((f, k) => {
    if (f.host) {
      models[k] = fs.readFileSync(path.join(host, f.rel))
      fds[k] = fs.openSync(path.join(mnt, f.rel), 'r+')
    } else {
      models[k] = Buffer.alloc(0)
      fds[k] = fs.openSync(path.join(mnt, f.rel), 'w+')
      fs.fsyncSync(fds[k])
    }
    dump(k)
    L({ t: 's', k, i })
  })
  L({ t: 'ready' })
  process.stdout.write('R\n')
  for (i = 1; i < 1000000; i++) {
    const k = int(files.length)
    const fd = fds[k]
    const size = models[k].length
    const r = rnd()
    if (r < 0.85) {
      let off = rnd() < 0.4 ? Math.max(0, (1 + int(Math.ceil(size / CS) + 1)) * CS - 1 - int(8)) : int(size + CS)
      const q = rnd()
      const len = Math.min(q < 0.5 ? 1 + int(100) : q < 0.85 ? 1 + int(CS + 100) : 1 + int(3 * CS + 1000), 4 * 1048576 - off)
      if (len <= 0) continue
      const at = int(pool.length - len)
      const data = pool.subarray(at, at + len)
      L({ t: 'b', i, k, op: 'w', off, data: data.toString('base64') })
      let done = 0
      while (done < len) done += fs.writeSync(fd, data, done, len - done, off + done)
      L({ t: 'd', i })
      if (off + len > size) resize(k, off + len)
      data.copy(models[k], off)
    } else {
      const n = rnd() < 0.5 ? int(size + 1) : Math.min(4 * 1048576, size + int(2 * CS))
      L({ t: 'b', i, k, op: 't', n })
      fs.ftruncateSync(fd, n)
      L({ t: 'd', i })
      resize(k, n)
    }
    if (rnd() < 0.25) {
      L({ t: 'fb', i, k })
      if (rnd() < 0.5) fs.fsyncSync(fd); else fs.fdatasyncSync(fd)
      dump(k)
      L({ t: 's', k, i })
    }
  }
  L({ t: 'finished' })
} catch (e) {
  L({ t: 'error', i, code: e.code || '', msg: String(e.message) })
}
`

interface LogOp { i: number, k: number, op: 'w' | 't', off?: number, data?: Buffer, n?: number, done: boolean }
interface Parsed { synced: Map<number, number>, ops: LogOp[], ready: boolean, tail: string, count: number, syncs: number }

function parseLog (text: string): Parsed {
  const p: Parsed = { synced: new Map(), ops: [], ready: false, tail: '', count: 0, syncs: 0 }
  const byI = new Map<number, LogOp>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    let o: { t: string, i: number, k: number, op: 'w' | 't', off?: number, data?: string, n?: number }
    try { o = JSON.parse(line) } catch { continue } // a torn last line
    p.tail = line.length > 200 ? line.slice(0, 200) + '…' : line
    if (o.t === 'ready') p.ready = true
    if (o.t === 's') { p.synced.set(o.k, o.i); p.syncs++ }
    if (o.t === 'b') {
      const op: LogOp = { i: o.i, k: o.k, op: o.op, off: o.off, n: o.n, data: o.data !== undefined ? Buffer.from(o.data, 'base64') : undefined, done: false }
      p.ops.push(op)
      byI.set(o.i, op)
    }
    if (o.t === 'd') { const op = byI.get(o.i); if (op !== undefined) { op.done = true; p.count++ } }
  }
  return p
}

function apply (b: Buffer, op: LogOp): Buffer {
  if (op.op === 't') {
    const n = op.n as number
    return n <= b.length ? Buffer.from(b.subarray(0, n)) : Buffer.concat([b, Buffer.alloc(n - b.length)])
  }
  const data = op.data as Buffer
  const off = op.off as number
  const out = off + data.length > b.length ? Buffer.concat([b, Buffer.alloc(off + data.length - b.length)]) : Buffer.from(b)
  data.copy(out, off)
  return out
}

function verifyFile (t: ExecutionContext, k: number, spec: FileSpec, got: Buffer | null, dump: Buffer | null, log: Parsed, tag: string): void {
  const rel = spec.rel
  if (dump === null) {
    // killed before the writer's first fsync of this file
    if (spec.host) t.true(got !== null && got.equals(hostContent(rel)), `${tag} ${rel}: never written, the host's bytes`)
    else t.true(got === null || got.length === 0, `${tag} ${rel}: never written, absent or empty`)
    return
  }
  t.not(got, null, `${tag} ${rel}: fsynced at creation, it must exist`)
  if (got === null) return
  const since = log.synced.get(k) ?? -1
  const after = log.ops.filter(o => o.k === k && o.i > since)
  // 1. what the last completed fsync promised: the bytes no later operation touched
  let bound = dump.length
  const touched: Array<[number, number]> = []
  for (const o of after) {
    if (o.op === 't') bound = Math.min(bound, o.n as number)
    else touched.push([o.off as number, (o.off as number) + (o.data as Buffer).length])
  }
  let bad = -1
  for (let p = 0; p < bound && bad < 0; p += 4096) {
    const e = Math.min(bound, p + 4096)
    if (p < got.length && e <= got.length && got.subarray(p, e).equals(dump.subarray(p, e))) continue
    for (let q = p; q < e; q++) {
      if (touched.some(([a, b]) => q >= a && q < b)) continue
      if (q >= got.length || got[q] !== dump[q]) { bad = q; break }
    }
  }
  t.is(bad, -1, `${tag} ${rel}: a byte the last completed fsync covered differs at ${bad} (chunk ${Math.floor(bad / CS)}); ${after.length} operations since that fsync; got ${got.length} bytes, fsynced ${dump.length}`)
  if (after.length === 0) t.is(got.length, dump.length, `${tag} ${rel}: nothing after the last fsync, the size is the fsynced one`)

  // 2. strict: fsynced + every completed operation + the one in flight, in part or not at all
  let done = dump
  for (const o of after.filter(x => x.done)) done = apply(done, o)
  const inflight = after.find(x => !x.done)
  if (inflight === undefined) {
    t.true(got.equals(done), `${tag} ${rel}: fsynced + completed operations: ${describeDiff(got, done)}`)
    return
  }
  const next = apply(done, inflight)
  if (inflight.op === 't') {
    t.true(got.equals(done) || got.equals(next), `${tag} ${rel}: a truncate in flight leaves the old or the new file (${got.length} bytes; old ${done.length}, new ${next.length})`)
    return
  }
  const lo = Math.min(done.length, next.length)
  const hi = Math.max(done.length, next.length)
  t.true(got.length >= lo && got.length <= hi, `${tag} ${rel}: size ${got.length} between ${lo} and ${hi} (a write in flight)`)
  let mixBad = -1
  for (let q = 0; q < got.length; q++) {
    const old = q < done.length ? done[q] : 0
    if (got[q] !== old && got[q] !== next[q]) { mixBad = q; break }
  }
  t.is(mixBad, -1, `${tag} ${rel}: with a write in flight every byte is old or new; byte ${mixBad} is neither`)
}

async function crashRun (t: ExecutionContext, delayMs: number): Promise<void> {
  const seed = process.env.SIBLINGFS_CRASH_SEED !== undefined ? Number(process.env.SIBLINGFS_CRASH_SEED) : Math.floor(Math.random() * 1e9)
  const delay = delayMs + Math.floor(mulberry32(seed)() * 100)
  const tag = `[seed ${seed}, kill ${delay} ms after the writer was ready]`
  t.log(tag)
  const tree: { [name: string]: Buffer } = {}
  for (const f of FILES) if (f.host) tree[f.rel] = hostContent(f.rel)
  const dirs = freshDirs(t, tree)
  const writerJs = path.join(dirs.root, 'writer.js')
  const logFile = path.join(dirs.root, 'writer.log')
  const dumpDir = path.join(dirs.root, 'dumps')
  fs.mkdirSync(dumpDir)
  fs.writeFileSync(writerJs, WRITER)
  const m1 = await startMount({ dirs, args: ARGS })
  t.teardown(m1.cleanup)
  const hostHash = m1.hostHash

  const writer = spawn(process.execPath, [writerJs, dirs.mnt, dirs.host, logFile, dumpDir, String(seed), JSON.stringify(FILES)], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { killPid(writer.pid) })
  let werr = ''
  writer.stderr.on('data', (d: Buffer) => { werr += d.toString() })
  // the delay counts from the writer's "ready" (all files open, first fsyncs done)
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 20000)
    writer.stdout.on('data', (d: Buffer) => { if (d.toString().includes('R')) { clearTimeout(timer); resolve() } })
    writer.once('exit', () => { clearTimeout(timer); resolve() })
  })
  await sleep(delay)
  killPid(m1.child.pid, 'SIGKILL')
  const dExit = await waitExit(m1.child, 10000)
  t.is(dExit?.signal, 'SIGKILL', `${tag} the daemon was killed`)
  if (await waitExit(writer, 15000) === null) {
    t.log(`${tag} the writer did not stop by itself; killing it`)
    killPid(writer.pid)
    await waitExit(writer, 5000)
  }
  lazyUnmount(dirs.mnt)
  t.false(isMounted(dirs.mnt), `${tag} the dead mount is gone after fusermount -u -z`)
  const log = parseLog(fs.readFileSync(logFile, 'utf8'))
  const work = fs.readdirSync(path.join(dirs.store, 'work'))
  t.log(`${tag} writer: ${log.count} operations completed, ${log.syncs} fsyncs; last line ${log.tail}; work/ before the remount: [${work.join(', ')}]${werr !== '' ? `; writer stderr: ${werr}` : ''}`)
  t.true(log.ready, `${tag} the writer got going before the kill (raise the delay otherwise)`)
  t.is(hashTree(dirs.host), hostHash, `${tag} the host tree must not change (after the kill)`)

  const f1 = fsck(dirs.store)
  const errors1 = (f1.json?.findings ?? []).filter(f => f.severity === 'error')
  t.not(f1.json, null, `${tag} fsck --json: ${f1.stdout}${f1.stderr}`)
  t.deepEqual(errors1, [], `${tag} fsck after the kill reports no errors`)
  const warn1 = (f1.json?.findings ?? []).filter(f => f.severity === 'warning')
  if (warn1.length > 0) t.log(`${tag} fsck warnings before the remount: ${warn1.map(f => `${f.path}: ${f.message}`).join('; ')}`)
  t.true(warn1.every(f => /work|^maps\//.test(f.path)), `${tag} only leftovers in work/ or maps/ may be warned about: ${JSON.stringify(warn1)}`)

  const m2: Mount = await startMount({ dirs, args: ARGS })
  t.teardown(m2.cleanup)
  t.deepEqual(workEntries(dirs.store), [], `${tag} work/ is empty after the remount`)
  FILES.forEach((f, k) => {
    let got: Buffer | null = null
    try { got = fs.readFileSync(m2.m(f.rel)) } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') t.fail(`${tag} ${f.rel}: ${(e as Error).message}`) }
    const dumpPath = path.join(dumpDir, String(k))
    const dump = fs.existsSync(dumpPath) ? fs.readFileSync(dumpPath) : null
    verifyFile(t, k, f, got, dump, log, tag)
    // a host file the writer never got to write has no sibling (copy-up happens at the first write)
    if (got !== null && fs.existsSync(m2.u(f.rel))) t.truthy(chunksId(m2.u(f.rel)), `${tag} ${f.rel} is a chunked file`)
  })
  // the store works on: write, read back, stop cleanly
  fs.appendFileSync(m2.m('hb.bin'), 'after the crash')
  t.true(fs.readFileSync(m2.m('hb.bin')).subarray(-15).equals(Buffer.from('after the crash')))
  await sleep(200)
  t.notRegex(m2.stderr(), /I\/O error/, `${tag} no I/O errors after the remount: ${m2.stderr()}`)
  t.is(await m2.stop(), 0, `${tag} the remounted daemon stops cleanly`)
  const f2 = fsck(dirs.store)
  t.deepEqual((f2.json?.findings ?? []).filter(f => f.severity === 'error'), [], `${tag} fsck after the remount reports no errors`)
  t.false((f2.json?.findings ?? []).some(f => /work/.test(f.path)), `${tag} no work/ leftovers after the remount`)
  t.is(hashTree(dirs.host), hostHash, `${tag} the host tree must not change`)
}

const ctest = fuseAvailable ? test.serial : test.skip

for (const d of [0, 150, 400, 800, 1500, 2500]) {
  ctest(`lz4 store: kill -9 about ${d} ms into random writes/fsyncs of chunked files; remount keeps every fsynced byte`, async (t) => {
    await crashRun(t, d)
  })
}
