/**
 * Mounting: the only module that loads fuse-native.
 *
 * Owns: the mount options, mounting and unmounting, and noticing an unmount done by someone
 * else (`fusermount -u`), after which libfuse's thread is gone but nothing tells JS.
 * fuse-native is used with our patch (patches/fuse-native-2.2.6.patch, applied at install):
 * 64-bit inode numbers, nanosecond times, a correct utimens, create flags, null paths for
 * unlinked open files, the caller's uid/gid/pid, and extra mount options.
 * Options always set: default_permissions (the kernel checks permissions against the
 * attributes we report, exactly as for a local file system), use_ino (our inode numbers),
 * big_writes + max_write (writes arrive in pieces of up to 1 MiB, not 4 KiB: 1 MiB needs
 * protocol 7.28, which patched fuse-native negotiates for libfuse 2.9; else 128 KiB),
 * atomic_o_trunc (O_TRUNC arrives with the open, instead of as a separate truncate request
 * first: one round trip less per truncating open), nosuid, nodev. Handles opened for
 * writing only are direct (FOPEN_DIRECT_IO) on Linux 6.6+ (see setWriteDirect below).
 * Not hard_remove: with it, libfuse 2.9 answers fstat/fchmod/futimens of an unlinked open
 * file with ENOENT (the kernel sends no handle for them, and libfuse has no path). Without
 * it, libfuse renames such a file to `.fuse_hidden*`; the overlay turns that rename into a
 * move to STORE/work/, so the name never shows in the merged view or in upper/ (overlay.ts,
 * "hidden files").
 * After mounting it wires the overlay to the patch's C fast paths (each documented in
 * fuse-native.c): kernel-node invalidation for hard links, directories answered from the
 * host or the store (KernelCache), and opens and releases answered in C and handed to JS
 * in order (nativeEvents, HandleTable.sync, HandleTable.forward).
 * Does not: know what the operations mean (handlers.ts, overlay/).
 */
import fs from 'node:fs'
import os from 'node:os'
import { createRequire } from 'node:module'
import { SiblingError } from '../errors.js'
import { SPARSE_MIN_BYTES } from '../store/format.js'
import type { Caller, Overlay } from '../overlay/overlay.js'
import { createHandlers, nativeEvents } from './handlers.js'

export interface CacheOptions {
  /** Seconds the kernel may keep attributes and names (and a "no such name") of entries. */
  attrTimeout: number
  entryTimeout: number
  negativeTimeout: number
  /** 'auto': file data cached until the file's mtime or size changes (checked at open);
   *  'keep': cached until evicted; 'none': never cached across opens. */
  dataCache: 'auto' | 'keep' | 'none'
  /** Microseconds a FUSE thread waits awake for JS's answer (JS waits twice that for the
   *  next request) before sleeping; 0: never. */
  spinWait: number
}

export interface FuseMountOptions extends CacheOptions {
  allowOther: boolean
  debug: boolean
}

interface FuseInstance {
  mount (cb: (err: Error | null) => void): void
  unmount (cb: (err: Error | null) => void): void
  skipSecurityCapability (on: boolean): void
  invalidateInode (ino: number, onlyShared: boolean): number
  setEventHandler (handler: (events: Float64Array) => void): void
  takeEvents (): Float64Array
  setHostOpen (on: boolean, openFlags: number, maxSize: number): void
  setPendingOpen (on: boolean): void
  setDirCache (on: boolean): void
  setStoreMeta (on: boolean, allowChown: boolean, xattrRule: boolean, allowTrusted: boolean): void
  setStoreCreate (on: boolean, chownToCaller: boolean): void
  setStoreLinks (on: boolean): void
  setSpinWait (us: number): void
  setMainSpin (us: number): void
  forwardFd (fd: number, on: boolean): boolean
  serveChunked (fh: number, dataFd: number, mapFd: number, hostFd: number): boolean
  setMapsDir (fd: number): void
  setChunkedOpen (on: boolean): void
  setHostDir (path: string, fd: number, base: number, selfIno: number, parentIno: number, kind: number, upperFd?: number, upperBase?: number, copyUp?: boolean): boolean
  setCopyUp (on: boolean, chunkSize: number, sparseMin: number, workFd: number, canChown: boolean): boolean
  giveSpare (dataFd: number, dataName: string, mapFd: number, mapName: string, id: string): boolean
  takeSpare (): boolean
  jsHostHandles (delta: number): void
  dropHostDirs (path: string, subtree: boolean): void
  callerContext?: Uint32Array
}
type FuseCtor = (new (mnt: string, ops: object, opts: object) => FuseInstance) & { setMaxWrite: (bytes: number) => void, setPlus: (on: boolean) => void, setWriteDirect: (on: boolean) => void }

