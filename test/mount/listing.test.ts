/**
 * Directories the sandbox never changed are listed, and their entries stat'ed, in C from
 * the host directory (patched fuse-native, setHostDir) once JS has listed them. These tests
 * list and stat first (so the C path is on), then change the directory through the mount
 * in every way that gives it a store copy, and check that listings and attributes follow
 * at once: in the view (read by separate processes), in the store, and on the host.
 */
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import type { ExecutionContext } from 'ava'
import { errOf, hashTree, sh, storeInfo, useMount, workEntries, type Mount, type TreeNode } from '../helpers/sandbox.js'
import { lgetxattr, lsetxattr } from '../../src/sys/native.js'
import { asNobody, hostUnchanged, lst, mtest, pattern, q, readerAcrossWrite, sorted } from '../helpers/mountkit.js'
import { cli } from '../helpers/progkit.js'

function tree (): { [name: string]: TreeNode } {
  return {
    a: { 'one.txt': '1\n', 'two.txt': '2\n', b: { 'deep.txt': 'd\n', c: { 'x.txt': 'x\n' } } },
    other: { 'o.txt': 'o\n' }
  }
}

/** `ls -a` of a view directory by a separate process (a listing, not a cached lookup). */
function ls (m: Mount, rel: string): string[] {
  const r = sh(`ls -a1 '${m.m(rel)}'`)
  return r.status === 0 ? sorted(r.stdout.split('\n').filter(l => l !== '')) : [`ls failed: ${r.stderr.trim()}`]
}

/** Lists and stats every directory twice: the second time is answered in C. */
function warm (m: Mount): void {
  for (let i = 0; i < 2; i++) sh(`find '${m.mnt}' -printf '%i %n %s\\n' > /dev/null`)
}

function sameAsHost (t: ExecutionContext, m: Mount, rel: string): void {
  const v = lst(m.m(rel))
  const h = lst(m.h(rel))
  t.is(v.ino, h.ino, `${rel}: inode number`)
  t.is(v.mode, h.mode, `${rel}: mode`)
  t.is(v.size, h.size, `${rel}: size`)
  t.is(v.nlink, h.nlink, `${rel}: link count`)
  t.is(v.mtimeNs, h.mtimeNs, `${rel}: mtime`)
}

mtest('an unchanged directory and its entries read as the host ones (listing, inode numbers, attributes, ENOENT)', async (t) => {
  const m = await useMount(t, { host: tree() })
  warm(m)
  t.deepEqual(ls(m, 'a'), ['.', '..', 'b', 'one.txt', 'two.txt'])
  t.deepEqual(ls(m, 'a/b/c'), ['.', '..', 'x.txt'])
  for (const rel of ['a', 'a/one.txt', 'a/b', 'a/b/c', 'a/b/c/x.txt']) sameAsHost(t, m, rel)
  t.is(sh(`stat '${m.m('a/nope')}'`).status, 1, 'a missing name is missing')
  const dots = sh(`ls -ai1 '${m.m('a/b')}'`).stdout.split('\n').filter(l => /\s\.\.?$/.test(l)).map(l => BigInt(l.trim().split(/\s+/)[0]))
  t.deepEqual(dots, [lst(m.m('a/b')).ino, lst(m.m('a')).ino], "'.' and '..' carry the directories' inode numbers")
  // store: nothing; host: untouched
  t.false(fs.existsSync(m.u('a')))
  hostUnchanged(t, m)
})

mtest('after listing, every change through the mount shows at once in listings and stat', async (t) => {
  const m = await useMount(t, { host: tree() })
  warm(m)
  fs.writeFileSync(m.m('a/new.txt'), 'new\n')
  t.deepEqual(ls(m, 'a'), ['.', '..', 'b', 'new.txt', 'one.txt', 'two.txt'], 'create')
  fs.rmSync(m.m('a/one.txt'))
  t.deepEqual(ls(m, 'a'), ['.', '..', 'b', 'new.txt', 'two.txt'], 'unlink')
  t.is(sh(`stat '${m.m('a/one.txt')}'`).status, 1, 'the removed name is gone for stat too')

  warm(m)
  fs.writeFileSync(m.m('a/b/c/y.txt'), 'y\n') // a grandchild gets a store copy: its parents too
  t.deepEqual(ls(m, 'a/b/c'), ['.', '..', 'x.txt', 'y.txt'], 'create two levels down')
  t.deepEqual(ls(m, 'a/b'), ['.', '..', 'c', 'deep.txt'])

  warm(m)
  fs.renameSync(m.m('other'), m.m('a/b/moved'))
  t.deepEqual(ls(m, 'a/b'), ['.', '..', 'c', 'deep.txt', 'moved'], 'rename of a listed directory into another')
  t.deepEqual(ls(m, 'a/b/moved'), ['.', '..', 'o.txt'])
  t.is(sh(`ls '${m.m('other')}'`).status, 2, 'the old name is gone')

  warm(m)
  fs.rmSync(m.m('a/b/c'), { recursive: true })
  t.deepEqual(ls(m, 'a/b'), ['.', '..', 'deep.txt', 'moved'], 'rm -r of a listed directory')

  warm(m)
  fs.chmodSync(m.m('a/two.txt'), 0o600)
  fs.chmodSync(m.m('a/b'), 0o700)
  t.is(lst(m.m('a/two.txt')).mode & 0o777n, 0o600n, 'chmod of an entry of a listed directory')
  t.is(lst(m.m('a/b')).mode & 0o777n, 0o700n, 'chmod of a listed directory')
  t.is(sh(`stat -c %a '${m.m('a/b')}'`).stdout.trim(), '700')
  fs.appendFileSync(m.m('a/b/deep.txt'), 'more\n')
  t.is(sh(`stat -c %s '${m.m('a/b/deep.txt')}'`).stdout.trim(), '7', 'a write to an entry of a listed directory')

  // store
  t.is(fs.readFileSync(m.u('a/new.txt'), 'utf8'), 'new\n')
  t.is(fs.readFileSync(m.u('a/b/deep.txt'), 'utf8'), 'd\nmore\n')
  t.true(fs.existsSync(m.u('a/b/moved')))
  // host
  hostUnchanged(t, m)
})

mtest('a file opened for reading in a listed directory (opened in C) still follows a later copy-up, and closes cleanly', async (t) => {
  const m = await useMount(t, { host: { d: { 'f.txt': 'old content\n', 'g.txt': 'other\n' } } })
  warm(m)
  const r = readerAcrossWrite(m.m('d/f.txt'), { fstat: true, listFirst: true })
  t.is(r.status, 0, r.stderr)
  t.is(r.stdout, 'old content\nNEW content\n12\n')
  // Many opens and closes served in C leave no descriptor behind in the daemon.
  const fds = (): number => fs.readdirSync(`/proc/${m.child.pid ?? 0}/fd`).length
  const before = fds()
  sh(`for i in $(seq 200); do cat '${m.m('d/g.txt')}' > /dev/null; done`)
  let after = fds()
  for (let i = 0; i < 40 && after > before; i++) { await new Promise(resolve => setTimeout(resolve, 50)); after = fds() }
  t.true(after <= before, `daemon descriptors: ${before} before, ${after} after 200 open/close`)
  // store
  t.is(fs.readFileSync(m.u('d/f.txt'), 'utf8'), 'NEW content\n')
  t.false(fs.existsSync(m.u('d/g.txt')))
  // host
  hostUnchanged(t, m)
})

