/**
 * kill -9 of the daemon in the middle of a stream of writes, fsyncs, renames, unlinks and
 * copy-ups of multi-MiB host files; then a lazy unmount and a remount of the same store.
 *
 * A writer process (a node script, its log outside the mount) creates files with known
 * content and fsyncs each, renames some, replaces host files atomically (temp + fsync +
 * rename), unlinks host files, and changes a few bytes in big host files (a data copy-up
 * each). It logs "begin" before and "done" after every operation. The daemon is killed
 * with SIGKILL after a delay (or right after a big copy-up starts). After the remount:
 * - every operation logged "done" is fully there (whole content, rename done, unlink done);
 * - an operation logged "begin" but not "done" left the old state or the new one, never a
 *   mix: a big host file is the host's bytes or the bytes with the change, never partial;
 *   a new file holds a prefix of its content;
 * - STORE/work is empty; the host tree is unchanged; the mount works and stops cleanly.
 * Seeds and delays are logged (SIBLINGFS_CRASH_SEED=<n> repeats a run).
 */
import test, { type ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fuseAvailable, hashTree, isMounted, startMount, storeInfo, workEntries, type Mount, type TreeNode } from '../helpers/sandbox.js'
import { pattern } from '../helpers/mountkit.js'
import { freshDirs, killPid, lazyUnmount, mulberry32, sleep, waitExit } from '../helpers/progkit.js'

/** Host files changed in place by the writer: big ones (copied up sparsely when the store
 *  chunks large files) and ones just under 1 MiB (copied whole: a kill can land mid-copy). */
const BIG_SIZES = [12 << 20, 960 << 10, 8 << 20, 1000 << 10]
const BIG = BIG_SIZES.length
const SMALL = 12
const MARK = 'MARKER!!'

function bigBase (j: number): Buffer { return pattern(BIG_SIZES[j], 100 + j) }
function smallHost (j: number): string { return `host small file ${j}\n`.repeat(50 + j) }

/** The writer. argv: mnt log seed. Everything it does is deterministic from (i, seed). */
const WRITER = String.raw`
const fs = require('fs')
const path = require('path')
const [mnt, log, seedArg, sizesArg] = process.argv.slice(2)
const bigSizes = JSON.parse(sizesArg)
const seed = Number(seedArg)
const logFd = fs.openSync(log, 'a')
const L = (s) => fs.writeSync(logFd, s + '\n')
const p = (rel) => path.join(mnt, rel)
function content (tag, i, n) {
  const unit = Buffer.from(tag + ':' + i + ':' + seed + ';')
  const b = Buffer.alloc(n)
  for (let o = 0; o < n; o += unit.length) unit.copy(b, o)
  return b
}
function writeAll (rel, data, flags) {
  const fd = fs.openSync(p(rel), flags)
  for (let o = 0; o < data.length; o += 4096) fs.writeSync(fd, data, o, Math.min(4096, data.length - o))
  fs.fsyncSync(fd)
  fs.closeSync(fd)
}
let bigNext = 0
const smallGen = {}
try {
  fs.mkdirSync(p('n'))
  L('mkdir n')
  for (let i = 1; ; i++) {
    const size = 1000 + ((i * 7919 + seed) % 60000)
    L('begin new ' + i + ' ' + size)
    writeAll('n/f' + i, content('f', i, size), 'wx')
    L('done new ' + i)
    if (i % 3 === 0) {
      L('begin rename ' + i)
      fs.renameSync(p('n/f' + i), p('n/g' + i))
      L('done rename ' + i)
    }
    if (i % 4 === 0) {
      const j = (i / 4) % ${SMALL}
      const gen = (smallGen[j] = (smallGen[j] || 0) + 1)
      L('begin replace ' + j + ' ' + gen)
      writeAll('h' + j + '.tmp', content('h' + j, gen, 3000 + gen * 10), 'w')
      fs.renameSync(p('h' + j + '.tmp'), p('h' + j))
      L('done replace ' + j + ' ' + gen)
    }
    if (i % 5 === 0 && i / 5 <= 4) {
      const j = i / 5
      L('begin unlink ' + j)
      fs.unlinkSync(p('d/del' + j))
      L('done unlink ' + j)
    }
    if (i % 6 === 2 && bigNext < ${BIG}) {
      const j = bigNext++
      const off = (i * 104729) % (bigSizes[j] - 16)
      L('begin big ' + j + ' ' + off)
      process.stdout.write('B' + j + '\n')
      const fd = fs.openSync(p('big' + j), 'r+')
      fs.writeSync(fd, Buffer.from('${MARK}'), 0, ${MARK.length}, off)
      fs.fsyncSync(fd)
      fs.closeSync(fd)
      L('done big ' + j + ' ' + off)
    }
    if (i > 5000) break
  }
  L('finished')
} catch (e) {
  L('error ' + (e.code || '') + ' ' + (e.syscall || '') + ' ' + (e.path || e.message))
}
`

