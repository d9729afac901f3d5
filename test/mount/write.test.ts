/**
 * Writing: open for write / O_TRUNC / O_APPEND / O_CREAT / O_EXCL (copy-up once),
 * concurrent writers from several processes, read/write/truncate/ftruncate/fsync, and a
 * file unlinked while open.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { errOf, sh, storeInfo, useMount, workEntries } from '../helpers/sandbox.js'
import { chunksId } from '../helpers/sparsekit.js'
import { kernelAtLeast } from '../../src/fuse/mount.js'
import { allocated, fixture, fuseHidden, hostUnchanged, lst, mtest, pattern, walk, writtenKind } from '../helpers/mountkit.js'

mtest('the first write after an open for write copies up once; the sibling holds the bytes (origin data "store")', async (t) => {
  const m = await useMount(t, { host: fixture() })
  const fd = fs.openSync(m.m('a.txt'), 'r+')
  t.false(storeInfo(m.u('a.txt')).exists, 'nothing copied at open')
  t.is(fs.readFileSync(fd, 'utf8'), 'alpha\n', 'reads through the handle before the first write: the host bytes')
  t.false(storeInfo(m.u('a.txt')).exists, 'nothing copied by reading')
  fs.writeSync(fd, 'A', 0)
  t.is(storeInfo(m.u('a.txt')).origin?.data, 'store', 'copied up at the first write')
  fs.closeSync(fd)
  t.is(fs.readFileSync(m.m('a.txt'), 'utf8'), 'Alpha\n')
  const info = storeInfo(m.u('a.txt'))
  t.like(info, { exists: true, whiteout: false })
  t.like(info.origin, { path: 'a.txt', data: 'store' })
  t.is(fs.readFileSync(m.u('a.txt'), 'utf8'), 'Alpha\n')
  const storeIno = lst(m.u('a.txt')).ino
  // a second open for write does not copy again
  const fd2 = fs.openSync(m.m('a.txt'), 'r+')
  fs.writeSync(fd2, 'L', 1)
  fs.closeSync(fd2)
  t.is(lst(m.u('a.txt')).ino, storeIno, 'same sibling')
  t.is(fs.readFileSync(m.m('a.txt'), 'utf8'), 'ALpha\n')
  // the mode and owner came along
  const hs = lst(m.h('a.txt'))
  const us = lst(m.u('a.txt'))
  t.is(us.mode, hs.mode)
  t.is(us.uid, hs.uid)
  // a large file: every byte right through the mount; chunked, the store holds only what was written
  const fd3 = fs.openSync(m.m('big.bin'), 'r+')
  fs.writeSync(fd3, Buffer.from('XYZ'), 0, 3, 1000)
  fs.closeSync(fd3)
  const want = pattern(1 << 20, 7)
  want.write('XYZ', 1000)
  t.true(fs.readFileSync(m.m('big.bin')).equals(want))
  const kind = writtenKind(1 << 20)
  t.like(storeInfo(m.u('big.bin')).origin, { path: 'big.bin', data: kind })
  if (kind === 'store') t.true(fs.readFileSync(m.u('big.bin')).equals(want))
  else t.true(allocated(m.u('big.bin')) < (1 << 19), `chunked: not a full copy (${allocated(m.u('big.bin'))} bytes allocated)`)
  t.deepEqual(walk(m.upper), ['a.txt', 'big.bin'])
  hostUnchanged(t, m)
})

mtest('O_TRUNC replaces the content; the sibling does not carry the old bytes', async (t) => {
  const m = await useMount(t, { host: fixture() })
  fs.writeFileSync(m.m('b.txt'), 'new') // O_WRONLY|O_CREAT|O_TRUNC
  t.is(fs.readFileSync(m.m('b.txt'), 'utf8'), 'new')
  t.is(lst(m.m('b.txt')).size, 3n)
  t.like(storeInfo(m.u('b.txt')).origin, { path: 'b.txt', data: 'store' })
  t.is(fs.readFileSync(m.u('b.txt'), 'utf8'), 'new')
  // truncate-only open, no write
  fs.closeSync(fs.openSync(m.m('big.bin'), fs.constants.O_WRONLY | fs.constants.O_TRUNC))
  t.is(lst(m.m('big.bin')).size, 0n)
  t.deepEqual(fs.readFileSync(m.m('big.bin')), Buffer.alloc(0))
  t.is(storeInfo(m.u('big.bin')).origin?.data, writtenKind(1 << 20))
  t.true(allocated(m.u('big.bin')) < (1 << 16), 'no old bytes kept')
  hostUnchanged(t, m)
})

mtest('O_APPEND writes at the end, whatever the position asked', async (t) => {
  const m = await useMount(t, { host: fixture() })
  fs.appendFileSync(m.m('a.txt'), 'more\n')
  t.is(fs.readFileSync(m.m('a.txt'), 'utf8'), 'alpha\nmore\n')
  const fd = fs.openSync(m.m('a.txt'), 'a')
  fs.writeSync(fd, 'x')
  fs.writeSync(fd, 'y', 0) // pwrite on an O_APPEND descriptor appends on Linux
  fs.closeSync(fd)
  t.is(fs.readFileSync(m.m('a.txt'), 'utf8'), 'alpha\nmore\nxy')
  t.is(fs.readFileSync(m.u('a.txt'), 'utf8'), 'alpha\nmore\nxy')
  t.like(storeInfo(m.u('a.txt')).origin, { data: 'store' })
  // 'a+' reads from the start and appends
  const fd2 = fs.openSync(m.m('dir/one.txt'), 'a+')
  const b = Buffer.alloc(2)
  t.is(fs.readSync(fd2, b, 0, 2, 0), 2)
  t.is(b.toString(), '1\n')
  fs.writeSync(fd2, 'Z')
  fs.closeSync(fd2)
  t.is(fs.readFileSync(m.m('dir/one.txt'), 'utf8'), '1\nZ')
  hostUnchanged(t, m)
})

mtest('O_CREAT makes a store-only file with the asked mode; O_EXCL refuses existing names', async (t) => {
  const m = await useMount(t, { host: fixture() })
  const old = process.umask(0o022)
  try {
    const fd = fs.openSync(m.m('c.txt'), 'w', 0o640)
    fs.writeSync(fd, 'created')
    fs.closeSync(fd)
  } finally { process.umask(old) }
  t.is(fs.readFileSync(m.m('c.txt'), 'utf8'), 'created')
  t.is(lst(m.m('c.txt')).mode & 0o7777n, 0o640n)
  t.like(storeInfo(m.u('c.txt')), { exists: true, origin: null, whiteout: false })
  t.is(lst(m.u('c.txt')).mode & 0o7777n, 0o640n)
  // O_EXCL
  t.is(errOf(() => fs.openSync(m.m('a.txt'), 'wx')), 'EEXIST', 'host file')
  t.false(storeInfo(m.u('a.txt')).exists, 'no sibling for a refused O_EXCL')
  t.is(errOf(() => fs.openSync(m.m('c.txt'), 'wx')), 'EEXIST', 'store file')
  t.is(errOf(() => fs.openSync(m.m('dir'), 'wx')), 'EEXIST', 'directory')
  t.is(errOf(() => fs.openSync(m.m('dangling'), 'wx')), 'EEXIST', 'O_EXCL does not follow a dangling link')
  t.is(errOf(() => fs.closeSync(fs.openSync(m.m('d.txt'), 'wx'))), 'OK')
  t.is(errOf(() => fs.openSync(m.m('d.txt'), 'wx')), 'EEXIST')
  // O_CREAT without O_EXCL on an existing host file opens it (no truncation with 'a')
  fs.closeSync(fs.openSync(m.m('b.txt'), 'a'))
  t.is(fs.readFileSync(m.m('b.txt'), 'utf8'), 'bravo\n')
  // O_CREAT over a deleted host name: a new, empty file (no host bytes come back)
  fs.unlinkSync(m.m('dir/two.txt'))
  fs.writeFileSync(m.m('dir/two.txt'), '')
  t.is(fs.readFileSync(m.m('dir/two.txt'), 'utf8'), '')
  t.like(storeInfo(m.u('dir/two.txt')), { exists: true, whiteout: false, origin: null })
  // O_CREAT in a missing directory
  t.is(errOf(() => fs.openSync(m.m('nodir/x'), 'w')), 'ENOENT')
  t.is(errOf(() => fs.openSync(m.m('a.txt/x'), 'w')), 'ENOTDIR')
  hostUnchanged(t, m)
})

mtest('concurrent opens for write from several processes: one sibling, no lost bytes', async (t) => {
  const size = 16 << 20
  const host = { 'shared.bin': pattern(size, 3) }
  const m = await useMount(t, { host })
  const n = 8
  const script = `
    const fs = require('fs')
    const [file, i, at] = process.argv.slice(1)
    while (Date.now() < Number(at)) {}
    const fd = fs.openSync(file, 'r+')
    const b = Buffer.alloc(4096, 65 + Number(i))
    fs.writeSync(fd, b, 0, b.length, Number(i) * 1048576 + 12345)
    fs.closeSync(fd)
  `
  const at = Date.now() + 400
  const codes = await Promise.all(Array.from({ length: n }, (_, i) => new Promise<number | null>((resolve) => {
    const c = spawn(process.execPath, ['-e', script, m.m('shared.bin'), String(i), String(at)], { stdio: 'inherit' })
    c.on('exit', resolve)
  })))
  t.deepEqual(codes, Array(n).fill(0))
  const want = pattern(size, 3)
  for (let i = 0; i < n; i++) want.fill(65 + i, i * 1048576 + 12345, i * 1048576 + 12345 + 4096)
  t.true(fs.readFileSync(m.m('shared.bin')).equals(want), 'merged view has every write and the rest of the host bytes')
  const kind = writtenKind(size)
  if (kind === 'store') t.true(fs.readFileSync(m.u('shared.bin')).equals(want), 'the store too')
  else t.true(allocated(m.u('shared.bin')) < size / 4, 'chunked: only the written chunks are stored')
  t.like(storeInfo(m.u('shared.bin')).origin, { path: 'shared.bin', data: kind })
  t.deepEqual(walk(m.upper), ['shared.bin'], 'exactly one sibling')
  t.deepEqual(workEntries(m.store).filter(n => !n.startsWith('intent-')), [], 'no copy-up leftovers')
  hostUnchanged(t, m)
})

mtest('a rename racing a data copy-up: the write lands in the renamed file or fails cleanly', async (t) => {
  const size = 48 << 20
  const m = await useMount(t, { host: { 'huge.bin': pattern(size, 5) } })
  const script = `
    const fs = require('fs')
    try {
      const fd = fs.openSync(process.argv[1], 'r+')
      fs.writeSync(fd, 'WRITTEN', 10)
      fs.closeSync(fd)
      console.log('wrote')
    } catch (e) { console.log(e.code) }
  `
  const child = spawn(process.execPath, ['-e', script, m.m('huge.bin')], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve())) // after stdout is drained
  await new Promise(resolve => setTimeout(resolve, 80))
  fs.renameSync(m.m('huge.bin'), m.m('renamed.bin'))
  await exited
  t.is(errOf(() => fs.lstatSync(m.m('huge.bin'))), 'ENOENT')
  const want = pattern(size, 5)
  const got = fs.readFileSync(m.m('renamed.bin'))
  if (out.trim() === 'wrote') want.write('WRITTEN', 10)
  else t.is(out.trim(), 'ENOENT')
  t.true(got.equals(want), 'renamed file: host bytes, plus the write if it happened')
  t.like(storeInfo(m.u('renamed.bin')), { exists: true, origin: { path: 'huge.bin' } })
  t.like(storeInfo(m.u('huge.bin')), { whiteout: true })
  t.deepEqual(workEntries(m.store).filter(n => !n.startsWith('intent-')), [])
  hostUnchanged(t, m)
})

mtest('read, write, truncate, ftruncate, fsync through the mount', async (t) => {
  const m = await useMount(t, { host: fixture() })
  const want = pattern(1 << 20, 7)
  const fd = fs.openSync(m.m('big.bin'), 'r+')
  fs.writeSync(fd, Buffer.from('hello'), 0, 5, 500000)
  want.write('hello', 500000)
  const b = Buffer.alloc(9)
  t.is(fs.readSync(fd, b, 0, 9, 499998), 9)
  t.true(b.equals(want.subarray(499998, 500007)))
  fs.fsyncSync(fd)
  fs.fdatasyncSync(fd)
  // write beyond EOF leaves a hole of zeros
  fs.writeSync(fd, Buffer.from('end'), 0, 3, (1 << 20) + 100)
  t.is(fs.fstatSync(fd).size, (1 << 20) + 103)
  const hole = Buffer.alloc(100)
  fs.readSync(fd, hole, 0, 100, 1 << 20)
  t.true(hole.equals(Buffer.alloc(100)))
  // ftruncate shrink and extend
  fs.ftruncateSync(fd, 1000)
  t.is(fs.fstatSync(fd).size, 1000)
  fs.ftruncateSync(fd, 3000)
  const tail = Buffer.alloc(2000)
  t.is(fs.readSync(fd, tail, 0, 2000, 1000), 2000)
  t.true(tail.equals(Buffer.alloc(2000)), 'extended with zeros')
  fs.closeSync(fd)
  const got = fs.readFileSync(m.m('big.bin'))
  t.is(got.length, 3000)
  t.true(got.subarray(0, 1000).equals(want.subarray(0, 1000)))
  t.true(got.subarray(1000).equals(Buffer.alloc(2000)))
  if (writtenKind(1 << 20) === 'store') t.true(fs.readFileSync(m.u('big.bin')).equals(got))
  // the same on a small file, whose sibling holds all its bytes
  const fd2 = fs.openSync(m.m('dir/sub/deep.txt'), 'r+')
  fs.writeSync(fd2, 'D', 0)
  fs.ftruncateSync(fd2, 10)
  fs.fsyncSync(fd2)
  fs.closeSync(fd2)
  t.is(fs.readFileSync(m.m('dir/sub/deep.txt'), 'latin1'), 'Deep\n\0\0\0\0\0')
  t.is(fs.readFileSync(m.u('dir/sub/deep.txt'), 'latin1'), 'Deep\n\0\0\0\0\0')
  t.like(storeInfo(m.u('dir/sub/deep.txt')).origin, { path: 'dir/sub/deep.txt', data: 'store' })
  // truncate by path, of an unchanged host file: shrink and extend
  fs.truncateSync(m.m('a.txt'), 3)
  t.is(fs.readFileSync(m.m('a.txt'), 'utf8'), 'alp')
  t.like(storeInfo(m.u('a.txt')).origin, { data: 'store' })
  fs.truncateSync(m.m('b.txt'), 8)
  t.is(fs.readFileSync(m.m('b.txt'), 'utf8'), 'bravo\n\0\0')
  fs.truncateSync(m.m('dir/one.txt'), 0)
  t.is(lst(m.m('dir/one.txt')).size, 0n)
  t.is(fs.readFileSync(m.u('dir/one.txt'), 'utf8'), '')
  t.is(errOf(() => fs.truncateSync(m.m('dir'), 0)), 'EISDIR')
  // ftruncate on a read-only descriptor: the kernel refuses before the daemon sees it
  const ro = fs.openSync(m.m('b.txt'), 'r')
  t.is(errOf(() => fs.ftruncateSync(ro, 0)), 'EINVAL')
  fs.closeSync(ro)
  t.is(fs.readFileSync(m.m('b.txt'), 'utf8'), 'bravo\n\0\0')
  hostUnchanged(t, m)
})

mtest('a reader opened before a copy-up sees the written data (as on ext4)', async (t) => {
  const m = await useMount(t, { host: fixture() })
  const r = fs.openSync(m.m('a.txt'), 'r')
  t.is(fs.readFileSync(m.m('a.txt'), 'utf8'), 'alpha\n') // cached by the kernel now
  fs.writeFileSync(m.m('a.txt'), 'rewritten\n', { flag: 'r+' })
  const b = Buffer.alloc(20)
  const n = fs.readSync(r, b, 0, 20, 0)
  fs.closeSync(r)
  t.is(b.subarray(0, n).toString(), 'rewritten\n')
  hostUnchanged(t, m)
})

/**
 * Python (ctypes mmap + mincore): maps `p` read-only (a cached reader), reads it all, then
 * for each [file offset, text] of `writes` writes it through a new O_WRONLY descriptor
 * (opened with `flags`) and prints, as JSON, which of the first `pages` pages of the
 * mapping are resident after the write and what the mapping and a pread of the reader show.
 */
