/**
 * Unit tests of the native addon through src/sys/native.ts: every function on a temp dir,
 * checking real effects on disk and the shape of the errors.
 */
import test, { type ExecutionContext } from 'ava'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {
  copyFileRange, fallocate, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, fgetxattr, flistxattr,
  fremovexattr, fsetxattr, futimens, lgetxattr, llistxattr, lremovexattr, lseek, lsetxattr,
  makedev, mknod, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, renameat2, SEEK_DATA,
  SEEK_HOLE, syncfs, type SysError, UTIME_NOW, UTIME_OMIT, utimensat, XATTR_CREATE, XATTR_REPLACE
} from '../../src/sys/native.js'

const { S_IFIFO, S_IFREG, S_IFCHR, S_IFMT, SEEK_SET, SEEK_CUR, SEEK_END } = {
  ...fs.constants, SEEK_SET: 0, SEEK_CUR: 1, SEEK_END: 2
}

/** A fresh directory under os.tmpdir(), removed when the test ends. */
function tmpdir (t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'siblingfs-sys-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** An fd for `file` (opened with `flags`), closed when the test ends. */
function open (t: ExecutionContext, file: string, flags: string | number = 'r+'): number {
  const fd = fs.openSync(file, flags)
  t.teardown(() => { try { fs.closeSync(fd) } catch {} })
  return fd
}

/** A number that is not an open fd right now (closed again before returning). */
function closedFd (dir: string): number {
  const fd = fs.openSync(path.join(dir, '.closed'), 'w')
  fs.closeSync(fd)
  return fd
}

/** Asserts that `fn` throws a Node-style fs error. */
function throwsSys (t: ExecutionContext, fn: () => unknown, code: string, syscall: string, p?: string, dest?: string): SysError {
  const err = t.throws(fn) as SysError
  t.true(err instanceof Error)
  t.is(err.code, code)
  t.is(err.errno, -(os.constants.errno as Record<string, number>)[code]!)
  t.is(err.syscall, syscall)
  t.is(err.path, p)
  t.is(err.dest, dest)
  const where = p === undefined ? '' : dest === undefined ? ` '${p}'` : ` '${p}' -> '${dest}'`
  t.regex(err.message, new RegExp(`^${code}: [a-z].*, ${syscall}${where.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`))
  return err
}

const u = (s: string): Buffer => Buffer.from(s)

test('constants have the Linux values', (t) => {
  t.deepEqual(
    [XATTR_CREATE, XATTR_REPLACE, RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, SEEK_DATA, SEEK_HOLE, UTIME_NOW, UTIME_OMIT],
    [1, 2, 1, 2, 4, 1, 2, 3, 4, 2 ** 30 - 1, 2 ** 30 - 2])
})

test('errors look like Node fs errors', (t) => {
  const dir = tmpdir(t)
  const missing = path.join(dir, 'missing')
  const err = throwsSys(t, () => lgetxattr(missing, 'user.x'), 'ENOENT', 'lgetxattr', missing)
  t.is(err.message, `ENOENT: no such file or directory, lgetxattr '${missing}'`)
  // Same text as Node's own error for the same errno.
  const nodeErr = t.throws(() => fs.lstatSync(missing)) as NodeJS.ErrnoException
  t.is(err.message.replace('lgetxattr', 'lstat'), nodeErr.message)
  t.is(err.errno, nodeErr.errno ?? NaN)
})

test('lsetxattr / lgetxattr / llistxattr / lremovexattr on a path', (t) => {
  const dir = tmpdir(t)
  const f = path.join(dir, 'f')
  fs.writeFileSync(f, 'data')

  t.is(lgetxattr(f, 'user.none'), null)
  t.deepEqual(llistxattr(f).filter((n) => n.startsWith('user.')), [])

  lsetxattr(f, 'user.a', u('alpha'), 0)
  lsetxattr(f, 'user.empty', Buffer.alloc(0), 0)
  const big = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 251))
  lsetxattr(f, 'user.big', big, 0) // larger than the first read buffer: exercises the ERANGE retry
  t.deepEqual(lgetxattr(f, 'user.a'), u('alpha'))
  t.deepEqual(lgetxattr(f, 'user.empty'), Buffer.alloc(0))
  t.deepEqual(lgetxattr(f, 'user.big'), big)
  t.deepEqual(llistxattr(f).filter((n) => n.startsWith('user.')).sort(), ['user.a', 'user.big', 'user.empty'])

  // Flags.
  throwsSys(t, () => lsetxattr(f, 'user.a', u('x'), XATTR_CREATE), 'EEXIST', 'lsetxattr', f)
  throwsSys(t, () => lsetxattr(f, 'user.new', u('x'), XATTR_REPLACE), 'ENODATA', 'lsetxattr', f)
  lsetxattr(f, 'user.a', u('beta'), XATTR_REPLACE)
  lsetxattr(f, 'user.new', u('n'), XATTR_CREATE)
  t.deepEqual(lgetxattr(f, 'user.a'), u('beta'))
  t.deepEqual(lgetxattr(f, 'user.new'), u('n'))

  lremovexattr(f, 'user.a')
  t.is(lgetxattr(f, 'user.a'), null)
  t.false(llistxattr(f).includes('user.a'))
  throwsSys(t, () => lremovexattr(f, 'user.a'), 'ENODATA', 'lremovexattr', f)

  const missing = path.join(dir, 'missing')
  throwsSys(t, () => lsetxattr(missing, 'user.a', u('x'), 0), 'ENOENT', 'lsetxattr', missing)
  throwsSys(t, () => llistxattr(missing), 'ENOENT', 'llistxattr', missing)
  throwsSys(t, () => lremovexattr(missing, 'user.a'), 'ENOENT', 'lremovexattr', missing)
  throwsSys(t, () => lgetxattr(f, 'bogus.name'), 'EOPNOTSUPP', 'lgetxattr', f)
  throwsSys(t, () => lgetxattr(path.join(f, 'x'), 'user.a'), 'ENOTDIR', 'lgetxattr', path.join(f, 'x'))
})