function hostTree (): { [name: string]: TreeNode } {
  const tree: { [name: string]: TreeNode } = { d: {} }
  for (let j = 0; j < BIG; j++) tree[`big${j}`] = bigBase(j)
  for (let j = 0; j < SMALL; j++) tree[`h${j}`] = smallHost(j)
  for (let j = 1; j <= 4; j++) (tree.d as { [n: string]: TreeNode })[`del${j}`] = `delete me ${j}\n`
  return tree
}

function content (tag: string, i: number, seed: number, n: number): Buffer {
  const unit = Buffer.from(`${tag}:${i}:${seed};`)
  const b = Buffer.alloc(n)
  for (let o = 0; o < n; o += unit.length) unit.copy(b, o)
  return b
}

function readOrNull (p: string): Buffer | null {
  try { return fs.readFileSync(p) } catch (e) { if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null; throw e }
}

interface Ops {
  news: Map<number, { size: number, done: boolean }>
  renames: Map<number, boolean>
  replaces: Map<number, Array<{ gen: number, done: boolean }>>
  unlinks: Map<number, boolean>
  bigs: Map<number, { off: number, done: boolean }>
  mkdir: boolean
  tail: string
}

function parseLog (text: string): Ops {
  const o: Ops = { news: new Map(), renames: new Map(), replaces: new Map(), unlinks: new Map(), bigs: new Map(), mkdir: false, tail: '' }
  for (const line of text.split('\n')) {
    if (line === '') continue
    o.tail = line
    const [st, kind, a, b] = line.split(' ')
    if (st === 'mkdir') o.mkdir = true
    const done = st === 'done'
    if (st !== 'begin' && st !== 'done') continue
    const n = Number(a)
    if (kind === 'new') o.news.set(n, { size: done ? o.news.get(n)?.size ?? 0 : Number(b), done })
    if (kind === 'rename') o.renames.set(n, done)
    if (kind === 'unlink') o.unlinks.set(n, done)
    if (kind === 'big') o.bigs.set(n, { off: Number(b), done })
    if (kind === 'replace') {
      const l = o.replaces.get(n) ?? []
      if (done) l[l.length - 1].done = true
      else l.push({ gen: Number(b), done: false })
      o.replaces.set(n, l)
    }
  }
  return o
}

