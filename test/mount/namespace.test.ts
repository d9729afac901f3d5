/**
 * Names: create, mkfifo, mkdir, unlink, rmdir, re-creating a deleted directory, symlink,
 * hard link, rename (files, directories, a big host directory without copying it, over
 * existing targets and their errors).
 */
import fs from 'node:fs'
import { errOf, sh, storeInfo, useMount, workEntries } from '../helpers/sandbox.js'
import { fixture, hostUnchanged, lst, mtest, q, sorted, walk } from '../helpers/mountkit.js'

mtest('create, mkfifo, mkdir: new entries live only in the store', async (t) => {
  const m = await useMount(t, { host: fixture() })
  fs.writeFileSync(m.m('dir/new.txt'), 'new')
  t.is(fs.readFileSync(m.m('dir/new.txt'), 'utf8'), 'new')
  t.like(storeInfo(m.u('dir/new.txt')), { exists: true, origin: null })
  t.is(fs.readFileSync(m.u('dir/new.txt'), 'utf8'), 'new')
  t.like(storeInfo(m.u('dir')), { exists: true, opaque: false, redirect: null }, 'the parent was copied up (a plain merged directory)')
  t.deepEqual(sorted(fs.readdirSync(m.u('dir'))), ['new.txt'], 'only the new file, not the host siblings')
  const r = sh(`mkfifo -m 0640 ${q(m.m('fifo'))}`)
  t.is(r.status, 0, r.stderr)
  t.true(lst(m.m('fifo')).isFIFO())
  t.is(lst(m.m('fifo')).mode & 0o777n, 0o640n)
  t.true(lst(m.u('fifo')).isFIFO())
  // the FIFO works through the mount (the kernel handles the pipe itself)
  const p = sh(`(echo through-fifo > ${q(m.m('fifo'))} &) ; cat ${q(m.m('fifo'))}`, { timeout: 10000 })
  t.is(p.stdout.trim(), 'through-fifo')
  fs.mkdirSync(m.m('newdir'), 0o750)
  t.true(lst(m.m('newdir')).isDirectory())
  t.is(lst(m.m('newdir')).mode & 0o7777n, 0o750n)
  t.deepEqual(fs.readdirSync(m.m('newdir')), [])
  t.like(storeInfo(m.u('newdir')), { exists: true, opaque: false, redirect: null, origin: null })
  fs.mkdirSync(m.m('newdir/a/b/c'), { recursive: true })
  fs.writeFileSync(m.m('newdir/a/b/c/f'), 'f')
  t.is(fs.readFileSync(m.u('newdir/a/b/c/f'), 'utf8'), 'f')
  t.is(errOf(() => fs.mkdirSync(m.m('dir'))), 'EEXIST')
  t.is(errOf(() => fs.mkdirSync(m.m('a.txt'))), 'EEXIST')
  t.is(errOf(() => fs.mkdirSync(m.m('newdir'))), 'EEXIST')
  t.is(errOf(() => fs.mkdirSync(m.m('dangling'))), 'EEXIST')
  t.is(errOf(() => fs.mkdirSync(m.m('nodir/x'))), 'ENOENT')
  t.is(sh(`mkfifo ${q(m.m('a.txt'))}`).status, 1, 'mkfifo over an existing name fails')
  hostUnchanged(t, m)
})

