/**
 * Metadata: chmod, chown, utimens (nanoseconds, touch -m / -a) on unchanged host files give
 * metadata-only siblings; a later write keeps them. Permission checks for a non-root user,
 * ownership of new files. Remounting the same store keeps every change.
 */
import fs from 'node:fs'
import { errOf, hashTree, sh, startMount, storeInfo, useMount } from '../helpers/sandbox.js'
import { asNobody, fixture, hostUnchanged, lst, mtest, q, sorted } from '../helpers/mountkit.js'

const T2001 = BigInt(Date.UTC(2001, 1, 3, 4, 5, 6)) * 1000000n + 123456789n
const touch = (args: string): ReturnType<typeof sh> => sh(`touch ${args}`, { env: { TZ: 'UTC' } })

mtest('chmod of a host file: metadata-only sibling, content still read right', async (t) => {
  const m = await useMount(t, { host: fixture() })
  fs.chmodSync(m.m('big.bin'), 0o600)
  t.is(lst(m.m('big.bin')).mode & 0o7777n, 0o600n)
  const info = storeInfo(m.u('big.bin'))
  t.like(info.origin, { path: 'big.bin', data: 'host' })
  t.is(lst(m.u('big.bin')).size, 0n, 'the sibling holds no bytes')
  t.is(lst(m.m('big.bin')).size, BigInt(1 << 20), 'stat still shows the host size')
  t.true(fs.readFileSync(m.m('big.bin')).equals(fs.readFileSync(m.h('big.bin'))))
  // set-id and sticky bits, and a directory
  fs.chmodSync(m.m('script'), 0o4755)
  t.is(lst(m.m('script')).mode & 0o7777n, 0o4755n)
  fs.chmodSync(m.m('dir'), 0o3770)
  t.is(lst(m.m('dir')).mode & 0o7777n, 0o3770n)
  t.like(storeInfo(m.u('dir')), { exists: true, opaque: false, redirect: null })
  t.deepEqual(sorted(fs.readdirSync(m.m('dir'))), ['one.txt', 'sub', 'two.txt'])
  t.deepEqual(fs.readdirSync(m.u('dir')), [], 'chmod of a directory copies no children')
  // chmod through a symlink changes the target
  fs.chmodSync(m.m('link-to-a'), 0o604)
  t.is(lst(m.m('a.txt')).mode & 0o777n, 0o604n)
  t.is(storeInfo(m.u('a.txt')).origin?.data, 'host')
  t.is(errOf(() => fs.chmodSync(m.m('nope'), 0o600)), 'ENOENT')
  hostUnchanged(t, m)
})

mtest('chown of a host file: metadata-only sibling with the new owner', async (t) => {
  const m = await useMount(t, { host: fixture() })
  fs.chownSync(m.m('a.txt'), 1234, 5678)
  const st = lst(m.m('a.txt'))
  t.is(st.uid, 1234n)
  t.is(st.gid, 5678n)
  t.like(storeInfo(m.u('a.txt')).origin, { data: 'host' })
  t.is(lst(m.u('a.txt')).uid, 1234n)
  t.is(fs.readFileSync(m.m('a.txt'), 'utf8'), 'alpha\n')
  // only the group; and lchown of a symlink
  fs.chownSync(m.m('b.txt'), -1, 42)
  t.is(lst(m.m('b.txt')).uid, 0n)
  t.is(lst(m.m('b.txt')).gid, 42n)
  fs.lchownSync(m.m('link-to-a'), 7, 7)
  t.is(lst(m.m('link-to-a')).uid, 7n)
  t.is(lst(m.m('a.txt')).uid, 1234n, 'lchown did not follow')
  t.true(lst(m.u('link-to-a')).isSymbolicLink())
  t.is(fs.readlinkSync(m.m('link-to-a')), 'a.txt')
  // chown of a directory
  fs.chownSync(m.m('dir'), 99, 99)
  t.is(lst(m.m('dir')).uid, 99n)
  t.deepEqual(sorted(fs.readdirSync(m.m('dir'))), ['one.txt', 'sub', 'two.txt'])
  // chown clears set-id bits, as on ext4
  fs.chmodSync(m.m('script'), 0o6755)
  fs.chownSync(m.m('script'), 1, 1)
  t.is(lst(m.m('script')).mode & 0o7777n, 0o755n)
  hostUnchanged(t, m)
})

