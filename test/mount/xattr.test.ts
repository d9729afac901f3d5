/**
 * Extended attributes: user.* set/get/list/remove through the mount (metadata-only copy-up),
 * host xattrs visible, the store's own user.siblingfs.* markers never listed or readable.
 */
import fs from 'node:fs'
import { errOf, sh, storeInfo, useMount } from '../helpers/sandbox.js'
import path from 'node:path'
import { lgetxattr, llistxattr, lsetxattr } from '../../src/sys/native.js'
import { fixture, hostUnchanged, mtest, q, useMountPrepared } from '../helpers/mountkit.js'

/** Names listed by getfattr -d -m - (all namespaces we may read), sorted. */
function names (p: string): string[] {
  const r = sh(`getfattr -h --absolute-names -m - ${q(p)}`)
  return r.stdout.split('\n').filter(l => l !== '' && !l.startsWith('#')).sort()
}
function value (p: string, n: string): { status: number | null, value: string, err: string } {
  const r = sh(`getfattr -h --absolute-names --only-values -n ${q(n)} ${q(p)}`)
  return { status: r.status, value: r.stdout, err: r.stderr }
}
function setx (p: string, n: string, v: string): { status: number | null, stderr: string } {
  return sh(`setfattr -h -n ${q(n)} -v ${q(v)} ${q(p)}`)
}

mtest('user.* xattrs: set, get, list, remove on a host file (metadata-only sibling)', async (t) => {
  const m = await useMount(t, { host: fixture() })
  const f = m.m('a.txt')
  t.deepEqual(names(f), [])
  t.is(setx(f, 'user.color', 'red').status, 0)
  t.is(value(f, 'user.color').value, 'red')
  t.like(storeInfo(m.u('a.txt')).origin, { data: 'host' })
  t.is(lgetxattr(m.u('a.txt'), 'user.color')?.toString(), 'red', 'stored on the sibling under its own name')
  t.is(fs.readFileSync(f, 'utf8'), 'alpha\n')
  t.is(setx(f, 'user.size', '').status, 0, 'empty value')
  t.deepEqual(names(f), ['user.color', 'user.size'])
  t.is(setx(f, 'user.color', 'blue').status, 0, 'replace')
  t.is(value(f, 'user.color').value, 'blue')
  t.is(sh(`setfattr -x user.color ${q(f)}`).status, 0)
  t.deepEqual(names(f), ['user.size'])
  t.not(value(f, 'user.color').status, 0)
  t.regex(value(f, 'user.color').err, /No such attribute/)
  t.regex(sh(`setfattr -x user.nope ${q(f)}`).stderr, /No such attribute/)
  // binary value
  t.is(sh(`setfattr -n user.bin -v 0x00ff10 ${q(f)}`).status, 0)
  t.is(sh(`getfattr -e hex --only-values -n user.bin ${q(f)} | od -An -tx1`).stdout.trim(), '00 ff 10')
  // a directory; a write keeps the xattrs
  t.is(setx(m.m('dir'), 'user.d', '1').status, 0)
  t.is(value(m.m('dir'), 'user.d').value, '1')
  t.deepEqual(fs.readdirSync(m.u('dir')), [])
  fs.appendFileSync(f, 'x')
  t.like(storeInfo(m.u('a.txt')).origin, { data: 'store' })
  t.deepEqual(names(f), ['user.bin', 'user.size'])
  // errors
  t.regex(setx(m.m('link-to-a'), 'user.x', 'y').stderr, /Operation not permitted/, 'user.* on a symlink is EPERM, as on ext4')
  t.not(setx(m.m('nope'), 'user.x', 'y').status, 0)
  t.regex(setx(m.m('b.txt'), 'bogus.x', 'y').stderr, /Operation not supported/)
  t.false(storeInfo(m.u('b.txt')).exists)
  hostUnchanged(t, m)
})