mtest('unlink and rmdir of host entries leave whiteouts; store-only entries just go', async (t) => {
  const m = await useMount(t, { host: fixture() })
  fs.unlinkSync(m.m('a.txt'))
  t.is(errOf(() => fs.lstatSync(m.m('a.txt'))), 'ENOENT')
  t.like(storeInfo(m.u('a.txt')), { exists: true, whiteout: true })
  fs.unlinkSync(m.m('link-to-a'))
  t.like(storeInfo(m.u('link-to-a')), { whiteout: true })
  fs.rmdirSync(m.m('empty'))
  t.is(errOf(() => fs.lstatSync(m.m('empty'))), 'ENOENT')
  t.like(storeInfo(m.u('empty')), { exists: true, whiteout: true })
  t.is(errOf(() => fs.rmdirSync(m.m('dir'))), 'ENOTEMPTY')
  t.is(errOf(() => fs.rmdirSync(m.m('a.txt'))), 'ENOENT')
  t.is(errOf(() => fs.rmdirSync(m.m('b.txt'))), 'ENOTDIR')
  t.is(errOf(() => fs.unlinkSync(m.m('dir'))), 'EISDIR')
  t.is(errOf(() => fs.unlinkSync(m.m('a.txt'))), 'ENOENT')
  // rm -r of a host tree: one whiteout for the top, the host tree is untouched
  const r = sh(`rm -r ${q(m.m('dir'))}`)
  t.is(r.status, 0, r.stderr)
  t.is(errOf(() => fs.lstatSync(m.m('dir'))), 'ENOENT')
  t.like(storeInfo(m.u('dir')), { exists: true, whiteout: true })
  // store-only entries
  fs.writeFileSync(m.m('tmp'), 'x')
  fs.unlinkSync(m.m('tmp'))
  t.false(storeInfo(m.u('tmp')).exists)
  fs.mkdirSync(m.m('tmpdir'))
  fs.rmdirSync(m.m('tmpdir'))
  t.false(storeInfo(m.u('tmpdir')).exists)
  // a copied-up file goes the same way as a host one
  fs.appendFileSync(m.m('b.txt'), 'x')
  fs.unlinkSync(m.m('b.txt'))
  t.like(storeInfo(m.u('b.txt')), { whiteout: true })
  t.false(fs.readdirSync(m.mnt).some(n => ['a.txt', 'b.txt', 'dir', 'empty', 'link-to-a', 'tmp', 'tmpdir'].includes(n)))
  t.deepEqual(workEntries(m.store).filter(n => !n.startsWith('intent-')), [])
  hostUnchanged(t, m)
})

mtest('a directory deleted and re-created is empty (store directory is opaque)', async (t) => {
  const m = await useMount(t, { host: fixture() })
  t.is(sh(`rm -r ${q(m.m('dir'))}`).status, 0)
  fs.mkdirSync(m.m('dir'))
  t.deepEqual(fs.readdirSync(m.m('dir')), [])
  t.is(errOf(() => fs.lstatSync(m.m('dir/one.txt'))), 'ENOENT')
  t.is(errOf(() => fs.lstatSync(m.m('dir/sub'))), 'ENOENT')
  t.like(storeInfo(m.u('dir')), { exists: true, opaque: true, whiteout: false, redirect: null })
  fs.writeFileSync(m.m('dir/one.txt'), 'mine')
  t.deepEqual(fs.readdirSync(m.m('dir')), ['one.txt'])
  t.is(fs.readFileSync(m.m('dir/one.txt'), 'utf8'), 'mine')
  t.like(storeInfo(m.u('dir/one.txt')), { origin: null })
  // the same with rmdir of an emptied host directory (its host children deleted one by one)
  for (const n of fs.readdirSync(m.m('many'))) fs.rmSync(m.m('many/' + n), { recursive: true })
  t.deepEqual(fs.readdirSync(m.m('many')), [])
  fs.rmdirSync(m.m('many'))
  t.like(storeInfo(m.u('many')), { whiteout: true })
  fs.mkdirSync(m.m('many'))
  t.deepEqual(fs.readdirSync(m.m('many')), [])
  t.like(storeInfo(m.u('many')), { opaque: true })
  // a file deleted and replaced by a directory, and the other way round
  fs.unlinkSync(m.m('a.txt'))
  fs.mkdirSync(m.m('a.txt'))
  t.true(lst(m.m('a.txt')).isDirectory())
  t.deepEqual(fs.readdirSync(m.m('a.txt')), [])
  fs.rmdirSync(m.m('empty'))
  fs.writeFileSync(m.m('empty'), 'now a file')
  t.is(fs.readFileSync(m.m('empty'), 'utf8'), 'now a file')
  t.like(storeInfo(m.u('empty')), { whiteout: false, origin: null })
  hostUnchanged(t, m)
})

