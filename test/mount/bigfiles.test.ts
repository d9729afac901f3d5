/**
 * Large host files (SPARSE_MIN_BYTES and more) written through the mount: chunked siblings.
 * The merged view must behave exactly like a plain file (every byte, size, holes, truncate,
 * links, rename, unlink while open, remount); the store must hold only what was written.
 */
import fs from 'node:fs'
import { errOf, hashTree, sh, startMount, storeInfo, useMount } from '../helpers/sandbox.js'
import { allocated, hostUnchanged, lst, mtest, pattern, q, writtenKind } from '../helpers/mountkit.js'

const SIZE = 3 * (1 << 20) + 12345 // not a multiple of any chunk size
const host = (): { [name: string]: Buffer | { [name: string]: Buffer } } => ({ 'big.bin': pattern(SIZE, 11), 'big2.bin': pattern(SIZE, 12), d: { 'inner.bin': pattern(SIZE, 13) } })

function pwrite (p: string, at: number, data: Buffer | string): void {
  const fd = fs.openSync(p, 'r+')
  try { fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data, 0, data.length, at) } finally { fs.closeSync(fd) }
}

mtest('writes across chunk boundaries: every byte right, store holds only written chunks', async (t) => {
  const m = await useMount(t, { host: host() })
  const want = pattern(SIZE, 11)
  const edits: Array<[number, Buffer]> = [
    [0, Buffer.from('HEAD')],
    [65536 - 3, Buffer.from('ACROSS-64K')],
    [(1 << 20) - 5, pattern(300000, 99)], // spans many chunks
    [SIZE - 4, Buffer.from('TAIL')],
    [SIZE - 2, Buffer.from('PAST-EOF')] // extends the file
  ]
  for (const [at, b] of edits) pwrite(m.m('big.bin'), at, b)
  let expect = Buffer.concat([want, Buffer.alloc(6)])
  for (const [at, b] of edits) b.copy(expect, at)
  expect = expect.subarray(0, SIZE + 6)
  const got = fs.readFileSync(m.m('big.bin'))
  t.is(got.length, expect.length)
  t.true(got.equals(expect))
  t.is(lst(m.m('big.bin')).size, BigInt(SIZE + 6))
  t.like(storeInfo(m.u('big.bin')).origin, { path: 'big.bin', data: writtenKind(SIZE) })
  if (writtenKind(SIZE) === 'chunks') t.true(allocated(m.u('big.bin')) < 2 * (300000 + 4 * 65536) + 65536, `${allocated(m.u('big.bin'))} bytes stored`)
  // unaligned reads
  const fd = fs.openSync(m.m('big.bin'), 'r')
  for (const [at, len] of [[65530, 20], [1 << 20, 70000], [SIZE - 10, 100], [SIZE + 100, 10]]) {
    const b = Buffer.alloc(len)
    const n = fs.readSync(fd, b, 0, len, at)
    t.true(b.subarray(0, n).equals(expect.subarray(at, at + len)), `read ${at}+${len}`)
  }
  fs.closeSync(fd)
  t.true(fs.readFileSync(m.m('big2.bin')).equals(pattern(SIZE, 12)), 'other files untouched')
  hostUnchanged(t, m)
})

mtest('truncate of a large file: shrink then extend reads zeros, not the host bytes', async (t) => {
  const m = await useMount(t, { host: host() })
  fs.truncateSync(m.m('big.bin'), 100)
  t.is(lst(m.m('big.bin')).size, 100n)
  fs.truncateSync(m.m('big.bin'), SIZE)
  const got = fs.readFileSync(m.m('big.bin'))
  t.is(got.length, SIZE)
  t.true(got.subarray(0, 100).equals(pattern(SIZE, 11).subarray(0, 100)))
  t.true(got.subarray(100).equals(Buffer.alloc(SIZE - 100)), 'the cut part stays zeros')
  // ftruncate in the middle of a chunk, then write beyond: hole reads zeros
  const fd = fs.openSync(m.m('big2.bin'), 'r+')
  fs.ftruncateSync(fd, 70000)
  fs.writeSync(fd, Buffer.from('Z'), 0, 1, 200000)
  fs.closeSync(fd)
  const g2 = fs.readFileSync(m.m('big2.bin'))
  t.is(g2.length, 200001)
  t.true(g2.subarray(0, 70000).equals(pattern(SIZE, 12).subarray(0, 70000)))
  t.true(g2.subarray(70000, 200000).equals(Buffer.alloc(130000)))
  t.is(g2[200000], 0x5a)
  // O_TRUNC
  fs.writeFileSync(m.m('d/inner.bin'), 'small now')
  t.is(fs.readFileSync(m.m('d/inner.bin'), 'utf8'), 'small now')
  t.is(lst(m.m('d/inner.bin')).size, 9n)
  hostUnchanged(t, m)
})