function cachedReaderAcrossWriteOnly (p: string, pages: number, writes: Array<[number, string]>, flags = 'os.O_WRONLY'): Array<{ resident: number[], mapped: string, pread: string }> {
  const py = [
    'import ctypes, json, os',
    'libc = ctypes.CDLL(None, use_errno=True)',
    'libc.mmap.restype = ctypes.c_void_p',
    'libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]',
    'libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]',
    `p = ${JSON.stringify(p)}; N = ${pages} * 4096`,
    'r = os.open(p, os.O_RDONLY)',
    'a = libc.mmap(None, N, 1, 1, r, 0)',
    'assert a not in (None, ctypes.c_void_p(-1).value), "mmap failed"',
    'ctypes.string_at(a, N)',
    'vec = ctypes.create_string_buffer(N // 4096)',
    'def res():',
    '  assert libc.mincore(a, N, vec) == 0',
    '  return [b & 1 for b in vec.raw]',
    'out = [{"resident": res(), "mapped": "", "pread": ""}]',
    `for off, text in ${JSON.stringify(writes)}:`,
    `  w = os.open(p, ${flags}); os.pwrite(w, text.encode(), off); os.close(w)`,
    '  rs = res()',
    '  out.append({"resident": rs, "mapped": ctypes.string_at(a + off, len(text)).decode(), "pread": os.pread(r, len(text), off).decode()})',
    'print(json.dumps(out))'
  ].join('\n')
  const r = sh(`python3 -c '${py}'`)
  if (r.status !== 0) throw new Error(`python3: ${r.stderr}`)
  return JSON.parse(r.stdout)
}