test('the l* xattr calls do not follow symlinks', (t) => {
  const dir = tmpdir(t)
  const target = path.join(dir, 'target')
  const link = path.join(dir, 'link')
  fs.writeFileSync(target, '')
  fs.symlinkSync('target', link)
  lsetxattr(target, 'user.t', u('on target'), 0)
  t.is(lgetxattr(link, 'user.t'), null)
  t.false(llistxattr(link).includes('user.t'))
  throwsSys(t, () => lsetxattr(link, 'user.t', u('x'), 0), 'EPERM', 'lsetxattr', link)
  throwsSys(t, () => lremovexattr(link, 'user.t'), 'EPERM', 'lremovexattr', link)
  t.deepEqual(lgetxattr(target, 'user.t'), u('on target'))
})

test('llistxattr and flistxattr return long lists whole', (t) => {
  const dir = tmpdir(t)
  const f = path.join(dir, 'f')
  fs.writeFileSync(f, '')
  const names = Array.from({ length: 60 }, (_, i) => `user.attribute-number-${String(i).padStart(3, '0')}`)
  for (const n of names) lsetxattr(f, n, u('v'), 0)
  t.true(names.join('\0').length > 1024)
  t.deepEqual(llistxattr(f).filter((n) => n.startsWith('user.')).sort(), names)
  t.deepEqual(flistxattr(open(t, f)).filter((n) => n.startsWith('user.')).sort(), names)
})

