/**
 * Chunked siblings read in C (patched fuse-native: sfs_chunked_read, serveChunked,
 * setChunkedOpen, setMapsDir). In an lz4 store every file is chunked; the stat, open, read
 * and close of one made in the sandbox, in a directory made there, are answered in C from
 * the map and data files as they are on disk, and JS only hears of the open and the close
 * as events. A chunked file JS opens (a copy-up of a host file) has its reads served in C
 * too. What C cannot check (a chunk whose CRC does not match) still reaches JS, which
 * answers EIO and logs the file, as before; a handle C opened keeps reading what writers
 * through other handles wrote. Each case checks the view (read by this process and by
 * separate ones), the store (the files are chunked, the data file is not the bytes) and the
 * host (unchanged).
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { ExecutionContext } from 'ava'
import { errOf, sh, startMount, useMount, type Mount } from '../helpers/sandbox.js'
import { hostUnchanged, mtest, q } from '../helpers/mountkit.js'
import { CS, blockPattern, chunksId, pwrite, readMap, slotOffset, textTree, waitForLine } from '../helpers/sparsekit.js'

const LZ4 = ['--compress', 'lz4']
const OPTRACE = path.join(__dirname, '..', 'helpers', 'optrace.js')
const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex')

/** Files of every shape a chunk read meets: empty, one byte, chunk edges, compressible
 *  text, random bytes (stored raw), a hole, and a short last chunk. */
function shapes (): Map<string, Buffer> {
  const text = Buffer.concat([...textTree(11, 400000).values()])
  const sparse = Buffer.alloc(3 * CS + 123)
  sparse.write('head', 0)
  sparse.write('tail', 3 * CS + 100)
  return new Map<string, Buffer>([
    ['empty', Buffer.alloc(0)],
    ['one', Buffer.from('x')],
    ['edge-under', text.subarray(0, CS - 1)],
    ['edge', text.subarray(0, CS)],
    ['edge-over', text.subarray(0, CS + 1)],
    ['text', text.subarray(0, 5 * CS + 4321)],
    ['random', crypto.randomBytes(3 * CS + 17)],
    ['mixed', Buffer.concat([text.subarray(0, CS), crypto.randomBytes(CS), text.subarray(CS, 2 * CS + 999)])],
    ['sparse', sparse]
  ])
}

/** Writes the shapes into `dir` of the view; the hole of `sparse` is never written. */
function writeShapes (m: Mount, dir: string, files: Map<string, Buffer>): void {
  for (const [name, b] of files) {
    const p = m.m(`${dir}/${name}`)
    if (name === 'sparse') {
      fs.writeFileSync(p, '')
      pwrite(p, 0, b.subarray(0, 4))
      pwrite(p, 3 * CS + 100, b.subarray(3 * CS + 100))
    } else {
      fs.writeFileSync(p, b)
    }
  }
}

/** A remount of `m`'s store whose daemon logs every operation that reaches JS. */
async function tracedRemount (t: ExecutionContext, m: Mount): Promise<{ m2: Mount, jsOps: () => string[] }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'siblingfs-oplog-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const log = path.join(dir, 'ops')
  const m2 = await startMount({ dirs: m, args: LZ4, env: { NODE_OPTIONS: `--require ${OPTRACE}`, SIBLINGFS_OPLOG: log } })
  t.teardown(() => m2.cleanup())
  let seen = 0
  const jsOps = (): string[] => {
    const lines = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(l => l !== '') : []
    const fresh = lines.slice(seen)
    seen = lines.length
    return fresh
  }
  return { m2, jsOps }
}

/** The view's files of `dir` as sha256 per name, read by a separate process (sha256sum). */
function shaByProcess (m: Mount, dir: string, names: string[]): Map<string, string> {
  const r = sh(`cd ${q(m.m(dir))} && sha256sum ${names.map(q).join(' ')}`)
  if (r.status !== 0) throw new Error(`sha256sum failed: ${r.stderr}`)
  return new Map(r.stdout.trim().split('\n').map(l => { const [h, n] = l.split(/\s+/); return [n, h] }))
}