/** Checks the remounted view (and the store) against the writer's log. */
function verify (t: ExecutionContext, m: Mount, ops: Ops, seed: number): void {
  // new files and renames
  const expected = new Set<string>()
  for (const [i, nf] of ops.news) {
    const f = m.m(`n/f${i}`)
    const g = m.m(`n/g${i}`)
    const fc = readOrNull(f)
    const gc = readOrNull(g)
    const ren = ops.renames.get(i)
    if (ren === true) {
      t.is(fc, null, `f${i} renamed away (done)`)
      t.not(gc, null, `g${i} exists (rename done)`)
    } else if (ren === false) {
      t.true((fc === null) !== (gc === null), `f${i}/g${i}: exactly one name after an interrupted rename`)
    } else {
      t.is(gc, null, `g${i} never made`)
    }
    const got = fc ?? gc
    const want = content('f', i, seed, nf.size)
    if (nf.done) {
      t.not(got, null, `f${i}: fsync completed, the file must exist`)
      if (got !== null) t.true(got.equals(want), `f${i}: fsync completed, full content expected (got ${got.length} of ${want.length} bytes)`)
    } else if (got !== null) {
      t.true(got.length <= want.length && got.equals(want.subarray(0, got.length)), `f${i}: unfinished file holds a prefix of its content`)
    }
    if (fc !== null) expected.add(`f${i}`)
    if (gc !== null) expected.add(`g${i}`)
  }
  if (ops.mkdir) {
    const names = fs.readdirSync(m.m('n'))
    t.deepEqual(names.filter(n => !expected.has(n)), [], 'no unexpected names in n/')
  }
  // replaced host files
  for (let j = 0; j < SMALL; j++) {
    const got = readOrNull(m.m(`h${j}`))
    t.not(got, null, `h${j} exists`)
    const l = ops.replaces.get(j) ?? []
    const lastDone = [...l].reverse().find(x => x.done)
    const old = lastDone === undefined ? Buffer.from(smallHost(j)) : content(`h${j}`, lastDone.gen, seed, 3000 + lastDone.gen * 10)
    const pending = l.length > 0 && !l[l.length - 1].done ? l[l.length - 1] : undefined
    const next = pending === undefined ? null : content(`h${j}`, pending.gen, seed, 3000 + pending.gen * 10)
    const ok = got !== null && (got.equals(old) || (next !== null && got.equals(next)))
    t.true(ok, `h${j}: old or new content, nothing else (done gens ${l.filter(x => x.done).length}, pending ${pending?.gen ?? '-'})`)
    const tmp = readOrNull(m.m(`h${j}.tmp`))
    if (tmp !== null) {
      t.truthy(next, `h${j}.tmp only while a replace was under way`)
      if (next !== null) t.true(next.subarray(0, tmp.length).equals(tmp), `h${j}.tmp holds a prefix of the new content`)
    }
  }
  // unlinked host files
  for (let j = 1; j <= 4; j++) {
    const got = readOrNull(m.m(`d/del${j}`))
    const u = ops.unlinks.get(j)
    if (u === true) t.is(got, null, `d/del${j} unlinked (done)`)
    else if (u === undefined) t.is(got?.toString(), `delete me ${j}\n`, `d/del${j} untouched`)
    else t.true(got === null || got.toString() === `delete me ${j}\n`, `d/del${j}: there or gone`)
  }
  // big host files: the host bytes, or the bytes with the marker; never a partial copy
  for (let j = 0; j < BIG; j++) {
    const got = readOrNull(m.m(`big${j}`))
    const base = bigBase(j)
    const b = ops.bigs.get(j)
    t.not(got, null)
    if (got === null) continue
    t.is(got.length, BIG_SIZES[j], `big${j}: size`)
    const withMark = b === undefined ? null : Buffer.from(base)
    if (withMark !== null && b !== undefined) withMark.write(MARK, b.off)
    if (b?.done === true) {
      t.true(withMark !== null && got.equals(withMark), `big${j}: the change was fsynced, it must be there`)
      const origin = storeInfo(m.u(`big${j}`)).origin
      t.like(origin, { path: `big${j}` }, `big${j}: a sibling in the store`)
      t.not(origin?.data, 'host', `big${j}: the sibling's own bytes are committed`)
      if (origin?.data === 'store') {
        const up = readOrNull(m.u(`big${j}`))
        t.true(up !== null && withMark !== null && up.equals(withMark), `big${j}: the store's sibling holds all the bytes`)
      }
    } else if (b === undefined) {
      t.true(got.equals(base), `big${j}: untouched`)
    } else {
      t.true(got.equals(base) || (withMark !== null && got.equals(withMark)), `big${j}: interrupted copy-up left the old or the new bytes`)
    }
  }
}