test('fsetxattr / fgetxattr / flistxattr / fremovexattr on an fd', (t) => {
  const dir = tmpdir(t)
  const f = path.join(dir, 'f')
  fs.writeFileSync(f, '')
  const fd = open(t, f)
  t.is(fgetxattr(fd, 'user.a'), null)
  fsetxattr(fd, 'user.a', u('one'), 0)
  const big = Buffer.alloc(2500, 7)
  fsetxattr(fd, 'user.big', big, XATTR_CREATE)
  t.deepEqual(fgetxattr(fd, 'user.a'), u('one'))
  t.deepEqual(lgetxattr(f, 'user.a'), u('one'))
  t.deepEqual(fgetxattr(fd, 'user.big'), big)
  t.deepEqual(flistxattr(fd).filter((n) => n.startsWith('user.')).sort(), ['user.a', 'user.big'])
  throwsSys(t, () => fsetxattr(fd, 'user.a', u('x'), XATTR_CREATE), 'EEXIST', 'fsetxattr')
  fremovexattr(fd, 'user.a')
  t.is(lgetxattr(f, 'user.a'), null)
  throwsSys(t, () => fremovexattr(fd, 'user.a'), 'ENODATA', 'fremovexattr')

  const bad = closedFd(dir)
  throwsSys(t, () => fgetxattr(bad, 'user.a'), 'EBADF', 'fgetxattr')
  throwsSys(t, () => fsetxattr(bad, 'user.a', u('x'), 0), 'EBADF', 'fsetxattr')
  throwsSys(t, () => flistxattr(bad), 'EBADF', 'flistxattr')
  throwsSys(t, () => fremovexattr(bad, 'user.a'), 'EBADF', 'fremovexattr')
})

test('makedev uses the Linux encoding', (t) => {
  t.is(makedev(0, 0), 0)
  t.is(makedev(1, 3), 259)
  t.is(makedev(8, 17), 2065)
  t.is(makedev(0x123, 0x45678), 0x45612378)
  t.is(makedev(0x1000, 0), 2 ** 44)
  t.is(fs.statSync('/dev/null').rdev, makedev(1, 3))
  t.is((t.throws(() => makedev(-1, 0)) as SysError).code, 'ERR_OUT_OF_RANGE')
})

test('mknod creates fifos, files and devices', (t) => {
  const dir = tmpdir(t)
  const fifo = path.join(dir, 'fifo')
  mknod(fifo, S_IFIFO | 0o640, 0)
  const st = fs.lstatSync(fifo)
  t.true(st.isFIFO())
  t.is(st.mode & 0o7777, 0o640 & ~process.umask())

  const file = path.join(dir, 'file')
  mknod(file, S_IFREG | 0o600, 0)
  t.true(fs.lstatSync(file).isFile())
  t.is(fs.lstatSync(file).size, 0)

  throwsSys(t, () => mknod(fifo, S_IFIFO | 0o644, 0), 'EEXIST', 'mknod', fifo)
  const deep = path.join(dir, 'no', 'such')
  throwsSys(t, () => mknod(deep, S_IFIFO | 0o644, 0), 'ENOENT', 'mknod', deep)

  const dev = path.join(dir, 'null')
  try {
    mknod(dev, S_IFCHR | 0o666, makedev(1, 3))
  } catch (err) {
    t.is((err as SysError).code, 'EPERM') // no CAP_MKNOD here
    return
  }
  const dst = fs.lstatSync(dev)
  t.is(dst.mode & S_IFMT, S_IFCHR)
  t.is(dst.rdev, makedev(1, 3))
})

