#!/usr/bin/env node
'use strict'

// End-to-end check of the patched fuse-native (patches/fuse-native-2.2.6.patch) on a real mount.
//
//   node scripts/check-fuse-native.js          (as root: uses allow_other and setpriv)
//
// A child process (this script with --serve) mounts a tiny in-memory FS under a temp dir in /tmp
// and logs every handler call (args + callerContext) as JSON lines to a file. This (parent)
// process drives the mount with async fs calls and external commands only, then checks what the
// handlers received. Exit 0 only if every check passes. The mount is always unmounted and the
// child always killed (by PID).

const fs = require('fs')
const fsp = fs.promises
const os = require('os')
const path = require('path')
const { spawn, spawnSync, execFile } = require('child_process')

const UTIME_NOW = (1 << 30) - 1
const UTIME_OMIT = (1 << 30) - 2
const BASE_INO = 2 ** 40
const BIG_INO = BASE_INO + 5
const BIG_MTIME = { sec: 1234567890, nsec: 987654321 }
const STATFS = {
  bsize: 4096,
  frsize: 4096,
  blocks: 2 ** 40 + 7,
  bfree: 2 ** 40 + 3,
  bavail: 2 ** 40 + 1,
  files: 2 ** 33 + 9,
  ffree: 2 ** 33 + 8,
  favail: 2 ** 33 + 7,
  fsid: 0,
  flag: 0,
  namemax: 255
}
const MOUNT_OPTIONS = [
  'hard_remove', 'use_ino', 'big_writes', 'max_write=131072', 'allow_other',
  'negative_timeout=1', 'nosuid', 'nodev', 'fsname=siblingfs', 'subtype=siblingfs'
]

if (process.argv[2] === '--serve') serve(process.argv[3], process.argv[4], JSON.parse(process.argv[5]))
else main()

// ---------------------------------------------------------------------------------------------
// Child: the in-memory filesystem