mtest('the store markers (user.siblingfs.*) are never listed or readable through the mount', async (t) => {
  const m = await useMount(t, { host: fixture() })
  fs.appendFileSync(m.m('a.txt'), 'x')            // origin
  fs.chmodSync(m.m('b.txt'), 0o600)                // origin, data host
  fs.renameSync(m.m('many'), m.m('moved'))         // redirect + whiteout
  t.is(sh(`rm -r ${q(m.m('dir'))}`).status, 0)
  fs.mkdirSync(m.m('dir'))                          // opaque
  t.true(storeInfo(m.u('a.txt')).origin !== null)
  t.true(storeInfo(m.u('moved')).redirect !== null)
  t.true(storeInfo(m.u('dir')).opaque)
  for (const p of ['', 'a.txt', 'b.txt', 'moved', 'dir', 'moved/f001']) {
    const listed = names(m.m(p))
    t.false(listed.some(n => n.startsWith('user.siblingfs.')), `${p}: ${listed.join(',')}`)
    for (const marker of ['origin', 'redirect', 'opaque', 'wh']) {
      t.not(value(m.m(p), 'user.siblingfs.' + marker).status, 0, `${p}: ${marker} must not be readable`)
    }
  }
  // a user's own attribute in that namespace is kept apart from the markers
  t.is(setx(m.m('a.txt'), 'user.siblingfs.origin', 'mine').status, 0)
  t.is(value(m.m('a.txt'), 'user.siblingfs.origin').value, 'mine')
  t.deepEqual(names(m.m('a.txt')), ['user.siblingfs.origin'])
  t.like(storeInfo(m.u('a.txt')).origin, { path: 'a.txt', data: 'store' }, 'the real marker is intact')
  t.is(fs.readFileSync(m.m('a.txt'), 'utf8'), 'alpha\nx')
  t.is(sh(`setfattr -x user.siblingfs.origin ${q(m.m('a.txt'))}`).status, 0)
  t.deepEqual(names(m.m('a.txt')), [])
  t.like(storeInfo(m.u('a.txt')).origin, { data: 'store' })
  // removing a marker by name does nothing to the marker
  t.not(sh(`setfattr -x user.siblingfs.redirect ${q(m.m('moved'))}`).status, 0)
  t.like(storeInfo(m.u('moved')), { redirect: 'many' })
  t.is(fs.readdirSync(m.m('moved')).length, 201)
  hostUnchanged(t, m)
})

mtest('host xattrs show through, and survive a metadata copy-up', async (t) => {
  const m = await useMountPrepared(t, fixture(), (host) => {
    lsetxattr(host + '/a.txt', 'user.note', Buffer.from('from host'), 0)
    lsetxattr(host + '/dir', 'user.dirnote', Buffer.from('d'), 0)
    })
  t.is(value(m.m('a.txt'), 'user.note').value, 'from host')
  t.deepEqual(names(m.m('a.txt')), ['user.note'])
  fs.chmodSync(m.m('a.txt'), 0o600)
  t.is(value(m.m('a.txt'), 'user.note').value, 'from host', 'copied with the metadata')
  t.is(setx(m.m('a.txt'), 'user.note', 'mine').status, 0)
  t.is(value(m.m('a.txt'), 'user.note').value, 'mine')
  t.is(sh(`setfattr -x user.dirnote ${q(m.m('dir'))}`).status, 0, 'remove a host xattr')
  t.deepEqual(names(m.m('dir')), [])
  t.like(storeInfo(m.u('dir')), { exists: true })
  t.is(errOf(() => fs.readdirSync(m.m('dir'))), 'OK')
  hostUnchanged(t, m)
})

mtest('a host file\'s own user.siblingfs.* xattr survives copy-up (stored escaped)', async (t) => {
  const m = await useMountPrepared(t, fixture(), (host) => {
    lsetxattr(host + '/b.txt', 'user.siblingfs.tag', Buffer.from('host-owned'), 0)
  })
  t.is(value(m.m('b.txt'), 'user.siblingfs.tag').value, 'host-owned', 'visible before copy-up')
  fs.chmodSync(m.m('b.txt'), 0o600)
  t.is(value(m.m('b.txt'), 'user.siblingfs.tag').value, 'host-owned', 'kept across copy-up')
  t.deepEqual(names(m.m('b.txt')), ['user.siblingfs.tag'])
  t.is(lgetxattr(m.u('b.txt'), 'user.siblingfs.x.tag')?.toString(), 'host-owned', 'stored escaped (STORE-FORMAT.md)')
  hostUnchanged(t, m)
})

mtest('security.capability reads as absent through the mount (answered without a round trip; documented)', async (t) => {
  const m = await useMountPrepared(t, fixture(), (host) => {
    fs.writeFileSync(path.join(host, 'capfile'), 'x')
    // a file capability (cap_net_raw+ep), as setcap would write it
    lsetxattr(path.join(host, 'capfile'), 'security.capability', Buffer.from('0100000200200000000000000000000000000000', 'hex'), 0)
  })
  t.is(errOf(() => lgetxattr(m.m('capfile'), 'security.capability')), 'OK')
  t.is(lgetxattr(m.m('capfile'), 'security.capability'), null, 'ENODATA through the mount')
  t.false(llistxattr(m.m('capfile')).includes('security.capability'))
  t.not(lgetxattr(m.h('capfile'), 'security.capability'), null, 'the host still has it')
  fs.appendFileSync(m.m('capfile'), 'y') // a write: the kernel asks, we answer in C
  t.is(fs.readFileSync(m.m('capfile'), 'utf8'), 'xy')
  hostUnchanged(t, m)
})