mtest('a directory made in the sandbox is listed and stat\'ed from the store, and follows creates, deletes, renames and links into it', async (t) => {
  const m = await useMount(t, { host: tree() })
  fs.mkdirSync(m.m('made'))
  fs.mkdirSync(m.m('made/sub'))
  fs.writeFileSync(m.m('made/f.txt'), 'f\n')
  warm(m)
  t.deepEqual(ls(m, 'made'), ['.', '..', 'f.txt', 'sub'])
  const st = lst(m.m('made/f.txt'))
  t.is(st.ino, lst(m.m('made/f.txt')).ino)
  t.is(st.size, 2n)
  fs.writeFileSync(m.m('made/g.txt'), 'gg\n')
  fs.rmSync(m.m('made/f.txt'))
  t.deepEqual(ls(m, 'made'), ['.', '..', 'g.txt', 'sub'], 'create and unlink show at once')
  t.is(sh(`stat -c %s '${m.m('made/g.txt')}'`).stdout.trim(), '3')
  warm(m)
  // A host file renamed in keeps its host inode number (an origin record): listing and stat agree.
  fs.renameSync(m.m('a/one.txt'), m.m('made/one.txt'))
  fs.linkSync(m.m('a/two.txt'), m.m('made/two-link'))
  // d_ino as getdents reports it (python's scandir), not what a stat says
  const listed = sh(`python3 -c 'import os,sys\nfor e in os.scandir(sys.argv[1]): print(e.inode(), e.name)' '${m.m('made')}'`).stdout.split('\n').filter(l => l !== '').map(l => l.trim().split(/\s+/))
  const inoOf = (n: string): string => listed.find(x => x[1] === n)?.[0] ?? 'missing'
  t.is(inoOf('one.txt'), String(lst(m.h('a/one.txt')).ino), 'the renamed host file shows its host inode number in the listing')
  t.is(inoOf('one.txt'), String(lst(m.m('made/one.txt')).ino), 'and in stat')
  t.is(inoOf('two-link'), String(lst(m.m('a/two.txt')).ino), 'a hard link shows its file\'s inode number')
  t.is(sh(`stat -c %s '${m.m('made/one.txt')}'`).stdout.trim(), '2', 'a metadata-only sibling shows its host size')
  // store
  t.true(fs.existsSync(m.u('made/one.txt')))
  t.false(fs.existsSync(m.u('made/f.txt')))
  // host
  hostUnchanged(t, m)
})

mtest('subdirectories reached by lookup below a listed directory are answered in C too, and follow changes', async (t) => {
  const m = await useMount(t, { host: tree() })
  sh(`ls '${m.m('a')}' > /dev/null; ls '${m.m('a')}' > /dev/null`) // 'a' is listed from the host from now on
  t.is(sh(`stat -c %s '${m.m('a/b/c/x.txt')}'`).stdout.trim(), '2', 'lookups of a/b, a/b/c, a/b/c/x.txt')
  t.deepEqual(ls(m, 'a/b/c'), ['.', '..', 'x.txt'])
  const dots = sh(`python3 -c 'import os,sys\nfor e in os.scandir(sys.argv[1]): print(e.inode(), e.name)' '${m.m('a/b/c')}'`)
  t.is(dots.status, 0, dots.stderr)
  sameAsHost(t, m, 'a/b/c')
  sameAsHost(t, m, 'a/b/c/x.txt')
  fs.writeFileSync(m.m('a/b/c/new.txt'), 'n\n')
  t.deepEqual(ls(m, 'a/b/c'), ['.', '..', 'new.txt', 'x.txt'], 'a create below: the whole subtree is dropped')
  fs.renameSync(m.m('a/b'), m.m('a/b2'))
  t.deepEqual(ls(m, 'a'), ['.', '..', 'b2', 'one.txt', 'two.txt'])
  t.deepEqual(ls(m, 'a/b2/c'), ['.', '..', 'new.txt', 'x.txt'])
  t.is(sh(`ls '${m.m('a/b')}'`).status, 2)
  // store
  t.is(fs.readFileSync(m.u('a/b2/c/new.txt'), 'utf8'), 'n\n')
  // host
  hostUnchanged(t, m)
})

mtest('a file written in a directory made in the sandbox is read back through a C open, and writes through other handles show', async (t) => {
  const m = await useMount(t, { host: tree() })
  fs.mkdirSync(m.m('made'))
  fs.writeFileSync(m.m('made/f.txt'), 'first\n')
  const r = readerAcrossWrite(m.m('made/f.txt'), { write: 'FIRST', fstat: true })
  t.is(r.status, 0, r.stderr)
  t.is(r.stdout, 'first\nFIRST\n6\n')
  t.is(sh(`cat '${m.m('made/f.txt')}'`).stdout, 'FIRST\n')
  // store
  t.is(fs.readFileSync(m.u('made/f.txt'), 'utf8'), 'FIRST\n')
  // host
  hostUnchanged(t, m)
})

mtest('--compress lz4: a chunked file in a directory served from the store reads back byte for byte (its opens and reads stay in JS); a map damaged while unmounted answers EIO', async (t) => {
  const m = await useMount(t, { host: tree(), args: ['--compress', 'lz4'] })
  fs.mkdirSync(m.m('made'))
  const data = Buffer.concat([Buffer.from('{"k": "v"}\n'.repeat(20000)), Buffer.from(Array.from({ length: 70000 }, (_, i) => (i * 7919) & 255))])
  fs.writeFileSync(m.m('made/big.json'), data)
  fs.writeFileSync(m.m('made/other.json'), data.subarray(0, 5000))
  for (let i = 0; i < 2; i++) {
    const r = sh(`cat '${m.m('made/big.json')}' | sha256sum`)
    t.is(r.stdout.split(' ')[0], (await import('node:crypto')).createHash('sha256').update(data).digest('hex'), `read ${i}`)
  }
  t.is(sh(`stat -c %s '${m.m('made/big.json')}'`).stdout.trim(), String(data.length))
  // store: chunked (a map record), compressed smaller than the data
  const id = sh(`getfattr --only-values -n user.siblingfs.chunks '${m.u('made/other.json')}'`).stdout.trim()
  t.regex(id, /^[0-9a-f]{8,}$/)
  // A map damaged while unmounted: after a remount (and a listing, so that the directory is
  // served from the store) the file fails with EIO, nothing else does. (A chunked file's
  // size comes from its map; a damaged one shows size 0, so an open answered without the
  // map would read as empty instead: such opens must stay in JS.)
  await m.stop()
  fs.writeFileSync(`${m.store}/maps/${id}`, 'garbage')
  const m2 = await useMount(t, { dirs: { root: m.root, host: m.host, mnt: m.mnt, store: m.store }, args: ['--compress', 'lz4'] })
  sh(`ls '${m2.m('made')}' > /dev/null; ls '${m2.m('made')}' > /dev/null`)
  const bad = sh(`cat '${m2.m('made/other.json')}'`)
  t.not(bad.status, 0)
  t.regex(bad.stderr, /Input\/output error/)
  t.is(sh(`cat '${m2.m('made/big.json')}' | wc -c`).stdout.trim(), String(data.length), 'the other file still reads')
  // host
  hostUnchanged(t, m2)
})

