/**
 * Reading the merged view: lookup, stat, readdir, readlink, statfs, access, open for
 * reading (served from the host, nothing copied), stable inode numbers, mount options.
 */
import fs from 'node:fs'
import { errOf, hashTree, sh, storeInfo, useMount } from '../helpers/sandbox.js'
import { asNobody, fixture, hostUnchanged, lst, mtest, pattern, q, readerAcrossWrite, sorted, walk } from '../helpers/mountkit.js'

mtest('stat of host entries through the mount matches the host', async (t) => {
  const m = await useMount(t, { host: fixture() })
  for (const rel of ['a.txt', 'big.bin', 'secret', 'script', 'dir', 'dir/sub/deep.txt', 'link-to-a', 'dangling', 'empty']) {
    const a = lst(m.m(rel))
    const b = lst(m.h(rel))
    t.is(a.mode, b.mode, rel)
    t.is(a.uid, b.uid, rel)
    t.is(a.gid, b.gid, rel)
    t.is(a.mtimeNs, b.mtimeNs, rel)
    t.is(a.ctimeNs, b.ctimeNs, rel)
    if (!a.isDirectory()) t.is(a.size, b.size, rel)
    if (!a.isDirectory()) t.is(a.nlink, b.nlink, rel)
    t.is(a.ino, b.ino, `${rel}: host entries show their host inode number`)
  }
  t.true(fs.statSync(m.m('link-to-a')).isFile(), 'stat follows the symlink')
  t.is(errOf(() => fs.statSync(m.m('dangling'))), 'ENOENT')
  t.is(errOf(() => fs.lstatSync(m.m('nope'))), 'ENOENT')
  t.is(errOf(() => fs.lstatSync(m.m('a.txt/x'))), 'ENOTDIR')
  t.is(errOf(() => fs.lstatSync(m.m('nodir/x'))), 'ENOENT')
  t.deepEqual(walk(m.upper), [], 'lookups create nothing in the store')
  hostUnchanged(t, m)
})

mtest('readdir shows host entries + store entries - deleted ones', async (t) => {
  const m = await useMount(t, { host: fixture() })
  const hostRoot = fs.readdirSync(m.host)
  t.deepEqual(sorted(fs.readdirSync(m.mnt)), sorted(hostRoot))
  fs.writeFileSync(m.m('new.txt'), 'new\n')
  fs.unlinkSync(m.m('b.txt'))
  fs.mkdirSync(m.m('dir/newdir'))
  fs.unlinkSync(m.m('dir/one.txt'))
  fs.writeFileSync(m.m('dir/two.txt'), 'changed\n') // copied up: listed once
  const expectRoot = sorted([...hostRoot.filter(n => n !== 'b.txt'), 'new.txt'])
  t.deepEqual(sorted(fs.readdirSync(m.mnt)), expectRoot)
  t.deepEqual(sorted(fs.readdirSync(m.m('dir'))), ['newdir', 'sub', 'two.txt'])
  t.deepEqual(fs.readdirSync(m.m('dir/newdir')), [])
  // types from readdir (d_type) are right for merged entries
  const types = Object.fromEntries(fs.readdirSync(m.mnt, { withFileTypes: true }).map(e => [e.name, e.isDirectory() ? 'd' : e.isSymbolicLink() ? 'l' : e.isFile() ? 'f' : '?']))
  t.like(types, { 'a.txt': 'f', 'new.txt': 'f', dir: 'd', 'link-to-a': 'l', empty: 'd' })
  t.is(errOf(() => fs.lstatSync(m.m('b.txt'))), 'ENOENT')
  t.is(errOf(() => fs.readFileSync(m.m('dir/one.txt'))), 'ENOENT')
  // the store
  t.like(storeInfo(m.u('b.txt')), { exists: true, whiteout: true })
  t.like(storeInfo(m.u('dir/one.txt')), { exists: true, whiteout: true })
  t.like(storeInfo(m.u('new.txt')), { exists: true, whiteout: false, origin: null })
  t.is(storeInfo(m.u('dir/two.txt')).origin?.data, 'store')
  t.like(storeInfo(m.u('dir/newdir')), { exists: true, opaque: false, redirect: null, origin: null })
  // a larger directory lists every entry exactly once
  const many = fs.readdirSync(m.m('many'))
  t.is(many.length, 201)
  t.is(new Set(many).size, 201)
  hostUnchanged(t, m)
})