mtest('a handle opened for writing only bypasses the mount\'s page cache; cached readers and mappings still see what it writes', async (t) => {
  if (!kernelAtLeast(6, 6)) { t.pass(`kernel ${os.release()}: writes stay cached before Linux 6.6`); return }
  const host = { 'data.bin': 'A'.repeat(16 * 4096) }
  const m = await useMount(t, { host })
  // A host file, opened for writing (copy-up in JS) while a reader maps it: the pages the
  // write covers leave the cache (a cached write would have refreshed them in place), the
  // others stay; the mapping and the reader show the new bytes.
  const steps = cachedReaderAcrossWriteOnly(m.m('data.bin'), 16, [[0, 'B'.repeat(4 * 4096)], [8 * 4096 + 100, 'xyz']])
  t.deepEqual(steps[0].resident, new Array(16).fill(1), 'the reader cached the whole file (the measure works)')
  t.deepEqual(steps[1].resident, [0, 0, 0, 0, ...new Array(12).fill(1)], 'the written pages are not in the cache')
  t.is(steps[1].mapped, 'B'.repeat(4 * 4096))
  t.is(steps[1].pread, 'B'.repeat(4 * 4096))
  t.is(steps[2].resident[8], 0)
  t.is(steps[2].mapped, 'xyz')
  t.is(steps[2].pread, 'xyz')
  const want = 'B'.repeat(4 * 4096) + 'A'.repeat(4 * 4096 + 100) + 'xyz' + 'A'.repeat(8 * 4096 - 103)
  t.is(fs.readFileSync(m.m('data.bin'), 'latin1'), want)
  t.is(fs.readFileSync(m.u('data.bin'), 'latin1'), want, 'the store holds the written file')
  // A file made in the sandbox (created in C): the same through its write-only handle.
  fs.writeFileSync(m.m('made.bin'), 'M'.repeat(4 * 4096))
  const made = cachedReaderAcrossWriteOnly(m.m('made.bin'), 4, [[4096, 'written']])
  t.deepEqual(made[0].resident, [1, 1, 1, 1])
  t.deepEqual(made[1].resident, [1, 0, 1, 1])
  t.is(made[1].mapped, 'written')
  t.is(fs.readFileSync(m.u('made.bin'), 'latin1'), 'M'.repeat(4096) + 'written' + 'M'.repeat(3 * 4096 - 7))
  // Read-write handles stay cached (write-through): the page they write stays resident.
  const rw = cachedReaderAcrossWriteOnly(m.m('made.bin'), 4, [[2 * 4096, 'rw']], 'os.O_RDWR')
  t.is(rw[1].resident[2], 1, 'a read-write handle writes through the cache')
  t.is(rw[1].mapped, 'rw')
  hostUnchanged(t, m)
})