// With --debug the daemon logs every request to its stderr, a pipe this process must keep
// draining: the listings below run asynchronously (a synchronous child would block the
// event loop, the daemon on a full pipe, and the child on the daemon).
const execFileP = promisify(execFile)

async function lsA (m: Mount, rel: string): Promise<string[]> {
  const r = await execFileP('ls', ['-a1', m.m(rel)])
  return sorted(r.stdout.split('\n').filter(l => l !== ''))
}

async function warmA (m: Mount): Promise<void> {
  for (let i = 0; i < 2; i++) await execFileP('find', [m.mnt, '-printf', '%i %n %s\n'], { maxBuffer: 1 << 24 })
}

/** Requests of one opcode the daemon has logged so far (libfuse --debug), once its log is quiet. */
async function requests (m: Mount, opcode: string): Promise<number> {
  let last = -1
  while (m.stderr().length !== last) {
    last = m.stderr().length
    await new Promise(resolve => setTimeout(resolve, 150))
  }
  return m.stderr().split('\n').filter(l => l.includes(`opcode: ${opcode} `)).length
}

mtest('the kernel keeps the listing of a directory listed in C: listing it again asks the daemon nothing, and every change through the mount drops it', async (t) => {
  const m = await useMount(t, { host: tree(), args: ['--debug'] })
  await warmA(m)
  await lsA(m, 'a') // opened while registered: this listing fills the kernel's cache
  // Other tests drop the kernel's caches (a global knob), which may throw this listing out
  // between two of ours: a few tries, each filling the cache again first.
  let kept = false
  for (let tries = 0; tries < 4 && !kept; tries++) {
    await lsA(m, 'a')
    const before = await requests(m, 'READDIR')
    t.true(before > 0, 'the log shows READDIR requests')
    for (let i = 0; i < 3; i++) t.deepEqual(await lsA(m, 'a'), ['.', '..', 'b', 'one.txt', 'two.txt'])
    kept = await requests(m, 'READDIR') === before
  }
  t.true(kept, 'three more listings: no READDIR')

  const changes: Array<[string, () => void, string[]]> = [
    ['create', () => fs.writeFileSync(m.m('a/new.txt'), 'n\n'), ['.', '..', 'b', 'new.txt', 'one.txt', 'two.txt']],
    ['unlink', () => fs.rmSync(m.m('a/one.txt')), ['.', '..', 'b', 'new.txt', 'two.txt']],
    ['rename within', () => fs.renameSync(m.m('a/two.txt'), m.m('a/2.txt')), ['.', '..', '2.txt', 'b', 'new.txt']],
    ['rename in', () => fs.renameSync(m.m('other/o.txt'), m.m('a/o.txt')), ['.', '..', '2.txt', 'b', 'new.txt', 'o.txt']],
    ['link in', () => fs.linkSync(m.m('a/b/deep.txt'), m.m('a/deep-link')), ['.', '..', '2.txt', 'b', 'deep-link', 'new.txt', 'o.txt']],
    ['symlink', () => fs.symlinkSync('2.txt', m.m('a/sym')), ['.', '..', '2.txt', 'b', 'deep-link', 'new.txt', 'o.txt', 'sym']],
    ['mkdir', () => fs.mkdirSync(m.m('a/d')), ['.', '..', '2.txt', 'b', 'd', 'deep-link', 'new.txt', 'o.txt', 'sym']],
    ['rmdir', () => fs.rmdirSync(m.m('a/d')), ['.', '..', '2.txt', 'b', 'deep-link', 'new.txt', 'o.txt', 'sym']],
    ['rm -r of a subdirectory', () => fs.rmSync(m.m('a/b'), { recursive: true }), ['.', '..', '2.txt', 'deep-link', 'new.txt', 'o.txt', 'sym']]
  ]
  for (const [what, change, expected] of changes) {
    await lsA(m, 'a')
    await lsA(m, 'a')
    change()
    t.deepEqual(await lsA(m, 'a'), expected, what)
  }
  t.deepEqual(await lsA(m, 'other'), ['.', '..'], 'the directory renamed out of shows it gone')
  // store: the changes; host: untouched
  const stored = fs.readdirSync(m.u('a'))
  t.deepEqual(sorted(stored.filter(n => !storeInfo(m.u(`a/${n}`)).whiteout)), ['2.txt', 'deep-link', 'new.txt', 'o.txt', 'sym'])
  t.deepEqual(sorted(stored.filter(n => storeInfo(m.u(`a/${n}`)).whiteout)), ['b', 'one.txt', 'two.txt'], 'whiteouts')
  hostUnchanged(t, m)
})

mtest('strict settings (timeouts 0): the kernel keeps no listing', async (t) => {
  const m = await useMount(t, { host: tree(), args: ['--debug', '--attr-timeout', '0', '--entry-timeout', '0', '--negative-timeout', '0'] })
  await warmA(m)
  await lsA(m, 'a')
  const before = await requests(m, 'READDIR')
  await lsA(m, 'a')
  t.true(await requests(m, 'READDIR') > before, 'every listing asks the daemon')
  fs.writeFileSync(m.h('a/host-new.txt'), 'h\n') // a host change, seen at once
  const after = hashTree(m.host)
  t.deepEqual(await lsA(m, 'a'), ['.', '..', 'b', 'host-new.txt', 'one.txt', 'two.txt'])
  t.false(fs.existsSync(m.u('a')), 'the store took nothing')
  t.is(hashTree(m.host), after)
})

const OPTRACE = path.join(__dirname, '..', 'helpers', 'optrace.js')

/** A mount whose daemon logs every operation that reaches JavaScript (helpers/optrace.ts). */
async function tracedMount (t: ExecutionContext, host = tree()): Promise<{ m: Mount, jsOps: () => string[] }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'siblingfs-oplog-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const log = path.join(dir, 'ops')
  const m = await useMount(t, { host, env: { NODE_OPTIONS: `--require ${OPTRACE}`, SIBLINGFS_OPLOG: log } })
  let seen = 0
  return {
    m,
    jsOps: () => {
      const lines = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(l => l !== '') : []
      const fresh = lines.slice(seen)
      seen = lines.length
      return fresh
    }
  }
}