mtest('lz4 store: stat, open, read and close of files made in the sandbox are answered in C, byte for byte and size for size', async (t) => {
  const m = await useMount(t, { host: { 'h.txt': 'host file\n' }, args: LZ4 })
  const files = shapes()
  fs.mkdirSync(m.m('made'))
  writeShapes(m, 'made', files)
  // store: every file chunked, its data file not its bytes
  for (const [name, b] of files) {
    const id = chunksId(m.u(`made/${name}`))
    t.truthy(id, `${name} is a chunked sibling`)
    t.is(readMap(m.store, id as string).size, b.length, `${name}: the map's size`)
  }
  t.not(fs.statSync(m.u('made/text')).size, files.get('text')?.length, 'the data file holds slots, not the bytes')
  t.is(await m.stop(), 0)

  // A fresh mount: nothing in the page cache, every byte comes from the daemon.
  const { m2, jsOps } = await tracedRemount(t, m)
  const names = [...files.keys()]
  t.deepEqual(fs.readdirSync(m2.m('made')).sort(), names.slice().sort(), 'the listing (JS, once)')
  jsOps()
  const st = sh(`cd ${q(m2.m('made'))} && stat -c '%n %s' ${names.map(q).join(' ')}`)
  t.is(st.stdout, names.map(n => `${n} ${files.get(n)?.length ?? -1}\n`).join(''), st.stderr)
  const got = shaByProcess(m2, 'made', names)
  for (const [name, b] of files) t.is(got.get(name), sha(b), `${name} reads back exactly`)
  // odd offsets and lengths, across chunk edges, past the end, through one handle
  const text = files.get('mixed') as Buffer
  const fd = fs.openSync(m2.m('made/mixed'), 'r')
  try {
    for (const [at, len] of [[0, 1], [CS - 3, 7], [CS - 1, CS + 2], [2 * CS + 5, 100000], [text.length - 1, 10], [text.length, 5], [text.length + CS, 5]]) {
      const buf = Buffer.alloc(len)
      const n = fs.readSync(fd, buf, 0, len, at)
      const want = text.subarray(Math.min(at, text.length), Math.min(at + len, text.length))
      t.is(n, want.length, `read ${at}+${len}: length`)
      t.true(buf.subarray(0, n).equals(want), `read ${at}+${len}: bytes`)
    }
    t.is(fs.fstatSync(fd).size, text.length, 'fstat of the open file')
  } finally { fs.closeSync(fd) }
  // A close's RELEASE reaches the daemon after close() returns: wait for the last events.
  const js = jsOps()
  for (let waited = 0; js.filter(l => l === 'release -').length < names.length + 1 && waited < 10000; waited += 50) {
    await new Promise(resolve => setTimeout(resolve, 50))
    js.push(...jsOps())
  }
  const inJs = js.filter(l => /^(read|getattr|fgetattr|open|release) \/made\//.test(l))
  t.deepEqual(inJs, [], 'no stat, open, read or close reached the JS handlers')
  t.true(js.filter(l => l === 'open -').length >= names.length, 'JS heard of every open as an event')
  t.is(m2.stderr().split('\n').filter(l => /cannot open|I\/O error/.test(l)).length, 0, m2.stderr())
  // store unchanged by reading; host unchanged
  for (const [name, b] of files) t.is(readMap(m2.store, chunksId(m2.u(`made/${name}`)) as string).size, b.length)
  hostUnchanged(t, m2)
})

mtest('lz4 store: a damaged chunk of a file made in the sandbox still answers EIO with a log line; its other chunks and files read', async (t) => {
  const m = await useMount(t, { host: { 'h.txt': 'host file\n' }, args: LZ4 })
  const files = shapes()
  fs.mkdirSync(m.m('made'))
  writeShapes(m, 'made', files)
  const id = chunksId(m.u('made/text')) as string
  const map = readMap(m.store, id)
  const e = map.entries.find(x => x.c === 2)
  if (e === undefined) { t.fail('chunk 2 of text is stored'); return }
  t.is(await m.stop(), 0)
  const data = fs.openSync(m.u('made/text'), 'r+')
  fs.writeSync(data, Buffer.from('DAMAGE'), 0, 6, slotOffset(2, e.slot, map.chunkSize) + 10)
  fs.closeSync(data)
  const { m2, jsOps } = await tracedRemount(t, m)
  fs.readdirSync(m2.m('made'))
  const want = files.get('text') as Buffer
  const fd = fs.openSync(m2.m('made/text'), 'r')
  try {
    const b = Buffer.alloc(CS)
    t.is(fs.readSync(fd, b, 0, CS, CS), CS)
    t.true(b.equals(want.subarray(CS, 2 * CS)), 'chunk 1 reads')
    t.is(errOf(() => fs.readSync(fd, b, 0, 100, 2 * CS + 50)), 'EIO', 'chunk 2 is damaged: EIO')
    t.is(fs.readSync(fd, b, 0, CS, 3 * CS), CS)
    t.true(b.equals(want.subarray(3 * CS, 4 * CS)), 'chunk 3 reads')
  } finally { fs.closeSync(fd) }
  t.truthy(await waitForLine(m2.stderr, l => /I\/O error in \/made\/text/.test(l)), `the daemon names the file: ${m2.stderr()}`)
  t.true(jsOps().some(l => l.startsWith('read ')), 'the damaged chunk was read by JS')
  t.is(sha(fs.readFileSync(m2.m('made/random'))), sha(files.get('random') as Buffer), 'other files read')
  hostUnchanged(t, m2)
})

mtest('lz4 store: a reader opened in C, and readers of a chunked copy-up JS opened, see every write made through other handles', async (t) => {
  const host = blockPattern(2 * CS + 500, 5)
  const m = await useMount(t, { host: { 'big.bin': host }, args: LZ4 })
  fs.mkdirSync(m.m('made'))
  let model = Buffer.from(Buffer.concat([...textTree(3, 200000).values()]).subarray(0, 3 * CS))
  fs.writeFileSync(m.m('made/f'), model)
  t.is(await m.stop(), 0)
  const { m2, jsOps } = await tracedRemount(t, m)
  fs.readdirSync(m2.m('made'))
  // Separate processes read, so each read of a page the kernel does not hold reaches the
  // daemon; the page cache is dropped between steps (a write through another handle
  // updates it, which is not what this checks).
  const drop = (): void => { fs.writeFileSync('/proc/sys/vm/drop_caches', '1') }
  const reader = fs.openSync(m2.m('made/f'), 'r') // opened in C, held across the writes
  const check = (what: string): void => {
    drop()
    const b = Buffer.alloc(model.length + 10)
    const n = fs.readSync(reader, b, 0, b.length, 0)
    t.is(n, model.length, `${what}: size seen by the held reader`)
    t.true(b.subarray(0, n).equals(model), `${what}: bytes seen by the held reader`)
    drop()
    t.is(sha(fs.readFileSync(m2.m('made/f'))), sha(model), `${what}: a new reader`)
  }
  try {
    check('as written')
    const w = fs.openSync(m2.m('made/f'), 'r+')
    try {
      const edits: Array<[number, Buffer]> = [[10, Buffer.from('in chunk 0')], [CS - 2, Buffer.from('across an edge')], [3 * CS + 100, Buffer.from('past the end, a hole before')]]
      for (const [at, b] of edits) {
        fs.writeSync(w, b, 0, b.length, at)
        const grown = Buffer.alloc(Math.max(model.length, at + b.length))
        model.copy(grown)
        b.copy(grown, at)
        model = grown
        check(`after a write at ${at}`)
      }
      fs.ftruncateSync(w, CS + 7)
      model = model.subarray(0, CS + 7)
      check('after a shrink')
    } finally { fs.closeSync(w) }
  } finally { fs.closeSync(reader) }
  // A chunked copy-up of a host file (JS opens it; its reads are served in C).
  pwrite(m2.m('big.bin'), CS + 3, 'changed')
  const want = Buffer.from(host)
  want.write('changed', CS + 3)
  drop()
  jsOps()
  t.is(sha(fs.readFileSync(m2.m('big.bin'))), sha(want), 'the copy-up reads: written chunk and host chunks')
  const js = jsOps()
  t.true(js.some(l => l === 'open /big.bin'), `JS opened the copy-up (JS saw: ${js.join(', ')})`)
  t.false(js.some(l => l.startsWith('read ')), `its reads did not reach JS (JS saw: ${js.join(', ')})`)
  t.truthy(chunksId(m2.u('big.bin')), 'big.bin is a chunked sibling')
  hostUnchanged(t, m2)
})

mtest('lz4 store: opening a file made in the sandbox asks the kernel to read its data file ahead (its chunks sit in slots the kernel\'s own readahead does not follow)', async (t) => {
  const m = await useMount(t, { host: { 'h.txt': 'host file\n' }, args: LZ4 })
  fs.mkdirSync(m.m('made'))
  const data = Buffer.concat([...textTree(1, 6 * CS).values()])
  fs.writeFileSync(m.m('made/f.json'), data)
  t.is(await m.stop(), 0)
  const m2 = await startMount({ dirs: m, args: LZ4 })
  t.teardown(() => m2.cleanup())
  sh(`ls ${q(m2.m('made'))} > /dev/null`)
  const resident = (): number => Number(sh(`fincore -nb -o RES ${q(m2.u('made/f.json'))}`).stdout.trim())
  // Global: other tests may fill the cache between these lines; a few tries, each from a
  // dropped cache.
  let ahead = false
  for (let tries = 0; tries < 4 && !ahead; tries++) {
    sh('sync')
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3')
    const before = resident()
    const fd = fs.openSync(m2.m('made/f.json'), 'r') // no read yet
    for (let i = 0; i < 20 && resident() === 0; i++) await new Promise(resolve => setTimeout(resolve, 25))
    const after = resident()
    fs.closeSync(fd)
    ahead = before === 0 && after > 0
    if (!ahead) t.log(`try ${tries}: data file resident before ${before}, after the open ${after}`)
  }
  t.true(ahead, 'the data file was being read before anything was read through the handle')
  t.true(fs.readFileSync(m2.m('made/f.json')).equals(data), 'and the file reads back byte for byte')
  hostUnchanged(t, m)
})
