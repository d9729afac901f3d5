/**
 * Warm-up: the write paths run once, on a throwaway overlay, before the mount.
 *
 * Contract: `warmUp(work, options)` builds a scratch host tree and a scratch store in a
 * new directory under the real store's work/ (which every mount empties), runs through the
 * FUSE handlers of an Overlay of their own what a first write does (lookup, open for
 * writing, the copy-up of a small file and the chunked copy-up of a large one, the write,
 * reads, a create, a rename, an unlink, a chmod, a listing, an error), closes it and
 * deletes the directory. The real host tree
 * and the real store's upper/ and maps/ are never touched. It never fails the mount: an
 * error is logged and the mount goes on, merely without the warm-up.
 * Why: V8 compiles a function at its first call. Without this, the first copy-up after a
 * mount paid about 5 ms compiling the overlay, copy-up and chunk-engine code on the way
 * (a one-byte write into a 1 GiB file: ~8 ms at the first write, ~3 ms at the next ones).
 * Costs ~20–40 ms at mount.
 * Does not: warm fuse-native's JS dispatch or anything in C.
 */
import fs from 'node:fs'
import path from 'node:path'
import { constants as C } from 'node:fs'
import { log } from '../log.js'
import { createHandlers } from '../fuse/handlers.js'
import { Overlay } from '../overlay/overlay.js'
import { SPARSE_MIN_BYTES, openOrCreateStore, type StoreOptions } from '../store/format.js'

export async function warmUp (work: string, options: StoreOptions, rounds = 3): Promise<void> {
  let root: string | undefined
  try {
    root = fs.mkdtempSync(path.join(work, `warmup-${process.pid}-`))
    const host = path.join(root, 'host')
    fs.mkdirSync(path.join(host, 'd'), { recursive: true })
    fs.writeFileSync(path.join(host, 'small'), Buffer.alloc(8192, 0x61))
    fs.writeFileSync(path.join(host, 'd', 'f'), 'f\n')
    const bigSize = 2 * Math.max(SPARSE_MIN_BYTES, options.chunkSize)
    fs.writeFileSync(path.join(host, 'big'), '')
    fs.truncateSync(path.join(host, 'big'), bigSize) // sparse: no disk space
    const store = path.join(root, 'store')
    openOrCreateStore(store, host, options)
    const ov = new Overlay({ host, store, options, chunkCacheBytes: 1 << 20 })
    try {
      for (let i = 0; i < rounds; i++) await exercise(ov, bigSize, i)
    } finally {
      ov.close()
    }
  } catch (err) {
    log(`warm-up skipped: ${err instanceof Error ? err.message : String(err)}`)
  } finally {
    if (root !== undefined) fs.rmSync(root, { recursive: true, force: true })
  }
}

async function exercise (ov: Overlay, bigSize: number, round: number): Promise<void> {
  const who = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid: process.pid }
  const h = createHandlers(ov, () => who)
  // As fuse-native calls them: arguments, then a callback answered exactly once.
  const call = async (op: string, ...args: unknown[]): Promise<number> => await new Promise((resolve) => {
    h[op](...args, (err: number, value?: unknown) => { resolve(typeof value === 'number' ? value : err) })
  })
  const buf = Buffer.alloc(4096)
  await call('getattr', '/')
  await call('readdir', '/')
  await call('getattr', '/nope') // ENOENT, through errno mapping
  for (const [p, off] of [['/small', 100 + round], ['/big', bigSize / 2 + round * 65536]] as const) {
    await call('getattr', p)
    const r = await call('open', p, C.O_RDONLY)
    await call('read', p, r, buf, buf.length, 0)
    const w = await call('open', p, C.O_WRONLY)
    await call('write', p, w, Buffer.from('x'), 1, off) // the copy-up, whole or chunked
    await call('fgetattr', p, w)
    await call('read', p, r, buf, buf.length, 0) // the reader, moved onto the sibling
    await call('release', p, w)
    await call('release', p, r)
    await call('getattr', p)
  }
  await call('readdir', '/d')
  const c = await call('create', `/d/new${round}`, 0o644, C.O_WRONLY | C.O_CREAT)
  await call('write', `/d/new${round}`, c, Buffer.from('new\n'), 4, 0)
  await call('release', `/d/new${round}`, c)
  await call('utimens', `/d/new${round}`, 0, 0, 0, 0)
  await call('rename', `/d/new${round}`, '/d/renamed')
  await call('unlink', '/d/renamed')
  await call('chmod', '/d/f', 0o600 - round)
  await call('mkdir', '/d/sub', 0o755)
  await call('rmdir', '/d/sub')
  await call('readdir', '/d')
}