mtest('chmod, chown, utimens and fstat of a file made in the sandbox, in a directory made there, are answered in C with the results JS gives', async (t) => {
  const { m, jsOps } = await tracedMount(t)
  fs.mkdirSync(m.m('made'))
  fs.mkdirSync(m.m('made/sub'))
  fs.writeFileSync(m.m('made/f.txt'), 'hello\n')
  t.true(jsOps().some(l => l.startsWith('mkdir /made')), 'the trace sees JS operations')
  const r = sh(`cd '${m.mnt}/made' && chmod 640 f.txt && chown 1234:5678 f.txt && touch -m -d @981173106.789 f.txt && ` +
    'touch -a -d @1009843200 f.txt && chmod 2750 sub && stat -c "%a %u %g %X %.9Y %s" f.txt && stat -c %a sub')
  t.is(r.stdout, '640 1234 5678 1009843200 981173106.789000000 6\n2750\n', r.stderr)
  // store: the same entry changed in place
  const st = fs.statSync(m.u('made/f.txt'), { bigint: true })
  t.is(Number(st.mode & 0o7777n), 0o640)
  t.deepEqual([st.uid, st.gid, st.atimeMs / 1000n, st.mtimeNs], [1234n, 5678n, 1009843200n, 981173106789000000n])
  t.is(errOf(() => lsetxattr(m.m('made/f.txt'), 'security.test', Buffer.from('x'), 0)), 'EOPNOTSUPP', 'a name the store never holds')
  lsetxattr(m.m('made/f.txt'), 'user.kept', Buffer.from('v'), 0)
  const fd = fs.openSync(m.m('made/f.txt'), 'a')
  fs.writeSync(fd, 'more\n')
  t.is(fs.fstatSync(fd).size, 11, 'fstat after a write through the handle')
  fs.closeSync(fd)
  const js = jsOps().map(l => l.split(' ')[0])
  for (const op of ['chmod', 'chown', 'utimens', 'getattr', 'fgetattr']) t.false(js.includes(op), `${op} did not reach JS (JS saw: ${js.join(', ')})`)
  t.true(js.includes('setxattr'), 'user.* xattrs are still set by JS (escaping)')
  t.is(fs.readFileSync(m.u('made/f.txt'), 'utf8'), 'hello\nmore\n')
  t.is(Number(fs.statSync(m.u('made/sub')).mode & 0o7777), 0o2750)
  t.false(storeInfo(m.u('made/f.txt')).origin !== null, 'no origin: made in the sandbox')
  // the same on a host file still goes to JS (a metadata-only sibling first)
  sh(`chmod 600 '${m.m('a/one.txt')}'`)
  t.true(jsOps().some(l => l === 'chmod /a/one.txt'))
  t.is(Number(fs.statSync(m.u('a/one.txt')).mode & 0o7777), 0o600)
  t.is(storeInfo(m.u('a/one.txt')).origin?.data, 'host', 'a metadata-only sibling')
  hostUnchanged(t, m)
})

/** A traced mount with made/ and made/g (set-gid, group 4321, open to all) made in the
 *  sandbox, reachable by uid 65534; the trace so far is consumed. */
async function setgidMount (t: ExecutionContext): Promise<{ m: Mount, jsOps: () => string[] }> {
  const { m, jsOps } = await tracedMount(t)
  fs.mkdirSync(m.m('made'))
  fs.mkdirSync(m.m('made/g'))
  fs.chownSync(m.m('made/g'), 0, 4321)
  fs.chmodSync(m.m('made/g'), 0o2777)
  fs.chmodSync(m.root, 0o755) // let uid 65534 reach the mount point (not part of the host)
  jsOps()
  return { m, jsOps }
}

mtest('a file created in a directory made in the sandbox is made in C as JS would make it: owner, setgid group, O_EXCL, and its handle works for every operation', async (t) => {
  const { m, jsOps } = await setgidMount(t)
  // created by an unprivileged caller: owned by it, group from the setgid directory
  const r = asNobody(`umask 022; echo one > ${q(m.m('made/g/mine.txt'))} && stat -c "%u %g %a" ${q(m.m('made/g/mine.txt'))}`)
  t.is(r.stdout, '65534 4321 644\n', r.stderr)
  t.is(errOf(() => fs.openSync(m.m('made/g/mine.txt'), fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY)), 'EEXIST')
  // the handle: write, fstat, fsync, ftruncate (JS, through the adopted handle), read back
  const fd = fs.openSync(m.m('made/new.bin'), fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_RDWR, 0o600)
  fs.writeSync(fd, Buffer.from('0123456789'), 0, 10, 0)
  fs.fsyncSync(fd)
  fs.ftruncateSync(fd, 4)
  t.is(fs.fstatSync(fd).size, 4)
  const b = Buffer.alloc(8)
  t.is(fs.readSync(fd, b, 0, 8, 0), 4)
  t.is(b.subarray(0, 4).toString(), '0123')
  // unlinked while open: still usable, gone from the view and the store's directory
  fs.unlinkSync(m.m('made/new.bin'))
  fs.writeSync(fd, Buffer.from('ab'), 0, 2, 4)
  t.is(fs.fstatSync(fd).size, 6)
  fs.closeSync(fd)
  t.deepEqual(sorted(fs.readdirSync(m.m('made'))), ['g'])
  // O_APPEND from the create on
  const fa = fs.openSync(m.m('made/log'), 'a')
  fs.writeSync(fa, 'x\n')
  fs.writeSync(fa, 'y\n')
  fs.closeSync(fa)
  t.is(fs.readFileSync(m.m('made/log'), 'utf8'), 'x\ny\n')
  // A close's RELEASE reaches the daemon after close() returns: wait for the last events.
  const js = jsOps()
  for (let waited = 0; js.filter(l => l === 'create -').length < 3 && waited < 10000; waited += 50) {
    await new Promise(resolve => setTimeout(resolve, 50))
    js.push(...jsOps())
  }
  t.false(js.some(l => /^create \/made/.test(l)), `no create reached the JS handler (JS saw: ${js.join(', ')})`)
  t.false(js.some(l => /^release \/made/.test(l)), `no close of a written file reached the JS handler (JS saw: ${js.join(', ')})`)
  t.false(js.some(l => /^fsync \/made/.test(l)), `the fsync of a written file was answered in C (JS saw: ${js.join(', ')})`)
  t.is(js.filter(l => l === 'create -').length, 3, 'JS learned of each create')
  // store: the files, with the caller's ownership, no markers; host: untouched
  const st = fs.statSync(m.u('made/g/mine.txt'))
  t.deepEqual([st.uid, st.gid, st.mode & 0o7777], [65534, 4321, 0o644])
  t.is(fs.readFileSync(m.u('made/log'), 'utf8'), 'x\ny\n')
  t.is(storeInfo(m.u('made/log')).origin, null)
  t.deepEqual(sorted(fs.readdirSync(m.u('made'))), ['g', 'log'])
  hostUnchanged(t, m)
})