mtest('symlink: created in the store, read through the mount', async (t) => {
  const m = await useMount(t, { host: fixture() })
  fs.symlinkSync('a.txt', m.m('sl'))
  t.is(fs.readlinkSync(m.m('sl')), 'a.txt')
  t.is(fs.readFileSync(m.m('sl'), 'utf8'), 'alpha\n')
  t.true(lst(m.u('sl')).isSymbolicLink())
  t.is(fs.readlinkSync(m.u('sl')), 'a.txt')
  fs.symlinkSync('/etc/hostname-not-there', m.m('dir/abs'))
  t.is(fs.readlinkSync(m.m('dir/abs')), '/etc/hostname-not-there')
  t.is(errOf(() => fs.symlinkSync('x', m.m('a.txt'))), 'EEXIST')
  t.is(errOf(() => fs.symlinkSync('x', m.m('dangling'))), 'EEXIST')
  // writing through a link to a host file copies up the target, not the link
  fs.appendFileSync(m.m('link-to-a'), 'via link\n')
  t.is(fs.readFileSync(m.m('a.txt'), 'utf8'), 'alpha\nvia link\n')
  t.like(storeInfo(m.u('a.txt')).origin, { data: 'store' })
  t.false(storeInfo(m.u('link-to-a')).exists)
  // a symlink replacing a deleted file
  fs.unlinkSync(m.m('b.txt'))
  fs.symlinkSync('dir/one.txt', m.m('b.txt'))
  t.is(fs.readFileSync(m.m('b.txt'), 'utf8'), '1\n')
  t.true(lst(m.u('b.txt')).isSymbolicLink())
  hostUnchanged(t, m)
})

mtest('hard link of a host file: both names share content, st_ino, nlink 2', async (t) => {
  // --attr-timeout 0: what the daemon answers, not what the kernel cached for the source
  // name before the link (that is the separate BUG test below)
  const m = await useMount(t, { host: fixture(), args: ['--attr-timeout', '0'] })
  const ino0 = lst(m.m('a.txt')).ino
  fs.linkSync(m.m('a.txt'), m.m('dir/a-link'))
  const s1 = lst(m.m('a.txt'))
  const s2 = lst(m.m('dir/a-link'))
  t.is(s1.ino, s2.ino)
  t.is(s1.ino, ino0, 'the number did not change')
  t.is(s1.nlink, 2n)
  t.is(s2.nlink, 2n)
  t.is(fs.readFileSync(m.m('dir/a-link'), 'utf8'), 'alpha\n')
  // store: one inode, two names, metadata-only
  t.is(lst(m.u('a.txt')).ino, lst(m.u('dir/a-link')).ino)
  t.is(storeInfo(m.u('a.txt')).origin?.data, 'host')
  // a write through one name shows through the other
  fs.appendFileSync(m.m('dir/a-link'), 'shared\n')
  t.is(fs.readFileSync(m.m('a.txt'), 'utf8'), 'alpha\nshared\n')
  t.is(lst(m.u('a.txt')).ino, lst(m.u('dir/a-link')).ino, 'still one inode in the store')
  t.is(storeInfo(m.u('a.txt')).origin?.data, 'store')
  t.is(lst(m.m('a.txt')).ino, ino0)
  // chmod through one name
  fs.chmodSync(m.m('a.txt'), 0o600)
  t.is(lst(m.m('dir/a-link')).mode & 0o777n, 0o600n)
  // unlink one: the other stays, nlink 1
  fs.unlinkSync(m.m('a.txt'))
  t.is(lst(m.m('dir/a-link')).nlink, 1n)
  t.is(fs.readFileSync(m.m('dir/a-link'), 'utf8'), 'alpha\nshared\n')
  t.like(storeInfo(m.u('a.txt')), { whiteout: true })
  // links of sandbox files and errors
  fs.writeFileSync(m.m('n1'), 'n')
  fs.linkSync(m.m('n1'), m.m('n2'))
  t.is(lst(m.m('n2')).nlink, 2n)
  t.is(lst(m.m('n1')).ino, lst(m.m('n2')).ino)
  t.is(errOf(() => fs.linkSync(m.m('n1'), m.m('b.txt'))), 'EEXIST')
  t.is(errOf(() => fs.linkSync(m.m('dir'), m.m('dir2'))), 'EPERM')
  t.is(errOf(() => fs.linkSync(m.m('nope'), m.m('x'))), 'ENOENT')
  hostUnchanged(t, m)
})

mtest('st_nlink of every name right after link(2) with --attr-timeout 0 (the documented strict setting)', async (t) => {
  const m = await useMount(t, { host: fixture(), args: ['--attr-timeout', '0'] })
  t.is(lst(m.m('a.txt')).nlink, 1n)
  fs.linkSync(m.m('a.txt'), m.m('a2'))
  t.is(lst(m.m('a2')).nlink, 2n)
  t.is(lst(m.m('a.txt')).nlink, 2n, 'ext4: 2 right after link()')
  hostUnchanged(t, m)
})