mtest('utimens with nanoseconds; touch -m and touch -a change only their time', async (t) => {
  const m = await useMount(t, { host: fixture() })
  // touch -c: utimensat(2) by path, no open (plain touch opens O_WRONLY first: see below)
  const r = touch(`-c -d '2001-02-03 04:05:06.123456789' ${q(m.m('a.txt'))}`)
  t.is(r.status, 0, r.stderr)
  const s = lst(m.m('a.txt'))
  t.is(s.mtimeNs, T2001)
  t.is(s.atimeNs, T2001)
  t.like(storeInfo(m.u('a.txt')).origin, { data: 'host' })
  t.is(lst(m.u('a.txt')).size, 0n)
  t.is(lst(m.u('a.txt')).mtimeNs, T2001)
  t.is(fs.readFileSync(m.m('a.txt'), 'utf8'), 'alpha\n')
  // touch -m: mtime now, atime untouched (UTIME_OMIT)
  const before = BigInt(Date.now() - 2000) * 1000000n
  t.is(touch(`-c -m ${q(m.m('a.txt'))}`).status, 0)
  const s2 = lst(m.m('a.txt'))
  t.true(s2.mtimeNs > before, 'mtime is now')
  t.is(s2.atimeNs, T2001, 'atime kept')
  // touch -a: atime now, mtime untouched
  t.is(touch(`-c -a -d '2001-02-03 04:05:06.123456789' ${q(m.m('a.txt'))}`).status, 0)
  t.is(lst(m.m('a.txt')).atimeNs, T2001)
  t.is(lst(m.m('a.txt')).mtimeNs, s2.mtimeNs)
  t.is(touch(`-c -a ${q(m.m('a.txt'))}`).status, 0)
  const s3 = lst(m.m('a.txt'))
  t.true(s3.atimeNs > before)
  t.is(s3.mtimeNs, s2.mtimeNs, 'mtime kept')
  t.like(storeInfo(m.u('a.txt')).origin, { data: 'host' }, 'still metadata-only')
  t.is(lst(m.u('a.txt')).size, 0n)
  // node's utimes with fractional seconds, on a file, a directory and a symlink (lutimes)
  fs.utimesSync(m.m('b.txt'), 1000000000.5, 1000000001.25)
  t.is(lst(m.m('b.txt')).mtimeNs, 1000000001250000000n)
  t.is(lst(m.m('b.txt')).atimeNs, 1000000000500000000n)
  t.like(storeInfo(m.u('b.txt')).origin, { data: 'host' })
  fs.utimesSync(m.m('dir'), 1000000000.5, 1000000001.25)
  t.is(lst(m.m('dir')).mtimeNs, 1000000001250000000n)
  fs.lutimesSync(m.m('link-to-a'), 5, 6)
  t.is(lst(m.m('link-to-a')).mtimeNs, 6000000000n)
  t.is(lst(m.m('a.txt')).mtimeNs, s2.mtimeNs, 'lutimes did not follow the link')
  // touch of a missing name creates it
  t.is(touch(q(m.m('touched'))).status, 0)
  t.like(storeInfo(m.u('touched')), { exists: true, origin: null })
  hostUnchanged(t, m)
})

mtest('plain touch (open O_WRONLY, no write, futimens) makes a metadata-only sibling, no data copy', async (t) => {
  const m = await useMount(t, { host: fixture() })
  const r = touch(`-d '2001-02-03 04:05:06.123456789' ${q(m.m('b.txt'))}`)
  t.is(r.status, 0, r.stderr)
  t.is(lst(m.m('b.txt')).mtimeNs, T2001)
  t.is(fs.readFileSync(m.m('b.txt'), 'utf8'), 'bravo\n')
  t.like(storeInfo(m.u('b.txt')).origin, { data: 'host' }, 'spec: utimens on an unchanged host file gives a metadata-only sibling')
  t.is(lst(m.u('b.txt')).size, 0n, 'no bytes copied for a file that was never written')
  hostUnchanged(t, m)
})