/** The largest write request asked of the kernel (and of libfuse): 1 MiB, where the kernel
 *  allows it (patched fuse-native, setMaxWrite), else 128 KiB. */
const MAX_WRITE = 1 << 20

/** fuse-native's setHostDir kinds (SFS_HD_HOST, SFS_HD_STORE, SFS_HD_LIVE). */
const HOST_DIR_KIND = { host: 0, store: 1, live: 2 } as const

let ctor: FuseCtor | undefined

/** Loads fuse-native (and with it libfuse.so.2), with a clear error when that fails. */
export function loadFuse (): FuseCtor {
  if (ctor !== undefined) return ctor
  try {
    const req = createRequire(__filename)
    ctor = req('fuse-native') as FuseCtor
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err)
    if (/libfuse\.so/.test(msg)) {
      throw new SiblingError('SFS_NO_LIBFUSE', 'libfuse.so.2 is not installed', {
        cause: err, hint: 'install it: apt-get install libfuse2 (or run scripts/install-deps.sh)', exitCode: 69
      })
    }
    throw new SiblingError('SFS_NO_FUSE_NATIVE', `fuse-native could not be loaded: ${msg}`, {
      cause: err, hint: 'run `npm ci` in the siblingfs directory (it builds fuse-native)', exitCode: 69
    })
  }
  if ((ctor as unknown as { PATCHED?: string }).PATCHED === undefined) {
    throw new SiblingError('SFS_FUSE_UNPATCHED', 'fuse-native is not patched for siblingfs', {
      hint: 'run `node scripts/patch-fuse-native.js` in the siblingfs directory', exitCode: 69
    })
  }
  return ctor
}

/** Whether the running kernel's release is at least major.minor. */
export function kernelAtLeast (major: number, minor: number, release = os.release()): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release)
  if (m === null) return false
  const [ma, mi] = [Number(m[1]), Number(m[2])]
  return ma > major || (ma === major && mi >= minor)
}

/** Whether `p` is a mount point, from /proc/self/mountinfo (field 5, octal-escaped). */
export function isMountPoint (p: string): boolean {
  let info: string
  try { info = fs.readFileSync('/proc/self/mountinfo', 'utf8') } catch { return false }
  for (const line of info.split('\n')) {
    const f = line.split(' ')
    if (f.length > 4 && f[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))) === p) return true
  }
  return false
}

export interface Mounted {
  /** Unmounts (lazily if busy). Idempotent. */
  unmount (): Promise<void>
  /** Resolves when the mount is gone, whoever unmounted it. */
  gone: Promise<void>
}

function fuseOptions (o: FuseMountOptions): string[] {
  const opts = [
    'default_permissions', 'use_ino', 'big_writes', `max_write=${MAX_WRITE}`, 'atomic_o_trunc',
    'nosuid', 'nodev', 'fsname=siblingfs', 'subtype=siblingfs',
    `attr_timeout=${o.attrTimeout}`, `entry_timeout=${o.entryTimeout}`, `negative_timeout=${o.negativeTimeout}`
  ]
  if (o.dataCache === 'auto') opts.push('auto_cache')
  if (o.dataCache === 'keep') opts.push('kernel_cache')
  // 'none': libfuse's default, the kernel drops a file's cached data at every open.
  return opts
}