mtest('with the default (long) cache timeouts, every name of a hard-linked file shows its new st_nlink, mode, size and times at once', async (t) => {
  const m = await useMount(t, { host: fixture() })
  // Each stat below makes the kernel cache that name's attributes for 60 s.
  t.is(lst(m.m('a.txt')).nlink, 1n)
  fs.linkSync(m.m('a.txt'), m.m('a2'))
  t.is(lst(m.m('a2')).nlink, 2n, 'the new name')
  t.is(lst(m.m('a.txt')).nlink, 2n, 'the old name, right after link()')
  fs.linkSync(m.m('a2'), m.m('a3'))
  t.deepEqual(['a.txt', 'a2', 'a3'].map(n => lst(m.m(n)).nlink), [3n, 3n, 3n], 'a third name: all three at once')
  fs.unlinkSync(m.m('a3'))
  t.deepEqual(['a.txt', 'a2'].map(n => lst(m.m(n)).nlink), [2n, 2n], 'after unlink() of one name')
  fs.chmodSync(m.m('a2'), 0o640)
  t.is(lst(m.m('a.txt')).mode & 0o7777n, 0o640n, 'chmod through the other name')
  fs.utimesSync(m.m('a2'), 1000, 2000)
  t.is(lst(m.m('a.txt')).mtimeNs, 2000n * 1000000000n, 'utimes through the other name')
  fs.appendFileSync(m.m('a2'), 'more\n')
  t.is(lst(m.m('a.txt')).size, lst(m.m('a2')).size, 'a write through the other name, after close')
  t.is(fs.readFileSync(m.m('a.txt'), 'utf8'), fs.readFileSync(m.m('a2'), 'utf8'))
  fs.writeFileSync(m.m('b.txt'), 'replacement\n')
  fs.renameSync(m.m('b.txt'), m.m('a2'))
  t.is(lst(m.m('a.txt')).nlink, 1n, 'after rename() over the other name')
  // store
  t.is(lst(m.u('a.txt')).nlink, 1n)
  t.is(fs.readFileSync(m.u('a2'), 'utf8'), 'replacement\n')
  hostUnchanged(t, m)
})

mtest('a new file never inherits the identity of a deleted sibling (reused store inode)', async (t) => {
  const m = await useMount(t, { host: fixture() })
  const hostA = lst(m.h('a.txt')).ino
  fs.chmodSync(m.m('a.txt'), 0o600) // metadata-only sibling: origin a.txt, data host
  const sib = lst(m.u('a.txt')).ino
  fs.unlinkSync(m.m('a.txt'))      // whiteout renamed over it: its inode is freed
  // ext4 usually hands the freed inode number to the next new file; every new file, reused
  // number or not, must be itself.
  let reused = ''
  for (let i = 0; i < 20; i++) {
    const name = `new${i}`
    fs.writeFileSync(m.m(name), `new ${i}\n`)
    if (lst(m.u(name)).ino === sib) reused = name
    t.is(fs.readFileSync(m.m(name), 'utf8'), `new ${i}\n`, 'content of the new file, not of the deleted host file')
    t.not(lst(m.m(name)).ino, hostA, 'not the deleted file\'s inode number')
    t.is(lst(m.m(name)).size, BigInt(`new ${i}\n`.length))
    t.like(storeInfo(m.u(name)), { origin: null })
  }
  t.log(reused === '' ? 'the store did not reuse the inode number this time' : `${reused} got the deleted sibling's store inode number`)
  hostUnchanged(t, m)
})

mtest('a new file never inherits the chunk map of a deleted chunked sibling (reused store inode)', async (t) => {
  const m = await useMount(t, { host: fixture() })
  fs.appendFileSync(m.m('big.bin'), 'x') // 1 MiB: a chunked sibling
  const sib = lst(m.u('big.bin')).ino
  fs.unlinkSync(m.m('big.bin'))
  let reused = ''
  for (let i = 0; i < 20; i++) {
    const name = `new${i}`
    fs.writeFileSync(m.m(name), `new ${i}\n`)
    if (lst(m.u(name)).ino === sib) reused = name
    t.is(errOf(() => fs.lstatSync(m.m(name))), 'OK', 'the new file exists')
    t.is(fs.readFileSync(m.m(name), 'utf8'), `new ${i}\n`)
    t.like(storeInfo(m.u(name)), { origin: null })
  }
  t.log(reused === '' ? 'the store did not reuse the inode number this time' : `${reused} got the deleted sibling's store inode number`)
  hostUnchanged(t, m)
})