mtest('readlink returns the target; readlink of a non-link is EINVAL', async (t) => {
  const m = await useMount(t, { host: fixture() })
  t.is(fs.readlinkSync(m.m('link-to-a')), 'a.txt')
  t.is(fs.readlinkSync(m.m('dangling')), 'nowhere')
  t.is(fs.readFileSync(m.m('link-to-a'), 'utf8'), 'alpha\n')
  t.is(errOf(() => fs.readlinkSync(m.m('a.txt'))), 'EINVAL')
  t.is(errOf(() => fs.readlinkSync(m.m('dir'))), 'EINVAL')
  t.is(errOf(() => fs.readlinkSync(m.m('nope'))), 'ENOENT')
  fs.symlinkSync('dir/sub/deep.txt', m.m('newlink'))
  t.is(fs.readlinkSync(m.m('newlink')), 'dir/sub/deep.txt')
  t.is(fs.readFileSync(m.m('newlink'), 'utf8'), 'deep\n')
  t.false(storeInfo(m.u('link-to-a')).exists, 'reading a link copies nothing')
  t.true(lst(m.u('newlink')).isSymbolicLink())
  hostUnchanged(t, m)
})

mtest('statfs reports the store file system, FUSE type and 255-byte names', async (t) => {
  const m = await useMount(t, { host: fixture() })
  const s = fs.statfsSync(m.mnt)
  const u = fs.statfsSync(m.upper)
  t.is(s.type, 0x65735546, 'FUSE_SUPER_MAGIC')
  t.is(s.bsize, u.bsize)
  t.is(s.blocks, u.blocks)
  t.true(Math.abs(s.bfree - u.bfree) < u.blocks / 100 + 1024)
  t.is(s.files, u.files)
  const r = sh(`stat -f -c %l ${q(m.mnt)}`)
  t.is(r.stdout.trim(), '255')
  hostUnchanged(t, m)
})

mtest('access(2): existence and permission bits, root and non-root', async (t) => {
  const m = await useMount(t, { host: fixture() })
  fs.chmodSync(m.root, 0o755) // let uid 65534 reach the mount point
  const { R_OK, W_OK, X_OK, F_OK } = fs.constants
  t.is(errOf(() => fs.accessSync(m.m('a.txt'), F_OK)), 'OK')
  t.is(errOf(() => fs.accessSync(m.m('a.txt'), R_OK | W_OK)), 'OK')
  t.is(errOf(() => fs.accessSync(m.m('a.txt'), X_OK)), 'EACCES', 'root needs an x bit to execute')
  t.is(errOf(() => fs.accessSync(m.m('script'), X_OK)), 'OK')
  t.is(errOf(() => fs.accessSync(m.m('nope'), F_OK)), 'ENOENT')
  t.is(errOf(() => fs.accessSync(m.m('dangling'), F_OK)), 'ENOENT')
  // uid 65534: test -r/-w use access(2) / faccessat
  t.is(asNobody(`test -r ${q(m.m('a.txt'))}`).status, 0)
  t.is(asNobody(`test -w ${q(m.m('a.txt'))}`).status, 1)
  t.is(asNobody(`test -r ${q(m.m('secret'))}`).status, 1)
  t.is(asNobody(`test -x ${q(m.m('script'))}`).status, 0)
  t.is(asNobody(`test -x ${q(m.m('dir'))}`).status, 0)
  t.deepEqual(walk(m.upper), [], 'access copies nothing')
  hostUnchanged(t, m)
})

mtest('open for reading is served from the host: no sibling in the store', async (t) => {
  const m = await useMount(t, { host: fixture() })
  t.is(fs.readFileSync(m.m('a.txt'), 'utf8'), 'alpha\n')
  t.true(fs.readFileSync(m.m('big.bin')).equals(pattern(1 << 20, 7)))
  t.is(fs.readFileSync(m.m('dir/sub/deep.txt'), 'utf8'), 'deep\n')
  const fd = fs.openSync(m.m('b.txt'), 'r')
  const buf = Buffer.alloc(3)
  t.is(fs.readSync(fd, buf, 0, 3, 2), 3)
  t.is(buf.toString(), 'avo')
  t.is(errOf(() => fs.writeSync(fd, 'x')), 'EBADF')
  fs.closeSync(fd)
  // O_RDONLY of a 0600 file as root, and of a directory
  t.is(fs.readFileSync(m.m('secret'), 'utf8'), 'top secret\n')
  fs.closeSync(fs.openSync(m.m('dir'), 'r'))
  t.deepEqual(walk(m.upper), [], 'nothing was copied up')
  for (const rel of ['a.txt', 'big.bin', 'dir/sub/deep.txt', 'b.txt']) t.false(storeInfo(m.u(rel)).exists)
  hostUnchanged(t, m)
})

