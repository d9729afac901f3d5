/**
 * `siblingfs run --isolate chroot` over a minimal root tree, and the documented behaviour of
 * renameat2 flags (FUSE protocol 7.19 cannot carry them).
 */
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { RENAME_NOREPLACE, renameat2 } from '../../src/sys/native.js'
import { errOf, fuseAvailable, hashTree, storeInfo, useMount } from '../helpers/sandbox.js'
import { cli, freshDirs } from '../helpers/progkit.js'

const t0 = fuseAvailable && process.geteuid?.() === 0 ? test.serial : test.skip

/** A root tree with /bin/sh (dash) and the libraries it needs. */
function miniRoot (root: string): void {
  for (const f of ['/bin/dash', '/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2']) {
    const real = fs.realpathSync(f)
    fs.mkdirSync(path.join(root, path.dirname(f)), { recursive: true })
    fs.copyFileSync(real, path.join(root, f))
    fs.chmodSync(path.join(root, f), 0o755)
  }
  fs.symlinkSync('dash', path.join(root, 'bin', 'sh'))
  fs.mkdirSync(path.join(root, 'etc'))
  fs.writeFileSync(path.join(root, 'etc', 'motd'), 'host motd\n')
}

t0('run --isolate chroot: the view is the root; changes land in the store; exit status passes through', (t) => {
  if (!fs.existsSync('/lib64/ld-linux-x86-64.so.2') || !fs.existsSync('/bin/dash')) { t.pass('no dash/x86_64 loader here'); return }
  const d = freshDirs(t)
  miniRoot(d.host)
  const before = hashTree(d.host)
  const r = cli(['run', '--isolate', 'chroot', '--host', d.host, '--store', d.store, '--',
    '/bin/sh', '-c', 'echo sandboxed > /etc/motd; echo new > /added; test -e /proc/self && exit 9; exit 4'])
  t.is(r.status, 4, r.stderr)
  t.regex(r.stderr, /1 added, 1 modified, 0 deleted/)
  t.is(hashTree(d.host), before, 'the host root tree is unchanged')
  t.is(fs.readFileSync(path.join(d.store, 'upper', 'added'), 'utf8'), 'new\n')
  t.like(storeInfo(path.join(d.store, 'upper', 'etc', 'motd')).origin, { path: 'etc/motd', data: 'store' })
})


;(fuseAvailable ? test : test.skip)('renameat2 RENAME_NOREPLACE: EEXIST over an existing name (the kernel checks), EINVAL otherwise, as documented', async (t) => {
  const m = await useMount(t, { host: { a: 'a\n', b: 'b\n' } })
  t.is(errOf(() => renameat2(m.m('a'), m.m('b'), RENAME_NOREPLACE)), 'EEXIST', 'as on ext4')
  t.is(errOf(() => renameat2(m.m('a'), m.m('c'), RENAME_NOREPLACE)), 'EINVAL', 'ext4 would rename; FUSE 7.19 cannot carry the flag')
  t.false(fs.existsSync(m.m('c')))
  t.is(fs.readFileSync(m.m('a'), 'utf8'), 'a\n')
  t.is(fs.readFileSync(m.m('b'), 'utf8'), 'b\n')
  t.false(storeInfo(m.u('a')).exists)
  t.is(hashTree(m.host), m.hostHash)
})