mtest('large file: rename, unlink while open, readers opened before the write', async (t) => {
  const m = await useMount(t, { host: host() })
  const reader = fs.openSync(m.m('big.bin'), 'r')
  const want = pattern(SIZE, 11)
  pwrite(m.m('big.bin'), 70000, 'WRITTEN!')
  want.write('WRITTEN!', 70000)
  const b = Buffer.alloc(8)
  fs.readSync(reader, b, 0, 8, 70000)
  t.is(b.toString(), 'WRITTEN!', 'a reader opened before the copy-up sees it')
  fs.readSync(reader, b, 0, 8, SIZE - 8)
  t.true(b.equals(want.subarray(SIZE - 8)))
  fs.closeSync(reader)
  t.true(fs.readFileSync(m.m('big.bin')).equals(want))
  // rename keeps the data
  fs.renameSync(m.m('big.bin'), m.m('d/moved.bin'))
  t.true(fs.readFileSync(m.m('d/moved.bin')).equals(want))
  t.is(lst(m.m('d/moved.bin')).size, BigInt(SIZE))
  // unlink while open: read and write through the descriptor
  const fd = fs.openSync(m.m('big2.bin'), 'r+')
  fs.writeSync(fd, Buffer.from('BEFORE'), 0, 6, 1 << 20)
  fs.unlinkSync(m.m('big2.bin'))
  t.is(errOf(() => fs.lstatSync(m.m('big2.bin'))), 'ENOENT')
  fs.writeSync(fd, Buffer.from('AFTER'), 0, 5, 2 << 20)
  const c = Buffer.alloc(6)
  fs.readSync(fd, c, 0, 6, 1 << 20)
  t.is(c.toString(), 'BEFORE')
  fs.readSync(fd, c, 0, 5, 2 << 20)
  t.is(c.subarray(0, 5).toString(), 'AFTER')
  t.is(fs.fstatSync(fd).size, SIZE)
  const h = Buffer.alloc(4)
  fs.readSync(fd, h, 0, 4, 0)
  t.true(h.equals(pattern(SIZE, 12).subarray(0, 4)), 'unwritten chunks still read from the host')
  fs.closeSync(fd)
  t.like(storeInfo(m.u('big2.bin')), { whiteout: true })
  hostUnchanged(t, m)
})

mtest('a large hard-linked host file written through one name keeps host bytes, size, and the write across a remount', async (t) => {
  const m = await useMount(t, { host: host(), args: ['--attr-timeout', '0'] })
  fs.linkSync(m.m('big.bin'), m.m('big.link'))
  pwrite(m.m('big.link'), 70000, 'VIA-LINK')
  const want = pattern(SIZE, 11)
  want.write('VIA-LINK', 70000)
  t.is(lst(m.m('big.link')).size, BigInt(SIZE), 'size of the name written through')
  t.is(lst(m.m('big.bin')).size, BigInt(SIZE), 'size of the other name')
  t.true(fs.readFileSync(m.m('big.bin')).equals(want), 'every byte through the other name')
  t.true(fs.readFileSync(m.m('big.link')).equals(want), 'every byte through the name written')
  t.like(storeInfo(m.u('big.bin')).origin, { data: writtenKind(SIZE) })
  t.is(lst(m.u('big.bin')).ino, lst(m.u('big.link')).ino, 'one store inode')
  t.is(await m.stop(), 0)
  const m2 = await startMount({ dirs: { root: m.root, host: m.host, mnt: m.mnt, store: m.store } })
  t.teardown(m2.stop)
  t.true(fs.readFileSync(m.m('big.bin')).equals(want), 'the write survives a remount')
  await m2.stop()
  t.is(hashTree(m.host), m.hostHash)
})

mtest('large file: shared mmap writes, cp, and a remount keep every byte', async (t) => {
  const m = await useMount(t, { host: host() })
  const r = sh(`python3 -c "
import mmap
f = open('${m.m('big.bin')}', 'r+b')
mm = mmap.mmap(f.fileno(), 0)
mm[100000:100005] = b'MMAP!'
mm.flush(); mm.close(); f.close()
"`)
  t.is(r.status, 0, r.stderr)
  const want = pattern(SIZE, 11)
  want.write('MMAP!', 100000)
  t.true(fs.readFileSync(m.m('big.bin')).equals(want))
  t.is(sh(`cp ${q(m.m('big.bin'))} ${q(m.m('copy.bin'))}`).status, 0)
  t.true(fs.readFileSync(m.m('copy.bin')).equals(want))
  pwrite(m.m('d/inner.bin'), SIZE + 65536 * 3, 'FAR') // leaves a hole past the host size
  t.is(await m.stop(), 0)
  const m2 = await startMount({ dirs: { root: m.root, host: m.host, mnt: m.mnt, store: m.store } })
  t.teardown(m2.stop)
  t.true(fs.readFileSync(m.m('big.bin')).equals(want))
  t.true(fs.readFileSync(m.m('copy.bin')).equals(want))
  const inner = fs.readFileSync(m.m('d/inner.bin'))
  t.is(inner.length, SIZE + 65536 * 3 + 3)
  t.true(inner.subarray(0, SIZE).equals(pattern(SIZE, 13)))
  t.true(inner.subarray(SIZE, SIZE + 65536 * 3).equals(Buffer.alloc(65536 * 3)))
  t.is(inner.subarray(SIZE + 65536 * 3).toString(), 'FAR')
  await m2.stop()
  t.is(hashTree(m.host), m.hostHash)
})