mtest('mkdir, link and unlink in a directory made in the sandbox are made in C as JS would make them: owner, setgid, link counts, errors', async (t) => {
  const { m, jsOps } = await setgidMount(t)
  // mkdir by an unprivileged caller: owned by it, group and set-gid bit from the parent
  const r = asNobody(`umask 022; mkdir ${q(m.m('made/g/sub'))} && stat -c "%u %g %a" ${q(m.m('made/g/sub'))}`)
  t.is(r.stdout, '65534 4321 2755\n', r.stderr)
  // a tree made at once; files in its new directories; hard links between them
  t.is(sh(`mkdir -p ${q(m.m('made/a/b/c'))} && echo one > ${q(m.m('made/a/f'))} && ln ${q(m.m('made/a/f'))} ${q(m.m('made/a/b/c/l'))}`).status, 0)
  const f = lst(m.m('made/a/f'))
  const l = lst(m.m('made/a/b/c/l'))
  t.is(l.ino, f.ino, 'two names of one file')
  t.deepEqual([f.nlink, l.nlink], [2n, 2n], 'both names show two links')
  t.is(sh(`stat -c %h ${q(m.m('made/a/f'))} ${q(m.m('made/a/b/c/l'))}`).stdout, '2\n2\n', 'also to another process')
  fs.unlinkSync(m.m('made/a/f'))
  t.is(sh(`stat -c %h ${q(m.m('made/a/b/c/l'))}`).stdout, '1\n', 'the other name shows the new link count at once')
  t.is(fs.readFileSync(m.m('made/a/b/c/l'), 'utf8'), 'one\n')
  t.deepEqual(ls(m, 'made/a'), ['.', '..', 'b'])
  // the errors ext4 gives
  t.is(errOf(() => fs.mkdirSync(m.m('made/a/b'))), 'EEXIST')
  t.is(errOf(() => fs.linkSync(m.m('made/a/b/c/l'), m.m('made/a/b/c/l'))), 'EEXIST')
  t.is(errOf(() => fs.linkSync(m.m('made/a/nope'), m.m('made/a/x'))), 'ENOENT')
  t.is(errOf(() => fs.unlinkSync(m.m('made/a/nope'))), 'ENOENT')
  t.is(errOf(() => fs.unlinkSync(m.m('made/a/b'))), 'EISDIR')
  const js = jsOps()
  t.false(js.some(x => /^(mkdir|link|unlink) \/made\//.test(x)), `no mkdir, link or unlink reached JS (JS saw: ${js.join(', ')})`)
  // a link of a host file into such a directory is JS's (an origin), and shows the host's number
  fs.linkSync(m.m('a/one.txt'), m.m('made/a/host-link'))
  t.true(jsOps().some(x => x === 'link /made/a/host-link'))
  t.is(sh(`stat -c %i ${q(m.m('made/a/host-link'))}`).stdout, `${lst(m.m('a/one.txt')).ino}\n`)
  t.deepEqual(ls(m, 'made/a'), ['.', '..', 'b', 'host-link'])
  // store: what the view shows, no markers on what C made; host: untouched
  const s = fs.statSync(m.u('made/g/sub'))
  t.deepEqual([s.uid, s.gid, s.mode & 0o7777], [65534, 4321, 0o2755])
  t.deepEqual(sorted(fs.readdirSync(m.u('made/a'))), ['b', 'host-link'])
  t.is(fs.statSync(m.u('made/a/b/c/l')).nlink, 1)
  t.is(storeInfo(m.u('made/a/b/c/l')).origin, null)
  t.is(storeInfo(m.u('made/a/host-link')).origin?.data, 'host')
  hostUnchanged(t, m)
})

/** Kernel LOOKUP requests in a --debug log (synthetic ones, made by the daemon itself for
 *  READDIRPLUS, have the top bit of their unique id set). */
function lookups (log: string, synthetic: boolean): number {
  return [...log.matchAll(/unique: (\d+), opcode: LOOKUP/g)].filter(x => (BigInt(x[1]) >= 2n ** 63n) === synthetic).length
}

mtest('a listing of a directory served in C carries its entries (READDIRPLUS): stat after ls asks the kernel nothing more, with the right attributes, for host and sandbox-made directories', async (t) => {
  const files: { [name: string]: TreeNode } = {}
  for (let i = 0; i < 12; i++) files[`f${i}.txt`] = `file ${i}\n`.repeat(i + 1)
  const m0 = await useMount(t, { host: { plain: files, other: { 'o.txt': 'o\n' } } })
  fs.mkdirSync(m0.m('made'))
  for (let i = 0; i < 12; i++) fs.writeFileSync(m0.m(`made/n${i}`), 'x'.repeat(i))
  fs.linkSync(m0.m('made/n3'), m0.m('made/hard'))
  await m0.stop()
  // a new daemon on that store: the kernel holds no name of either directory
  const m = await useMount(t, { dirs: { root: m0.root, host: m0.host, mnt: m0.mnt, store: m0.store }, args: ['--debug'] })
  const run = async (cmd: string): Promise<string> => (await execFileP('bash', ['-c', cmd])).stdout
  // first listings (by JS, which registers 'made'; 'plain', a host directory, is registered
  // by its lookup in the root, and its listing is kept by the kernel: dropped here, so that
  // the next listing reaches the daemon; a global knob, see the READDIR counts above)
  await run(`ls ${q(m.m('plain'))} ${q(m.m('made'))} > /dev/null`)
  await run('echo 3 > /proc/sys/vm/drop_caches')
  for (const dir of ['plain', 'made']) {
    await run(`stat ${q(m.m(dir))} > /dev/null`) // the directory's own lookup, not measured
    const before = m.stderr().length
    const out = await run(`ls -ln --time-style=+%s.%N ${q(m.m(dir))} | tail -n +2; stat -c '%i %h %s %a' ${q(m.m(dir))}/*`)
    const log = m.stderr().slice(before)
    t.true(/opcode: READDIR/.test(log), `${dir}: listed by the daemon`)
    t.true(lookups(log, true) >= 12, `${dir}: the daemon looked the entries up itself`)
    t.is(lookups(log, false), 0, `${dir}: no LOOKUP from the kernel after the listing`)
    // the attributes: as the store or host entry shows them, with the view's numbers
    const src = dir === 'plain' ? m.h(dir) : m.u(dir)
    const names = sorted(fs.readdirSync(src))
    const want = names.map(n => { const s = fs.lstatSync(path.join(src, n)); return `${s.nlink} ${s.size} ${(s.mode & 0o777).toString(8)}` })
    const got = out.trim().split('\n').slice(names.length).map(l => l.split(' ').slice(1).join(' '))
    t.deepEqual(got, want, `${dir}: link counts, sizes and modes`)
    const inos = out.trim().split('\n').slice(names.length).map(l => BigInt(l.split(' ')[0]))
    t.deepEqual(inos, names.map(n => lst(m.m(`${dir}/${n}`)).ino), `${dir}: inode numbers as lookups give them`)
  }
  t.is(lst(m.m('plain/f3.txt')).ino, lst(m.h('plain/f3.txt')).ino)
  // the kernel's counts stay the daemon's: list (and so look up) again and again, change
  // through the mount, then make the kernel forget every name (libfuse aborts on a forget
  // of more than it counted), and every name still works
  for (let round = 0; round < 3; round++) {
    await run(`ls -l ${q(m.m('plain'))} ${q(m.m('made'))} > /dev/null`)
    fs.writeFileSync(m.m('made/hard'), `round ${round}\n`)
    t.is(fs.readFileSync(m.m('made/n3'), 'utf8'), `round ${round}\n`, 'hard links share their bytes')
    t.is(sh(`stat -c %s ${q(m.m('made/n3'))}`).stdout, `${`round ${round}\n`.length}\n`, 'and their size, at once')
  }
  // (global: other tests that count requests retry when a drop like this one hits them)
  await run('echo 2 > /proc/sys/vm/drop_caches')
  t.is(sh(`cat ${q(m.m('made/n3'))} ${q(m.m('plain/f0.txt'))}`).stdout, 'round 2\nfile 0\n')
  t.is((await run(`ls ${q(m.m('made'))} | wc -l`)).trim(), '13')
  t.is(fs.readFileSync(m.m('plain/f11.txt'), 'utf8'), 'file 11\n'.repeat(12))
  // store: only what the sandbox made; host: untouched
  t.deepEqual(sorted(fs.readdirSync(m.u('made'))).length, 13)
  t.false(fs.existsSync(m.u('plain')))
  hostUnchanged(t, m0) // as built, before the first mount
})

mtest('getxattr of entries of directories served in C is answered in C with what JS gives: host attributes as they are, the store\'s for files made in the sandbox; own namespace still JS\'s', async (t) => {
  const { m, jsOps } = await tracedMount(t)
  lsetxattr(m.h('a/one.txt'), 'user.color', Buffer.from('blue'), 0) // fixture: a host file with an attribute
  const hostHash = hashTree(m.host) // with that attribute
  fs.mkdirSync(m.m('made'))
  fs.mkdirSync(m.m('made/sub'))
  fs.writeFileSync(m.m('made/sub/f'), 'f\n')
  t.is(sh(`setfattr -n user.k -v v ${q(m.m('made/sub/f'))}`).status, 0)
  sh(`ls ${q(m.m('a'))} > /dev/null`) // JS lists 'a' once and registers it
  jsOps()
  const get = (rel: string, name: string): string => {
    const r = sh(`getfattr --only-values -n ${name} ${q(m.m(rel))}`)
    return r.status === 0 ? r.stdout : `error: ${r.stderr.trim().split(': ').pop() ?? ''}`
  }
  const ll = sh(`ls -l ${q(m.m('a'))} ${q(m.m('made/sub'))}`)
  t.is(ll.status, 0, ll.stderr)
  t.true(/ one\.txt\n/.test(ll.stdout) && / f\n/.test(ll.stdout), ll.stdout)
  t.is(get('a/one.txt', 'user.color'), 'blue', 'a host attribute, read as it is')
  t.is(get('a/one.txt', 'user.none'), 'error: No such attribute')
  t.is(get('a/two.txt', 'user.color'), 'error: No such attribute')
  t.is(get('made/sub/f', 'user.k'), 'v', 'an attribute set in the sandbox')
  const js = jsOps()
  t.false(js.some(l => /^getxattr \/(a|made\/sub)\//.test(l)), `no getxattr of those entries reached JS (JS saw: ${js.join(', ')})`)
  // siblingfs's own namespace is escaped in the store: still JS's, and still right
  t.is(sh(`setfattr -n user.siblingfs.mine -v own ${q(m.m('made/sub/f'))}`).status, 0)
  t.is(get('made/sub/f', 'user.siblingfs.mine'), 'own')
  t.true(jsOps().includes('getxattr /made/sub/f'))
  // store: the attributes where JS put them; host: untouched (content, and its attribute)
  t.is(lgetxattr(m.u('made/sub/f'), 'user.k')?.toString(), 'v')
  t.is(lgetxattr(m.u('made/sub/f'), 'user.siblingfs.x.mine')?.toString(), 'own')
  t.false(fs.existsSync(m.u('a')), 'reading attributes copied nothing up')
  t.is(lgetxattr(m.h('a/one.txt'), 'user.color')?.toString(), 'blue')
  t.is(hashTree(m.host), hostHash, 'the host tree must not change')
})

mtest('the root, and directories the sandbox changed (a store copy over a host directory), are looked up in C entry by entry, and follow every change at once', async (t) => {
  const { m, jsOps } = await tracedMount(t, { ...tree(), 'top.txt': 'top\n', 'gone.txt': 'g\n' })
  t.deepEqual(fs.readdirSync(m.u('')), [], 'fresh: the store\'s root is empty')
  jsOps()
  // (C's opens and releases reach JS later as events, with no path: 'open -', 'release -')
  const paths = (): string[] => jsOps().filter(l => !l.endsWith(' -'))
  // Lookups, stats and reads of the root's entries, and of the root: no request reaches JS
  // (the root is listed once at mount).
  const r = sh(`stat -c %s ${q(m.m('top.txt'))} && cat ${q(m.m('top.txt'))} && stat ${q(m.m('nope'))} 2>&1; ls -d ${q(m.m('a'))}; stat -c %i ${q(m.mnt)}`)
  t.is(r.stdout.split('\n')[0], '4', r.stderr)
  t.regex(r.stdout, /No such file or directory/)
  t.deepEqual(paths(), [], 'the root and its entries were answered in C')
  sameAsHost(t, m, 'top.txt')
  // A directory that only got a store copy of itself (chmod): its own mode is the store
  // copy's, its entries the host's.
  fs.chmodSync(m.m('a'), 0o700)
  t.deepEqual(fs.readdirSync(m.u('a')), [], 'chmod: an empty store copy of the directory')
  t.deepEqual(ls(m, 'a'), ['.', '..', 'b', 'one.txt', 'two.txt'])
  jsOps()
  t.is(sh(`stat -c %s ${q(m.m('a/one.txt'))}`).stdout, '2\n')
  t.is(sh(`stat -c %a ${q(m.m('a'))}`).stdout, '700\n', 'its own attributes are the store copy\'s')
  t.deepEqual(paths(), [], 'answered in C')
  t.is(lst(m.m('a')).ino, lst(m.h('a')).ino)

  // Changes in both: a delete (whiteout), a create (made in C), a copy-up (JS). Each shows at
  // once, also to lookups the kernel has to send again (dentries dropped: a global knob).
  const fresh = async (): Promise<void> => { await execFileP('bash', ['-c', 'echo 2 > /proc/sys/vm/drop_caches']) }
  fs.rmSync(m.m('gone.txt'))
  fs.rmSync(m.m('a/one.txt'))
  fs.writeFileSync(m.m('new.txt'), 'new\n')
  fs.writeFileSync(m.m('a/made.txt'), 'made\n')
  fs.appendFileSync(m.m('top.txt'), 'more\n')
  await fresh()
  jsOps()
  t.is(errOf(() => fs.statSync(m.m('gone.txt'))), 'ENOENT', 'a deleted root entry is gone for lookups')
  t.is(errOf(() => fs.statSync(m.m('a/one.txt'))), 'ENOENT', 'so is one of the chmod\'ed directory')
  t.is(sh(`cat ${q(m.m('new.txt'))} ${q(m.m('a/made.txt'))}`).stdout, 'new\nmade\n')
  t.is(sh(`stat -c %s ${q(m.m('other/o.txt'))}`).stdout, '2\n')
  t.deepEqual(paths().filter(l => !/^getattr \/(a|other)$/.test(l)), [], 'whiteouts, files made in the sandbox and host entries: answered in C')
  t.is(sh(`stat -c %s ${q(m.m('top.txt'))}`).stdout, '9\n', 'a copied-up root entry shows its new size')
  t.deepEqual(paths(), ['getattr /top.txt'], 'a sibling with an origin is asked of JS')
  t.deepEqual(ls(m, ''), ['.', '..', 'a', 'new.txt', 'other', 'top.txt'])
  t.deepEqual(ls(m, 'a'), ['.', '..', 'b', 'made.txt', 'two.txt'])
  t.is(lst(m.m('new.txt')).ino, lst(m.u('new.txt')).ino, 'a file made in the sandbox shows its store inode number')
  // store: the whiteouts, the new files, the sibling; host: untouched
  t.true(storeInfo(m.u('gone.txt')).whiteout)
  t.true(storeInfo(m.u('a/one.txt')).whiteout)
  t.is(fs.readFileSync(m.u('new.txt'), 'utf8'), 'new\n')
  t.is(fs.readFileSync(m.u('a/made.txt'), 'utf8'), 'made\n')
  t.is(fs.readFileSync(m.u('top.txt'), 'utf8'), 'top\nmore\n')
  hostUnchanged(t, m)
})

mtest('an open for writing of a host file in a listed directory is answered in C; reads go to the host, the first write (in JS) makes the sibling, and every handle follows', async (t) => {
  const { m, jsOps } = await tracedMount(t, { ...tree(), 'w.txt': 'hello world\n', 'app.txt': 'a\n', 'keep.txt': 'keep\n' })
  jsOps()
  // All opened while the root lists only the host root (the first change there ends that).
  const k = fs.openSync(m.m('keep.txt'), 'r+')
  const r = fs.openSync(m.m('w.txt'), 'r')
  const w = fs.openSync(m.m('w.txt'), 'r+')
  const a = fs.openSync(m.m('app.txt'), 'a')
  t.deepEqual(jsOps().filter(l => /^(open|create) \//.test(l)), [], 'no open reached JS with its path: all answered in C (JS learned of them as events)')
  // opened for writing, read, never written: nothing copied
  t.is(fs.readFileSync(k, 'utf8'), 'keep\n')
  fs.closeSync(k)
  t.false(storeInfo(m.u('keep.txt')).exists, 'an open for writing that never writes copies nothing')
  // a reader and a read-write handle: the write moves both onto the sibling
  const b = Buffer.alloc(5)
  fs.readSync(w, b, 0, 5, 0)
  t.is(b.toString(), 'hello', 'reads through the writer before its first write: the host bytes')
  t.false(storeInfo(m.u('w.txt')).exists)
  fs.writeSync(w, 'HELLO', 0)
  t.is(fs.readFileSync(m.m('w.txt'), 'utf8'), 'HELLO world\n')
  const rb = Buffer.alloc(12)
  fs.readSync(r, rb, 0, 12, 0)
  t.is(rb.toString(), 'HELLO world\n', 'the reader opened before the write sees it')
  fs.readSync(w, b, 0, 5, 6)
  t.is(b.toString(), 'world', 'the writer reads the sibling')
  fs.closeSync(w)
  fs.closeSync(r)
  // O_APPEND is kept
  fs.writeSync(a, 'b\n')
  fs.closeSync(a)
  t.is(fs.readFileSync(m.m('app.txt'), 'utf8'), 'a\nb\n')
  // store: the two siblings, nothing for the file never written; host: untouched
  t.is(fs.readFileSync(m.u('w.txt'), 'utf8'), 'HELLO world\n')
  t.is(fs.readFileSync(m.u('app.txt'), 'utf8'), 'a\nb\n')
  t.is(storeInfo(m.u('w.txt')).origin?.data, 'store')
  t.false(storeInfo(m.u('keep.txt')).exists)
  hostUnchanged(t, m)
})

mtest('the first write of a big host file opened for writing in C is answered in C: it makes the chunked sibling JS would make, and JS takes the handle over', async (t) => {
  const MiB = 1 << 20
  const host = { ...tree(), 'big.bin': pattern(3 * MiB, 7), 'span.bin': pattern(2 * MiB, 8), 'read.bin': pattern(2 * MiB, 9) }
  const { m, jsOps } = await tracedMount(t, host)
  const want = { big: Buffer.from(host['big.bin']), span: Buffer.from(host['span.bin']), read: Buffer.from(host['read.bin']) }
  jsOps()
  // A one-chunk write in the middle of a chunk.
  const w = fs.openSync(m.m('big.bin'), 'r+')
  fs.writeSync(w, Buffer.from('XY'), 0, 2, 1000000)
  Buffer.from('XY').copy(want.big, 1000000)
  let ops = jsOps()
  t.false(ops.some(l => l.startsWith('write ')), `the first write did not reach JS: ${ops.join(', ')}`)
  // The store holds what CopyUp.chunked and ChunkFile.write make: a chunked sibling with
  // origin and map records, one stored chunk.
  const info = storeInfo(m.u('big.bin'))
  t.like(info.origin, { path: 'big.bin', data: 'chunks', size: 3 * MiB, ino: Number(lst(m.h('big.bin')).ino) })
  const id = lgetxattr(m.u('big.bin'), 'user.siblingfs.chunks')?.toString() ?? ''
  t.regex(id, /^[0-9a-f]{24}$/)
  t.true(fs.existsSync(path.join(m.store, 'maps', id)), 'its chunk map is in maps/')
  t.deepEqual(workEntries(m.store), [], 'nothing left in work/ but files made ahead')
  t.is(lst(m.u('big.bin')).mode & 0o7777n, lst(m.h('big.bin')).mode & 0o7777n)
  // The same handle goes on in JS: a write across two chunks, reads back through it.
  fs.writeSync(w, Buffer.from('0123456789'), 0, 10, 2 * 65536 - 5)
  Buffer.from('0123456789').copy(want.big, 2 * 65536 - 5)
  const back = Buffer.alloc(2)
  fs.readSync(w, back, 0, 2, 1000000)
  t.is(back.toString(), 'XY', 'the writer reads its write back')
  fs.closeSync(w)
  const seen = [...ops, ...jsOps()]
  t.true(seen.includes('copied-up -'), `JS learned of the copy-up made in C: ${seen.join(', ')}`)
  t.true(seen.includes('write /big.bin'), `and served the handle's next write: ${seen.join(', ')}`)
  t.true(fs.readFileSync(m.m('big.bin')).equals(want.big), 'the view shows both writes and the host bytes around them')
  // A first write covering several chunks, the middle ones whole, the ends in part.
  const s = fs.openSync(m.m('span.bin'), 'r+')
  // One request: at most 128 KiB at this protocol level, and page-aligned (the kernel ends a
  // request at the end of a page it filled only in part).
  const chunkful = pattern(100000, 3)
  fs.writeSync(s, chunkful, 0, chunkful.length, 65536 - 4096)
  chunkful.copy(want.span, 65536 - 4096)
  fs.closeSync(s)
  ops = jsOps()
  t.false(ops.some(l => l.startsWith('write /span.bin')), `that first write did not reach JS either: ${ops.join(', ')}`)
  t.true(fs.readFileSync(m.m('span.bin')).equals(want.span))
  // Another handle on the original (a reader opened before): JS makes the sibling and moves
  // the reader onto it.
  const r = fs.openSync(m.m('read.bin'), 'r')
  const rw = fs.openSync(m.m('read.bin'), 'r+')
  fs.writeSync(rw, Buffer.from('Z'), 0, 1, 5)
  want.read[5] = 0x5a
  ops = jsOps()
  t.true(ops.includes('write /read.bin'), `with a reader open the first write is JS's: ${ops.join(', ')}`)
  const rb = Buffer.alloc(1)
  fs.readSync(r, rb, 0, 1, 5)
  t.is(rb.toString(), 'Z', 'the reader opened before the write sees it')
  fs.closeSync(r)
  fs.closeSync(rw)
  // After a remount: the same view; fsck finds the store clean; the host never changed.
  await m.stop()
  const f = cli(['fsck', m.store])
  t.is(f.status, 0, f.stdout + f.stderr)
  t.regex(f.stdout, /clean/)
  const m2 = await useMount(t, { dirs: { root: m.root, host: m.host, mnt: m.mnt, store: m.store } })
  t.true(fs.readFileSync(m2.m('big.bin')).equals(want.big))
  t.true(fs.readFileSync(m2.m('span.bin')).equals(want.span))
  t.true(fs.readFileSync(m2.m('read.bin')).equals(want.read))
  hostUnchanged(t, m)
})

mtest('a host directory that gets its store copy (a first create in it) is answered in C at once: lookups, opens and creates in it, without waiting for a listing', async (t) => {
  const { m, jsOps } = await tracedMount(t)
  t.is(fs.readFileSync(m.m('a/one.txt'), 'utf8'), '1\n') // looks 'a' up: served from the host
  fs.writeFileSync(m.m('a/new.txt'), 'new\n') // the first change in 'a' gives it a store copy
  jsOps()
  // New names and entries not looked up yet: requests that must reach the daemon.
  t.is(errOf(() => fs.statSync(m.m('a/nope'))), 'ENOENT')
  t.is(fs.readFileSync(m.m('a/two.txt'), 'utf8'), '2\n')
  fs.writeFileSync(m.m('a/new2.txt'), 'new2\n')
  t.is(fs.readFileSync(m.m('a/new2.txt'), 'utf8'), 'new2\n')
  t.deepEqual(sorted(ls(m, 'a')), sorted(['.', '..', 'one.txt', 'two.txt', 'b', 'new.txt', 'new2.txt']))
  const ops = jsOps()
  t.deepEqual(ops.filter(l => / \/a\/(nope|two\.txt|new2\.txt)$/.test(l)), [], `answered in C: ${ops.join(', ')}`)
  // store: the store copy of 'a' with the two new files; host: untouched
  t.deepEqual(sorted(fs.readdirSync(m.u('a'))), ['new.txt', 'new2.txt'])
  t.like(storeInfo(m.u('a')).origin, { path: 'a' })
  t.is(fs.readFileSync(m.u('a/new2.txt'), 'utf8'), 'new2\n')
  hostUnchanged(t, m)
})

mtest('a directory made in the sandbox is registered by its lookup: listed in C from the start when its entries all carry their own inode numbers, by JS when one has an origin', async (t) => {
  const m0 = await useMount(t, { host: tree() })
  fs.mkdirSync(m0.m('made'))
  fs.mkdirSync(m0.m('mixed'))
  for (let i = 0; i < 5; i++) {
    fs.writeFileSync(m0.m(`made/f${i}`), `${i}\n`)
    fs.writeFileSync(m0.m(`mixed/f${i}`), `${i}\n`)
  }
  fs.renameSync(m0.m('a/one.txt'), m0.m('mixed/one.txt')) // a host file: its sibling has an origin
  await m0.stop()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'siblingfs-oplog-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const log = path.join(dir, 'ops')
  const m = await useMount(t, { dirs: { root: m0.root, host: m0.host, mnt: m0.mnt, store: m0.store }, env: { NODE_OPTIONS: `--require ${OPTRACE}`, SIBLINGFS_OPLOG: log } })
  const jsOps = (): string[] => fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(l => l !== '' && !l.endsWith(' -')) : []
  const before = jsOps().length
  const made = sh(`ls -ai ${q(m.m('made'))}`)
  const mixed = sh(`ls -ai ${q(m.m('mixed'))}`)
  const ops = jsOps().slice(before)
  t.false(ops.some(l => l.startsWith('readdir /made')), `'made' was listed in C: ${ops.join(', ')}`)
  t.true(ops.includes('readdir /mixed'), `'mixed' (an entry with an origin) was listed by JS: ${ops.join(', ')}`)
  // the listings: every name, with the inode number a lookup gives
  const parse = (out: string): Map<string, bigint> => new Map(out.trim().split(/\s+/).reduce<Array<[string, bigint]>>((acc, w, i, all) => i % 2 === 0 ? [...acc, [all[i + 1], BigInt(w)]] : acc, []))
  const got = parse(made.stdout)
  t.deepEqual(sorted([...got.keys()]), ['.', '..', 'f0', 'f1', 'f2', 'f3', 'f4'])
  for (let i = 0; i < 5; i++) t.is(got.get(`f${i}`), lst(m.m(`made/f${i}`)).ino, `made/f${i}: inode number`)
  const gotMixed = parse(mixed.stdout)
  t.deepEqual(sorted([...gotMixed.keys()]), ['.', '..', 'f0', 'f1', 'f2', 'f3', 'f4', 'one.txt'])
  t.is(gotMixed.get('one.txt'), lst(m.h('a/one.txt')).ino, 'the renamed host file keeps its host inode number')
  t.is(fs.readFileSync(m.m('mixed/one.txt'), 'utf8'), '1\n')
  // store: both directories as made; host: untouched
  t.deepEqual(sorted(fs.readdirSync(m.u('made'))), ['f0', 'f1', 'f2', 'f3', 'f4'])
  t.like(storeInfo(m.u('mixed/one.txt')).origin, { path: 'a/one.txt' })
  hostUnchanged(t, m0)
})