mtest('the same through a file unlinked while open (hidden in work/, freed at release)', async (t) => {
  const m = await useMount(t, { host: fixture() })
  const fd = fs.openSync(m.m('b.txt'), 'r')
  fs.unlinkSync(m.m('b.txt'))
  const hidden = workEntries(m.store).filter(n => !n.startsWith('intent-'))
  t.is(hidden.length, 1, 'the open, unlinked file is kept in work/')
  const sib = lst(m.store + '/work/' + hidden[0]).ino
  fs.closeSync(fd)
  const work = (): string[] => workEntries(m.store).filter(n => !n.startsWith('intent-'))
  for (let i = 0; i < 40 && work().length > 0; i++) await new Promise(resolve => setTimeout(resolve, 50)) // RELEASE is asynchronous
  t.deepEqual(work(), [], 'released: gone')
  let reused = ''
  for (let i = 0; i < 20 && reused === ''; i++) {
    fs.writeFileSync(m.m(`new${i}`), `new ${i}\n`)
    if (lst(m.u(`new${i}`)).ino === sib) reused = `new${i}`
  }
  if (reused === '') { t.log('ext4 did not hand the inode number out again here (work/ and upper/ are in different block groups); nothing more to check'); hostUnchanged(t, m); return }
  t.is(fs.readFileSync(m.m(reused), 'utf8'), `new ${reused.slice(3)}\n`)
  t.not(lst(m.m(reused)).ino, lst(m.h('b.txt')).ino)
  hostUnchanged(t, m)
})

mtest('rename of files: host file, copied-up file, store file; old name gone', async (t) => {
  const m = await useMount(t, { host: fixture() })
  const ino = lst(m.m('a.txt')).ino
  fs.renameSync(m.m('a.txt'), m.m('z.txt'))
  t.is(errOf(() => fs.lstatSync(m.m('a.txt'))), 'ENOENT')
  t.is(fs.readFileSync(m.m('z.txt'), 'utf8'), 'alpha\n')
  t.is(lst(m.m('z.txt')).ino, ino, 'rename keeps the inode number')
  t.like(storeInfo(m.u('a.txt')), { whiteout: true })
  t.like(storeInfo(m.u('z.txt')).origin, { path: 'a.txt', data: 'host' })
  t.is(lst(m.u('z.txt')).size, 0n, 'metadata-only: no bytes copied')
  // writing the renamed file copies the bytes from its origin
  fs.appendFileSync(m.m('z.txt'), '!')
  t.is(fs.readFileSync(m.m('z.txt'), 'utf8'), 'alpha\n!')
  t.like(storeInfo(m.u('z.txt')).origin, { path: 'a.txt', data: 'store' })
  // into another directory, and back
  fs.renameSync(m.m('b.txt'), m.m('dir/sub/b.txt'))
  t.is(fs.readFileSync(m.m('dir/sub/b.txt'), 'utf8'), 'bravo\n')
  fs.renameSync(m.m('dir/sub/b.txt'), m.m('b.txt'))
  t.is(fs.readFileSync(m.m('b.txt'), 'utf8'), 'bravo\n')
  t.is(errOf(() => fs.lstatSync(m.m('dir/sub/b.txt'))), 'ENOENT')
  t.false(storeInfo(m.u('dir/sub/b.txt')).exists && !storeInfo(m.u('dir/sub/b.txt')).whiteout)
  // a store-only file
  fs.writeFileSync(m.m('new'), 'n')
  fs.renameSync(m.m('new'), m.m('dir/new2'))
  t.is(fs.readFileSync(m.m('dir/new2'), 'utf8'), 'n')
  t.false(storeInfo(m.u('new')).exists, 'no whiteout for a name the host never had')
  // a symlink
  fs.renameSync(m.m('link-to-a'), m.m('link2'))
  t.is(fs.readlinkSync(m.m('link2')), 'a.txt')
  t.is(errOf(() => fs.renameSync(m.m('nope'), m.m('x'))), 'ENOENT')
  t.is(errOf(() => fs.renameSync(m.m('b.txt'), m.m('nodir/x'))), 'ENOENT')
  // a file onto a deleted host name (the whiteout is replaced)
  fs.unlinkSync(m.m('dir/two.txt'))
  fs.renameSync(m.m('b.txt'), m.m('dir/two.txt'))
  t.is(fs.readFileSync(m.m('dir/two.txt'), 'utf8'), 'bravo\n')
  t.like(storeInfo(m.u('dir/two.txt')), { whiteout: false, origin: { path: 'b.txt', data: 'host' } })
  t.like(storeInfo(m.u('b.txt')), { whiteout: true })
  hostUnchanged(t, m)
})