mtest('a file unlinked while open keeps working for its holder and leaves nothing behind', async (t) => {
  const m = await useMount(t, { host: fixture() })
  // a host file, opened for writing (copied up), then unlinked
  const fd = fs.openSync(m.m('a.txt'), 'r+')
  fs.unlinkSync(m.m('a.txt'))
  t.is(errOf(() => fs.lstatSync(m.m('a.txt'))), 'ENOENT')
  t.false(fs.readdirSync(m.mnt).includes('a.txt'))
  fs.writeSync(fd, 'ALPHA', 0)
  fs.writeSync(fd, '+tail', 6)
  const b = Buffer.alloc(64)
  const n = fs.readSync(fd, b, 0, 64, 0)
  t.is(b.subarray(0, n).toString(), 'ALPHA\n+tail')
  const st = fs.fstatSync(fd)
  t.is(st.size, 11)
  t.is(st.nlink, 0)
  fs.ftruncateSync(fd, 5)
  t.is(fs.fstatSync(fd).size, 5)
  t.deepEqual(fuseHidden(m.mnt), [])
  t.deepEqual(fuseHidden(m.store), [])
  fs.closeSync(fd)
  t.like(storeInfo(m.u('a.txt')), { exists: true, whiteout: true })
  // a file created in the sandbox
  const fd2 = fs.openSync(m.m('tmp.txt'), 'w+')
  fs.writeSync(fd2, 'scratch')
  fs.unlinkSync(m.m('tmp.txt'))
  fs.writeSync(fd2, '!')
  const b2 = Buffer.alloc(16)
  t.is(b2.subarray(0, fs.readSync(fd2, b2, 0, 16, 0)).toString(), 'scratch!')
  t.is(fs.fstatSync(fd2).nlink, 0)
  t.deepEqual(fuseHidden(m.mnt), [])
  t.deepEqual(fuseHidden(m.store), [])
  fs.closeSync(fd2)
  t.false(storeInfo(m.u('tmp.txt')).exists, 'a sandbox-only file leaves no whiteout')
  // a host file opened read-only, then unlinked: still readable
  const fd3 = fs.openSync(m.m('b.txt'), 'r')
  fs.unlinkSync(m.m('b.txt'))
  const b3 = Buffer.alloc(16)
  t.is(b3.subarray(0, fs.readSync(fd3, b3, 0, 16, 0)).toString(), 'bravo\n')
  t.is(fs.fstatSync(fd3).size, 6)
  fs.closeSync(fd3)
  t.like(storeInfo(m.u('b.txt')), { whiteout: true })
  t.deepEqual(fuseHidden(m.mnt), [])
  t.deepEqual(fuseHidden(m.store), [])
  hostUnchanged(t, m)
})

