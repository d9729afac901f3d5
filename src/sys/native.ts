/**
 * Typed access to the native addon (native/sys.c): Linux file system calls that Node's fs
 * lacks. The only module that loads native/build/Release/siblingfs_sys.node.
 *
 * All functions are synchronous. Failures throw a {@link SysError} shaped like Node's fs
 * errors (`code` 'ENOENT', negative `errno`, `syscall`, `path`, and `dest` for renames);
 * fd-based calls have no `path`. Wrong argument types throw TypeError (code
 * ERR_INVALID_ARG_TYPE, or ERR_INVALID_ARG_VALUE for a path containing a NUL byte);
 * non-integer or out-of-range numbers throw RangeError (ERR_OUT_OF_RANGE).
 * Numbers are exact up to 2^53.
 */
import path from 'node:path'

/** The error thrown by a failed system call. */
export interface SysError extends Error {
  code: string
  errno: number
  syscall: string
  path?: string
  dest?: string
}

interface Binding {
  lgetxattr (path: string, name: string): Buffer | null
  fgetxattr (fd: number, name: string): Buffer | null
  lsetxattr (path: string, name: string, value: Buffer, flags: number): void
  fsetxattr (fd: number, name: string, value: Buffer, flags: number): void
  llistxattr (path: string): string[]
  flistxattr (fd: number): string[]
  lremovexattr (path: string, name: string): void
  fremovexattr (fd: number, name: string): void
  mknod (path: string, mode: number, dev: number): void
  makedev (major: number, minor: number): number
  utimensat (path: string, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, nofollow: boolean): void
  futimens (fd: number, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void
  renameat2 (oldPath: string, newPath: string, flags: number): void
  copyFileRange (fdIn: number, offIn: number, fdOut: number, offOut: number, len: number): number
  fallocate (fd: number, mode: number, offset: number, len: number): void
  lseek (fd: number, offset: number, whence: number): number
  syncfs (fd: number): void
  readdirTyped (path: string): [string[], number[], Uint8Array]
  dup2 (oldFd: number, newFd: number): void
  /** The platform's values of the constants below, checked at load. */
  constants: Record<string, number>
}

/** lsetxattr/fsetxattr flags. */
export const XATTR_CREATE = 1
export const XATTR_REPLACE = 2
/** renameat2 flags. */
export const RENAME_NOREPLACE = 1
export const RENAME_EXCHANGE = 2
export const RENAME_WHITEOUT = 4
/** fallocate modes. */
export const FALLOC_FL_KEEP_SIZE = 1
export const FALLOC_FL_PUNCH_HOLE = 2
/** lseek whence values beyond SEEK_SET/SEEK_CUR/SEEK_END (0/1/2). */
export const SEEK_DATA = 3
export const SEEK_HOLE = 4
/** Special nanosecond values for utimensat/futimens. */
export const UTIME_NOW = 1073741823
export const UTIME_OMIT = 1073741822

const EXPECTED: Record<string, number> = {
  XATTR_CREATE, XATTR_REPLACE, RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT,
  FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, SEEK_DATA, SEEK_HOLE, UTIME_NOW, UTIME_OMIT
}

function load (): Binding {
  // Compiled to dist/src/sys/native.js; the addon lives in <repo>/native/build/Release.
  const file = path.join(__dirname, '..', '..', '..', 'native', 'build', 'Release', 'siblingfs_sys.node')
  let binding: Binding
  try {
    const loaded: unknown = require(file)
    binding = loaded as Binding
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err)
    throw new Error(`siblingfs: cannot load the native addon ${file} (${why}). ` +
      'Build it with `npm run build:native` (or `node scripts/build-native.js`).', { cause: err })
  }
  for (const [name, value] of Object.entries(EXPECTED)) {
    if (binding.constants[name] !== value) {
      throw new Error(`siblingfs: native constant ${name} is ${binding.constants[name]} on this platform, expected ${value}`)
    }
  }
  return binding
}

const native = load()

/** An extended attribute's value (no symlink following), or null if it does not exist. */
export const lgetxattr: (path: string, name: string) => Buffer | null = native.lgetxattr
/** An extended attribute's value by fd, or null if it does not exist. */
export const fgetxattr: (fd: number, name: string) => Buffer | null = native.fgetxattr
/** Sets an extended attribute (no symlink following); flags: 0, XATTR_CREATE or XATTR_REPLACE. */
export const lsetxattr: (path: string, name: string, value: Buffer, flags: number) => void = native.lsetxattr
export const fsetxattr: (fd: number, name: string, value: Buffer, flags: number) => void = native.fsetxattr
/** Names of the extended attributes (no symlink following). */
export const llistxattr: (path: string) => string[] = native.llistxattr
export const flistxattr: (fd: number) => string[] = native.flistxattr
/** Removes an extended attribute; throws ENODATA if it does not exist. */
export const lremovexattr: (path: string, name: string) => void = native.lremovexattr
export const fremovexattr: (fd: number, name: string) => void = native.fremovexattr
/** Creates a node; `mode` includes the type bits (e.g. S_IFIFO | 0o644), `dev` from makedev(). */
export const mknod: (path: string, mode: number, dev: number) => void = native.mknod
/** A device number in Linux's (glibc's) encoding, as fs.Stats.rdev reports it. */
export const makedev: (major: number, minor: number) => number = native.makedev
/** Sets atime and mtime; a nsec may be UTIME_NOW or UTIME_OMIT. `nofollow` acts on a symlink itself. */
export const utimensat: (path: string, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, nofollow: boolean) => void = native.utimensat
export const futimens: (fd: number, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number) => void = native.futimens
/** rename with flags: 0, RENAME_NOREPLACE, RENAME_EXCHANGE or RENAME_WHITEOUT. */
export const renameat2: (oldPath: string, newPath: string, flags: number) => void = native.renameat2
/** Copies up to `len` bytes between explicit offsets (file positions do not move); returns the count, 0 at EOF. */
export const copyFileRange: (fdIn: number, offIn: number, fdOut: number, offOut: number, len: number) => number = native.copyFileRange
/** fallocate(2); mode 0 allocates (and extends), or FALLOC_FL_KEEP_SIZE / FALLOC_FL_PUNCH_HOLE flags. */
export const fallocate: (fd: number, mode: number, offset: number, len: number) => void = native.fallocate
/** lseek(2); returns -1 instead of throwing ENXIO (no data / hole at or after `offset`). */
export const lseek: (fd: number, offset: number, whence: number) => number = native.lseek
/** Flushes the file system that holds `fd`. */
export const syncfs: (fd: number) => void = native.syncfs

/** DT_* values of readdirTyped's types (DT_UNKNOWN: the file system did not say; lstat). */
export const DT_UNKNOWN = 0
export const DT_DIR = 4
export const DT_REG = 8
export const DT_LNK = 10
/** A directory's entries (no '.' or '..') with inode numbers and d_type, in one pass. */
export const readdirTyped: (path: string) => [string[], number[], Uint8Array] = native.readdirTyped

/** dup2(2): `newFd` now refers to `oldFd`'s open file (atomically replacing what it was). */
export const dup2: (oldFd: number, newFd: number) => void = native.dup2