mtest('rename of a big host directory copies no tree: redirect in the store', async (t) => {
  const m = await useMount(t, { host: fixture() })
  const before = sorted(fs.readdirSync(m.m('many')))
  fs.renameSync(m.m('many'), m.m('moved'))
  t.is(errOf(() => fs.lstatSync(m.m('many'))), 'ENOENT')
  t.false(fs.readdirSync(m.mnt).includes('many'))
  t.deepEqual(sorted(fs.readdirSync(m.m('moved'))), before)
  t.is(fs.readFileSync(m.m('moved/f123'), 'utf8'), 'content of f123\n')
  t.is(fs.readFileSync(m.m('moved/nested/deeper/leaf.txt'), 'utf8'), 'leaf\n')
  const info = storeInfo(m.u('moved'))
  t.like(info, { exists: true, redirect: 'many' })
  t.deepEqual(fs.readdirSync(m.u('moved')), [], 'no files were copied')
  t.like(storeInfo(m.u('many')), { whiteout: true })
  // rename again: still the same host directory
  fs.renameSync(m.m('moved'), m.m('dir/moved2'))
  t.deepEqual(sorted(fs.readdirSync(m.m('dir/moved2'))), before)
  t.like(storeInfo(m.u('dir/moved2')), { redirect: 'many' })
  t.false(storeInfo(m.u('moved')).exists, 'no whiteout where the host has nothing')
  // change inside the renamed directory
  fs.appendFileSync(m.m('dir/moved2/f001'), 'more\n')
  t.is(fs.readFileSync(m.m('dir/moved2/f001'), 'utf8'), 'content of f1\nmore\n')
  t.like(storeInfo(m.u('dir/moved2/f001')).origin, { path: 'many/f001', data: 'store' })
  fs.unlinkSync(m.m('dir/moved2/f002'))
  t.like(storeInfo(m.u('dir/moved2/f002')), { whiteout: true })
  fs.renameSync(m.m('dir/moved2/nested'), m.m('nested-out'))
  t.is(fs.readFileSync(m.m('nested-out/deeper/leaf.txt'), 'utf8'), 'leaf\n')
  t.like(storeInfo(m.u('nested-out')), { redirect: 'many/nested' })
  t.is(fs.readdirSync(m.m('dir/moved2')).length, 199)
  // a name under the old place can be used again, and is empty
  fs.mkdirSync(m.m('many'))
  t.deepEqual(fs.readdirSync(m.m('many')), [])
  t.like(storeInfo(m.u('many')), { opaque: true })
  // a sandbox-created directory with files
  fs.mkdirSync(m.m('mine'))
  fs.writeFileSync(m.m('mine/x'), 'x')
  fs.renameSync(m.m('mine'), m.m('mine2'))
  t.is(fs.readFileSync(m.m('mine2/x'), 'utf8'), 'x')
  t.false(storeInfo(m.u('mine')).exists)
  hostUnchanged(t, m)
})