test('utimensat sets, keeps and refreshes times, with and without following symlinks', (t) => {
  const dir = tmpdir(t)
  const f = path.join(dir, 'f')
  const link = path.join(dir, 'link')
  fs.writeFileSync(f, '')
  fs.symlinkSync('f', link)
  const times = (p: string): [bigint, bigint] => { const s = fs.lstatSync(p, { bigint: true }); return [s.atimeNs, s.mtimeNs] }

  const big = 5_000_000_000 // beyond 2^32 seconds (year 2128)
  utimensat(f, 1_000_000_000, 123_456_789, big, 987_654_321, false)
  t.deepEqual(times(f), [1_000_000_000_123_456_789n, 5_000_000_000_987_654_321n])

  utimensat(f, 42, 0, 0, UTIME_OMIT, false) // mtime kept
  t.deepEqual(times(f), [42_000_000_000n, 5_000_000_000_987_654_321n])

  const before = BigInt(Date.now() - 5000) * 1_000_000n
  utimensat(f, 0, UTIME_OMIT, 0, UTIME_NOW, false) // atime kept, mtime now
  const [a, m] = times(f)
  t.is(a, 42_000_000_000n)
  t.true(m >= before && m <= BigInt(Date.now() + 5000) * 1_000_000n)

  // Through the symlink (follows) vs on the symlink itself.
  utimensat(link, 7, 0, 8, 0, false)
  t.deepEqual(times(f), [7_000_000_000n, 8_000_000_000n])
  utimensat(link, 100, 1, 200, 2, true)
  t.deepEqual(times(link), [100_000_000_001n, 200_000_000_002n])
  t.deepEqual(times(f), [7_000_000_000n, 8_000_000_000n])

  // Times before 1970.
  utimensat(f, -86400, 0, -1, 500, false)
  t.deepEqual(times(f), [-86_400_000_000_000n, -999_999_500n])

  const missing = path.join(dir, 'missing')
  throwsSys(t, () => utimensat(missing, 0, 0, 0, 0, false), 'ENOENT', 'utimensat', missing)
  throwsSys(t, () => utimensat(f, 0, 1_000_000_000, 0, 0, false), 'EINVAL', 'utimensat', f)
})

test('futimens sets times by fd', (t) => {
  const dir = tmpdir(t)
  const f = path.join(dir, 'f')
  fs.writeFileSync(f, '')
  const fd = open(t, f)
  futimens(fd, 4_294_967_297, 5, 11, UTIME_OMIT)
  futimens(fd, 0, UTIME_OMIT, 12, 6)
  const s = fs.statSync(f, { bigint: true })
  t.is(s.atimeNs, 4_294_967_297_000_000_005n)
  t.is(s.mtimeNs, 12_000_000_006n)
  throwsSys(t, () => futimens(fd, 0, -1, 0, 0), 'EINVAL', 'futimens')
  throwsSys(t, () => futimens(closedFd(dir), 0, 0, 0, 0), 'EBADF', 'futimens')
})

test('renameat2 renames, refuses to replace, exchanges and whites out', (t) => {
  const dir = tmpdir(t)
  const a = path.join(dir, 'a')
  const b = path.join(dir, 'b')
  const c = path.join(dir, 'c')
  fs.writeFileSync(a, 'A')
  fs.writeFileSync(b, 'B')

  throwsSys(t, () => renameat2(a, b, RENAME_NOREPLACE), 'EEXIST', 'renameat2', a, b)
  t.is(fs.readFileSync(a, 'utf8'), 'A')
  t.is(fs.readFileSync(b, 'utf8'), 'B')

  renameat2(a, b, RENAME_EXCHANGE)
  t.is(fs.readFileSync(a, 'utf8'), 'B')
  t.is(fs.readFileSync(b, 'utf8'), 'A')

  renameat2(a, c, RENAME_NOREPLACE)
  t.false(fs.existsSync(a))
  t.is(fs.readFileSync(c, 'utf8'), 'B')

  renameat2(c, b, 0) // plain rename replaces
  t.false(fs.existsSync(c))
  t.is(fs.readFileSync(b, 'utf8'), 'B')

  throwsSys(t, () => renameat2(a, c, RENAME_EXCHANGE), 'ENOENT', 'renameat2', a, c)
  throwsSys(t, () => renameat2(b, c, RENAME_EXCHANGE | RENAME_NOREPLACE), 'EINVAL', 'renameat2', b, c)

  try {
    renameat2(b, c, RENAME_WHITEOUT)
  } catch (err) {
    t.true(['EPERM', 'EINVAL'].includes((err as SysError).code)) // needs CAP_MKNOD and fs support
    return
  }
  t.is(fs.readFileSync(c, 'utf8'), 'B')
  const w = fs.lstatSync(b)
  t.is(w.mode & S_IFMT, S_IFCHR)
  t.is(w.rdev, 0)
})