export async function mountOverlay (ov: Overlay, mountpoint: string, o: FuseMountOptions): Promise<Mounted> {
  const Fuse = loadFuse()
  Fuse.setMaxWrite(MAX_WRITE)
  // Listings of directories served in C carry their entries' attributes (READDIRPLUS, made
  // for libfuse 2.9 by patched fuse-native): `find` or `tar c` then asks nothing more per
  // entry. Not with zero timeouts, where the kernel could not keep what a listing told it.
  Fuse.setPlus(o.attrTimeout > 0 && o.entryTimeout > 0)
  // Handles opened for writing only bypass the kernel's page cache (FOPEN_DIRECT_IO): what
  // is written is copied once, into the store, not also into the mount's cache. Coherent
  // for other handles only where a direct write drops the cached pages it overwrites
  // (Linux 6.6 and later); on older kernels writes stay cached (write-through).
  Fuse.setWriteDirect(kernelAtLeast(6, 6))
  let ctx: Uint32Array | undefined
  const caller = (): Caller => ctx !== undefined
    ? { uid: ctx[0], gid: ctx[1], pid: ctx[2] }
    : { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid: 0 }
  const fuse = new Fuse(mountpoint, createHandlers(ov, caller), {
    timeout: false, // copy-ups may take longer than fuse-native's 15 s watchdog
    allowOther: o.allowOther,
    debug: o.debug,
    maxRead: 131072,
    extraOptions: fuseOptions(o)
  })
  ctx = fuse.callerContext
  await new Promise<void>((resolve, reject) => {
    fuse.mount((err) => {
      if (err !== null) {
        reject(new SiblingError('SFS_MOUNT_FAILED', `could not mount at ${mountpoint}: ${err.message}`, {
          cause: err, hint: 'check that /dev/fuse is usable and the mount point is an empty directory', exitCode: 70
        }))
      } else resolve()
    })
  })

  // The kernel asks for security.capability before every write (to drop file capabilities);
  // answered "none" in C, that costs no round trip to JS. On a nosuid mount, as ours always
  // is, file capabilities have no effect, so nothing is lost but the attribute's visibility
  // (README: differences).
  fuse.skipSecurityCapability(true)

  // Hard links: libfuse gives each name its own kernel node; the overlay tells all of a
  // file's names when its attributes change (overlay.ts, KernelCache).
  // Directories that show only their host directory are listed in C (overlay.ts, KernelCache).
  ov.kernel = {
    invalidateInode: (ino, onlyShared) => { fuse.invalidateInode(ino, onlyShared) },
    listedHostDir: (p, fd, base, selfIno, parentIno, kind, upper) => { fuse.setHostDir(p, fd, base, selfIno, parentIno, HOST_DIR_KIND[kind], upper?.fd, upper?.base, upper?.copyUp) },
    dirChanged: (p, subtree) => { fuse.dropHostDirs(p, subtree) }
  }
  // Listing the root once now lets lookups in it be answered in C from the start.
  ov.readdir('/')
  // Closing a plain descriptor (a direct handle) is answered in C at once, and so is a
  // read-only open of a small host file in a directory listed from the host; JS learns of
  // both a moment later, in order, in batches (handlers.ts, nativeEvents), or at once when
  // it must see every open handle (HandleTable.sync).
  const apply = nativeEvents(ov)
  fuse.setEventHandler(apply)
  ov.handles.sync = () => { apply(fuse.takeEvents()) }
  ov.handles.forward = (fd, on) => fuse.forwardFd(fd, on)
  // Reads of chunked siblings are served in C from the data and map files as they are on
  // disk (decoding and checking each chunk as ChunkFile.read does); what C cannot answer
  // (damage, a read racing a write, drift) still comes to JS.
  ov.handles.serveChunked = (fh, file) => {
    if (file === null) { fuse.serveChunked(fh, -1, -1, -1); return }
    const d = file.descriptors
    fuse.serveChunked(fh, d.data, d.map, d.host)
  }
  const ho = ov.hostOpen
  fuse.setHostOpen(ho.maxSize > 0, ho.flags, ho.maxSize)
  // ... and so is an open for writing of a host file there (without O_TRUNC): it copies
  // nothing, so C opens the host file as JS would and hands every request on it to JS,
  // whose first write makes the sibling (Overlay.open, adoptPending).
  fuse.setPendingOpen(ho.maxSize > 0)
  // The kernel may keep the listings of directories listed in C, dropping one at every
  // change through the mount in it and at a new mtime (host changes: seen once the
  // directory's attributes or entry time out). With a zero timeout (strict), never.
  fuse.setDirCache(o.attrTimeout > 0 && o.entryTimeout > 0)
  // chmod, chown, utimens and fstat of files made in the sandbox, in directories made there,
  // are the same calls on the store entry: answered in C; and so is the refusal of xattr
  // names the overlay never stores (overlay.ts, setxattr).
  fuse.setStoreMeta(true, ov.canChown, true, ov.canChown)
  // ... and so is a stat of a chunked file made there: its size is its map header's.
  fuse.setMapsDir(ov.mapsFd)
  // ... and a read-only open of one, whose reads C then serves (as for serveChunked above).
  fuse.setChunkedOpen(ho.maxSize > 0)
  // So is a create there, in a plain store (in a compressed one every file is chunked).
  fuse.setStoreCreate(!ov.copyup.compress, ov.canChown)
  // ... and a mkdir there, and a link or unlink of a file made there that holds its own
  // bytes (in a compressed store, files go to JS: their chunk maps are JS's).
  fuse.setStoreLinks(true)
  // The first write on a host file opened for writing in C (setPendingOpen) makes its
  // chunked sibling there too, as CopyUp.chunked would, for big files in a plain store,
  // from two empty files made ahead here (CopyUp.native); JS takes the handle over after
  // (Overlay.adoptCopiedUp). Other first writes come to JS as before.
  const cu = ov.copyup
  if (!cu.compress && fuse.setCopyUp(ho.maxSize > 0, cu.chunkSize, SPARSE_MIN_BYTES, cu.workFd, ov.canChown)) {
    cu.native = {
      give: (dataFd, dataName, mapFd, mapName, id) => fuse.giveSpare(dataFd, dataName, mapFd, mapName, id),
      take: () => fuse.takeSpare()
    }
    cu.refill()
    // It does so only while JS holds no handle on a host file it opened itself (it cannot
    // move JS's readers onto the sibling; JS can). No request has come yet: none is open.
    ov.handles.jsHost = (d) => { fuse.jsHostHandles(d) }
  }
  // With --spin-wait (off by default), the two sides of a request JS answers wait for each
  // other awake, briefly: waking a sleeping thread costs more than most answers (~100 us a
  // wake on a virtual machine).
  fuse.setSpinWait(o.spinWait)
  fuse.setMainSpin(2 * o.spinWait)

  let unmounted = false
  let markGone: () => void = () => {}
  const gone = new Promise<void>((resolve) => { markGone = resolve })
  // Keeps the process alive while mounted (fuse-native's handles do not) and notices an
  // unmount made by someone else.
  const watch = setInterval(() => {
    if (!isMountPoint(mountpoint)) { clearInterval(watch); unmounted = true; markGone() }
  }, 1000)

  const unmount = async (): Promise<void> => {
    if (unmounted) return
    unmounted = true
    clearInterval(watch)
    await new Promise<void>((resolve) => {
      fuse.unmount((err) => {
        if (err !== null && isMountPoint(mountpoint)) {
          process.stderr.write(`siblingfs: unmount of ${mountpoint} failed: ${err.message}\n`)
        }
        resolve()
      })
    })
    markGone()
  }
  return { unmount, gone }
}