mtest('rename over existing targets and its errors', async (t) => {
  const host = { ...fixture(), e1: {}, e2: {}, full: { f: 'f' }, d1: { x: 'x' } }
  const m = await useMount(t, { host })
  // file over file (host over host)
  fs.renameSync(m.m('a.txt'), m.m('b.txt'))
  t.is(fs.readFileSync(m.m('b.txt'), 'utf8'), 'alpha\n')
  t.is(errOf(() => fs.lstatSync(m.m('a.txt'))), 'ENOENT')
  t.like(storeInfo(m.u('a.txt')), { whiteout: true })
  t.like(storeInfo(m.u('b.txt')).origin, { path: 'a.txt' })
  // dir over empty dir (host over host)
  fs.renameSync(m.m('d1'), m.m('e1'))
  t.deepEqual(fs.readdirSync(m.m('e1')), ['x'])
  t.is(errOf(() => fs.lstatSync(m.m('d1'))), 'ENOENT')
  t.like(storeInfo(m.u('e1')), { redirect: 'd1' })
  // dir over an empty dir that was emptied in the sandbox
  fs.unlinkSync(m.m('full/f'))
  fs.renameSync(m.m('e2'), m.m('full'))
  t.deepEqual(fs.readdirSync(m.m('full')), [])
  // errors
  t.is(errOf(() => fs.renameSync(m.m('dir'), m.m('e1'))), 'ENOTEMPTY', 'dir over non-empty dir')
  t.is(errOf(() => fs.renameSync(m.m('b.txt'), m.m('dir'))), 'EISDIR', 'file over dir')
  t.is(errOf(() => fs.renameSync(m.m('dir'), m.m('b.txt'))), 'ENOTDIR', 'dir over file')
  t.is(errOf(() => fs.renameSync(m.m('dir'), m.m('dir/sub/x'))), 'EINVAL', 'dir into itself')
  t.is(errOf(() => fs.renameSync(m.m('dir/sub'), m.m('dir'))), 'ENOTEMPTY', 'dir over its ancestor')
  t.deepEqual(sorted(fs.readdirSync(m.m('dir'))), ['one.txt', 'sub', 'two.txt'], 'failed renames changed nothing')
  // rename onto itself, and between hard links of one file
  fs.renameSync(m.m('b.txt'), m.m('b.txt'))
  t.is(fs.readFileSync(m.m('b.txt'), 'utf8'), 'alpha\n')
  fs.linkSync(m.m('dir/one.txt'), m.m('one-link'))
  fs.renameSync(m.m('dir/one.txt'), m.m('one-link'))
  t.is(fs.readFileSync(m.m('dir/one.txt'), 'utf8'), '1\n', 'rename of two links of one file does nothing')
  t.is(fs.readFileSync(m.m('one-link'), 'utf8'), '1\n')
  hostUnchanged(t, m)
})

mtest('rename of a directory onto a deleted name (a whiteout in the store) works', async (t) => {
  const host = { ...fixture(), gone: { g: 'g' } }
  const m = await useMount(t, { host })
  // the everyday form: mv d d.bak && mv d.bak d
  fs.renameSync(m.m('dir'), m.m('dir.bak'))
  t.is(errOf(() => fs.renameSync(m.m('dir.bak'), m.m('dir'))), 'OK', 'mv dir.bak dir')
  t.deepEqual(sorted(fs.readdirSync(m.m('dir'))), ['one.txt', 'sub', 'two.txt'])
  // file onto the whiteout of a file
  fs.unlinkSync(m.m('b.txt'))
  fs.renameSync(m.m('a.txt'), m.m('b.txt'))
  t.is(fs.readFileSync(m.m('b.txt'), 'utf8'), 'alpha\n')
  // directory onto the whiteout of a directory
  t.is(sh(`rm -r ${q(m.m('gone'))}`).status, 0)
  t.is(errOf(() => fs.renameSync(m.m('dir'), m.m('gone'))), 'OK')
  t.deepEqual(sorted(fs.readdirSync(m.m('gone'))), ['one.txt', 'sub', 'two.txt'], 'shows what dir showed, not the deleted host gone/')
  t.is(errOf(() => fs.lstatSync(m.m('gone/g'))), 'ENOENT')
  // directory onto the whiteout of a file
  fs.unlinkSync(m.m('secret'))
  t.is(errOf(() => fs.renameSync(m.m('empty'), m.m('secret'))), 'OK')
  t.true(fs.existsSync(m.m('secret')) && lst(m.m('secret')).isDirectory())
  // a sandbox directory onto the whiteout of a host directory
  fs.mkdirSync(m.m('newd'))
  fs.writeFileSync(m.m('newd/n'), 'n')
  t.is(sh(`rm -r ${q(m.m('many'))}`).status, 0)
  t.is(errOf(() => fs.renameSync(m.m('newd'), m.m('many'))), 'OK')
  t.deepEqual(fs.readdirSync(m.m('many')), ['n'], 'the deleted host files must not come back')
  t.deepEqual(walk(m.mnt).filter(p => p.startsWith('many/')), ['many/n'])
  hostUnchanged(t, m)
})