function serve (mnt, logFile, extraOptions) {
  const Fuse = require('fuse-native')
  const S_IFDIR = 0o040000
  const S_IFREG = 0o100000
  const nodes = new Map()
  const handles = new Map()
  let nextIno = 10
  let nextFh = 1
  let fuse = null

  const log = (rec) => fs.appendFileSync(logFile, JSON.stringify(rec) + '\n')
  const now = () => { const ms = Date.now(); return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 } }
  const mk = (mode, ino) => {
    const t = now()
    return { ino: ino || BASE_INO + nextIno++, mode, uid: 0, gid: 0, nlink: mode & S_IFDIR ? 2 : 1, data: Buffer.alloc(0), atime: t, mtime: t, ctime: t }
  }
  const toStat = (n) => ({
    mode: n.mode, uid: n.uid, gid: n.gid, size: n.data.length, dev: 0, nlink: n.nlink, ino: n.ino, rdev: 0,
    blksize: 4096, blocks: Math.ceil(n.data.length / 512),
    atimeSec: n.atime.sec, atimeNsec: n.atime.nsec,
    mtimeSec: n.mtime.sec, mtimeNsec: n.mtime.nsec,
    ctimeSec: n.ctime.sec, ctimeNsec: n.ctime.nsec
  })
  const resize = (n, size) => {
    const b = Buffer.alloc(size)
    n.data.copy(b, 0, 0, Math.min(size, n.data.length))
    n.data = b
  }

  nodes.set('/', mk(S_IFDIR | 0o777, 1))
  const big = mk(S_IFREG | 0o644, BIG_INO)
  big.mtime = { ...BIG_MTIME }
  nodes.set('/big', big)

  // Wrap every handler: log its arguments and the caller context read synchronously at entry.
  const wrap = (name, fn) => (...args) => {
    const ctx = Array.from(fuse.callerContext)
    const rec = { op: name, ctx }
    const cbArgs = args.slice(0, -1)
    rec.args = cbArgs.map(a => Buffer.isBuffer(a) ? { buffer: a.length } : a)
    log(rec)
    const cb = args[args.length - 1]
    if (name === 'open' || name === 'create') {
      args[args.length - 1] = (...res) => { log({ op: name + ':reply', path: cbArgs[0], res }); cb(...res) }
    }
    return fn(...args)
  }

  const ops = {
    getattr (p, cb) {
      const n = nodes.get(p)
      if (!n) return cb(Fuse.ENOENT)
      // exercise the Uint32Array(22) fast path for /big
      if (p === '/big') return cb(0, Fuse.getStatArray(toStat(n)))
      cb(0, toStat(n))
    },
    fgetattr (p, fh, cb) {
      const h = handles.get(fh)
      if (!h) return cb(Fuse.EBADF)
      cb(0, toStat(h.node))
    },
    readdir (p, cb) {
      const prefix = p === '/' ? '/' : p + '/'
      const names = []
      const stats = []
      for (const [k, n] of nodes) {
        if (k !== '/' && k.startsWith(prefix) && !k.slice(prefix.length).includes('/')) {
          names.push(k.slice(prefix.length))
          stats.push(toStat(n))
        }
      }
      cb(0, names, stats)
    },
    statfs (p, cb) { cb(0, STATFS) },
    create (p, mode, flags, cb) {
      if (nodes.has(p)) return cb(Fuse.EEXIST)
      const n = mk(S_IFREG | (mode & 0o7777))
      n.uid = fuse.callerContext[0]
      n.gid = fuse.callerContext[1]
      nodes.set(p, n)
      const fh = nextFh++
      handles.set(fh, { node: n })
      cb(0, fh)
    },
    open (p, flags, cb) {
      const n = nodes.get(p)
      if (!n) return cb(Fuse.ENOENT)
      const fh = nextFh++
      handles.set(fh, { node: n })
      cb(0, fh)
    },
    read (p, fh, buf, len, pos, cb) {
      const h = handles.get(fh)
      if (!h) return cb(Fuse.EBADF)
      if (pos >= h.node.data.length) return cb(0)
      cb(h.node.data.copy(buf, 0, pos, Math.min(h.node.data.length, pos + len)))
    },
    write (p, fh, buf, len, pos, cb) {
      const h = handles.get(fh)
      if (!h) return cb(Fuse.EBADF)
      if (pos + len > h.node.data.length) resize(h.node, pos + len)
      buf.copy(h.node.data, pos, 0, len)
      h.node.mtime = h.node.ctime = now()
      cb(len)
    },
    truncate (p, size, cb) {
      const n = nodes.get(p)
      if (!n) return cb(Fuse.ENOENT)
      resize(n, size)
      cb(0)
    },
    ftruncate (p, fh, size, cb) {
      const h = handles.get(fh)
      if (!h) return cb(Fuse.EBADF)
      resize(h.node, size)
      cb(0)
    },
    utimens (p, atimeSec, atimeNsec, mtimeSec, mtimeNsec, cb) {
      const n = nodes.get(p)
      if (!n) return cb(Fuse.ENOENT)
      const t = now()
      if (atimeNsec === UTIME_NOW) n.atime = t
      else if (atimeNsec !== UTIME_OMIT) n.atime = { sec: atimeSec, nsec: atimeNsec }
      if (mtimeNsec === UTIME_NOW) n.mtime = t
      else if (mtimeNsec !== UTIME_OMIT) n.mtime = { sec: mtimeSec, nsec: mtimeNsec }
      n.ctime = t
      cb(0)
    },
    chmod (p, mode, cb) {
      const n = nodes.get(p)
      if (!n) return cb(Fuse.ENOENT)
      n.mode = (n.mode & ~0o7777) | (mode & 0o7777)
      cb(0)
    },
    chown (p, uid, gid, cb) {
      const n = nodes.get(p)
      if (!n) return cb(Fuse.ENOENT)
      if (uid !== 0xffffffff) n.uid = uid
      if (gid !== 0xffffffff) n.gid = gid
      cb(0)
    },
    unlink (p, cb) {
      const n = nodes.get(p)
      if (!n) return cb(Fuse.ENOENT)
      nodes.delete(p)
      n.nlink = 0
      cb(0)
    },
    rename (src, dest, cb) {
      const n = nodes.get(src)
      if (!n) return cb(Fuse.ENOENT)
      nodes.delete(src)
      nodes.set(dest, n)
      cb(0)
    },
    mkdir (p, mode, cb) {
      if (nodes.has(p)) return cb(Fuse.EEXIST)
      nodes.set(p, mk(S_IFDIR | (mode & 0o7777)))
      cb(0)
    },
    rmdir (p, cb) {
      if (!nodes.delete(p)) return cb(Fuse.ENOENT)
      cb(0)
    },
    flush (p, fh, cb) { cb(0) },
    fsync (p, fh, datasync, cb) { cb(0) },
    release (p, fh, cb) {
      handles.delete(fh)
      cb(0)
    }
  }
  for (const k of Object.keys(ops)) ops[k] = wrap(k, ops[k])

  fuse = new Fuse(mnt, ops, { extraOptions })
  fuse.mount(err => {
    if (err) {
      log({ event: 'mount-error', message: err.message })
      process.exit(3)
    }
    log({ event: 'ready', pid: process.pid })
  })
  const stop = () => fuse.unmount(() => process.exit(0))
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