mtest('inode numbers are stable: repeated stats, chmod, data copy-up; distinct files differ', async (t) => {
  const m = await useMount(t, { host: fixture() })
  const ino = (rel: string): bigint => lst(m.m(rel)).ino
  const a0 = ino('a.txt')
  t.is(ino('a.txt'), a0)
  t.is(ino('a.txt'), a0)
  t.is(a0, lst(m.h('a.txt')).ino)
  fs.chmodSync(m.m('a.txt'), 0o640)
  t.is(storeInfo(m.u('a.txt')).origin?.data, 'host')
  t.is(ino('a.txt'), a0, 'same after a metadata copy-up')
  fs.appendFileSync(m.m('a.txt'), 'more\n')
  t.is(storeInfo(m.u('a.txt')).origin?.data, 'store')
  t.is(ino('a.txt'), a0, 'same after a data copy-up')
  const fd = fs.openSync(m.m('a.txt'), 'r')
  t.is(fs.fstatSync(fd, { bigint: true }).ino, a0, 'fstat agrees')
  fs.closeSync(fd)
  // readdir's d_ino agrees with stat (ls -i uses stat; find -printf %i uses stat too)
  const lsI = sh(`ls -i1 ${q(m.mnt)}`).stdout
  t.regex(lsI, new RegExp(`^\\s*${a0} a\\.txt$`, 'm'))
  // distinct files have distinct numbers, including new ones and the root
  fs.writeFileSync(m.m('new1'), '1')
  fs.writeFileSync(m.m('new2'), '2')
  fs.mkdirSync(m.m('newdir'))
  const all = ['a.txt', 'b.txt', 'big.bin', 'secret', 'dir', 'dir/one.txt', 'dir/two.txt', 'dir/sub', 'empty', 'many', 'new1', 'new2', 'newdir', 'link-to-a', 'dangling', '']
  const inos = all.map(ino)
  t.is(new Set(inos).size, all.length, 'no two entries share a number')
  // a directory that gets copied up keeps its number
  const d0 = ino('dir')
  fs.writeFileSync(m.m('dir/x'), 'x')
  t.true(storeInfo(m.u('dir')).exists)
  t.is(ino('dir'), d0)
  hostUnchanged(t, m)
})

mtest('mount options: nosuid,nodev, type fuse.siblingfs', async (t) => {
  const m = await useMount(t, { host: fixture() })
  const line = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find(l => l.split(' ')[4] === m.mnt)
  t.truthy(line)
  const f = (line ?? '').split(' ')
  const opts = f[5].split(',')
  t.true(opts.includes('nosuid'), f[5])
  t.true(opts.includes('nodev'), f[5])
  t.true(opts.includes('rw'), f[5])
  const sep = f.indexOf('-')
  t.is(f[sep + 1], 'fuse.siblingfs')
  t.true(f[sep + 3].split(',').includes('allow_other'), 'root mounts with allow_other: ' + f[sep + 3])
  t.true(f[sep + 3].split(',').includes('default_permissions'), f[sep + 3])
  hostUnchanged(t, m)
})

mtest('a reader of a host file (served in C by pread) sees the data a later write copied up (descriptor moved onto the sibling)', async (t) => {
  const m = await useMount(t, { host: { 'f.txt': 'old content\n' } })
  const r = readerAcrossWrite(m.m('f.txt'))
  t.is(r.status, 0, r.stderr)
  t.is(r.stdout, 'old content\nNEW content\n')
  t.like(storeInfo(m.u('f.txt')).origin, { data: 'store' })
  t.is(fs.readFileSync(m.h('f.txt'), 'utf8'), 'old content\n')
  t.is(hashTree(m.host), m.hostHash)
})

for (const [label, size, args] of [['a 2 MiB host file (chunked sibling)', 2 * 1048576, []], ['a small host file in a --compress lz4 store', 12, ['--compress', 'lz4']]] as const) {
  mtest(`a reader of ${label}, served in C, follows the copy-up into a chunked sibling (its reads go to JS from then on)`, async (t) => {
    const content = Buffer.alloc(size, 'o')
    content.write('old content\n', 0)
    const m = await useMount(t, { host: { d: { 'f.bin': content } }, args: [...args] })
    const r = readerAcrossWrite(m.m('d/f.bin'), { show: 12, listFirst: true })
    t.is(r.status, 0, r.stderr)
    t.is(r.stdout, 'old content\nNEW content\n')
    // store: a chunked sibling (its data is not the plain file)
    t.true(storeInfo(m.u('d/f.bin')).origin !== null)
    t.is(fs.readFileSync(m.m('d/f.bin')).subarray(0, 12).toString(), 'NEW content\n')
    // host
    t.is(fs.readFileSync(m.h('d/f.bin')).subarray(0, 12).toString(), 'old content\n')
    t.is(hashTree(m.host), m.hostHash)
  })
}