async function crashRun (t: ExecutionContext, how: { delayMs?: number, afterBig?: { index: number, delayMs: number } }): Promise<void> {
  const seed = process.env.SIBLINGFS_CRASH_SEED !== undefined ? Number(process.env.SIBLINGFS_CRASH_SEED) : Math.floor(Math.random() * 1e9)
  const rnd = mulberry32(seed)
  const dirs = freshDirs(t, hostTree())
  const writerJs = path.join(dirs.root, 'writer.js')
  const logFile = path.join(dirs.root, 'writer.log')
  fs.writeFileSync(writerJs, WRITER)
  const m1 = await startMount({ dirs })
  t.teardown(m1.cleanup)
  const hostHash = m1.hostHash

  const writer = spawn(process.execPath, [writerJs, dirs.mnt, logFile, String(seed), JSON.stringify(BIG_SIZES)], { stdio: ['ignore', 'pipe', 'pipe'], cwd: dirs.root })
  t.teardown(() => { killPid(writer.pid) })
  let werr = ''
  writer.stderr.on('data', (d: Buffer) => { werr += d.toString() })
  let delay = 0
  const daemonPid = m1.child.pid as number
  if (how.delayMs !== undefined) {
    delay = how.delayMs + Math.floor(rnd() * 100)
    t.log(`seed ${seed}: SIGKILL ${delay} ms after the writer started`)
    await sleep(delay)
  } else if (how.afterBig !== undefined) {
    const { index, delayMs } = how.afterBig
    delay = delayMs
    t.log(`seed ${seed}: SIGKILL ${delayMs} ms after big copy-up #${index} started`)
    await new Promise<void>((resolve) => {
      let out = ''
      const timer = setTimeout(resolve, 15000)
      writer.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        if (out.includes(`B${index}\n`)) { clearTimeout(timer); setTimeout(resolve, delayMs) }
      })
    })
  }
  killPid(daemonPid, 'SIGKILL')
  const dExit = await waitExit(m1.child, 10000)
  t.is(dExit?.signal, 'SIGKILL', 'the daemon was killed')
  const wExit = await waitExit(writer, 15000)
  if (wExit === null) {
    t.log('the writer did not stop by itself; killing it')
    killPid(writer.pid)
    await waitExit(writer, 5000)
  }
  t.true(lazyUnmount(dirs.mnt) || !isMounted(dirs.mnt))
  t.false(isMounted(dirs.mnt), 'the dead mount is gone after fusermount -u -z')
  const log = fs.readFileSync(logFile, 'utf8')
  const ops = parseLog(log)
  const work = fs.readdirSync(path.join(dirs.store, 'work'))
  t.log(`writer: ${ops.news.size} files begun; last log line "${ops.tail}"; work/ before remount: [${work.join(', ')}]${werr !== '' ? `; writer stderr: ${werr}` : ''}`)
  t.is(hashTree(dirs.host), hostHash, 'the host tree must not change (after the kill)')

  // remount the same store
  const m2 = await startMount({ dirs })
  t.teardown(m2.cleanup)
  t.deepEqual(workEntries(dirs.store), [], 'work/ is empty after the remount')
  verify(t, m2, ops, seed)
  // the store is usable: change things again, and stop cleanly
  fs.writeFileSync(m2.m('after.txt'), 'after\n')
  fs.appendFileSync(m2.m('h0'), 'more\n')
  t.is(fs.readFileSync(m2.u('after.txt'), 'utf8'), 'after\n')
  t.is(await m2.stop(), 0, 'the remounted daemon stops cleanly')
  t.false(isMounted(dirs.mnt))
  t.false(fs.existsSync(path.join(dirs.store, 'lock')), 'the lock is released')
  t.is(hashTree(dirs.host), hostHash, 'the host tree must not change')
}

const ctest = fuseAvailable ? test.serial : test.skip

for (const d of [60, 250, 600, 1000, 1600]) {
  ctest(`kill -9 about ${d} ms into a stream of writes, fsyncs and renames; remount is consistent`, async (t) => {
    await crashRun(t, { delayMs: d })
  })
}

for (const [index, delayMs] of [[0, 0], [1, 0], [1, 2], [2, 3], [3, 1]]) {
  ctest(`kill -9 ${delayMs} ms after the copy-up of a ${(BIG_SIZES[index] / 1048576).toFixed(2)} MiB host file (#${index}) starts; no partial copy is visible`, async (t) => {
    await crashRun(t, { afterBig: { index, delayMs } })
  })
}
