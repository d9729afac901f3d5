/**
 * The FUSE boundary: fuse-native operations -> overlay calls.
 *
 * Contract: every handler calls its callback exactly once, with 0 or a value on success and a
 * negative errno on failure (read and write answer the byte count in the errno slot, as
 * fuse-native expects). Errors become errno only through `toErrno`. Handlers hold no state
 * and make no decisions: they adapt arguments and call the overlay.
 * Paths may be null (fuse-native passes NULL paths on when libfuse has none); operations
 * that have a handle then work by handle.
 * Not implemented on purpose, so libfuse answers them without a round trip to JS: flush
 * (we keep no buffered state: writes go straight to the store), opendir/releasedir
 * (readdir works by path).
 */
import { opChannel } from '../log.js'
import type { Caller, Overlay } from '../overlay/overlay.js'
import { toErrno } from './errno.js'
import { packedDirents, statArray, statfsObject } from './stat.js'

type Cb = (err: number, ...rest: unknown[]) => void

/** Runs `fn` and answers `cb` once: `ok(value)` on success, the errno on failure. */
function run<T> (op: string, path: string | null, cb: Cb, fn: () => T | Promise<T>, ok: (v: T) => void): void {
  if (opChannel.hasSubscribers) opChannel.publish({ op, path })
  let r: T | Promise<T>
  try {
    r = fn()
  } catch (err) {
    cb(toErrno(err, op))
    return
  }
  if (r instanceof Promise) {
    r.then(ok, (err: unknown) => cb(toErrno(err, op)))
  } else {
    ok(r)
  }
}

export type CallerSource = () => Caller

/**
 * Opens and releases that patched fuse-native answered in C, handed over in order as
 * [kind, fh, dev, ino, flags] per event (kind 1: a host file opened, 2: a store file
 * opened, 3: a store file created and opened read-write, 4: a chunked store file opened
 * read-only, its reads served in C, 5: a host file opened for writing with `flags`, every
 * request on it answered here, 6: the spare files given to the FUSE layer used, and unless
 * fh is 0 the first write of that pending handle (kind 5) answered there, making its file
 * a chunked sibling whose data file descriptor is in the dev slot, 0: a direct handle
 * released): each is applied like the JS operation; a failure is logged (toErrno), never
 * thrown.
 */
export function nativeEvents (ov: Overlay): (events: Float64Array) => void {
  return (ev) => {
    for (let i = 0; i + 4 < ev.length; i += 5) {
      const kind = ev[i]
      const opened = kind !== 0 && kind !== 6
      if (opChannel.hasSubscribers) opChannel.publish({ op: kind === 6 ? 'copied-up' : opened ? (kind === 3 ? 'create' : 'open') : 'release', path: null })
      try {
        if (kind === 6) ov.adoptCopiedUp(ev[i + 1], ev[i + 2])
        else if (kind === 5) ov.adoptPending(ev[i + 1], ev[i + 2], ev[i + 3], ev[i + 4])
        else if (opened) ov.adoptOpen(ev[i + 1], ev[i + 2], ev[i + 3], kind === 1 ? 'host' : 'upper', kind === 3, kind === 4)
        else ov.release(ev[i + 1])
      } catch (err) { toErrno(err, kind === 6 ? 'write' : opened ? 'open' : 'release') }
    }
  }
}