mtest('a data copy-up after a metadata change keeps the new mode, owner, times', async (t) => {
  const m = await useMount(t, { host: fixture() })
  fs.chmodSync(m.m('a.txt'), 0o640)
  fs.chownSync(m.m('a.txt'), 321, 654)
  t.is(touch(`-c -d '2001-02-03 04:05:06.123456789' ${q(m.m('a.txt'))}`).status, 0)
  t.is(storeInfo(m.u('a.txt')).origin?.data, 'host')
  // open for writing, no write: nothing is copied, nothing changes
  fs.closeSync(fs.openSync(m.m('a.txt'), 'r+'))
  t.like(storeInfo(m.u('a.txt')).origin, { path: 'a.txt', data: 'host' })
  const s = lst(m.m('a.txt'))
  t.is(s.mode & 0o7777n, 0o640n)
  t.is(s.uid, 321n)
  t.is(s.gid, 654n)
  t.is(s.mtimeNs, T2001)
  t.is(s.size, 6n)
  // a write: the data copy-up, content right, mode and owner kept, mtime moves on
  fs.appendFileSync(m.m('a.txt'), 'more\n')
  const s2 = lst(m.m('a.txt'))
  t.like(storeInfo(m.u('a.txt')).origin, { path: 'a.txt', data: 'store' })
  t.is(fs.readFileSync(m.u('a.txt'), 'utf8'), 'alpha\nmore\n')
  t.is(fs.readFileSync(m.m('a.txt'), 'utf8'), 'alpha\nmore\n')
  t.is(s2.mode & 0o7777n, 0o640n)
  t.is(s2.uid, 321n)
  t.true(s2.mtimeNs > T2001)
  // same for a file whose first write comes with O_TRUNC
  fs.chmodSync(m.m('b.txt'), 0o700)
  fs.writeFileSync(m.m('b.txt'), 'replaced')
  t.is(lst(m.m('b.txt')).mode & 0o7777n, 0o700n)
  t.is(fs.readFileSync(m.m('b.txt'), 'utf8'), 'replaced')
  t.like(storeInfo(m.u('b.txt')).origin, { data: 'store' })
  hostUnchanged(t, m)
})

mtest('permission checks for a non-root user; new files belong to their creator', async (t) => {
  const m = await useMount(t, { host: fixture() })
  fs.chmodSync(m.root, 0o755) // let uid 65534 reach the mount point (not part of the host)
  const cat = asNobody(`cat ${q(m.m('secret'))}`)
  t.not(cat.status, 0)
  t.regex(cat.stderr, /Permission denied/)
  t.is(asNobody(`cat ${q(m.m('a.txt'))}`).stdout, 'alpha\n')
  const w = asNobody(`echo x >> ${q(m.m('a.txt'))}`)
  t.not(w.status, 0)
  t.regex(w.stderr, /Permission denied/)
  t.false(storeInfo(m.u('a.txt')).exists, 'a refused open copies nothing')
  t.not(asNobody(`touch ${q(m.m('dir/x'))}`).status, 0, 'no write permission on dir')
  t.not(asNobody(`rm -f ${q(m.m('b.txt'))}`).status, 0)
  t.not(asNobody(`chmod 777 ${q(m.m('b.txt'))}`).status, 0, 'not the owner')
  // a world-writable sticky directory
  fs.mkdirSync(m.m('pub'))
  fs.chmodSync(m.m('pub'), 0o1777)
  const c = asNobody(`echo mine > ${q(m.m('pub/f'))} && mkdir ${q(m.m('pub/d'))} && ln -s f ${q(m.m('pub/l'))}`)
  t.is(c.status, 0, c.stderr)
  for (const n of ['pub/f', 'pub/d', 'pub/l']) {
    t.is(lst(m.m(n)).uid, 65534n, n)
    t.is(lst(m.m(n)).gid, 65534n, n)
    t.is(lst(m.u(n)).uid, 65534n, n + ' in the store')
  }
  t.is(asNobody(`cat ${q(m.m('pub/f'))}`).stdout, 'mine\n')
  // sticky: root's file in pub cannot be removed by nobody
  fs.writeFileSync(m.m('pub/roots'), 'r')
  t.not(asNobody(`rm -f ${q(m.m('pub/roots'))}`).status, 0)
  t.true(fs.existsSync(m.m('pub/roots')))
  // the creator may chmod their own file
  t.is(asNobody(`chmod 600 ${q(m.m('pub/f'))}`).status, 0)
  t.is(lst(m.m('pub/f')).mode & 0o777n, 0o600n)
  // set-gid directory: new entries take its group
  fs.mkdirSync(m.m('grp'))
  fs.chownSync(m.m('grp'), 0, 4242)
  fs.chmodSync(m.m('grp'), 0o2777)
  t.is(asNobody(`touch ${q(m.m('grp/f'))} && mkdir ${q(m.m('grp/d'))}`).status, 0)
  t.is(lst(m.m('grp/f')).gid, 4242n)
  t.is(lst(m.m('grp/d')).gid, 4242n)
  t.is(lst(m.m('grp/d')).mode & 0o2000n, 0o2000n, 'subdirectories inherit set-gid')
  hostUnchanged(t, m)
})