for (const spin of ['0', '10000']) {
  mtest(`--spin-wait ${spin}: requests answered by the daemon work the same (copy-up, create, rename, concurrent readers)`, async (t) => {
    const m = await useMount(t, { host: fixture(), args: ['--spin-wait', spin] })
    fs.appendFileSync(m.m('a.txt'), 'more\n')
    fs.writeFileSync(m.m('new.txt'), 'new\n')
    fs.renameSync(m.m('new.txt'), m.m('renamed.txt'))
    // several processes at once: more requests in flight than threads that may wait awake
    const readers = Array.from({ length: 6 }, () => new Promise<string>((resolve) => {
      const p = spawn('sh', ['-c', `for i in 1 2 3 4 5 6 7 8; do cat '${m.m('a.txt')}' '${m.m('renamed.txt')}'; done | sort | uniq -c`])
      let out = ''
      p.stdout.on('data', (d: Buffer) => { out += d.toString() })
      p.on('close', () => resolve(out.trim().replace(/\s+/g, ' ')))
    }))
    for (const r of await Promise.all(readers)) t.is(r, '8 alpha 8 more 8 new')
    // view, store, host
    t.is(fs.readFileSync(m.m('a.txt'), 'utf8'), 'alpha\nmore\n')
    t.is(fs.readFileSync(m.u('a.txt'), 'utf8'), 'alpha\nmore\n')
    t.is(fs.readFileSync(m.u('renamed.txt'), 'utf8'), 'new\n')
    t.false(fs.existsSync(m.m('new.txt')))
    hostUnchanged(t, m)
  })
}