test('copyFileRange copies between explicit offsets without moving file positions', (t) => {
  const dir = tmpdir(t)
  const src = path.join(dir, 'src')
  const dst = path.join(dir, 'dst')
  fs.writeFileSync(src, '0123456789')
  fs.writeFileSync(dst, 'abcdefghij')
  const fin = open(t, src, 'r')
  const fout = open(t, dst, 'r+')
  lseek(fin, 1, SEEK_SET)
  lseek(fout, 2, SEEK_SET)

  t.is(copyFileRange(fin, 3, fout, 5, 4), 4)
  t.is(fs.readFileSync(dst, 'utf8'), 'abcde3456j')
  t.is(lseek(fin, 0, SEEK_CUR), 1)
  t.is(lseek(fout, 0, SEEK_CUR), 2)

  t.is(copyFileRange(fin, 8, fout, 10, 100), 2) // short at the end of the source
  t.is(fs.readFileSync(dst, 'utf8'), 'abcde3456j89')
  t.is(copyFileRange(fin, 10, fout, 0, 5), 0) // EOF
  t.is(copyFileRange(fin, 0, fout, 0, 0), 0)

  const bad = closedFd(dir)
  throwsSys(t, () => copyFileRange(bad, 0, fout, 0, 1), 'EBADF', 'copy_file_range')
  throwsSys(t, () => copyFileRange(fout, 0, fin, 0, 1), 'EBADF', 'copy_file_range') // fin is read-only
  throwsSys(t, () => copyFileRange(fout, 0, fout, 2, 4), 'EINVAL', 'copy_file_range') // overlapping, same file
})

test('fallocate allocates, keeps size and punches holes', (t) => {
  const dir = tmpdir(t)
  const f = path.join(dir, 'f')
  fs.writeFileSync(f, Buffer.alloc(64 * 1024, 0x61))
  const fd = open(t, f)

  fallocate(fd, 0, 0, 128 * 1024)
  t.is(fs.fstatSync(fd).size, 128 * 1024)

  const blocks = fs.fstatSync(fd).blocks
  fallocate(fd, FALLOC_FL_KEEP_SIZE, 128 * 1024, 1024 * 1024)
  t.is(fs.fstatSync(fd).size, 128 * 1024)
  t.true(fs.fstatSync(fd).blocks > blocks)

  fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 16 * 1024, 16 * 1024)
  const content = fs.readFileSync(f)
  t.is(content.length, 128 * 1024)
  t.true(content.subarray(16 * 1024, 32 * 1024).every((b) => b === 0))
  t.true(content.subarray(0, 16 * 1024).every((b) => b === 0x61))
  t.true(content.subarray(32 * 1024, 64 * 1024).every((b) => b === 0x61))
  t.is(lseek(fd, 0, SEEK_HOLE), 16 * 1024)

  throwsSys(t, () => fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096), 'EOPNOTSUPP', 'fallocate')
  throwsSys(t, () => fallocate(fd, 0, 0, 0), 'EINVAL', 'fallocate')
  throwsSys(t, () => fallocate(closedFd(dir), 0, 0, 1), 'EBADF', 'fallocate')
})

test('lseek moves, finds data and holes, and returns -1 past the data', (t) => {
  const dir = tmpdir(t)
  const f = path.join(dir, 'sparse')
  const fd = open(t, f, 'w+')
  const mib = 1024 * 1024
  fs.writeSync(fd, Buffer.alloc(4096, 1), 0, 4096, 4 * mib) // data only at 4 MiB
  const size = 4 * mib + 4096

  t.is(lseek(fd, 10, SEEK_SET), 10)
  t.is(lseek(fd, 5, SEEK_CUR), 15)
  t.is(lseek(fd, -96, SEEK_END), size - 96)
  t.is(lseek(fd, 0, SEEK_HOLE), 0)
  t.is(lseek(fd, 0, SEEK_DATA), 4 * mib)
  t.is(lseek(fd, 4 * mib, SEEK_HOLE), size)
  t.is(lseek(fd, size, SEEK_DATA), -1) // ENXIO: nothing past the end
  t.is(lseek(fd, size + 1, SEEK_HOLE), -1)
  t.is(lseek(fd, 2 ** 40, SEEK_SET), 2 ** 40) // past 2^32

  throwsSys(t, () => lseek(fd, 0, 99), 'EINVAL', 'lseek')
  throwsSys(t, () => lseek(fd, -1, SEEK_SET), 'EINVAL', 'lseek')
  throwsSys(t, () => lseek(closedFd(dir), 0, SEEK_SET), 'EBADF', 'lseek')
  mknod(path.join(dir, 'fifo'), S_IFIFO | 0o600, 0)
  const pfd = open(t, path.join(dir, 'fifo'), fs.constants.O_RDWR)
  throwsSys(t, () => lseek(pfd, 0, SEEK_SET), 'ESPIPE', 'lseek')
})