// ---------------------------------------------------------------------------------------------
// Parent: drive the mount and check what the handlers saw

function sleep (ms) { return new Promise(resolve => setTimeout(resolve, ms)) }

function run (cmd, args, opts = {}) {
  return new Promise(resolve => {
    const child = execFile(cmd, args, { timeout: 30000, ...opts }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code || 1) : 0, stdout, stderr, pid: child.pid })
    })
  })
}

function isMounted (mnt) {
  try {
    return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some(l => l.split(' ')[4] === mnt)
  } catch (_) {
    return false
  }
}

function mountLine (mnt) {
  return fs.readFileSync('/proc/mounts', 'utf8').split('\n').find(l => l.split(' ')[1] === mnt) || ''
}

async function main () {
  if (process.getuid() !== 0) {
    console.error('check-fuse-native: must run as root (allow_other + setpriv to another user)')
    process.exit(2)
  }

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fnchk-'))
  fs.chmodSync(tmp, 0o755) // another user must be able to reach the mount point
  const children = new Set()
  const mounts = []
  let cleaned = false

  function cleanup () {
    if (cleaned) return
    cleaned = true
    for (const mnt of mounts) {
      if (!isMounted(mnt)) continue
      if (spawnSync('fusermount', ['-u', mnt], { stdio: 'ignore', timeout: 10000 }).status !== 0) {
        spawnSync('fusermount', ['-uz', mnt], { stdio: 'ignore', timeout: 10000 })
      }
    }
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) {
        try { process.kill(child.pid, 'SIGKILL') } catch (_) {}
      }
    }
    if (!mounts.some(isMounted)) fs.rmSync(tmp, { recursive: true, force: true })
    else console.error('check-fuse-native: could not unmount, leaving ' + tmp)
  }
  process.on('exit', cleanup)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { cleanup(); process.exit(130) })
  // Watchdog: a wedged mount must not hang the check forever.
  const watchdog = setTimeout(() => { console.error('check-fuse-native: TIMEOUT'); cleanup(); process.exit(1) }, 120000)

  async function startServer (name, extraOptions) {
    const mnt = path.join(tmp, name)
    const logFile = path.join(tmp, name + '.log')
    fs.mkdirSync(mnt)
    fs.writeFileSync(logFile, '')
    mounts.push(mnt)
    const child = spawn(process.execPath, [__filename, '--serve', mnt, logFile, JSON.stringify(extraOptions)], {
      stdio: ['ignore', 'inherit', 'pipe']
    })
    children.add(child)
    let stderr = ''
    child.stderr.on('data', d => { stderr += d })
    const readLog = () => fs.readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map(l => JSON.parse(l))
    for (let i = 0; i < 200; i++) {
      const ev = readLog().find(r => r.event)
      if (ev) return { mnt, child, readLog, event: ev, stderr: () => stderr }
      if (child.exitCode !== null) break
      await sleep(50)
    }
    return { mnt, child, readLog, event: { event: 'no-ready', message: 'child exited ' + child.exitCode }, stderr: () => stderr }
  }

  const results = []
  const check = (name, ok, detail) => {
    results.push({ name, ok: !!ok })
    console.log((ok ? 'PASS ' : 'FAIL ') + name + (detail !== undefined ? '  ' + (typeof detail === 'string' ? detail : JSON.stringify(detail)) : ''))
  }
  const info = (name, detail) => console.log('INFO ' + name + '  ' + (typeof detail === 'string' ? detail : JSON.stringify(detail)))

  try {
    // Negative test: an option libfuse rejects must fail the mount and leave nothing mounted.
    const bad = await startServer('bad', ['hard_remove', 'no_such_option'])
    await sleep(100)
    check('bogus option fails the mount cleanly', bad.event.event === 'mount-error' && !isMounted(bad.mnt),
      { event: bad.event, mounted: isMounted(bad.mnt), stderr: bad.stderr().trim().split('\n').slice(-2) })

    const srv = await startServer('mnt', MOUNT_OPTIONS)
    if (srv.event.event !== 'ready') {
      check('mount', false, { event: srv.event, stderr: srv.stderr() })
      return
    }
    const { mnt, readLog } = srv
    const P = (p) => path.join(mnt, p)
    let mark = 0
    const since = () => { const all = readLog(); const out = all.slice(mark); mark = all.length; return out }
    const calls = (recs, op, p) => recs.filter(r => r.op === op && (p === undefined || r.args[0] === p))

    const ml = mountLine(mnt)
    check('mount options in /proc/mounts (fuse.siblingfs, nosuid, nodev, allow_other)',
      /^siblingfs \S+ fuse\.siblingfs /.test(ml) && /[ ,]nosuid[ ,]/.test(ml) && /[ ,]nodev[ ,]/.test(ml) && /allow_other/.test(ml), ml)

    // (a) utimens: nanoseconds, UTIME_OMIT, UTIME_NOW
    await fsp.writeFile(P('a.txt'), 'x')
    since()
    const env = { ...process.env, TZ: 'UTC' }
    const T = 981173106 // 2001-02-03 04:05:06 UTC
    let r = await run('touch', ['-m', '-d', '2001-02-03 04:05:06.123456789', P('a.txt')], { env })
    let u = calls(since(), 'utimens', '/a.txt').pop()
    check('(a) touch -m: mtime sec+nsec exact, atime UTIME_OMIT',
      r.code === 0 && u && u.args[3] === T && u.args[4] === 123456789 && u.args[2] === UTIME_OMIT, u ? u.args : r)
    let st = await fsp.stat(P('a.txt'), { bigint: true })
    check('(b) stat shows nanosecond mtime', st.mtimeNs === BigInt(T) * 1000000000n + 123456789n, String(st.mtimeNs))

    r = await run('touch', ['-a', '-d', '2001-02-03 04:05:06.5', P('a.txt')], { env })
    u = calls(since(), 'utimens', '/a.txt').pop()
    check('(a) touch -a: atime set, mtime UTIME_OMIT',
      r.code === 0 && u && u.args[1] === T && u.args[2] === 500000000 && u.args[4] === UTIME_OMIT, u ? u.args : r)

    r = await run('touch', [P('a.txt')])
    u = calls(since(), 'utimens', '/a.txt').pop()
    check('(a) touch: UTIME_NOW for both', r.code === 0 && u && u.args[2] === UTIME_NOW && u.args[4] === UTIME_NOW, u ? u.args : r)

    // (b) 64-bit ino, nanosecond times (via the Uint32Array fast path)
    st = await fsp.stat(P('big'), { bigint: true })
    check('(b) stat shows 64-bit ino 2^40+5', st.ino === BigInt(BIG_INO), String(st.ino))
    check('(b) stat shows nanosecond mtime (fast path)', st.mtimeNs === BigInt(BIG_MTIME.sec) * 1000000000n + BigInt(BIG_MTIME.nsec), String(st.mtimeNs))
    const ls = await run('ls', ['-i', mnt])
    check('(b) readdir stats carry the 64-bit ino (use_ino)', ls.stdout.includes(String(BIG_INO) + ' big'), ls.stdout.trim())

    // (c) create receives the open flags
    since()
    const { O_CREAT, O_EXCL, O_WRONLY, O_TRUNC } = fs.constants
    let fh = await fsp.open(P('excl.txt'), O_CREAT | O_EXCL | O_WRONLY, 0o640)
    await fh.close()
    const c = calls(since(), 'create', '/excl.txt').pop()
    check('(c) create gets O_CREAT|O_EXCL flags and mode',
      c && (c.args[2] & O_CREAT) && (c.args[2] & O_EXCL) && (c.args[2] & 3) === O_WRONLY && (c.args[1] & 0o777) === 0o640, c ? c.args : 'no create call')
    let eexist = null
    try { await fsp.open(P('excl.txt'), O_CREAT | O_EXCL | O_WRONLY) } catch (e) { eexist = e.code }
    check('(c) second O_EXCL open fails EEXIST', eexist === 'EEXIST', eexist)

    // (d) hard_remove: I/O through an fd after unlink arrives with path null and the right fh
    const pattern = Buffer.alloc(65536)
    for (let i = 0; i < pattern.length; i++) pattern[i] = i % 251
    await fsp.writeFile(P('unl.txt'), pattern)
    since()
    fh = await fsp.open(P('unl.txt'), 'r+')
    const opened = since().filter(x => x.op === 'open:reply' && x.path === '/unl.txt').pop()
    const myFh = opened && opened.res[1]
    await fsp.unlink(P('unl.txt'))
    let fstatRes
    try { fstatRes = await fh.stat({ bigint: true }) } catch (e) { fstatRes = e.code }
    const buf = Buffer.alloc(100)
    const rd = await fh.read(buf, 0, 100, 1000)
    await fh.write(Buffer.from('hello'), 0, 5, 2000)
    await fh.truncate(50000)
    let fstat2
    try { fstat2 = await fh.stat() } catch (e) { fstat2 = e.code }
    await fh.close()
    await sleep(200) // release is asynchronous
    const d = since()
    const reads = calls(d, 'read')
    const writes = calls(d, 'write')
    const fgets = calls(d, 'fgetattr')
    const ftr = calls(d, 'ftruncate')
    const rel = calls(d, 'release')
    const fhs = new Set([...reads, ...writes, ...fgets, ...ftr, ...rel].map(x => x.args[1]))
    check('(d) read after unlink: path null, data correct', reads.length > 0 && reads.every(x => x.args[0] === null) && rd.bytesRead === 100 && buf.equals(pattern.subarray(1000, 1100)), reads.map(x => x.args))
    check('(d) write after unlink: path null', writes.length > 0 && writes.every(x => x.args[0] === null), writes.map(x => x.args))
    check('(d) ftruncate after unlink: path null', ftr.length > 0 && ftr.every(x => x.args[0] === null && x.args[2] === 50000), ftr.map(x => x.args))
    check('(d) fgetattr after unlink: path null', fgets.length > 0 && fgets.every(x => x.args[0] === null), fgets.map(x => x.args))
    check('(d) release after unlink: path null', rel.length === 1 && rel[0].args[0] === null, rel.map(x => x.args))
    check('(d) all fd ops used the fh returned by open', fhs.size === 1 && fhs.has(myFh) && myFh > 0, { fhs: [...fhs], opened: myFh })
    // Known libfuse 2.9 + hard_remove limitation: the kernel sends GETATTR without a file handle for
    // fstat() (and SETATTR without one for fchmod/fchown/futimens), libfuse cannot build a path for
    // the removed node and answers ENOENT itself; the daemon never sees it. fgetattr(null, fh) is only
    // reached from fd-based kernel paths (ftruncate's reply, lseek SEEK_END, ...), after which the
    // attributes are cached for attr_timeout and fstat succeeds.
    info('KNOWN fstat right after unlink', typeof fstatRes === 'object' ? 'ok size=' + fstatRes.size : fstatRes)
    info('KNOWN fstat after ftruncate (attr cache)', typeof fstat2 === 'object' ? 'ok size=' + fstat2.size : fstat2)
    info('(d) ops seen after unlink', d.map(x => x.op + '(' + JSON.stringify(x.args[0]) + ')').join(' '))

    // (e) big_writes: a single 1 MiB write arrives in writes > 4 KiB
    since()
    fh = await fsp.open(P('w1m'), 'w')
    const wr = await fh.write(Buffer.alloc(1 << 20, 0x61), 0, 1 << 20, 0)
    await fh.close()
    const ws = calls(since(), 'write')
    const sizes = ws.map(x => x.args[3])
    check('(e) 1 MiB write arrives in writes > 4 KiB (big_writes, max_write=131072)',
      wr.bytesWritten === 1 << 20 && sizes.reduce((a, b) => a + b, 0) === 1 << 20 && Math.max(...sizes) > 4096 && Math.max(...sizes) <= 131072,
      { writes: sizes.length, max: Math.max(...sizes) })

    // (f) callerContext of a request made by another user
    since()
    const other = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'touch', P('nobody.txt')])
    const cr = calls(since(), 'create', '/nobody.txt').pop()
    check('(f) callerContext = [uid, gid, pid] of the requesting process',
      other.code === 0 && cr && cr.ctx[0] === 65534 && cr.ctx[1] === 65534 && cr.ctx[2] === other.pid, { ctx: cr && cr.ctx, pid: other.pid, code: other.code, err: other.stderr })
    st = await fsp.stat(P('nobody.txt'))
    check('(f) file created by uid 65534 is owned by it', st.uid === 65534 && st.gid === 65534, { uid: st.uid, gid: st.gid })
    since()
    await fsp.stat(P('no-such-file-' + process.pid)).catch(() => {})
    const own = calls(since(), 'getattr').pop()
    // ctx[2] is the kernel task id of the caller: for a multi-threaded caller (here a libuv
    // threadpool thread) that is the thread id, not the process id.
    check('(f) callerContext for our own request (pid is a thread id of this process)',
      own && own.ctx[0] === 0 && own.ctx[1] === 0 && fs.existsSync('/proc/' + process.pid + '/task/' + own.ctx[2]), { ctx: own && own.ctx, pid: process.pid })

    // (g) statfs with 64-bit counters
    const sf = await fsp.statfs(mnt, { bigint: true })
    check('(g) statfs 64-bit blocks/bfree/bavail/files/ffree',
      sf.blocks === BigInt(STATFS.blocks) && sf.bfree === BigInt(STATFS.bfree) && sf.bavail === BigInt(STATFS.bavail) &&
      sf.files === BigInt(STATFS.files) && sf.ffree === BigInt(STATFS.ffree) && sf.bsize === 4096n,
      { blocks: String(sf.blocks), bfree: String(sf.bfree), bavail: String(sf.bavail), files: String(sf.files), ffree: String(sf.ffree) })

    // Informational: how O_TRUNC on an existing file reaches the daemon with libfuse 2.9
    since()
    fh = await fsp.open(P('a.txt'), O_WRONLY | O_TRUNC)
    await fh.close()
    await sleep(100)
    info('open(O_WRONLY|O_TRUNC) of an existing file', since().filter(x => x.op !== 'flush' && x.op !== 'release').map(x => x.op + JSON.stringify(x.args || x.res)).join(' '))
  } catch (err) {
    check('unexpected error', false, err.stack)
  } finally {
    clearTimeout(watchdog)
    cleanup()
  }

  const failed = results.filter(x => !x.ok)
  if (failed.length) {
    console.log('check-fuse-native: ' + failed.length + ' of ' + results.length + ' checks FAILED: ' + failed.map(x => x.name).join('; '))
    process.exitCode = 1
  } else {
    console.log('check-fuse-native: all ' + results.length + ' checks passed')
  }
}