mtest('the warm-up before the mount runs on a scratch tree in work/ and leaves nothing behind, in the store or the host', async (t) => {
  const m = await useMount(t, { host: fixture() })
  t.deepEqual(workEntries(m.store), [], 'no scratch tree left in work/')
  t.deepEqual(fs.readdirSync(m.u('')), [], 'nothing in upper/')
  t.deepEqual(fs.readdirSync(`${m.store}/maps`), [], 'no chunk map (the warm-up made one in its own store)')
  t.notRegex(m.stderr(), /warm-up skipped/)
  // the first write after the mount works as any other
  fs.appendFileSync(m.m('a.txt'), 'more\n')
  t.is(fs.readFileSync(m.u('a.txt'), 'utf8'), 'alpha\nmore\n')
  hostUnchanged(t, m)
})

mtest('copy-ups rename files made ahead into place (work/spare-*): a chunked sibling and its map, a small sibling; none is left after unmount', async (t) => {
  const m = await useMount(t, { host: { 'big.bin': pattern(3 << 20, 31), 'small.txt': 'small\n', 'meta.txt': 'meta\n' } })
  const spares = (): Map<string, bigint> => new Map(fs.readdirSync(`${m.store}/work`).filter(n => n.startsWith('spare-')).map(n => [n, lst(`${m.store}/work/${n}`).ino]))
  // Two for JS's copy-ups (a temp file, a map), two for the first writes the FUSE layer
  // answers itself (in a plain store; Overlay.adoptCopiedUp).
  const settle = async (): Promise<Map<string, bigint>> => {
    for (let i = 0; i < 50 && spares().size < 4; i++) await new Promise(resolve => setTimeout(resolve, 20))
    return spares()
  }
  const before = await settle()
  t.is(before.size, 4, 'temp files and maps are ready at mount')
  for (const n of before.keys()) t.is(fs.statSync(`${m.store}/work/${n}`).size, 0, `${n} is empty`)
  // the chunked copy-up (a 1-byte write into a 3 MiB host file) takes both
  const fd = fs.openSync(m.m('big.bin'), 'r+')
  fs.writeSync(fd, 'x', 1 << 20)
  fs.closeSync(fd)
  const inos = [...before.values()]
  const id = chunksId(m.u('big.bin'))
  for (const ino of [lst(m.u('big.bin')).ino, lst(`${m.store}/maps/${id}`).ino]) t.true(inos.includes(ino), 'the sibling and its map are files made ahead')
  const after = await settle()
  t.is(after.size, 4, 'two new ones are made after the copy-up')
  t.is([...after.keys()].filter(n => !before.has(n)).length, 2, 'with new names')
  // a data copy-up of a small file, and a metadata-only one, take the temp file
  fs.appendFileSync(m.m('small.txt'), 'more\n')
  t.true([...after.values()].includes(lst(m.u('small.txt')).ino), 'the small sibling is the temp file made ahead')
  const again = await settle()
  fs.chmodSync(m.m('meta.txt'), 0o600)
  t.true([...again.values()].includes(lst(m.u('meta.txt')).ino), 'so is the metadata-only sibling')
  // view, store, host
  const want = pattern(3 << 20, 31)
  want[1 << 20] = 0x78
  t.true(fs.readFileSync(m.m('big.bin')).equals(want))
  t.is(fs.readFileSync(m.m('small.txt'), 'utf8'), 'small\nmore\n')
  t.is(fs.readFileSync(m.u('small.txt'), 'utf8'), 'small\nmore\n')
  t.is(lst(m.m('meta.txt')).mode & 0o777n, 0o600n)
  hostUnchanged(t, m)
  await m.stop()
  t.deepEqual(fs.readdirSync(`${m.store}/work`), [], 'unmounted: work/ is empty')
})