test('syncfs flushes by fd', (t) => {
  const dir = tmpdir(t)
  const f = path.join(dir, 'f')
  fs.writeFileSync(f, 'x')
  const fd = open(t, f)
  t.notThrows(() => syncfs(fd))
  throwsSys(t, () => syncfs(closedFd(dir)), 'EBADF', 'syncfs')
})

test('arguments are checked', (t) => {
  const dir = tmpdir(t)
  const f = path.join(dir, 'f')
  fs.writeFileSync(f, '')
  const fd = open(t, f)
  const type = (fn: () => unknown, code = 'ERR_INVALID_ARG_TYPE'): void => {
    const err = t.throws(fn, { instanceOf: TypeError }) as SysError
    t.is(err.code, code)
  }
  const range = (fn: () => unknown): void => {
    const err = t.throws(fn, { instanceOf: RangeError }) as SysError
    t.is(err.code, 'ERR_OUT_OF_RANGE')
  }
  const any = (x: unknown): any => x // eslint-disable-line @typescript-eslint/no-explicit-any

  type(() => lgetxattr(any(1), 'user.a'))
  type(() => lgetxattr(f, any(undefined)))
  type(() => (lgetxattr as any)(f))
  type(() => lsetxattr(f, 'user.a', any('string'), 0))
  type(() => lsetxattr(f, 'user.a', u('x'), any('0')))
  type(() => fgetxattr(any('3'), 'user.a'))
  type(() => utimensat(f, 0, 0, 0, 0, any(1)))
  type(() => renameat2(f, any(null), 0))
  type(() => copyFileRange(fd, any(1n), fd, 0, 1))
  type(() => lgetxattr(f + '\0x', 'user.a'), 'ERR_INVALID_ARG_VALUE')
  type(() => lsetxattr(f, 'user.\0a', u('x'), 0), 'ERR_INVALID_ARG_VALUE')

  range(() => fgetxattr(-1, 'user.a'))
  range(() => fgetxattr(1.5, 'user.a'))
  range(() => fgetxattr(2 ** 31, 'user.a'))
  range(() => lseek(fd, NaN, SEEK_SET))
  range(() => lseek(fd, Infinity, SEEK_SET))
  range(() => lseek(fd, 2 ** 53, SEEK_SET))
  range(() => copyFileRange(fd, -1, fd, 0, 1))
  range(() => mknod(path.join(dir, 'x'), -1, 0))
  range(() => renameat2(f, f, 2 ** 32))
  t.false(fs.existsSync(path.join(dir, 'x')))
})

test('loading without a built addon says how to build it', (t) => {
  const dir = tmpdir(t)
  // Same layout as the repo: <root>/dist/src/sys/native.js, with no <root>/native/build.
  const copy = path.join(dir, 'dist', 'src', 'sys', 'native.js')
  fs.mkdirSync(path.dirname(copy), { recursive: true })
  fs.copyFileSync(path.join(__dirname, '..', '..', 'src', 'sys', 'native.js'), copy)
  const res = spawnSync(process.execPath, ['-e', `try { require(${JSON.stringify(copy)}) } catch (e) { console.log(e.message) }`], { encoding: 'utf8' })
  t.regex(res.stdout, /cannot load the native addon .*siblingfs_sys\.node/)
  t.regex(res.stdout, /npm run build:native/)
  t.regex(res.stdout, /node scripts\/build-native\.js/)
})