mtest('remounting the same store shows every earlier change', async (t) => {
  const m = await useMount(t, { host: fixture() })
  fs.appendFileSync(m.m('a.txt'), 'more\n')
  fs.unlinkSync(m.m('b.txt'))
  fs.mkdirSync(m.m('newdir'))
  fs.writeFileSync(m.m('newdir/f'), 'f')
  fs.chmodSync(m.m('secret'), 0o640)
  fs.renameSync(m.m('many'), m.m('moved'))
  t.is(sh(`rm -r ${q(m.m('dir'))}`).status, 0)
  fs.mkdirSync(m.m('dir'))
  fs.symlinkSync('a.txt', m.m('sl'))
  fs.linkSync(m.m('script'), m.m('script2'))
  t.is(sh(`setfattr -n user.k -v v ${q(m.m('empty'))}`).status, 0)
  const ino = lst(m.m('secret')).ino
  const view = (): unknown => ({
    root: sorted(fs.readdirSync(m.mnt)),
    a: fs.readFileSync(m.m('a.txt'), 'utf8'),
    newf: fs.readFileSync(m.m('newdir/f'), 'utf8'),
    secretMode: Number(lst(m.m('secret')).mode & 0o7777n),
    secret: fs.readFileSync(m.m('secret'), 'utf8'),
    moved: fs.readdirSync(m.m('moved')).length,
    leaf: fs.readFileSync(m.m('moved/nested/deeper/leaf.txt'), 'utf8'),
    dir: fs.readdirSync(m.m('dir')),
    sl: fs.readlinkSync(m.m('sl')),
    links: [Number(lst(m.m('script2')).nlink), lst(m.m('script')).ino === lst(m.m('script2')).ino],
    xattr: sh(`getfattr --only-values -n user.k ${q(m.m('empty'))}`).stdout
  })
  const v1 = view()
  t.is(await m.stop(), 0, 'clean exit on SIGTERM')
  t.false(fs.existsSync(m.store + '/lock'), 'lock released')
  const m2 = await startMount({ dirs: { root: m.root, host: m.host, mnt: m.mnt, store: m.store } })
  t.teardown(m2.stop)
  t.deepEqual(view(), v1)
  t.is(lst(m.m('secret')).ino, ino, 'inode numbers survive a remount')
  t.is(errOf(() => fs.lstatSync(m.m('b.txt'))), 'ENOENT')
  // and the remounted view still works
  fs.appendFileSync(m.m('moved/f000'), 'x')
  t.is(fs.readFileSync(m.m('moved/f000'), 'utf8'), 'content of f0\nx')
  await m2.stop()
  t.is(hashTree(m.host), m.hostHash)
})