// With --debug the daemon logs every request to its stderr, a pipe this process must keep
// draining: the writers below run asynchronously.
const execFileP = promisify(execFile)

for (const store of [{ name: 'plain store', args: [] as string[] }, { name: 'lz4 store', args: ['--compress', 'lz4'] }]) {
  mtest(`${store.name}: writes arrive in requests of up to 1 MiB (protocol 7.28 negotiated for libfuse 2.9), and every byte lands`, async (t) => {
    const host = pattern(3 << 20, 21)
    const m = await useMount(t, { host: { 'host.bin': host }, args: ['--debug', ...store.args] })
    const src = m.root + '/src.bin'
    const data = pattern(4 << 20, 22)
    fs.writeFileSync(src, data)
    // a new file (a direct handle: C writes it; chunked in the lz4 store: JS), and a copy-up
    // of a host file at an offset (JS makes the sibling, then writes)
    await execFileP('dd', [`if=${src}`, `of=${m.m('new.bin')}`, 'bs=1M', 'conv=fsync'])
    await execFileP('dd', [`if=${src}`, `of=${m.m('host.bin')}`, 'bs=1M', 'seek=1', 'count=2', 'conv=notrunc,fsync'])
    const sizes = m.stderr().split('\n').map(l => /opcode: WRITE \(16\), nodeid: \d+, insize: (\d+)/.exec(l)).filter(x => x !== null).map(x => Number(x[1]) - 80)
    t.true(sizes.length > 0, 'the debug log shows the writes')
    t.is(sizes.reduce((a, b) => a + b, 0), 6 << 20, 'every byte was written once')
    t.is(Math.max(...sizes), 1 << 20, `the largest write request is 1 MiB (sizes: ${sizes.join(' ')})`)
    t.is(sizes.filter(n => n === 1 << 20).length, 6, 'dd bs=1M: one request per block')
    // view, store, host
    const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex')
    const want = Buffer.from(host)
    data.copy(want, 1 << 20, 0, 2 << 20)
    t.is(sha(fs.readFileSync(m.m('new.bin'))), sha(data))
    t.is(sha(fs.readFileSync(m.m('host.bin'))), sha(want))
    if (store.args.length === 0) t.is(sha(fs.readFileSync(m.u('new.bin'))), sha(data), 'the store holds the bytes')
    else t.truthy(chunksId(m.u('new.bin')), 'the store holds a chunked sibling')
    t.truthy(chunksId(m.u('host.bin')), 'a chunked sibling of the 3 MiB host file')
    hostUnchanged(t, m)
  })
}