export function createHandlers (ov: Overlay, caller: CallerSource): Record<string, (...args: any[]) => void> {
  const ok0 = (cb: Cb) => () => cb(0)
  const needPath = (p: string | null): string => {
    if (p === null) throw Object.assign(new Error('no path'), { code: 'ENOENT' })
    return p
  }
  return {
    init (cb: Cb) { cb(0) },

    getattr (path: string, cb: Cb) {
      run('getattr', path, cb, () => ov.getattr(path), (a) => cb(0, statArray(a)))
    },
    fgetattr (path: string | null, fh: number, cb: Cb) {
      run('fgetattr', path, cb, () => ov.fgetattr(path, fh), (a) => cb(0, statArray(a)))
    },
    access (path: string, mode: number, cb: Cb) {
      run('access', path, cb, () => ov.access(path, mode), ok0(cb))
    },
    statfs (_path: string, cb: Cb) {
      run('statfs', _path, cb, () => ov.statfs(), (s) => cb(0, statfsObject(s)))
    },
    readdir (path: string, cb: Cb) {
      run('readdir', path, cb, () => ov.readdir(path), (r) => cb(0, ...packedDirents(r.names, r.inos, r.modes)))
    },
    readlink (path: string, cb: Cb) {
      run('readlink', path, cb, () => ov.readlink(path), (t) => cb(0, t))
    },

    open (path: string, flags: number, cb: Cb) {
      run('open', path, cb, () => ov.open(path, flags), (fh) => cb(0, fh))
    },
    create (path: string, mode: number, flags: number, cb: Cb) {
      const who = caller()
      run('create', path, cb, () => ov.create(path, mode, flags, who), (fh) => cb(0, fh))
    },
    read (_path: string | null, fh: number, buf: Buffer, len: number, pos: number, cb: Cb) {
      run('read', _path, cb, () => ov.read(fh, buf, len, pos), (n) => cb(n))
    },
    write (_path: string | null, fh: number, buf: Buffer, len: number, pos: number, cb: Cb) {
      run('write', _path, cb, () => ov.write(_path, fh, buf, len, pos), (n) => cb(n))
    },
    release (_path: string | null, fh: number, cb: Cb) {
      run('release', _path, cb, () => ov.release(fh), ok0(cb))
    },
    fsync (_path: string | null, fh: number, datasync: number, cb: Cb) {
      run('fsync', _path, cb, () => ov.fsync(fh, datasync !== 0), ok0(cb))
    },
    fsyncdir (path: string | null, _fh: number, _datasync: number, cb: Cb) {
      run('fsyncdir', path, cb, () => ov.fsyncdir(needPath(path)), ok0(cb))
    },
    truncate (path: string, size: number, cb: Cb) {
      run('truncate', path, cb, () => ov.truncate(path, size), ok0(cb))
    },
    ftruncate (_path: string | null, fh: number, size: number, cb: Cb) {
      run('ftruncate', _path, cb, () => ov.ftruncate(_path, fh, size), ok0(cb))
    },

    mknod (path: string, mode: number, dev: number, cb: Cb) {
      const who = caller()
      run('mknod', path, cb, () => ov.mknod(path, mode, dev, who), ok0(cb))
    },
    mkdir (path: string, mode: number, cb: Cb) {
      const who = caller()
      run('mkdir', path, cb, () => ov.mkdir(path, mode, who), ok0(cb))
    },
    symlink (target: string, path: string, cb: Cb) {
      const who = caller()
      run('symlink', path, cb, () => ov.symlink(target, path, who), ok0(cb))
    },
    link (src: string, dst: string, cb: Cb) {
      run('link', dst, cb, () => ov.link(src, dst), ok0(cb))
    },
    unlink (path: string, cb: Cb) {
      run('unlink', path, cb, () => ov.unlink(path), ok0(cb))
    },
    rmdir (path: string, cb: Cb) {
      run('rmdir', path, cb, () => ov.rmdir(path), ok0(cb))
    },
    rename (src: string, dst: string, cb: Cb) {
      run('rename', src, cb, () => ov.rename(src, dst), ok0(cb))
    },

    chmod (path: string, mode: number, cb: Cb) {
      run('chmod', path, cb, () => ov.chmod(path, mode), ok0(cb))
    },
    chown (path: string, uid: number, gid: number, cb: Cb) {
      run('chown', path, cb, () => ov.chown(path, uid, gid), ok0(cb))
    },
    utimens (path: string | null, as: number, an: number, ms: number, mn: number, cb: Cb) {
      run('utimens', path, cb, () => ov.utimens(needPath(path), as, an, ms, mn), ok0(cb))
    },

    setxattr (path: string, name: string, value: Buffer, _position: number, flags: number, cb: Cb) {
      run('setxattr', path, cb, () => ov.setxattr(path, name, Buffer.from(value), flags), ok0(cb))
    },
    getxattr (path: string, name: string, _position: number, cb: Cb) {
      run('getxattr', path, cb, () => ov.getxattr(path, name), (v) => cb(0, v))
    },
    listxattr (path: string, cb: Cb) {
      run('listxattr', path, cb, () => ov.listxattr(path), (l) => cb(0, l))
    },
    removexattr (path: string, name: string, cb: Cb) {
      run('removexattr', path, cb, () => ov.removexattr(path, name), ok0(cb))
    }
  }
}

