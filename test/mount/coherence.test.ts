/**
 * The coherence contract (README, "Coherence"): what a process in the view sees when the
 * HOST changes under a live mount, for the strict settings, the 1 s middle ground and the
 * defaults; and that changes made through the mount are seen at once whatever the settings.
 *
 * These tests change the host on purpose, through its own path (never through the mount);
 * the host is compared with the hash taken after those changes, and the store must not
 * have picked anything up from them.
 */
import fs from 'node:fs'
import path from 'node:path'
import type { ExecutionContext } from 'ava'
import { errOf, hashTree, sh, useMount, type Mount } from '../helpers/sandbox.js'
import { lst, mtest, q } from '../helpers/mountkit.js'

const STRICT = ['--attr-timeout', '0', '--entry-timeout', '0', '--negative-timeout', '0', '--data-cache', 'none']
const ONE_SECOND = ['--attr-timeout', '1', '--entry-timeout', '1', '--negative-timeout', '1']

function tree (): { [name: string]: string | { [name: string]: string } } {
  return { 'grow.txt': 'one\n', 'gone.txt': 'bye\n', 'mode.txt': 'm\n', 'mine.txt': 'host copy\n', dir: { 'x.txt': 'x\n' } }
}

/** Warms the kernel's caches for every name the test then changes on the host. */
function warm (t: ExecutionContext, m: Mount): void {
  t.is(fs.readFileSync(m.m('grow.txt'), 'utf8'), 'one\n')
  t.is(lst(m.m('gone.txt')).size, 4n)
  t.is(lst(m.m('mode.txt')).mode & 0o777n, 0o644n)
  t.is(errOf(() => fs.lstatSync(m.m('new.txt'))), 'ENOENT') // a cached "no such file"
  t.is(errOf(() => fs.lstatSync(m.m('dir/new.txt'))), 'ENOENT')
  // listed twice by other processes: the second listing may be kept by the kernel
  for (let i = 0; i < 2; i++) t.is(sh('ls dir', { cwd: m.mnt }).stdout, 'x.txt\n')
}

/** Changes the host directly, as an editor or git pull outside the sandbox would. */
function changeHost (m: Mount): void {
  fs.appendFileSync(m.h('grow.txt'), 'two\n')
  fs.rmSync(m.h('gone.txt'))
  fs.chmodSync(m.h('mode.txt'), 0o600)
  fs.writeFileSync(m.h('new.txt'), 'new on the host\n')
  fs.writeFileSync(m.h('dir/new.txt'), 'also new\n')
}

/** What the view shows of the host changes, read by a separate process (cat/stat). */
function seen (m: Mount): { grow: string, growSize: string, gone: string, mode: string, created: string, listing: string } {
  const r = (cmd: string): string => sh(cmd, { cwd: m.mnt }).stdout.trim()
  return {
    grow: r('cat grow.txt'),
    growSize: r('stat -c %s grow.txt'),
    gone: r('test -e gone.txt && echo present || echo absent'),
    mode: r('stat -c %a mode.txt'),
    created: r('cat new.txt dir/new.txt 2>/dev/null'),
    listing: r('ls dir')
  }
}

const ALL_SEEN = { grow: 'one\ntwo', growSize: '8', gone: 'absent', mode: '600', created: 'new on the host\nalso new', listing: 'new.txt\nx.txt' }

function storeTookNothing (t: ExecutionContext, m: Mount): void {
  for (const n of ['grow.txt', 'gone.txt', 'mode.txt', 'new.txt', 'dir/new.txt']) {
    t.false(fs.existsSync(m.u(n)), `the store has nothing for ${n}: host changes are not copied`)
  }
}

mtest('strict settings (timeouts 0, --data-cache none): every host change is seen at once', async (t) => {
  const m = await useMount(t, { host: tree(), args: STRICT })
  warm(t, m)
  changeHost(m)
  const after = hashTree(m.host)
  t.deepEqual(seen(m), ALL_SEEN)
  // store
  storeTookNothing(t, m)
  // host: exactly the changes made to it, nothing from the mount
  t.is(hashTree(m.host), after)
})

mtest('--attr-timeout 1 --entry-timeout 1 --negative-timeout 1: host changes are seen within about a second', async (t) => {
  const m = await useMount(t, { host: tree(), args: ONE_SECOND })
  warm(t, m)
  changeHost(m)
  const after = hashTree(m.host)
  const t0 = Date.now()
  let s = seen(m)
  while (JSON.stringify(s) !== JSON.stringify(ALL_SEEN) && Date.now() - t0 < 5000) {
    await new Promise(resolve => setTimeout(resolve, 100))
    s = seen(m)
  }
  const ms = Date.now() - t0
  t.deepEqual(s, ALL_SEEN)
  t.true(ms < 2500, `all host changes seen after ${ms} ms (timeouts of 1 s)`)
  storeTookNothing(t, m)
  t.is(hashTree(m.host), after)
})

mtest('default settings: changes made through the mount are seen at once by other processes, host changes within the 60 s timeouts', async (t) => {
  const m = await useMount(t, { host: tree() })
  warm(t, m)
  // Through the mount: a create over a cached "no such file", a delete, a chmod, an append.
  fs.writeFileSync(m.m('new.txt'), 'made in the sandbox\n')
  fs.rmSync(m.m('gone.txt'))
  fs.chmodSync(m.m('mode.txt'), 0o600)
  fs.appendFileSync(m.m('grow.txt'), 'two\n')
  fs.mkdirSync(m.m('dir2'))
  t.deepEqual(seen(m), { ...ALL_SEEN, created: 'made in the sandbox', listing: 'x.txt' })
  t.is(sh('ls dir2 && echo ok', { cwd: m.mnt }).stdout.trim(), 'ok')
  // store
  t.is(fs.readFileSync(m.u('new.txt'), 'utf8'), 'made in the sandbox\n')
  t.is(fs.readFileSync(m.u('grow.txt'), 'utf8'), 'one\ntwo\n')
  t.true(fs.statSync(m.u('dir2')).isDirectory())
  // host: untouched by all of that
  t.is(hashTree(m.host), m.hostHash)

  // A host change to a name the kernel has cached is not promised before the timeout; one
  // the kernel never looked up is seen at once.
  fs.writeFileSync(m.h('dir/fresh.txt'), 'fresh\n')
  t.is(sh(`cat ${q(path.join(m.mnt, 'dir', 'fresh.txt'))}`).stdout, 'fresh\n')
})

mtest('a sibling is the sandbox\'s copy: host changes to a copied-up file are not seen, even with the strict settings', async (t) => {
  const m = await useMount(t, { host: tree(), args: STRICT })
  fs.appendFileSync(m.m('mine.txt'), 'sandbox edit\n')
  fs.writeFileSync(m.h('mine.txt'), 'host rewrote it\n')
  const after = hashTree(m.host)
  t.is(sh('cat mine.txt', { cwd: m.mnt }).stdout, 'host copy\nsandbox edit\n')
  t.is(fs.readFileSync(m.u('mine.txt'), 'utf8'), 'host copy\nsandbox edit\n')
  t.is(hashTree(m.host), after)
})
